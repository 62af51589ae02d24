//! `SHOW POOLS`, `SHOW CLIENTS`, `SHOW SERVERS`, `SHOW SHARDS`: the live
//! state of pools and sessions. Column names follow PgBouncer's where the
//! concept is the same; docs/observability.md lists every column.

use std::time::{Duration, Instant, SystemTime};

use super::clients::{ClientEntry, ClientState};
use super::table::{Table, format_time, v};
use crate::backend::from_unix_micros;
use crate::state::ProxyState;

/// Columns of `SHOW POOLS`.
pub const POOLS: &[&str] = &[
    "database",
    "user",
    "shard",
    "cl_active",
    "cl_waiting",
    "sv_active",
    "sv_idle",
    "sv_used",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "pool_size",
    "paused",
];

/// Columns of `SHOW CLIENTS`.
pub const CLIENTS: &[&str] = &[
    "type",
    "user",
    "database",
    "state",
    "addr",
    "port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "application_name",
    "id",
    "tenant",
    "shard",
    "link",
];

/// Columns of `SHOW SERVERS`.
pub const SERVERS: &[&str] = &[
    "type",
    "user",
    "database",
    "state",
    "addr",
    "port",
    "connect_time",
    "request_time",
    "id",
    "shard",
    "remote_pid",
    "link",
];

/// Columns of `SHOW SHARDS`.
pub const SHARDS: &[&str] = &[
    "shard",
    "host",
    "port",
    "database",
    "user",
    "pool_size",
    "dedicated",
    "hash",
    "tenants",
    "sv_open",
    "connects",
    "connect_errors",
    "paused",
];

fn yes_no(b: bool) -> Option<String> {
    v(if b { "yes" } else { "no" })
}

fn sorted_shards(state: &ProxyState) -> Vec<String> {
    let mut names: Vec<String> = state.pools().keys().cloned().collect();
    names.sort();
    names
}

/// `SHOW POOLS`: one row per shard pool.
pub fn pools(state: &ProxyState) -> Table {
    use std::sync::atomic::Ordering::Relaxed;
    let mut t = Table::new(POOLS);
    let loaded = state.loaded();
    let clients = state.clients.list();
    let paused = state.pauses.current();
    let mode = match loaded.config.server.pool_mode {
        crate::config::PoolMode::Transaction => "transaction",
        crate::config::PoolMode::Session => "session",
    };
    for name in sorted_shards(state) {
        let Some(pool) = state.pool(&name) else {
            continue;
        };
        let mut cl_active = 0;
        let mut cl_waiting = 0;
        let mut maxwait = Duration::ZERO;
        for c in clients.iter().filter(|c| !c.info.admin) {
            if c.placement().shard != name {
                continue;
            }
            match c.waiting_for() {
                Some(w) => {
                    cl_waiting += 1;
                    maxwait = maxwait.max(w);
                }
                None => cl_active += 1,
            }
        }
        let s = &pool.stats;
        let open = s.open.load(Relaxed);
        let connecting = s.connecting.load(Relaxed);
        let idle = pool.idle_count();
        let target = pool.target();
        t.push(vec![
            v(&target.dbname),
            v(&target.user),
            v(&name),
            v(cl_active),
            v(cl_waiting),
            v(open.saturating_sub(idle + connecting)),
            v(idle),
            v(0),
            v(connecting),
            v(maxwait.as_secs()),
            v(maxwait.subsec_micros()),
            v(mode),
            v(pool.size()),
            yes_no(paused.all || paused.shards.contains(&name)),
        ]);
    }
    t
}

fn client_row(c: &ClientEntry) -> Vec<Option<String>> {
    let p = c.placement();
    let wait = c.waiting_for().unwrap_or(Duration::ZERO);
    vec![
        v("C"),
        v(&c.info.user),
        v(&c.info.database),
        v(c.state().as_str()),
        v(c.info.addr.ip()),
        v(c.info.addr.port()),
        v(format_time(c.connect_time)),
        c.request_time().map(format_time),
        v(wait.as_secs()),
        v(wait.subsec_micros()),
        v(&c.info.application_name),
        v(c.info.id),
        p.tenant,
        (!c.info.admin).then_some(p.shard),
        c.server().map(|s| s.id.to_string()),
    ]
}

/// `SHOW CLIENTS`: one row per logged-in client session (admin sessions too).
pub fn clients(state: &ProxyState) -> Table {
    let mut t = Table::new(CLIENTS);
    for c in state.clients.list() {
        t.push(client_row(&c));
    }
    t
}

fn wall(at: Instant) -> SystemTime {
    SystemTime::now()
        .checked_sub(at.elapsed())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// `SHOW SERVERS`: server connections held by clients, then idle ones.
pub fn servers(state: &ProxyState) -> Table {
    let mut t = Table::new(SERVERS);
    let pools = state.pools();
    // A session can still hold a connection of a shard a reload removed.
    let retired = state.retired_pools();
    let mut rows: Vec<(String, u64, Vec<Option<String>>)> = Vec::new();
    for c in state.clients.list() {
        let Some(link) = c.server() else { continue };
        let shard = c.placement().shard;
        let Some(pool) = pools
            .get(&shard)
            .or_else(|| retired.iter().find(|p| p.shard() == shard))
        else {
            continue;
        };
        let target = pool.target();
        rows.push((
            shard.clone(),
            link.id,
            vec![
                v("S"),
                v(&target.user),
                v(&target.dbname),
                v(ClientState::Active.as_str()),
                v(&target.host),
                v(target.port),
                v(format_time(link.opened)),
                c.request_time().map(format_time),
                v(link.id),
                v(&shard),
                v(link.pid),
                v(c.info.id),
            ],
        ));
    }
    for name in sorted_shards(state) {
        let Some(pool) = pools.get(&name) else {
            continue;
        };
        let target = pool.target();
        for (id, pid, opened, last_used) in pool.idle_servers() {
            rows.push((
                name.clone(),
                id,
                vec![
                    v("S"),
                    v(&target.user),
                    v(&target.dbname),
                    v(ClientState::Idle.as_str()),
                    v(&target.host),
                    v(target.port),
                    v(format_time(from_unix_micros(opened))),
                    v(format_time(wall(last_used))),
                    v(id),
                    v(&name),
                    v(pid),
                    None,
                ],
            ));
        }
    }
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for (_, _, row) in rows {
        t.push(row);
    }
    t
}

/// `SHOW SHARDS`: one row per configured shard.
pub fn shards(state: &ProxyState) -> Table {
    use std::sync::atomic::Ordering::Relaxed;
    let mut t = Table::new(SHARDS);
    let loaded = state.loaded();
    let config = &loaded.config;
    let paused = state.pauses.current();
    for s in &config.shards {
        let url = s.parsed_url().ok();
        let pool = state.pool(&s.name);
        let stat = |f: fn(&crate::pool::PoolStats) -> u64| pool.as_ref().map(|p| f(&p.stats));
        let tenants = config.tenants.iter().filter(|x| x.shard == s.name).count();
        t.push(vec![
            v(&s.name),
            url.as_ref().map(|u| u.host.clone()),
            url.as_ref().map(|u| u.port.to_string()),
            url.as_ref().map(|u| u.dbname.clone()),
            url.as_ref().map(|u| u.user.clone()),
            v(s.pool_size),
            yes_no(s.dedicated),
            yes_no(config.routing.hash_shards.contains(&s.name)),
            v(tenants),
            stat(|p| p.open.load(Relaxed) as u64).map(|x| x.to_string()),
            stat(|p| p.connects.load(Relaxed)).map(|x| x.to_string()),
            stat(|p| p.connect_errors.load(Relaxed)).map(|x| x.to_string()),
            yes_no(paused.all || paused.shards.contains(&s.name)),
        ]);
    }
    t
}
