//! The few lines `tenantgate check` prints for a valid config. Passwords are
//! never shown.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{Config, PoolMode, ShardUrl};

/// A plain-text summary of `config`: listeners, pool mode, users, each shard
/// (host:port/db, pool size, dedicated, explicit tenants on it), hash shards.
///
/// ```text
/// listen 127.0.0.1:6432 (database "app", admin console "tenantgate"), metrics 127.0.0.1:9930
/// pool mode: transaction
/// users: 3 (1 tenant-bound, 1 admin)
/// shards: 3
///   s0          127.0.0.1:5433/app       pool 20  shared     1 tenant
///   bigcorp-db  127.0.0.1:5435/bigcorp   pool 20  dedicated  1 tenant
/// tenants: 3 explicit; hash shards: s0, s1
/// tenancy: column tenant_id, rls on
/// ```
pub fn summary(config: &Config) -> String {
    let mut out = String::new();
    let s = &config.server;
    let metrics = match &s.metrics_listen {
        Some(m) => format!("metrics {m}"),
        None => "metrics off".to_string(),
    };
    let mode = match s.pool_mode {
        PoolMode::Transaction => "transaction",
        PoolMode::Session => "session",
    };
    let bound = config.users.iter().filter(|u| u.tenant.is_some()).count();
    let admins = config.users.iter().filter(|u| u.admin).count();
    // `write!` to a String cannot fail.
    let _ = writeln!(
        out,
        "listen {} (database {:?}, admin console {:?}), {metrics}",
        s.listen, s.database, s.admin_database
    );
    let _ = writeln!(out, "pool mode: {mode}");
    let _ = writeln!(
        out,
        "users: {} ({bound} tenant-bound, {admins} admin)",
        config.users.len()
    );

    let mut per_shard: HashMap<&str, usize> = HashMap::new();
    for t in &config.tenants {
        *per_shard.entry(t.shard.as_str()).or_default() += 1;
    }
    let rows: Vec<(String, String)> = config
        .shards
        .iter()
        .map(|shard| {
            let target = match ShardUrl::parse(&shard.url) {
                Ok(u) => format!("{}/{}", u.host_port(), u.dbname),
                Err(_) => "<invalid url>".to_string(),
            };
            (shard.name.clone(), target)
        })
        .collect();
    let name_width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let target_width = rows.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
    let _ = writeln!(out, "shards: {}", config.shards.len());
    for (shard, (name, target)) in config.shards.iter().zip(&rows) {
        let n = per_shard.get(shard.name.as_str()).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "  {name:<name_width$}  {target:<target_width$}  pool {:<3}  {:<9}  {n} tenant{}",
            shard.pool_size,
            if shard.dedicated {
                "dedicated"
            } else {
                "shared"
            },
            if n == 1 { "" } else { "s" },
        );
    }
    let hash = if config.routing.hash_shards.is_empty() {
        "none (unlisted tenants are refused)".to_string()
    } else {
        config.routing.hash_shards.join(", ")
    };
    let from_file = match &config.routing.tenants_file {
        Some(path) => format!(" (with {})", path.display()),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "tenants: {} explicit{from_file}; hash shards: {hash}",
        config.tenants.len()
    );
    let shared = config.shards.iter().any(|s| !s.dedicated);
    match &config.tenancy {
        None => {
            let _ = writeln!(out, "tenancy: off (pass-through pooling, no rewriting)");
        }
        Some(t) if t.rls => {
            let _ = writeln!(out, "tenancy: column {}, rls on", t.column);
        }
        Some(t) if shared => {
            let _ = writeln!(
                out,
                "tenancy: column {}, rls off (note: shared shards have no second wall \
                 behind the rewriter; see docs/isolation.md on row-level security)",
                t.column
            );
        }
        Some(t) => {
            let _ = writeln!(out, "tenancy: column {}, rls off", t.column);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    #[test]
    fn summary_shows_shards_without_passwords() {
        let config = load_str(
            r#"
[server]
listen = "127.0.0.1:6432"

[[users]]
name = "app"
password = "pw"

[[users]]
name = "acme"
password = "pw"
tenant = "acme"

[[users]]
name = "ops"
password = "pw"
admin = true

[[shards]]
name = "s0"
url = "postgres://postgres:topsecret@127.0.0.1:5433/app"

[[shards]]
name = "big"
url = "postgres://u@[::1]/big"
dedicated = true
pool_size = 5

[routing]
hash_shards = ["s0"]

[[tenants]]
id = "acme"
shard = "s0"

[[tenants]]
id = "bigcorp"
shard = "big"
"#,
            "t.toml",
        )
        .unwrap();
        let s = summary(&config);
        assert!(!s.contains("topsecret"), "{s}");
        assert!(s.contains("listen 127.0.0.1:6432"), "{s}");
        assert!(s.contains("metrics off"), "{s}");
        assert!(s.contains("pool mode: transaction"), "{s}");
        assert!(s.contains("users: 3 (1 tenant-bound, 1 admin)"), "{s}");
        assert!(s.contains("shards: 2"), "{s}");
        let s0 = s
            .lines()
            .find(|l| l.trim_start().starts_with("s0"))
            .unwrap();
        assert!(s0.contains("127.0.0.1:5433/app"), "{s0}");
        assert!(s0.contains("pool 20"), "{s0}");
        assert!(s0.contains("shared"), "{s0}");
        assert!(s0.contains("1 tenant"), "{s0}");
        let big = s
            .lines()
            .find(|l| l.trim_start().starts_with("big"))
            .unwrap();
        assert!(big.contains("[::1]:5432/big"), "{big}");
        assert!(big.contains("pool 5"), "{big}");
        assert!(big.contains("dedicated"), "{big}");
        assert!(s.contains("tenants: 2 explicit; hash shards: s0"), "{s}");
        assert!(s.contains("tenancy: off"), "{s}");
    }

    #[test]
    fn summary_warns_about_shared_shards_without_rls() {
        let text = |rls: bool| {
            format!(
                "[server]\nlisten = \"127.0.0.1:6432\"\n[tenancy]\nrls = {rls}\n\
                 [[users]]\nname = \"app\"\npassword = \"pw\"\n\
                 [[shards]]\nname = \"s0\"\nurl = \"postgres://u@127.0.0.1:5433/app\"\n\
                 [routing]\nhash_shards = [\"s0\"]\n"
            )
        };
        let off = summary(&load_str(&text(false), "t.toml").unwrap());
        assert!(
            off.contains("rls off (note: shared shards have no second wall"),
            "{off}"
        );
        let on = summary(&load_str(&text(true), "t.toml").unwrap());
        assert!(on.contains("tenancy: column tenant_id, rls on"), "{on}");
        assert!(!on.contains("note"), "{on}");
    }
}
