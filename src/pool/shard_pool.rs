//! One shard's pool. A semaphore with `pool_size` permits is the queue: it is
//! FIFO-fair and cancel-safe (a waiter that gives up leaves the queue). A
//! permit entitles its holder to one server connection, idle or new.
//!
//! A shard keeps one pool for as long as it is configured: a reload that
//! changes its size, timeouts or even its server retunes the pool in place,
//! as PgBouncer does, so its counters and its busy connections stay in view
//! and the server never sees more than the new size once the old
//! connections are back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::{Checkout, PinQuota};
use crate::backend::{BackendTarget, ServerConn};
use crate::error::ProxyError;

/// ParameterStatus (name, value) pairs a server reported.
pub type ReportedParams = Arc<Vec<(String, String)>>;

/// After a failed connection attempt, how long a pool answers requests for
/// a new connection with the failure instead of trying again.
pub const CONNECT_RETRY: Duration = Duration::from_millis(250);

/// Server connection ids, unique in the process (not per pool), so that
/// `SHOW CLIENTS`' `link` names one connection of `SHOW SERVERS`; they only
/// grow, which `fresh_from` relies on.
static NEXT_SERVER_ID: AtomicU64 = AtomicU64::new(1);

/// Settings of one pool, as configured (a reload applies a new set with
/// [`Pool::retune`]).
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
    /// Most connections one tenant may hold pinned (0: no limit).
    pub max_pinned_per_tenant: usize,
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
    /// Statements refused because their tenant held its share of pinned
    /// connections already.
    pub pins_refused: AtomicU64,
    /// Total microseconds clients spent waiting.
    pub wait_us: AtomicU64,
}

/// A shard's pool of server connections.
#[derive(Debug)]
pub struct Pool {
    shard: String,
    /// Where connections go; replaced by a reload that changes the `url`.
    target: Mutex<Arc<BackendTarget>>,
    /// Connections with a lower id were opened for an earlier target: they
    /// are closed when given back, never handed out again.
    fresh_from: AtomicU64,
    /// The configured size (most connections at once).
    size: AtomicUsize,
    /// Permits still held by clients that a shrink took away: each is
    /// forgotten, not freed, when its holder is done.
    owed: AtomicUsize,
    /// Serializes [`Pool::retune`] calls.
    retuning: Mutex<()>,
    connect_timeout_us: AtomicU64,
    idle_timeout_us: AtomicU64,
    permits: Arc<Semaphore>,
    /// Boxed on purpose: a connection moves between this list and sessions
    /// on every transaction, and a pointer moves cheaper than the struct.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<ServerConn>>>,
    /// ParameterStatus values servers reported, by session-settings fingerprint.
    reported: Mutex<HashMap<u64, ReportedParams>>,
    /// Removed from the configuration: connections are closed, not kept.
    retired: std::sync::atomic::AtomicBool,
    /// Until when a new connection is not tried after one failed: the
    /// sessions asking meanwhile get the shard's error at once, so a shard
    /// that is down costs one connection attempt (and one log line) per
    /// [`CONNECT_RETRY`], not one per query of every client.
    failing_until: Mutex<Option<Instant>>,
    /// Live counters.
    pub stats: PoolStats,
    /// Pinned connections by tenant.
    pub pins: Arc<PinQuota>,
}

impl Pool {
    /// Creates an empty pool (connections are opened on demand) and starts its
    /// idle reaper.
    pub fn new(settings: PoolSettings) -> Arc<Pool> {
        let size = settings.size.max(1);
        let pool = Arc::new(Pool {
            shard: settings.shard,
            target: Mutex::new(Arc::new(settings.target)),
            fresh_from: AtomicU64::new(1),
            size: AtomicUsize::new(size),
            owed: AtomicUsize::new(0),
            retuning: Mutex::new(()),
            connect_timeout_us: AtomicU64::new(micros(settings.connect_timeout)),
            idle_timeout_us: AtomicU64::new(micros(settings.idle_timeout)),
            permits: Arc::new(Semaphore::new(size)),
            idle: Mutex::new(Vec::with_capacity(size)),
            reported: Mutex::new(HashMap::new()),
            retired: std::sync::atomic::AtomicBool::new(false),
            failing_until: Mutex::new(None),
            stats: PoolStats::default(),
            pins: Arc::new(PinQuota::new(settings.max_pinned_per_tenant)),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(reap_idle(Arc::downgrade(&pool)));
        }
        pool
    }

    /// Where new connections go.
    pub fn target(&self) -> Arc<BackendTarget> {
        self.target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The configured size: most server connections at once.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// How long connecting and logging in to the shard may take.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_micros(self.connect_timeout_us.load(Ordering::Relaxed))
    }

    /// Idle connections older than this are closed.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_micros(self.idle_timeout_us.load(Ordering::Relaxed))
    }

    /// Shard name.
    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// Applies a reloaded configuration of this shard in place. A larger
    /// size frees more slots at once; a smaller one takes free slots away
    /// now and busy ones as their clients finish, and closes idle
    /// connections beyond it. A new target closes the idle connections now
    /// and the busy ones when they come back; new connections go to it.
    pub fn retune(&self, settings: &PoolSettings) {
        let _one = self.retuning.lock().unwrap_or_else(PoisonError::into_inner);
        self.connect_timeout_us
            .store(micros(settings.connect_timeout), Ordering::Relaxed);
        self.idle_timeout_us
            .store(micros(settings.idle_timeout), Ordering::Relaxed);
        self.pins.set_limit(settings.max_pinned_per_tenant);
        {
            let mut target = self.target.lock().unwrap_or_else(PoisonError::into_inner);
            if **target != settings.target {
                *target = Arc::new(settings.target.clone());
                self.fresh_from
                    .store(NEXT_SERVER_ID.load(Ordering::Relaxed), Ordering::Relaxed);
                if let Ok(mut g) = self.reported.lock() {
                    g.clear();
                }
                // A new server: try it at once.
                *self
                    .failing_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
            }
        }
        let new = settings.size.max(1);
        let old = self.size.swap(new, Ordering::Relaxed);
        if new > old {
            // Slots a shrink still owes come back first.
            let grow = new - old;
            let repaid = take_up_to(&self.owed, grow);
            self.permits.add_permits(grow - repaid);
        } else if new < old {
            let shrink = old - new;
            let taken = self.permits.forget_permits(shrink);
            self.owed.fetch_add(shrink - taken, Ordering::Relaxed);
        }
        self.trim_idle();
    }

    /// Closes idle connections opened for an earlier target, and idle ones
    /// beyond the size.
    fn trim_idle(&self) {
        let fresh_from = self.fresh_from.load(Ordering::Relaxed);
        let drained: Vec<Box<ServerConn>> = match self.idle.lock() {
            Ok(mut g) => {
                let (stale, mut keep): (Vec<_>, Vec<_>) =
                    g.drain(..).partition(|c| c.id < fresh_from);
                let mut drained = stale;
                let busy = self
                    .stats
                    .open
                    .load(Ordering::Relaxed)
                    .saturating_sub(drained.len() + keep.len());
                let room = self.size().saturating_sub(busy);
                if keep.len() > room {
                    // The least recently used go first (the list is LIFO).
                    let extra = keep.len() - room;
                    drained.extend(keep.drain(..extra));
                }
                *g = keep;
                drained
            }
            Err(_) => Vec::new(),
        };
        self.stats.open.fetch_sub(drained.len(), Ordering::Relaxed);
        for c in drained {
            tokio::spawn(c.terminate());
        }
    }

    /// Called as a checkout's slot is given up: `true` when a shrink still
    /// owes one, and the slot must be forgotten instead of freed.
    pub(super) fn owes_a_slot(&self) -> bool {
        self.owed.load(Ordering::Relaxed) > 0 && take_up_to(&self.owed, 1) == 1
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

    /// Idle connections: (id, backend pid, opened in microseconds since the
    /// Unix epoch, last returned), for the admin console.
    pub fn idle_servers(&self) -> Vec<(u64, i32, i64, Instant)> {
        let g = self.idle.lock();
        g.map(|g| {
            g.iter()
                .map(|c| (c.id, c.backend_key.0, c.created_unix_us, c.last_used))
                .collect()
        })
        .unwrap_or_default()
    }

    /// Number of permits (connections) in use by clients.
    pub fn in_use(&self) -> usize {
        (self.size() + self.owed.load(Ordering::Relaxed))
            .saturating_sub(self.permits.available_permits())
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
            if conn.id >= self.fresh_from.load(Ordering::Relaxed) && is_alive(&conn) {
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
        if self
            .failing_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| Instant::now() < until)
        {
            return Err(ProxyError::shard_unavailable(self.shard()));
        }
        let id = NEXT_SERVER_ID.fetch_add(1, Ordering::Relaxed);
        let connecting = Counted::enter(&self.stats.connecting);
        let target = self.target();
        let r = ServerConn::connect(&target, id, self.connect_timeout()).await;
        drop(connecting);
        match r {
            Ok(c) => {
                // The server answers: no more waiting on an earlier failure.
                *self
                    .failing_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                self.stats.open.fetch_add(1, Ordering::Relaxed);
                self.stats.connects.fetch_add(1, Ordering::Relaxed);
                Ok(Box::new(c))
            }
            Err(e) => {
                self.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                *self
                    .failing_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + CONNECT_RETRY);
                tracing::warn!(shard = self.shard(), error = %e, "cannot open server connection");
                Err(ProxyError::shard_unavailable(self.shard()))
            }
        }
    }

    /// Puts a clean connection back (called by [`Checkout`]); it was last
    /// used at `now`.
    pub(super) fn put_idle(&self, mut conn: Box<ServerConn>, now: Instant) {
        // Retired, opened for an earlier target, or beyond a reduced size.
        if self.retired.load(Ordering::Relaxed)
            || conn.id < self.fresh_from.load(Ordering::Relaxed)
            || self.stats.open.load(Ordering::Relaxed) > self.size()
        {
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

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Takes up to `n` from `counter` without going below zero; returns how
/// much it took.
fn take_up_to(counter: &AtomicUsize, n: usize) -> usize {
    let mut taken = 0;
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
        taken = c.min(n);
        Some(c - taken)
    });
    taken
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
        let limit = pool.idle_timeout();
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
            max_pinned_per_tenant: 0,
        })
    }

    #[tokio::test]
    async fn retune_keeps_slots_and_counts_in_step() {
        let pool = silent_pool(3, 9);
        let settings = |size| PoolSettings {
            shard: "s".into(),
            target: (*pool.target()).clone(),
            size,
            connect_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(60),
            max_pinned_per_tenant: 0,
        };
        let held: Vec<_> = (0..2)
            .map(|_| pool.permits.clone().try_acquire_owned().unwrap())
            .collect();
        // 3 -> 1 with 2 busy: the free slot goes now, one more is owed.
        pool.retune(&settings(1));
        assert_eq!((pool.size(), pool.in_use()), (1, 2));
        assert_eq!(pool.permits.available_permits(), 0);
        assert_eq!(pool.owed.load(Ordering::Relaxed), 1);
        assert_eq!(pool.connect_timeout(), Duration::from_secs(3));
        // 1 -> 4: the owed slot is forgiven first, then two new ones.
        pool.retune(&settings(4));
        assert_eq!(pool.owed.load(Ordering::Relaxed), 0);
        assert_eq!((pool.size(), pool.in_use()), (4, 2));
        drop(held);
        assert_eq!(pool.permits.available_permits(), 4);
        // A slot owed is forgotten when its holder is done, exactly once.
        let held = pool.permits.clone().try_acquire_owned().unwrap();
        pool.retune(&settings(1));
        assert_eq!(pool.owed.load(Ordering::Relaxed), 0, "three were free");
        assert_eq!(pool.in_use(), 1);
        drop(held);
        assert_eq!((pool.in_use(), pool.permits.available_permits()), (0, 1));
        assert!(!pool.owes_a_slot());
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
