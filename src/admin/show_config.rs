//! `SHOW CONFIG` (the effective configuration, never a password),
//! `SHOW VERSION` and `SHOW HELP`.

use std::time::Duration;

use super::command::HELP;
use super::table::{Table, v};
use crate::config::{AuthMethod, Config, PoolMode, RESTART_REQUIRED};
use crate::state::Loaded;

/// Columns of `SHOW CONFIG`.
pub const CONFIG: &[&str] = &["key", "value", "changeable"];
/// Columns of `SHOW VERSION`.
pub const VERSION: &[&str] = &["version"];
/// Columns of `SHOW HELP`.
pub const HELP_COLUMNS: &[&str] = &["command", "description"];

/// `tenantgate <version>`.
pub fn version_string() -> String {
    format!("tenantgate {}", env!("CARGO_PKG_VERSION"))
}

fn duration(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

fn list(items: &[String]) -> String {
    items.join(",")
}

/// Every key of the running configuration as `key = value` rows.
pub fn config_rows(config: &Config) -> Vec<(String, String)> {
    let s = &config.server;
    let mut rows: Vec<(String, String)> = vec![
        ("server.listen".into(), s.listen.clone()),
        (
            "server.metrics_listen".into(),
            s.metrics_listen.clone().unwrap_or_default(),
        ),
        ("server.database".into(), s.database.clone()),
        (
            "server.pool_mode".into(),
            match s.pool_mode {
                PoolMode::Transaction => "transaction",
                PoolMode::Session => "session",
            }
            .into(),
        ),
        (
            "server.max_client_conn".into(),
            s.max_client_conn.to_string(),
        ),
        (
            "server.query_wait_timeout".into(),
            duration(s.query_wait_timeout),
        ),
        (
            "server.server_connect_timeout".into(),
            duration(s.server_connect_timeout),
        ),
        (
            "server.server_idle_timeout".into(),
            duration(s.server_idle_timeout),
        ),
        (
            "server.shutdown_timeout".into(),
            duration(s.shutdown_timeout),
        ),
        (
            "server.max_message_size".into(),
            s.max_message_size.to_string(),
        ),
        ("server.admin_database".into(), s.admin_database.clone()),
        (
            "server.metrics_tenant_labels".into(),
            s.metrics_tenant_labels.to_string(),
        ),
        (
            "server.slow_query_threshold".into(),
            s.slow_query_threshold.map(duration).unwrap_or_default(),
        ),
        (
            "server.idle_transaction_timeout".into(),
            s.idle_transaction_timeout.map(duration).unwrap_or_default(),
        ),
    ];
    if let Some(t) = &config.tenancy {
        rows.extend([
            ("tenancy.column".into(), t.column.clone()),
            (
                "tenancy.session_variable".into(),
                t.session_variable.clone(),
            ),
            ("tenancy.global_tables".into(), list(&t.global_tables)),
            ("tenancy.rls".into(), t.rls.to_string()),
            (
                "tenancy.allowed_functions".into(),
                list(&t.allowed_functions),
            ),
            (
                "tenancy.rewrite_cache_bytes".into(),
                t.rewrite_cache_bytes.to_string(),
            ),
        ]);
    }
    for u in &config.users {
        let auth = match u.auth {
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Md5 => "md5",
        };
        let mut desc = format!("auth={auth}");
        if let Some(t) = &u.tenant {
            desc.push_str(&format!(" tenant={t}"));
        }
        if u.admin {
            desc.push_str(" admin");
        }
        rows.push((format!("users.{}", u.name), desc));
    }
    for sh in &config.shards {
        let url = match sh.parsed_url() {
            Ok(u) => u.to_string(),
            Err(_) => "(invalid)".into(),
        };
        rows.push((format!("shards.{}.url", sh.name), url));
        rows.push((
            format!("shards.{}.pool_size", sh.name),
            sh.pool_size.to_string(),
        ));
        rows.push((
            format!("shards.{}.dedicated", sh.name),
            sh.dedicated.to_string(),
        ));
    }
    rows.push((
        "routing.hash_shards".into(),
        list(&config.routing.hash_shards),
    ));
    rows.push((
        "routing.tenants_file".into(),
        config
            .routing
            .tenants_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    ));
    rows.push(("tenants".into(), config.tenants.len().to_string()));
    rows
}

/// `SHOW CONFIG`: the running configuration; `changeable` is `yes` when a
/// reload applies a change of the key, `no` when it needs a restart.
pub fn config(loaded: &Loaded) -> Table {
    let mut t = Table::new(CONFIG);
    for (key, value) in config_rows(&loaded.config) {
        let restart =
            RESTART_REQUIRED.contains(&key.as_str()) || key == "tenancy.rewrite_cache_bytes";
        t.push(vec![
            v(&key),
            v(value),
            v(if restart { "no" } else { "yes" }),
        ]);
    }
    t.push(vec![v("generation"), v(loaded.generation), v("no")]);
    t
}

/// `SHOW VERSION`.
pub fn version() -> Table {
    let mut t = Table::new(VERSION);
    t.push(vec![v(version_string())]);
    t
}

/// `SHOW HELP`.
pub fn help() -> Table {
    let mut t = Table::new(HELP_COLUMNS);
    for (c, d) in HELP {
        t.push(vec![v(c), v(d)]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_passwords() {
        let config = crate::config::load_str(
            "[server]\nlisten = \"127.0.0.1:0\"\n\
             [[users]]\nname = \"u\"\npassword = \"user-secret\"\n\
             [[shards]]\nname = \"s0\"\nurl = \"postgres://pg:shard-secret@127.0.0.1:5432/app\"\n\
             [routing]\nhash_shards = [\"s0\"]\n",
            "t",
        )
        .unwrap();
        let rows = config_rows(&config);
        for (k, v) in &rows {
            assert!(!v.contains("secret"), "{k} = {v}");
        }
        assert!(
            rows.iter()
                .any(|(k, v)| k == "shards.s0.url" && v == "postgres://pg@127.0.0.1:5432/app")
        );
    }
}
