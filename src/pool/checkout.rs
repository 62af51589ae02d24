//! A checked-out server connection. It goes back to its pool only when the
//! holder says it is clean; dropped any other way, it is closed, so a
//! connection in an unknown state can never reach another client.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::Pool;
use crate::backend::ServerConn;

/// A server connection held by one client session.
#[derive(Debug)]
pub struct Checkout {
    /// The connection (closing it is dropping it). Boxed once when opened,
    /// so handing it between the pool and sessions moves a pointer.
    pub conn: Box<ServerConn>,
    lease: Lease,
}

/// The pool slot behind a checkout: frees the slot when dropped and, unless
/// the connection was given back, accounts for it as closed.
#[derive(Debug)]
struct Lease {
    pool: Arc<Pool>,
    returned: bool,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.returned {
            self.pool.forget();
        }
        // A pool made smaller keeps the slot instead of freeing it.
        if self.pool.owes_a_slot()
            && let Some(p) = self.permit.take()
        {
            p.forget();
        }
    }
}

impl Checkout {
    pub(super) fn new(
        conn: Box<ServerConn>,
        pool: Arc<Pool>,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Checkout {
            conn,
            lease: Lease {
                pool,
                returned: false,
                permit: Some(permit),
            },
        }
    }

    /// The pool this connection belongs to.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.lease.pool
    }

    /// The connection and its pool at once (to use the one while reading
    /// the other).
    pub fn conn_and_pool(&mut self) -> (&mut ServerConn, &Pool) {
        (&mut self.conn, &self.lease.pool)
    }

    /// Returns a clean connection (idle, no open transaction, nothing unread)
    /// to the pool and frees the slot for the next waiter. A connection with
    /// unread bytes is closed instead.
    pub fn release(self) {
        self.release_at(Instant::now());
    }

    /// [`Checkout::release`] for a caller that already read the clock: the
    /// connection counts as last used at `now`.
    pub fn release_at(self, now: Instant) {
        let Checkout { conn, mut lease } = self;
        if conn.is_drained() {
            lease.pool.put_idle(conn, now);
            lease.returned = true;
        }
    }
}
