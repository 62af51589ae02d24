//! `SHOW TENANTS` and `SHOW STATS`: traffic counters per tenant and per
//! shard (times in microseconds, as PgBouncer's SHOW STATS).

use std::collections::BTreeMap;

use super::clients::ClientState;
use super::table::{Table, v};
use crate::metrics::TrafficSnapshot;
use crate::state::ProxyState;

/// Columns of `SHOW TENANTS`.
pub const TENANTS: &[&str] = &[
    "tenant",
    "shard",
    "cl_active",
    "cl_waiting",
    "total_xact_count",
    "total_query_count",
    "total_errors",
    "total_refusals",
    "total_received",
    "total_sent",
    "total_query_time",
    "total_wait_time",
    "avg_query_time",
    "paused",
];

/// Columns of `SHOW STATS`.
pub const STATS: &[&str] = &[
    "shard",
    "database",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_query_time",
    "total_wait_time",
    "total_errors",
    "total_refusals",
    "avg_query_time",
    "avg_wait_time",
];

fn avg(total: u64, n: u64) -> u64 {
    total.checked_div(n).unwrap_or(0)
}

/// `SHOW TENANTS`: one row per tenant that has sessions or traffic (the
/// row with a NULL tenant counts sessions that chose none). `shard` is
/// where the tenant's transactions go now.
pub fn tenants(state: &ProxyState) -> Table {
    let mut t = Table::new(TENANTS);
    let mut by_tenant: BTreeMap<Option<String>, (TrafficSnapshot, u64, u64)> = BTreeMap::new();
    for ((tenant, _), snap) in state.metrics.traffic.snapshot() {
        by_tenant.entry(tenant).or_default().0.add(&snap);
    }
    for c in state.clients.list().iter().filter(|c| !c.info.admin) {
        let e = by_tenant.entry(c.placement().tenant).or_default();
        if c.state() == ClientState::Waiting {
            e.2 += 1;
        } else {
            e.1 += 1;
        }
    }
    let loaded = state.loaded();
    let paused = state.pauses.current();
    for (tenant, (s, active, waiting)) in by_tenant {
        let shard = match &tenant {
            Some(name) => loaded.router.route(name).ok().map(|r| r.shard.to_string()),
            None => loaded
                .router
                .default_route()
                .ok()
                .map(|r| r.shard.to_string()),
        };
        let is_paused = paused.all
            || shard.as_ref().is_some_and(|s| paused.shards.contains(s))
            || tenant.as_ref().is_some_and(|t| paused.tenants.contains(t));
        t.push(vec![
            tenant,
            shard,
            v(active),
            v(waiting),
            v(s.transactions),
            v(s.queries),
            v(s.errors),
            v(s.refusals),
            v(s.bytes_in),
            v(s.bytes_out),
            v(s.query_us),
            v(s.wait_us),
            v(avg(s.query_us, s.queries)),
            v(if is_paused { "yes" } else { "no" }),
        ]);
    }
    t
}

/// `SHOW STATS`: one row per configured shard, totals over its tenants.
pub fn stats(state: &ProxyState) -> Table {
    let mut t = Table::new(STATS);
    let mut by_shard: BTreeMap<String, TrafficSnapshot> = BTreeMap::new();
    for ((_, shard), snap) in state.metrics.traffic.snapshot() {
        by_shard.entry(shard).or_default().add(&snap);
    }
    let loaded = state.loaded();
    for shard in &loaded.config.shards {
        let s = by_shard.get(&shard.name).copied().unwrap_or_default();
        let database = shard.parsed_url().ok().map(|u| u.dbname);
        t.push(vec![
            v(&shard.name),
            database,
            v(s.transactions),
            v(s.queries),
            v(s.bytes_in),
            v(s.bytes_out),
            v(s.query_us),
            v(s.wait_us),
            v(s.errors),
            v(s.refusals),
            v(avg(s.query_us, s.queries)),
            v(avg(s.wait_us, s.checkouts)),
        ]);
    }
    t
}
