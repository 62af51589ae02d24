//! The scrape: the registered series of [`super::Metrics`] followed by the
//! series read from live state when `/metrics` is requested — server
//! connections by state and clients waiting (from each pool), the rewrite
//! cache, the loaded config generation and the pauses in force. Reading them
//! at scrape time costs the data path nothing.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::PREFIX;
use super::labels::{PauseScope, Shard, ShardState, Version};
use crate::state::ProxyState;

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every series in OpenMetrics text, ending with `# EOF`.
pub fn render(state: &ProxyState) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let live = live_registry(state);
    let encoded = state
        .metrics
        .encode_registry(&mut out)
        .and_then(|()| prometheus_client::encoding::text::encode_registry(&mut out, &live))
        .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out));
    if encoded.is_err() {
        // Writing to a String cannot fail; keep the output well-formed anyway.
        out.clear();
        out.push_str("# EOF\n");
    }
    out
}

fn gauge(v: i64) -> Gauge {
    let g = Gauge::default();
    g.set(v);
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

fn live_registry(state: &ProxyState) -> Registry {
    use std::sync::atomic::Ordering::Relaxed;
    let mut r = Registry::with_prefix(PREFIX);
    let loaded = state.loaded();

    let servers = Family::<ShardState, Gauge>::default();
    let pool_size = Family::<Shard, Gauge>::default();
    let waiting = Family::<Shard, Gauge>::default();
    let checkouts = Family::<Shard, Counter>::default();
    let connects = Family::<Shard, Counter>::default();
    let connect_errors = Family::<Shard, Counter>::default();
    let pinned = Family::<Shard, Counter>::default();
    let pins_refused = Family::<Shard, Counter>::default();
    let pools = state.pools();
    let mut names: Vec<&String> = pools.keys().collect();
    names.sort();
    for name in names {
        let pool = &pools[name];
        let s = &pool.stats;
        let open = s.open.load(Relaxed) as i64;
        let connecting = s.connecting.load(Relaxed) as i64;
        let idle = pool.idle_count() as i64;
        let active = (open - idle - connecting).max(0);
        for (st, v) in [
            ("active", active),
            ("idle", idle),
            ("connecting", connecting),
        ] {
            servers
                .get_or_create(&ShardState {
                    shard: name.clone(),
                    state: st,
                })
                .set(v);
        }
        let shard = Shard {
            shard: name.clone(),
        };
        pool_size.get_or_create(&shard).set(pool.size() as i64);
        waiting
            .get_or_create(&shard)
            .set(s.waiting.load(Relaxed) as i64);
        checkouts
            .get_or_create(&shard)
            .inc_by(s.checkouts.load(Relaxed));
        connects
            .get_or_create(&shard)
            .inc_by(s.connects.load(Relaxed));
        connect_errors
            .get_or_create(&shard)
            .inc_by(s.connect_errors.load(Relaxed));
        pinned.get_or_create(&shard).inc_by(s.pinned.load(Relaxed));
        pins_refused
            .get_or_create(&shard)
            .inc_by(s.pins_refused.load(Relaxed));
    }
    r.register(
        "server_connections",
        "Server connections by shard and state (active: held by a client; idle: pooled; connecting: being opened)",
        servers,
    );
    r.register(
        "pool_size",
        "Configured server connections per shard",
        pool_size,
    );
    r.register(
        "clients_waiting",
        "Clients waiting for a server connection, by shard",
        waiting,
    );
    r.register(
        "pool_checkouts",
        "Server connections handed to clients, by shard",
        checkouts,
    );
    r.register(
        "server_connects",
        "Server connections opened, by shard",
        connects,
    );
    r.register(
        "server_connect_errors",
        "Failed attempts to open a server connection, by shard",
        connect_errors,
    );
    r.register(
        "pinned_sessions",
        "Sessions that pinned a server connection (LISTEN, temporary tables, ...), by shard",
        pinned,
    );
    r.register(
        "pin_refusals",
        "Statements refused because their tenant held max_pinned_per_tenant pinned connections, by shard",
        pins_refused,
    );

    let cache = state.rewrite_cache_stats();
    r.register(
        "rewrite_cache_hits",
        "Rewrite cache lookups answered from the cache",
        counter(cache.hits),
    );
    r.register(
        "rewrite_cache_misses",
        "Rewrite cache lookups that parsed and rewrote the statement",
        counter(cache.misses),
    );
    r.register_with_unit(
        "rewrite_cache",
        "Approximate bytes held by the rewrite caches",
        Unit::Bytes,
        gauge(cache.bytes as i64),
    );
    r.register(
        "rewrite_cache_entries",
        "Statements held by the rewrite caches",
        gauge(cache.entries as i64),
    );

    r.register(
        "config_generation",
        "Generation of the loaded configuration (1 at start, +1 per successful reload)",
        gauge(loaded.generation as i64),
    );
    r.register(
        "client_sessions",
        "Logged-in client sessions (admin console included)",
        gauge(state.clients.len() as i64),
    );
    r.register(
        "tenant_labels",
        "Tenants with a label of their own (server.metrics_tenant_labels caps it)",
        gauge(state.metrics.tenants.admitted() as i64),
    );

    let paused = Family::<PauseScope, Gauge>::default();
    let p = state.pauses.current();
    if p.all {
        paused
            .get_or_create(&PauseScope {
                scope: "all",
                name: String::new(),
            })
            .set(1);
    }
    for s in &p.shards {
        paused
            .get_or_create(&PauseScope {
                scope: "shard",
                name: s.clone(),
            })
            .set(1);
    }
    for t in &p.tenants {
        paused
            .get_or_create(&PauseScope {
                scope: "tenant",
                name: t.clone(),
            })
            .set(1);
    }
    r.register("paused", "Pauses in force (1 per paused scope)", paused);

    let info = Family::<Version, Gauge>::default();
    info.get_or_create(&Version {
        version: env!("CARGO_PKG_VERSION"),
    })
    .set(1);
    r.register("build_info", "tenantgate's version", info);
    r
}
