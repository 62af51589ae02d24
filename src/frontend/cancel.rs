//! Cancel keys. Each client gets its own random BackendKeyData; a
//! CancelRequest carrying it is forwarded to the server connection that client
//! is using at that moment, and to nothing else.

use std::net::SocketAddr;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::Mutex;

/// The server connection a client is currently using: where to send a cancel.
pub type CancelTarget = Option<(SocketAddr, (i32, i32))>;

/// One client's slot. The session clears it (taking the lock) before it gives
/// its server connection back, and a cancel holds the lock while it is
/// delivered, so a cancel never lands on a connection another client holds.
#[derive(Debug, Default)]
pub struct CancelSlot {
    target: Mutex<CancelTarget>,
}

impl CancelSlot {
    /// Records the server connection in use (or `None` when released).
    pub async fn set(&self, target: CancelTarget) {
        *self.target.lock().await = target;
    }

    /// Forwards a cancel to the current server connection, if any.
    pub async fn cancel(&self) {
        let guard = self.target.lock().await;
        if let Some((addr, key)) = *guard
            && let Err(e) = crate::backend::send_cancel(addr, key).await
        {
            tracing::warn!(error = %e, "could not forward cancel request");
        }
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
        let r = CancelRegistry::default();
        let ((pid, secret), _) = r.register();
        assert!(r.lookup(pid, secret).is_some());
        assert!(r.lookup(pid, secret.wrapping_add(1)).is_none());
        r.unregister(pid);
        assert!(r.lookup(pid, secret).is_none());
    }
}
