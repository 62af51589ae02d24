//! One shard's pool. A semaphore with `pool_size` permits is the queue: it is
//! FIFO-fair and cancel-safe (a waiter that gives up leaves the queue). A
//! permit entitles its holder to one server connection, idle or new.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::Checkout;
use crate::backend::{BackendTarget, ServerConn};
use crate::error::ProxyError;

/// ParameterStatus (name, value) pairs a server reported.
pub type ReportedParams = Arc<Vec<(String, String)>>;

/// Static settings of one pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Shard name, for errors and metrics.
    pub shard: String,
    /// How to log in.
    pub target: BackendTarget,
    /// Most server connections at once.
    pub size: usize,
    /// Connect + authenticate limit.
    pub connect_timeout: Duration,
    /// Idle connections older than this are closed.
    pub idle_timeout: Duration,
}

/// Counters readable by the admin console and metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Server connections open (idle + in use + being created).
    pub open: AtomicUsize,
    /// Server connections being created right now.
    pub connecting: AtomicUsize,
    /// Clients waiting for a permit.
    pub waiting: AtomicUsize,
    /// Checkouts served.
    pub checkouts: AtomicU64,
    /// Connections opened over the pool's life.
    pub connects: AtomicU64,
    /// Failed connection attempts.
    pub connect_errors: AtomicU64,
    /// Sessions that pinned a server connection (LISTEN, temp tables, …).
    pub pinned: AtomicU64,
    /// Total microseconds clients spent waiting.
    pub wait_us: AtomicU64,
}

/// A shard's pool of server connections.
#[derive(Debug)]
pub struct Pool {
    settings: PoolSettings,
    permits: Arc<Semaphore>,
    /// Boxed on purpose: a connection moves between this list and sessions
    /// on every transaction, and a pointer moves cheaper than the struct.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<ServerConn>>>,
    next_id: AtomicU64,
    /// ParameterStatus values servers reported, by session-settings fingerprint.
    reported: Mutex<HashMap<u64, ReportedParams>>,
    /// Removed from the configuration: connections are closed, not kept.
    retired: std::sync::atomic::AtomicBool,
    /// Live counters.
    pub stats: PoolStats,
}

impl Pool {
    /// Creates an empty pool (connections are opened on demand) and starts its
    /// idle reaper.
    pub fn new(settings: PoolSettings) -> Arc<Pool> {
        let size = settings.size.max(1);
        let pool = Arc::new(Pool {
            settings,
            permits: Arc::new(Semaphore::new(size)),
            idle: Mutex::new(Vec::with_capacity(size)),
            next_id: AtomicU64::new(1),
            reported: Mutex::new(HashMap::new()),
            retired: std::sync::atomic::AtomicBool::new(false),
            stats: PoolStats::default(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(reap_idle(Arc::downgrade(&pool)));
        }
        pool
    }

    /// The pool's settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Shard name.
    pub fn shard(&self) -> &str {
        &self.settings.shard
    }

    /// ParameterStatus values a server reported for settings `fingerprint`.
    pub fn reported_params(&self, fingerprint: u64) -> Option<ReportedParams> {
        self.reported.lock().ok()?.get(&fingerprint).cloned()
    }

    /// Remembers what a server reported for settings `fingerprint`, so later
    /// logins with the same settings need no server round trip.
    pub fn remember_params(&self, fingerprint: u64, params: &[(String, String)]) {
        if let Ok(mut g) = self.reported.lock() {
            if g.len() >= 1024 {
                g.clear();
            }
            g.insert(fingerprint, Arc::new(params.to_vec()));
        }
    }

    /// Number of idle connections.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|g| g.len()).unwrap_or(0)
    }

    /// Idle connections: (id, backend pid, opened, last returned), for the admin console.
    pub fn idle_servers(&self) -> Vec<(u64, i32, Instant, Instant)> {
        let g = self.idle.lock();
        g.map(|g| {
            g.iter()
                .map(|c| (c.id, c.backend_key.0, c.created, c.last_used))
                .collect()
        })
        .unwrap_or_default()
    }

    /// Number of permits (connections) in use by clients.
    pub fn in_use(&self) -> usize {
        self.settings.size.max(1) - self.permits.available_permits()
    }

    /// Waits (FIFO, up to `wait`) for a connection: an idle one that is still
    /// alive, or a new one. Dropping the future leaves the queue.
    pub async fn checkout(self: &Arc<Self>, wait: Duration) -> Result<Checkout, ProxyError> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let started = Instant::now();
                let waiting = Counted::enter(&self.stats.waiting);
                let r = tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await;
                drop(waiting);
                self.stats
                    .wait_us
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                match r {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(ProxyError::shard_unavailable(self.shard())),
                    Err(_) => {
                        tracing::warn!(
                            shard = self.shard(),
                            waited_ms = wait.as_millis() as u64,
                            "pool exhausted: timed out waiting for a server connection"
                        );
                        return Err(ProxyError::pool_timeout(self.shard(), wait));
                    }
                }
            }
        };
        self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        let conn = match self.pop_idle() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        Ok(Checkout::new(conn, self.clone(), permit))
    }

    /// An idle connection, at once and without queueing, if a slot is free
    /// and one is idle: the common case, which needs no clock and no timer.
    pub fn try_checkout(self: &Arc<Self>) -> Option<Checkout> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        // None idle (or only dead ones): the slot goes back, and a checkout
        // that may connect follows.
        let conn = self.pop_idle()?;
        self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        Some(Checkout::new(conn, self.clone(), permit))
    }

    /// The most recently returned idle connection that is still alive.
    fn pop_idle(&self) -> Option<Box<ServerConn>> {
        loop {
            let conn = self.idle.lock().ok().and_then(|mut g| g.pop())?;
            if is_alive(&conn) {
                return Some(conn);
            }
            tracing::debug!(
                shard = self.shard(),
                server = conn.id,
                "dropping dead idle server connection"
            );
            self.stats.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    async fn connect(&self) -> Result<Box<ServerConn>, ProxyError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connecting = Counted::enter(&self.stats.connecting);
        let r = ServerConn::connect(&self.settings.target, id, self.settings.connect_timeout).await;
        drop(connecting);
        match r {
            Ok(c) => {
                self.stats.open.fetch_add(1, Ordering::Relaxed);
                self.stats.connects.fetch_add(1, Ordering::Relaxed);
                Ok(Box::new(c))
            }
            Err(e) => {
                self.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(shard = self.shard(), error = %e, "cannot open server connection");
                Err(ProxyError::shard_unavailable(self.shard()))
            }
        }
    }

    /// Puts a clean connection back (called by [`Checkout`]); it was last
    /// used at `now`.
    pub(super) fn put_idle(&self, mut conn: Box<ServerConn>, now: Instant) {
        if self.retired.load(Ordering::Relaxed) {
            self.stats.open.fetch_sub(1, Ordering::Relaxed);
            tokio::spawn(conn.terminate());
            return;
        }
        conn.last_used = now;
        match self.idle.lock() {
            Ok(mut g) => g.push(conn),
            Err(_) => {
                self.stats.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Accounts for a connection that was closed instead of returned.
    pub(super) fn forget(&self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Takes the pool out of service after a reload removed or replaced it:
    /// idle connections close now, busy ones when their client is done.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        self.close_idle();
    }

    /// Whether [`Pool::retire`] was called.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Whether this pool, still in service, is the one for `shard`: then a
    /// session routed there keeps it without looking the shard up again.
    pub fn serves(&self, shard: &str) -> bool {
        self.shard() == shard && !self.is_retired()
    }

    /// Closes every idle connection (used when the shard is removed or on shutdown).
    pub fn close_idle(&self) {
        let drained: Vec<Box<ServerConn>> = match self.idle.lock() {
            Ok(mut g) => g.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        self.stats.open.fetch_sub(drained.len(), Ordering::Relaxed);
        for c in drained {
            tokio::spawn(c.terminate());
        }
    }
}

/// A pooled connection is dead if the server closed it or sent something
/// unsolicited (e.g. FATAL on shutdown) while idle. Costs no syscall when
/// the reactor has seen no event on the socket.
fn is_alive(conn: &ServerConn) -> bool {
    let mut probe = [0u8; 1];
    matches!(conn.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

async fn reap_idle(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let limit = pool.settings.idle_timeout;
        let expired: Vec<Box<ServerConn>> = match pool.idle.lock() {
            Ok(mut g) => {
                let (old, keep): (Vec<_>, Vec<_>) = g
                    .drain(..)
                    .partition(|c| c.last_used.elapsed() > limit || !is_alive(c));
                *g = keep;
                old
            }
            Err(_) => return,
        };
        pool.stats.open.fetch_sub(expired.len(), Ordering::Relaxed);
        for c in expired {
            c.terminate().await;
        }
    }
}
/// One unit of a gauge for as long as it lives: counted out however the
/// holder ends, also when a checkout is cancelled half-way (the session was
/// killed while it waited or connected).
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn enter(gauge: &'a AtomicUsize) -> Counted<'a> {
        gauge.fetch_add(1, Ordering::Relaxed);
        Counted(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of `size` for a "server" that accepts TCP connections and
    /// never answers.
    fn silent_pool(size: usize, port: u16) -> Arc<Pool> {
        Pool::new(PoolSettings {
            shard: "s".into(),
            target: BackendTarget {
                host: "127.0.0.1".into(),
                port,
                user: "u".into(),
                password: None,
                dbname: "d".into(),
            },
            size,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        })
    }

    #[tokio::test]
    async fn cancelled_checkouts_leave_no_gauge_behind() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = silent_pool(1, silent.local_addr().unwrap().port());
        // Cancelled while connecting (the session was killed meanwhile).
        let connecting = tokio::time::timeout(
            Duration::from_millis(200),
            pool.checkout(Duration::from_secs(30)),
        )
        .await;
        assert!(connecting.is_err(), "the silent server cannot log in");
        assert_eq!(pool.stats.connecting.load(Ordering::Relaxed), 0);
        // Cancelled while queued for the only slot.
        let held = pool.permits.clone().try_acquire_owned().unwrap();
        let queued = tokio::time::timeout(
            Duration::from_millis(100),
            pool.checkout(Duration::from_secs(30)),
        )
        .await;
        assert!(queued.is_err(), "no slot is free");
        assert_eq!(pool.stats.waiting.load(Ordering::Relaxed), 0);
        drop(held);
    }
}
