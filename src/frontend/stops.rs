//! What ends a session's wait besides its sockets: a forced close at the end
//! of a drain, a KILL from the admin console, and the start of a drain.
//!
//! Each is a cancellation future made once per session. They are polled
//! with a waker of their own, which raises a flag before it wakes the
//! session's task, so a wait polls them only after one of them fired. A
//! wait otherwise costs one atomic swap here: the session waits several
//! times per transaction, and polling a token takes its lock.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

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

/// The waker the stop futures see: it notes that one of them may have
/// fired, then wakes the session's task.
#[derive(Default)]
struct StopWaker {
    fired: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for StopWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::SeqCst);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = task.as_ref() {
            w.wake_by_ref();
        }
    }
}

/// The session's long-lived stop futures.
pub(super) struct Stops {
    force_close: Pin<Box<WaitForCancellationFutureOwned>>,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Shared with the futures' waker.
    signal: Arc<StopWaker>,
    /// `signal` as a [`Waker`].
    waker: Waker,
    /// The task waker last handed to `signal` (compared, not shared).
    task: Option<Waker>,
    /// What the futures reported when last polled.
    force_closed: bool,
    was_killed: bool,
    draining: bool,
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
        let signal = Arc::new(StopWaker::default());
        // The first wait polls every future, which registers the waker.
        signal.fired.store(true, Ordering::Relaxed);
        Stops {
            force_close: Box::pin(force_close.clone().cancelled_owned()),
            killed: Box::pin(kill.clone().cancelled_owned()),
            shutdown: Box::pin(shutdown.clone().cancelled_owned()),
            waker: Waker::from(signal.clone()),
            signal,
            task: None,
            force_closed: false,
            was_killed: false,
            draining: false,
        }
    }

    /// A stop that applies now. A drain counts only when the session is
    /// `idle` (between transactions).
    pub(super) fn poll(&mut self, cx: &mut Context<'_>, idle: bool) -> Poll<Stop> {
        if !self.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            let w = cx.waker().clone();
            *self
                .signal
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(w.clone());
            self.task = Some(w);
        }
        // A load first: the locked swap only when a stop may have fired.
        if self.signal.fired.load(Ordering::SeqCst)
            && self.signal.fired.swap(false, Ordering::SeqCst)
        {
            let mut own = Context::from_waker(&self.waker);
            self.force_closed |= self.force_close.as_mut().poll(&mut own).is_ready();
            self.was_killed |= self.killed.as_mut().poll(&mut own).is_ready();
            self.draining |= self.shutdown.as_mut().poll(&mut own).is_ready();
        }
        if self.force_closed {
            Poll::Ready(Stop::ForceClose)
        } else if self.was_killed {
            Poll::Ready(Stop::Killed)
        } else if idle && self.draining {
            Poll::Ready(Stop::Shutdown)
        } else {
            Poll::Pending
        }
    }

    /// Waits for a stop (a drain counts at once).
    pub(super) async fn any(&mut self) -> Stop {
        std::future::poll_fn(|cx| self.poll(cx, true)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three fresh tokens (force close, kill, shutdown) and their stops.
    fn fresh_stops() -> (
        CancellationToken,
        CancellationToken,
        CancellationToken,
        Stops,
    ) {
        let (force, kill, shutdown) = Default::default();
        let stops = Stops::new(&force, &kill, &shutdown);
        (force, kill, shutdown, stops)
    }

    fn noop_context_poll(stops: &mut Stops, idle: bool) -> Poll<Stop> {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        stops.poll(&mut cx, idle)
    }

    #[tokio::test]
    async fn stops_fire_in_order_and_drain_waits_for_idle() {
        let (force, kill, shutdown, mut stops) = fresh_stops();
        assert!(noop_context_poll(&mut stops, true).is_pending());
        shutdown.cancel();
        assert!(noop_context_poll(&mut stops, false).is_pending());
        assert_eq!(
            noop_context_poll(&mut stops, true),
            Poll::Ready(Stop::Shutdown)
        );
        kill.cancel();
        assert_eq!(
            noop_context_poll(&mut stops, true),
            Poll::Ready(Stop::Killed)
        );
        force.cancel();
        assert_eq!(
            noop_context_poll(&mut stops, false),
            Poll::Ready(Stop::ForceClose)
        );
    }

    #[tokio::test]
    async fn a_stop_wakes_the_waiting_task() {
        let (_force, kill, _shutdown, mut stops) = fresh_stops();
        let waiter = tokio::spawn(async move { stops.any().await });
        tokio::task::yield_now().await;
        kill.cancel();
        let stop = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the kill woke the waiting task")
            .expect("task ran");
        assert_eq!(stop, Stop::Killed);
    }
}
