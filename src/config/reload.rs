//! Which config changes a reload (SIGHUP, admin `RELOAD`) can apply.
//!
//! Users, tenants, routing, timeouts and shards (added, removed, resized) take
//! effect on reload. The keys below are read once at start-up — the listeners,
//! the pooling mode, the connection cap, and the tenancy settings that shape
//! every rewritten (and cached) statement — so changing them needs a restart.
//! docs/configuration.md lists the same for every key.

use super::Config;

/// The keys whose change a reload cannot apply.
pub const RESTART_REQUIRED: &[&str] = &[
    "server.listen",
    "server.metrics_listen",
    "server.pool_mode",
    "server.max_client_conn",
    "tenancy.column",
    "tenancy.session_variable",
    "tenancy.global_tables",
    "tenancy.rls",
];

impl Config {
    /// The keys of [`RESTART_REQUIRED`] whose values differ between `self`
    /// (the running config) and `new`; empty when `new` can be applied by a
    /// reload as a whole.
    pub fn restart_required(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.server, &new.server);
        let default = super::TenancyConfig::default();
        let t = self.tenancy.as_ref().unwrap_or(&default);
        let u = new.tenancy.as_ref().unwrap_or(&default);
        let changed = [
            a.listen != b.listen,
            a.metrics_listen != b.metrics_listen,
            a.pool_mode != b.pool_mode,
            a.max_client_conn != b.max_client_conn,
            t.column != u.column,
            t.session_variable != u.session_variable,
            t.global_tables != u.global_tables,
            t.rls != u.rls,
        ];
        RESTART_REQUIRED
            .iter()
            .zip(changed)
            .filter_map(|(key, changed)| changed.then_some(*key))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{PoolMode, load_str};

    #[test]
    fn lists_changed_restart_keys_only() {
        let old = load_str("[server]\nlisten = \"127.0.0.1:6432\"\n", "a").unwrap();
        let mut new = old.clone();
        assert!(old.restart_required(&new).is_empty());
        new.server.query_wait_timeout = std::time::Duration::from_secs(1);
        new.server.database = "other".into();
        assert!(old.restart_required(&new).is_empty());
        new.server.pool_mode = PoolMode::Session;
        new.tenancy.get_or_insert_with(Default::default).rls = true;
        assert_eq!(
            old.restart_required(&new),
            vec!["server.pool_mode", "tenancy.rls"]
        );
    }
}
