//! Typed Prometheus metrics, registered once per proxy (no global registry:
//! tests run many proxies in one process). docs/observability.md lists every
//! series.
//!
//! - [`Metrics`] owns the registry of event-driven series (connections,
//!   queries, errors, refusals, durations, bytes, reloads);
//! - [`scrape`] adds the series read from live state at scrape time (pools,
//!   clients waiting, rewrite cache, config generation, pauses);
//! - [`SessionObs`] is what a session holds: metric handles resolved once per
//!   tenant/shard change, so the query path never hashes a label set;
//! - [`TenantLabels`] bounds the tenant label (`server.metrics_tenant_labels`);
//! - [`DurationHistogram`] is a lock-free histogram for latencies.

mod histogram;
mod labels;
pub mod scrape;
mod session;
mod tenant_labels;
mod traffic;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

pub use histogram::{DURATION_BUCKETS, DurationHistogram};
pub use labels::{Outcome, Reason, TenantClass, TenantShard, TenantSqlstate};
pub use session::{ConnectionGuard, SessionObs};
pub use tenant_labels::{NONE, OTHER, TenantLabels};
pub use traffic::{TrafficCounters, TrafficKey, TrafficSnapshot, TrafficStats};

use crate::error::ProxyError;
use crate::protocol::sqlstate::SqlState;

/// Prefix of every series name.
pub const PREFIX: &str = "tenantgate";

/// The proxy's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Tenant label cap.
    pub tenants: TenantLabels,
    /// Per-tenant counters for the admin console.
    pub traffic: TrafficStats,
    pub(crate) clients_connected: Gauge,
    pub(crate) client_connections: Counter,
    pub(crate) clients_refused: Family<Reason, Counter>,
    pub(crate) queries: Family<TenantShard, Counter>,
    pub(crate) transactions: Family<TenantShard, Counter>,
    pub(crate) slow_queries: Family<TenantShard, Counter>,
    pub(crate) query_duration: Family<TenantShard, DurationHistogram>,
    pub(crate) pool_wait: Family<TenantShard, DurationHistogram>,
    pub(crate) bytes_received: Family<TenantShard, Counter>,
    pub(crate) bytes_sent: Family<TenantShard, Counter>,
    pub(crate) errors: Family<TenantClass, Counter>,
    pub(crate) refusals: Family<TenantSqlstate, Counter>,
    pub(crate) reloads: Family<Outcome, Counter>,
}

impl Metrics {
    /// Registers every series; at most `tenant_labels` tenants get a label
    /// of their own.
    pub fn new(tenant_labels: usize) -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let m = Metrics {
            tenants: TenantLabels::new(tenant_labels),
            traffic: TrafficStats::default(),
            clients_connected: Gauge::default(),
            client_connections: Counter::default(),
            clients_refused: Family::default(),
            queries: Family::default(),
            transactions: Family::default(),
            slow_queries: Family::default(),
            query_duration: Family::default(),
            pool_wait: Family::default(),
            bytes_received: Family::default(),
            bytes_sent: Family::default(),
            errors: Family::default(),
            refusals: Family::default(),
            reloads: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "clients_connected",
            "Client connections open now (including those still logging in)",
            m.clients_connected.clone(),
        );
        r.register(
            "client_connections",
            "Client connections accepted",
            m.client_connections.clone(),
        );
        r.register(
            "client_connections_refused",
            "Client connections refused, by reason",
            m.clients_refused.clone(),
        );
        r.register(
            "queries",
            "Queries answered (one per ReadyForQuery: a simple Query or an extended-protocol Sync)",
            m.queries.clone(),
        );
        r.register(
            "transactions",
            "Transactions finished (ReadyForQuery with status idle)",
            m.transactions.clone(),
        );
        r.register(
            "slow_queries",
            "Queries slower than server.slow_query_threshold",
            m.slow_queries.clone(),
        );
        r.register_with_unit(
            "query_duration",
            "Time from a query's request to its ReadyForQuery",
            Unit::Seconds,
            m.query_duration.clone(),
        );
        r.register_with_unit(
            "pool_wait_duration",
            "Time a transaction waited for a server connection (including connecting)",
            Unit::Seconds,
            m.pool_wait.clone(),
        );
        r.register_with_unit(
            "client_received",
            "Bytes received from clients",
            Unit::Bytes,
            m.bytes_received.clone(),
        );
        r.register_with_unit(
            "client_sent",
            "Bytes sent to clients",
            Unit::Bytes,
            m.bytes_sent.clone(),
        );
        r.register(
            "errors",
            "ErrorResponses sent to clients, by SQLSTATE class",
            m.errors.clone(),
        );
        r.register(
            "isolation_refusals",
            "Statements refused by tenant isolation, by SQLSTATE",
            m.refusals.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads (SIGHUP or RELOAD), by outcome",
            m.reloads.clone(),
        );
        // Known label values start at zero, so rate() and increase() see the
        // first event.
        for outcome in ["success", "failure"] {
            m.reloads.get_or_create(&Outcome { outcome }).inc_by(0);
        }
        Metrics { registry, ..m }
    }

    /// A client connection was accepted; the guard counts it as open until dropped.
    pub fn client_connected(&self) -> ConnectionGuard {
        self.client_connections.inc();
        self.clients_connected.inc();
        ConnectionGuard(self.clients_connected.clone())
    }

    /// A client connection was refused with `e` (counted by reason).
    pub fn client_refused(&self, e: &ProxyError) {
        self.clients_refused
            .get_or_create(&Reason {
                reason: refusal_reason(e.code),
            })
            .inc();
    }

    /// A configuration reload succeeded (`true`) or failed.
    pub fn reloaded(&self, ok: bool) {
        let outcome = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&Outcome { outcome }).inc();
    }

    /// Reload outcomes so far: (successes, failures).
    pub fn reload_counts(&self) -> (u64, u64) {
        let get = |outcome| {
            self.reloads
                .get(&Outcome { outcome })
                .map_or(0, |c| c.get())
        };
        (get("success"), get("failure"))
    }

    /// The event-driven series in OpenMetrics text (no `# EOF`).
    pub(crate) fn encode_registry(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::text::encode_registry(out, &self.registry)
    }
}

/// The `reason` label of a refused client connection.
pub fn refusal_reason(code: SqlState) -> &'static str {
    match code {
        SqlState::TOO_MANY_CONNECTIONS => "max_client_conn",
        SqlState::INVALID_PASSWORD => "auth_failed",
        SqlState::INSUFFICIENT_PRIVILEGE => "not_allowed",
        SqlState::INVALID_CATALOG_NAME => "unknown_database",
        SqlState::ADMIN_SHUTDOWN => "shutting_down",
        SqlState::CONNECTION_REJECTED | SqlState::INVALID_PARAMETER_VALUE => "tenant",
        SqlState::CANNOT_CONNECT | SqlState::CONNECTION_FAILURE => "shard_unavailable",
        SqlState::QUERY_CANCELED => "timeout",
        SqlState::PROTOCOL_VIOLATION
        | SqlState::FEATURE_NOT_SUPPORTED
        | SqlState::INVALID_AUTHORIZATION
        | SqlState::PROGRAM_LIMIT_EXCEEDED => "protocol",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prefixed_series() {
        let m = Metrics::new(10);
        let _g = m.client_connected();
        m.client_refused(&ProxyError::auth_failed("x"));
        m.reloaded(false);
        let mut s = String::new();
        m.encode_registry(&mut s).unwrap();
        assert!(s.contains("tenantgate_clients_connected 1\n"), "{s}");
        assert!(s.contains("tenantgate_client_connections_total 1\n"), "{s}");
        assert!(
            s.contains("tenantgate_client_connections_refused_total{reason=\"auth_failed\"} 1\n"),
            "{s}"
        );
        assert!(
            s.contains("tenantgate_config_reloads_total{outcome=\"failure\"} 1\n"),
            "{s}"
        );
        assert_eq!(m.reload_counts(), (0, 1));
    }
}
