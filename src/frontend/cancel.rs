//! Cancel keys. Each client gets its own random BackendKeyData; a
//! CancelRequest carrying it is forwarded to the server connection that client
//! is using at that moment, and to nothing else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dashmap::DashMap;
use tokio::sync::Notify;

/// The server connection a client is currently using: where to send a cancel.
pub type CancelTarget = Option<(SocketAddr, (i32, i32))>;

/// One client's slot. A cancel reads the target and counts itself in flight
/// under the slot's lock; the session clears the target under the same lock
/// before it gives its server connection back, and then waits until no
/// cancel is in flight. So a cancel never lands on a connection another
/// client holds, and setting the slot costs no more than a lock when no
/// cancel is being delivered (every transaction sets it twice).
#[derive(Debug, Default)]
pub struct CancelSlot {
    target: Mutex<CancelTarget>,
    in_flight: AtomicUsize,
    delivered: Notify,
    /// The session waits for a server connection (or a pause): a cancel
    /// without a target ends that wait instead.
    waiting: AtomicBool,
    wait_cancelled: Notify,
}

impl CancelSlot {
    /// Records the server connection in use (or `None` when released; then
    /// returns only once no cancel for the previous one is on its way).
    pub async fn set(&self, target: CancelTarget) {
        let clearing = target.is_none();
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = target;
        if !clearing || self.in_flight.load(Ordering::SeqCst) == 0 {
            // A cancel that read the target before it was cleared counted
            // itself in flight under the lock, so it is seen here.
            return;
        }
        loop {
            let delivered = self.delivered.notified();
            tokio::pin!(delivered);
            delivered.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            delivered.await;
        }
    }

    /// Resolves when a cancel arrives while this future is pending: the
    /// session awaits it beside its wait for a server connection. Cancels
    /// before or after that wait do nothing here, as Postgres ignores a
    /// cancel that finds no statement running.
    pub async fn wait_cancelled(&self) {
        let notified = self.wait_cancelled.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        self.waiting.store(true, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        notified.await;
    }

    /// Forwards a cancel to the current server connection, if any.
    pub async fn cancel(&self) {
        let target = {
            let guard = self.target.lock().unwrap_or_else(PoisonError::into_inner);
            if guard.is_some() {
                self.in_flight.fetch_add(1, Ordering::SeqCst);
            }
            *guard
        };
        let Some((addr, key)) = target else {
            if self.waiting.load(Ordering::SeqCst) {
                // Wakes only a wait in progress: none is left pending for
                // a later one.
                self.wait_cancelled.notify_waiters();
            }
            return;
        };
        // Counted out when done, also if this future is dropped half-way.
        let _in_flight = InFlight(self);
        if let Err(e) = crate::backend::send_cancel(addr, key).await {
            tracing::warn!(error = %e, "could not forward cancel request");
        }
    }
}

/// A session's wait that a cancel may end; over when dropped.
struct Waiting<'a>(&'a AtomicBool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A cancel on its way; leaving the slot's count when dropped.
struct InFlight<'a>(&'a CancelSlot);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.delivered.notify_waiters();
    }
}

/// A session's cancel key, removed from the registry when dropped.
#[derive(Debug)]
pub struct Registered {
    registry: Arc<CancelRegistry>,
    pid: i32,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.unregister(self.pid);
    }
}

/// All live sessions' cancel keys.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    by_pid: DashMap<i32, (i32, Arc<CancelSlot>)>,
}

impl CancelRegistry {
    /// Registers a new session; returns its (pid, secret) and slot.
    pub fn register(&self) -> ((i32, i32), Arc<CancelSlot>) {
        let slot = Arc::new(CancelSlot::default());
        loop {
            let pid = rand::random::<i32>() & 0x7fff_ffff;
            let secret = rand::random::<i32>();
            if pid == 0 {
                continue;
            }
            if let dashmap::Entry::Vacant(v) = self.by_pid.entry(pid) {
                v.insert((secret, slot.clone()));
                return ((pid, secret), slot);
            }
        }
    }

    /// Removes a finished session's key.
    pub fn unregister(&self, pid: i32) {
        self.by_pid.remove(&pid);
    }

    /// Keeps `pid` registered until the returned guard is dropped: when the
    /// session returns, when its task is dropped, or when it panics.
    pub fn hold(self: &Arc<Self>, pid: i32) -> Registered {
        Registered {
            registry: self.clone(),
            pid,
        }
    }

    /// The slot for a cancel request, if the key matches a live session.
    pub fn lookup(&self, pid: i32, secret: i32) -> Option<Arc<CancelSlot>> {
        self.by_pid
            .get(&pid)
            .filter(|e| e.0 == secret)
            .map(|e| e.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_match() {
        let r = Arc::new(CancelRegistry::default());
        let ((pid, secret), _) = r.register();
        assert!(r.lookup(pid, secret).is_some());
        assert!(r.lookup(pid, secret.wrapping_add(1)).is_none());
        r.unregister(pid);
        assert!(r.lookup(pid, secret).is_none());
    }

    #[test]
    fn a_held_key_goes_when_its_holder_unwinds() {
        let r = Arc::new(CancelRegistry::default());
        let ((pid, secret), _) = r.register();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = r.hold(pid);
            assert!(r.lookup(pid, secret).is_some());
            panic!("the session panics");
        }));
        assert!(unwound.is_err());
        assert!(r.lookup(pid, secret).is_none());
    }

    /// Clearing the slot waits for a cancel that is being delivered, so the
    /// connection it targets cannot go to another client before it lands.
    #[tokio::test]
    async fn clearing_waits_for_a_cancel_in_flight() {
        use std::time::Duration;
        use tokio::io::AsyncReadExt;

        // A "server" that reads the CancelRequest and then holds the
        // connection open until told to close it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        let (got_tx, got_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 16];
            s.read_exact(&mut request).await.unwrap();
            got_tx.send(request).unwrap();
            let _ = close_rx.await;
        });

        let slot = Arc::new(CancelSlot::default());
        slot.set(Some((addr, (42, 7)))).await;
        let cancelling = tokio::spawn({
            let slot = slot.clone();
            async move { slot.cancel().await }
        });
        let request = got_rx.await.unwrap();
        assert_eq!(
            &request[8..12],
            &42i32.to_be_bytes(),
            "the cancel names pid 42"
        );

        // The cancel is in flight (its server has not closed): clearing waits.
        let clearing = tokio::spawn({
            let slot = slot.clone();
            async move { slot.set(None).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !clearing.is_finished(),
            "cleared while a cancel was in flight"
        );

        close_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), clearing)
            .await
            .expect("clearing finishes once the cancel is delivered")
            .unwrap();
        cancelling.await.unwrap();
        // With nothing in flight, clearing returns at once.
        tokio::time::timeout(Duration::from_millis(100), slot.set(None))
            .await
            .expect("nothing in flight");
    }
}
