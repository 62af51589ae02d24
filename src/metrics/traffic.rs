//! Per-tenant, per-shard traffic counters behind `SHOW TENANTS` and
//! `SHOW STATS`. Unlike the Prometheus series these keep every tenant's own
//! numbers (up to [`MAX_TRACKED`] tenant/shard pairs), because the admin
//! console is where an operator looks for one noisy tenant.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use super::tenant_labels::OTHER;

/// Tenant/shard pairs tracked individually; later pairs count as `other`.
pub const MAX_TRACKED: usize = 100_000;

/// Counters of one tenant on one shard (relaxed atomics: totals, not a
/// consistent snapshot).
#[derive(Debug, Default)]
pub struct TrafficCounters {
    /// Queries answered (one per ReadyForQuery).
    pub queries: AtomicU64,
    /// Transactions finished (ReadyForQuery with status `I`).
    pub transactions: AtomicU64,
    /// ErrorResponses sent to clients.
    pub errors: AtomicU64,
    /// Statements refused by tenant isolation.
    pub refusals: AtomicU64,
    /// Microseconds from request to ReadyForQuery, summed.
    pub query_us: AtomicU64,
    /// Microseconds waited for a server connection, summed.
    pub wait_us: AtomicU64,
    /// Server connection checkouts.
    pub checkouts: AtomicU64,
    /// Bytes received from clients.
    pub bytes_in: AtomicU64,
    /// Bytes sent to clients.
    pub bytes_out: AtomicU64,
}

/// A plain copy of [`TrafficCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// See [`TrafficCounters::queries`].
    pub queries: u64,
    /// See [`TrafficCounters::transactions`].
    pub transactions: u64,
    /// See [`TrafficCounters::errors`].
    pub errors: u64,
    /// See [`TrafficCounters::refusals`].
    pub refusals: u64,
    /// See [`TrafficCounters::query_us`].
    pub query_us: u64,
    /// See [`TrafficCounters::wait_us`].
    pub wait_us: u64,
    /// See [`TrafficCounters::checkouts`].
    pub checkouts: u64,
    /// See [`TrafficCounters::bytes_in`].
    pub bytes_in: u64,
    /// See [`TrafficCounters::bytes_out`].
    pub bytes_out: u64,
}

impl TrafficCounters {
    /// The current values.
    pub fn snapshot(&self) -> TrafficSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TrafficSnapshot {
            queries: l(&self.queries),
            transactions: l(&self.transactions),
            errors: l(&self.errors),
            refusals: l(&self.refusals),
            query_us: l(&self.query_us),
            wait_us: l(&self.wait_us),
            checkouts: l(&self.checkouts),
            bytes_in: l(&self.bytes_in),
            bytes_out: l(&self.bytes_out),
        }
    }
}

impl TrafficSnapshot {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &TrafficSnapshot) {
        self.queries += o.queries;
        self.transactions += o.transactions;
        self.errors += o.errors;
        self.refusals += o.refusals;
        self.query_us += o.query_us;
        self.wait_us += o.wait_us;
        self.checkouts += o.checkouts;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

/// Key: tenant (`None`: no tenant chosen) and shard.
pub type TrafficKey = (Option<String>, String);

/// Every tenant/shard pair's counters.
#[derive(Debug, Default)]
pub struct TrafficStats {
    by_key: DashMap<TrafficKey, Arc<TrafficCounters>>,
}

impl TrafficStats {
    /// The counters of `tenant` on `shard`, created on first use.
    pub fn counters(&self, tenant: Option<&str>, shard: &str) -> Arc<TrafficCounters> {
        let key = (tenant.map(str::to_string), shard.to_string());
        if let Some(c) = self.by_key.get(&key) {
            return c.clone();
        }
        let key = if self.by_key.len() >= MAX_TRACKED {
            (Some(OTHER.to_string()), shard.to_string())
        } else {
            key
        };
        self.by_key.entry(key).or_default().clone()
    }

    /// Every pair and its current values.
    pub fn snapshot(&self) -> Vec<(TrafficKey, TrafficSnapshot)> {
        self.by_key
            .iter()
            .map(|e| (e.key().clone(), e.value().snapshot()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_pair_same_counters() {
        let s = TrafficStats::default();
        let a = s.counters(Some("a"), "s0");
        a.queries.fetch_add(2, Ordering::Relaxed);
        s.counters(Some("a"), "s0")
            .queries
            .fetch_add(1, Ordering::Relaxed);
        s.counters(None, "s0")
            .queries
            .fetch_add(1, Ordering::Relaxed);
        let snap = s.snapshot();
        let a = snap
            .iter()
            .find(|(k, _)| k.0.as_deref() == Some("a"))
            .unwrap();
        assert_eq!(a.1.queries, 3);
        assert_eq!(snap.len(), 2);
    }
}
