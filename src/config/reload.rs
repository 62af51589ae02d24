//! Which config changes a reload (SIGHUP, admin `RELOAD`) can apply.
//!
//! Users, tenants, routing, timeouts and shards (added, removed, resized) take
//! effect on reload. The keys below are read once at start-up — the listeners,
//! the pooling mode, the connection cap, and the `[tenancy]` table that shapes
//! every rewritten (and cached) statement — so changing them needs a restart;
//! a reload keeps their running values.
//! docs/configuration.md lists the same for every key.

use super::Config;

/// The keys whose change a reload cannot apply.
pub const RESTART_REQUIRED: &[&str] = &[
    "server.listen",
    "server.metrics_listen",
    "server.pool_mode",
    "server.max_client_conn",
    "server.workers",
    "tenancy.column",
    "tenancy.session_variable",
    "tenancy.global_tables",
    "tenancy.rls",
    "tenancy.allowed_functions",
    "tenancy.rewrite_cache_bytes",
    "tenancy",
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
            a.workers != b.workers,
            t.column != u.column,
            t.session_variable != u.session_variable,
            t.global_tables != u.global_tables,
            t.rls != u.rls,
            t.allowed_functions != u.allowed_functions,
            t.rewrite_cache_bytes != u.rewrite_cache_bytes,
            // The table added or removed (its keys may all be defaults).
            self.tenancy.is_some() != new.tenancy.is_some(),
        ];
        RESTART_REQUIRED
            .iter()
            .zip(changed)
            .filter_map(|(key, changed)| changed.then_some(*key))
            .collect()
    }

    /// Takes the values of the restart-only keys from `running`, the
    /// config the proxy started with: a reload applies everything else and
    /// keeps these as they run (removing `[tenancy]` must not turn tenant
    /// isolation off for new sessions before a restart).
    pub fn keep_restart_keys(&mut self, running: &Config) {
        let (server, old) = (&mut self.server, &running.server);
        server.listen.clone_from(&old.listen);
        server.metrics_listen.clone_from(&old.metrics_listen);
        server.pool_mode = old.pool_mode;
        server.max_client_conn = old.max_client_conn;
        server.workers = old.workers;
        self.tenancy.clone_from(&running.tenancy);
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
            vec!["server.pool_mode", "tenancy.rls", "tenancy"]
        );
    }

    #[test]
    fn a_reload_keeps_the_running_restart_keys() {
        let running = load_str(
            "[server]\nlisten = \"127.0.0.1:6432\"\n[tenancy]\ncolumn = \"org_id\"\nrls = true\n",
            "a",
        )
        .unwrap();
        // [tenancy] removed, the listener and pooling mode changed, a
        // reloadable key changed.
        let mut new = load_str(
            "[server]\nlisten = \"127.0.0.1:7000\"\npool_mode = \"session\"\nquery_wait_timeout = \"9s\"\n",
            "b",
        )
        .unwrap();
        new.keep_restart_keys(&running);
        assert!(running.restart_required(&new).is_empty());
        assert_eq!(
            new.server.query_wait_timeout,
            std::time::Duration::from_secs(9)
        );
        let t = new.tenancy.as_ref().expect("[tenancy] kept");
        assert_eq!((t.column.as_str(), t.rls), ("org_id", true));
        // [tenancy] added to a proxy started without it: not applied.
        let mut added = running.clone();
        let bare = load_str("[server]\nlisten = \"127.0.0.1:6432\"\n", "c").unwrap();
        added.keep_restart_keys(&bare);
        assert!(added.tenancy.is_none());
        // Every [tenancy] key keeps its running value.
        let mut both = running.clone();
        let t = both.tenancy.as_mut().unwrap();
        t.column = "other".into();
        t.allowed_functions = vec!["f".into()];
        assert_eq!(
            running.restart_required(&both),
            vec!["tenancy.column", "tenancy.allowed_functions"]
        );
        both.keep_restart_keys(&running);
        assert_eq!(both.tenancy, running.tenancy);
    }
}
