//! What one client session holds for observability: its registry entry and
//! its metric handles, resolved once per tenant/shard change. Every method
//! called per query is a few relaxed atomic adds; label sets are hashed only
//! when the session's tenant or shard changes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::{
    DurationHistogram, Metrics, TenantClass, TenantShard, TenantSqlstate, TrafficCounters,
};
use crate::admin::clients::ClientEntry;
use crate::backend::ServerConn;
use crate::error::{ProxyError, Source};
use crate::protocol::messages::parse_error_fields;

/// Characters of SQL text a slow-query log line carries.
pub const SLOW_SQL_CHARS: usize = 200;

/// Counts a client connection as open until dropped.
#[derive(Debug)]
pub struct ConnectionGuard(pub(super) Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Handles for one (tenant, shard).
#[derive(Debug)]
struct Handles {
    tenant: Option<String>,
    shard: String,
    label: String,
    queries: Counter,
    transactions: Counter,
    query_duration: DurationHistogram,
    pool_wait: DurationHistogram,
    bytes_in: Counter,
    bytes_out: Counter,
    traffic: Arc<TrafficCounters>,
}

impl Handles {
    fn new(m: &Metrics, tenant: Option<&str>, shard: &str) -> Handles {
        let label = m.tenants.label(tenant);
        let ls = TenantShard {
            tenant: label.clone(),
            shard: shard.to_string(),
        };
        Handles {
            tenant: tenant.map(str::to_string),
            shard: shard.to_string(),
            queries: m.queries.get_or_create_owned(&ls),
            transactions: m.transactions.get_or_create_owned(&ls),
            query_duration: m.query_duration.get_or_create_owned(&ls),
            pool_wait: m.pool_wait.get_or_create_owned(&ls),
            bytes_in: m.bytes_received.get_or_create_owned(&ls),
            bytes_out: m.bytes_sent.get_or_create_owned(&ls),
            traffic: m.traffic.counters(tenant, shard),
            label,
        }
    }
}

/// Per-session observability state.
#[derive(Debug)]
pub struct SessionObs {
    metrics: Arc<Metrics>,
    /// The session's registry entry (state for the admin console, kill token).
    pub entry: Arc<ClientEntry>,
    h: Handles,
    /// Request times (and SQL, when the slow-query log is on) of queries
    /// still waiting for their ReadyForQuery, in order.
    started: VecDeque<(Instant, Option<Bytes>)>,
    slow: Option<Duration>,
    /// SQL of the statement the next Sync executes (slow-query log only).
    sql: Option<Bytes>,
    /// When the last ReadyForQuery arrived.
    last_ready: Instant,
    /// The session's span (current where the session was set up): the
    /// parent of the session's log lines, as the loop runs outside it.
    span: tracing::Span,
}

impl SessionObs {
    /// Observability for a session of `tenant` that starts on `shard`;
    /// queries slower than `slow` are logged.
    pub fn new(
        metrics: Arc<Metrics>,
        entry: Arc<ClientEntry>,
        tenant: Option<&str>,
        shard: &str,
        slow: Option<Duration>,
    ) -> SessionObs {
        entry.set_placement(tenant, shard);
        SessionObs {
            h: Handles::new(&metrics, tenant, shard),
            metrics,
            entry,
            started: VecDeque::new(),
            slow,
            sql: None,
            last_ready: Instant::now(),
            span: tracing::Span::current(),
        }
    }

    /// The session's span: the parent of its log lines.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// When the last ReadyForQuery arrived (or the session started): a
    /// clock reading that is recent whenever a transaction has just ended.
    pub fn last_ready(&self) -> Instant {
        self.last_ready
    }

    /// The tenant of the current transaction.
    pub fn tenant(&self) -> Option<&str> {
        self.h.tenant.as_deref()
    }

    /// A transaction is about to start for `tenant` on `shard`. `tenant` is
    /// `None` for sessions without tenant isolation (their tenant is fixed
    /// at login). Re-resolves the handles only when something changed.
    pub fn begin(&mut self, tenant: Option<Option<&str>>, shard: &str, now: Instant) {
        let tenant = tenant.unwrap_or(self.h.tenant.as_deref());
        if tenant != self.h.tenant.as_deref() || shard != self.h.shard {
            let tenant = tenant.map(str::to_string);
            self.h = Handles::new(&self.metrics, tenant.as_deref(), shard);
            self.entry.set_placement(tenant.as_deref(), shard);
        }
        self.entry.set_waiting(now);
    }

    /// The transaction got server connection `conn` after waiting `waited`.
    pub fn acquired(&mut self, waited: Duration, conn: &ServerConn) {
        self.h.pool_wait.observe(waited);
        self.h
            .traffic
            .wait_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        self.h.traffic.checkouts.fetch_add(1, Ordering::Relaxed);
        self.attached(conn);
    }

    /// The session holds `conn` (acquired, or kept from login in session mode).
    pub fn attached(&self, conn: &ServerConn) {
        self.entry
            .set_active(conn.id, conn.backend_key.0, conn.created_unix_us);
    }

    /// The session holds no server connection any more.
    pub fn released(&mut self) {
        self.entry.set_idle();
    }

    /// `n` bytes arrived from the client.
    #[inline]
    pub fn bytes_in(&self, n: usize) {
        self.h.bytes_in.inc_by(n as u64);
        self.h
            .traffic
            .bytes_in
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` bytes were written to the client.
    #[inline]
    pub fn bytes_out(&self, n: usize) {
        if n > 0 {
            self.h.bytes_out.inc_by(n as u64);
            self.h
                .traffic
                .bytes_out
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Whether SQL text is being kept for the slow-query log.
    #[inline]
    pub fn wants_sql(&self) -> bool {
        self.slow.is_some()
    }

    /// The SQL the next request executes (`sql` is a cheap clone of the
    /// client's message bytes). Ignored unless the slow-query log is on.
    #[inline]
    pub fn note_sql(&mut self, sql: impl FnOnce() -> Bytes) {
        if self.slow.is_some() {
            self.sql = Some(sql());
        }
    }

    /// A Parse (`msg`, the whole message) names the SQL the next Sync runs.
    pub fn note_parse(&mut self, msg: &Bytes) {
        if self.slow.is_none() {
            return;
        }
        let nul = |from: usize| {
            msg.get(from..)
                .and_then(|r| r.iter().position(|&b| b == 0))
                .map(|i| from + i)
        };
        if let Some(name_end) = nul(5)
            && let Some(end) = nul(name_end + 1)
        {
            self.sql = Some(msg.slice(name_end + 1..end));
        }
    }

    /// A Query, Sync or FunctionCall was sent: its ReadyForQuery is owed.
    #[inline]
    pub fn request(&mut self) {
        let sql = if self.slow.is_some() {
            self.sql.clone()
        } else {
            None
        };
        self.started.push_back((Instant::now(), sql));
    }

    /// ReadyForQuery with `status` arrived from the server.
    #[inline]
    pub fn ready(&mut self, status: u8) {
        let Some((started, sql)) = self.started.pop_front() else {
            return;
        };
        let now = Instant::now();
        self.last_ready = now;
        let took = now.saturating_duration_since(started);
        let h = &self.h;
        h.queries.inc();
        h.query_duration.observe(took);
        h.traffic.queries.fetch_add(1, Ordering::Relaxed);
        h.traffic
            .query_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if status == b'I' {
            h.transactions.inc();
            h.traffic.transactions.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(limit) = self.slow
            && took >= limit
        {
            self.slow_query(took, sql.as_deref());
        }
    }

    fn slow_query(&self, took: Duration, sql: Option<&[u8]>) {
        let h = &self.h;
        self.metrics
            .slow_queries
            .get_or_create(&TenantShard {
                tenant: h.label.clone(),
                shard: h.shard.clone(),
            })
            .inc();
        let text = sql.map(|s| String::from_utf8_lossy(s)).unwrap_or_default();
        let text: String = text.chars().take(SLOW_SQL_CHARS).collect();
        tracing::warn!(
            parent: &self.span,
            tenant = h.tenant.as_deref().unwrap_or(""),
            shard = %h.shard,
            duration_ms = took.as_secs_f64() * 1000.0,
            sql = %text,
            "slow query"
        );
    }

    /// An ErrorResponse from the server is on its way to the client.
    pub fn server_error(&self, msg: &[u8]) {
        let (code, _) = parse_error_fields(msg);
        self.count_error(code.get(..2).unwrap_or("XX"));
    }

    /// tenantgate refused a statement with `e`; `locally`: the error is
    /// sent by the proxy itself (no server raises it, so it is counted
    /// here); `holding`: the session holds a server connection.
    pub fn refused(&self, e: &ProxyError, locally: bool, holding: bool) {
        if !holding {
            self.entry.set_idle();
        }
        // Resource limits (53: `max_pinned_per_tenant`) and operator
        // intervention (57: a wait under PAUSE) are counted elsewhere, not
        // as statements refused for isolation.
        if e.origin == Source::Client && !matches!(e.code.class(), "53" | "57") {
            let code = e.server_code.as_deref().unwrap_or(e.code.code());
            self.metrics
                .refusals
                .get_or_create(&TenantSqlstate {
                    tenant: self.h.label.clone(),
                    sqlstate: code.to_string(),
                })
                .inc();
            self.h.traffic.refusals.fetch_add(1, Ordering::Relaxed);
        }
        if locally {
            self.count_error(e.code.class());
        }
    }

    /// The session ends with `e`, an error the proxy raises and sends
    /// (a lost server connection, KILL CLIENT, shutdown, a timeout, a
    /// message over the size limit).
    pub fn session_ended_with(&self, e: &ProxyError) {
        self.count_error(e.code.class());
    }

    fn count_error(&self, class: &str) {
        self.metrics
            .errors
            .get_or_create(&TenantClass {
                tenant: self.h.label.clone(),
                class: class.to_string(),
            })
            .inc();
        self.h.traffic.errors.fetch_add(1, Ordering::Relaxed);
    }
}
