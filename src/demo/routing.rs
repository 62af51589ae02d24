//! The demo's `routing.toml`: users, shards and tenant placements, written to
//! the demo directory and loaded with the real config loader.

use std::fmt::Write as _;

/// A demo login: name, password, bound tenant, admin.
pub(crate) struct DemoUser {
    /// Login name.
    pub name: &'static str,
    /// Plain-text password.
    pub password: &'static str,
    /// Tenant the credentials are bound to, if any.
    pub tenant: Option<&'static str>,
    /// May use the admin console.
    pub admin: bool,
}

/// Everyone who may log in to the demo.
pub(crate) const USERS: &[DemoUser] = &[
    DemoUser {
        name: "app",
        password: "app-secret",
        tenant: None,
        admin: false,
    },
    DemoUser {
        name: "acme",
        password: "acme-secret",
        tenant: Some("acme"),
        admin: false,
    },
    DemoUser {
        name: "globex",
        password: "globex-secret",
        tenant: Some("globex"),
        admin: false,
    },
    DemoUser {
        name: "initech",
        password: "initech-secret",
        tenant: Some("initech"),
        admin: false,
    },
    DemoUser {
        name: "bigcorp",
        password: "bigcorp-secret",
        tenant: Some("bigcorp"),
        admin: false,
    },
    DemoUser {
        name: "umbrella",
        password: "umbrella-secret",
        tenant: Some("umbrella"),
        admin: false,
    },
    DemoUser {
        name: "ops",
        password: "ops-secret",
        tenant: None,
        admin: true,
    },
];

/// A demo shard: name, database, the tenants placed on it, dedicated or shared.
pub(crate) struct DemoShard {
    /// Shard name.
    pub name: &'static str,
    /// Database on the shard's cluster.
    pub database: &'static str,
    /// Tenants placed here explicitly.
    pub tenants: &'static [&'static str],
    /// One tenant alone in its own database.
    pub dedicated: bool,
}

/// Schema-per-tenant tenants: (tenant, shard, schema).
pub(crate) const SCHEMA_TENANTS: &[(&str, &str, &str)] = &[("umbrella", "s1", "umbrella")];

/// The three shards, in cluster order.
pub(crate) const SHARDS: &[DemoShard] = &[
    DemoShard {
        name: "s0",
        database: "app",
        tenants: &["acme", "globex"],
        dedicated: false,
    },
    DemoShard {
        name: "s1",
        database: "app",
        tenants: &["initech"],
        dedicated: false,
    },
    DemoShard {
        name: "bigcorp-db",
        database: "bigcorp",
        tenants: &["bigcorp"],
        dedicated: true,
    },
];

/// The demo's `routing.toml`; `urls[i]` is the backend URL of `SHARDS[i]`.
pub(crate) fn routing_toml(listen: &str, urls: &[String]) -> String {
    // Metrics next to the default port; anywhere free otherwise.
    let metrics = if listen == super::DEFAULT_LISTEN {
        "127.0.0.1:9930"
    } else {
        "127.0.0.1:0"
    };
    let mut t = String::new();
    let _ = write!(
        t,
        "# routing.toml written by `tenantgate demo` (throwaway; removed on exit)\n\n\
         [server]\n\
         listen = {listen}\n\
         metrics_listen = {metrics}\n\
         database = \"app\"\n\
         pool_mode = \"transaction\"\n\
         shutdown_timeout = \"5s\"\n\
         # One tenant's idle open transactions must not hold the pool.\n\
         idle_transaction_timeout = \"60s\"\n\n\
         [tenancy]\n\
         column = \"tenant_id\"\n\
         session_variable = \"app.current_tenant\"\n\
         rls = true\n\
         global_tables = [\"plans\"]\n",
        listen = toml_str(listen),
        metrics = toml_str(metrics)
    );
    for u in USERS {
        let _ = write!(
            t,
            "\n[[users]]\nname = {}\npassword = {}\n",
            toml_str(u.name),
            toml_str(u.password)
        );
        if let Some(tenant) = u.tenant {
            let _ = writeln!(t, "tenant = {}", toml_str(tenant));
        }
        if u.admin {
            t.push_str("admin = true\n");
        }
    }
    for (shard, url) in SHARDS.iter().zip(urls) {
        let _ = write!(
            t,
            "\n[[shards]]\nname = {}\nurl = {}\npool_size = 5\n",
            toml_str(shard.name),
            toml_str(url)
        );
        if shard.dedicated {
            t.push_str("dedicated = true\n");
        }
    }
    let hash: Vec<String> = SHARDS
        .iter()
        .filter(|s| !s.dedicated)
        .map(|s| toml_str(s.name))
        .collect();
    let _ = write!(t, "\n[routing]\nhash_shards = [{}]\n", hash.join(", "));
    for (tenant, shard, schema) in SCHEMA_TENANTS {
        let _ = write!(
            t,
            "\n[[tenants]]\nid = {}\nshard = {}\nschema = {}\n",
            toml_str(tenant),
            toml_str(shard),
            toml_str(schema)
        );
    }
    for shard in SHARDS {
        for tenant in shard.tenants {
            let _ = write!(
                t,
                "\n[[tenants]]\nid = {}\nshard = {}\n",
                toml_str(tenant),
                toml_str(shard.name)
            );
        }
    }
    t
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls() -> Vec<String> {
        vec![
            "postgres://postgres@127.0.0.1:1/app".into(),
            "postgres://postgres@127.0.0.1:2/app".into(),
            "postgres://postgres@127.0.0.1:3/bigcorp".into(),
        ]
    }

    #[test]
    fn loads_with_the_real_loader() {
        let text = routing_toml("127.0.0.1:6432", &urls());
        let config =
            crate::config::load_str(&text, "demo").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.server.listen, "127.0.0.1:6432");
        assert_eq!(config.routing.hash_shards, vec!["s0", "s1"]);
        assert_eq!(config.shards.len(), 3);
        assert!(config.shard("bigcorp-db").is_some_and(|s| s.dedicated));
        assert_eq!(
            config
                .user("acme")
                .and_then(|u| u.tenant.clone())
                .as_deref(),
            Some("acme")
        );
        assert!(config.user("ops").is_some_and(|u| u.admin));
        assert!(config.user("app").is_some_and(|u| u.tenant.is_none()));
        let placed: Vec<(&str, &str)> = config
            .tenants
            .iter()
            .map(|t| (t.id.as_str(), t.shard.as_str()))
            .collect();
        assert_eq!(
            placed,
            vec![
                ("umbrella", "s1"),
                ("acme", "s0"),
                ("globex", "s0"),
                ("initech", "s1"),
                ("bigcorp", "bigcorp-db")
            ]
        );
        assert_eq!(
            config.tenants.first().and_then(|t| t.schema.as_deref()),
            Some("umbrella")
        );
        assert_eq!(
            config.tenancy.as_ref().unwrap().global_tables,
            vec!["plans"]
        );
    }

    #[test]
    fn escapes_strings() {
        assert_eq!(toml_str("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
