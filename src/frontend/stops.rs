//! What ends a session's wait besides its sockets: a forced close at the end
//! of a drain, a KILL from the admin console, and the start of a drain.
//!
//! Each is a cancellation future made once per session and polled again on
//! every wait. Making a fresh `cancelled()` future per wait would enter the
//! token's shared waiter list (a lock every session contends for) several
//! times per transaction.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Why a session stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The drain's time is up: close now.
    ForceClose,
    /// An operator killed this client.
    Killed,
    /// The proxy is draining: close at the next idle point.
    Shutdown,
}

/// The session's long-lived stop futures.
pub(super) struct Stops {
    force_close: Pin<Box<WaitForCancellationFutureOwned>>,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl std::fmt::Debug for Stops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stops")
    }
}

impl Stops {
    /// Stop futures for the proxy's tokens and the session's kill token.
    pub(super) fn new(
        force_close: &CancellationToken,
        kill: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Stops {
        Stops {
            force_close: Box::pin(force_close.clone().cancelled_owned()),
            killed: Box::pin(kill.clone().cancelled_owned()),
            shutdown: Box::pin(shutdown.clone().cancelled_owned()),
        }
    }

    /// A stop that applies now. A drain counts only when the session is
    /// `idle` (between transactions).
    pub(super) fn poll(&mut self, cx: &mut Context<'_>, idle: bool) -> Poll<Stop> {
        if self.force_close.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Stop::ForceClose);
        }
        if self.killed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Stop::Killed);
        }
        if idle && self.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Stop::Shutdown);
        }
        Poll::Pending
    }

    /// Waits for a stop (a drain counts at once).
    pub(super) async fn any(&mut self) -> Stop {
        std::future::poll_fn(|cx| self.poll(cx, true)).await
    }
}
