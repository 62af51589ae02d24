//! The checked-in `routing.toml` loads, validates and says what the docs say;
//! a broken file yields every error with its line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tenantgate::config::{self, AuthMethod, PoolMode};

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(repo_file(name)).expect("readable repo file")
}

#[test]
fn example_routing_toml_validates() {
    let config = match config::load_file(&repo_file("routing.toml")) {
        Ok(c) => c,
        Err(e) => panic!("routing.toml does not validate:\n{e}"),
    };

    assert_eq!(config.server.listen, "127.0.0.1:6432");
    assert_eq!(
        config.server.metrics_listen.as_deref(),
        Some("127.0.0.1:9930")
    );
    assert_eq!(config.server.database, "app");
    assert_eq!(config.server.pool_mode, PoolMode::Transaction);

    assert_eq!(config.tenancy.as_ref().unwrap().column, "tenant_id");
    assert_eq!(
        config.tenancy.as_ref().unwrap().session_variable,
        "app.current_tenant"
    );
    assert_eq!(config.tenancy.as_ref().unwrap().global_tables, ["plans"]);
    assert!(!config.tenancy.as_ref().unwrap().rls);

    let users: Vec<_> = config
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.tenant.as_deref(), u.admin))
        .collect();
    assert_eq!(
        users,
        [
            ("app", None, false),
            ("acme_reader", Some("acme"), false),
            ("ops", None, true),
        ]
    );
    assert!(
        config
            .users
            .iter()
            .all(|u| u.auth == AuthMethod::ScramSha256)
    );

    let shards: Vec<_> = config
        .shards
        .iter()
        .map(|s| (s.name.as_str(), s.pool_size, s.dedicated))
        .collect();
    assert_eq!(
        shards,
        [
            ("s0", 20, false),
            ("s1", 20, false),
            ("bigcorp-db", 20, true)
        ]
    );
    let url = config.shards[2].parsed_url().expect("valid url");
    assert_eq!(
        (
            url.user.as_str(),
            url.host.as_str(),
            url.port,
            url.dbname.as_str()
        ),
        ("postgres", "127.0.0.1", 5435, "bigcorp")
    );

    assert_eq!(config.routing.hash_shards, ["s0", "s1"]);
    assert_eq!(config.routing.tenants_file, None);
    let tenants: Vec<_> = config
        .tenants
        .iter()
        .map(|t| (t.id.as_str(), t.shard.as_str(), t.schema.as_deref()))
        .collect();
    assert_eq!(
        tenants,
        [
            ("acme", "s1", None),
            ("bigcorp", "bigcorp-db", None),
            ("globex", "s0", Some("globex")),
        ]
    );

    let summary = config::summary(&config);
    assert!(summary.contains("127.0.0.1:5435/bigcorp"), "{summary}");
    assert!(summary.contains("hash shards: s0, s1"), "{summary}");
}

#[test]
fn example_routing_toml_is_commented_line_by_line() {
    let text = read("routing.toml");
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        assert!(
            line.is_empty() || line.starts_with('#') || line.contains(" # "),
            "routing.toml line {} has no comment: {line}",
            n + 1
        );
    }
}

/// The commented-out optional keys are valid as written and show the defaults.
#[test]
fn example_optional_keys_are_valid_defaults() {
    let text = read("routing.toml");
    let mut uncommented = 0;
    let enabled: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.contains(" = ")
                    && rest.split(' ').next().is_some_and(is_key)
                    && !rest.starts_with("tenants_file") =>
            {
                uncommented += 1;
                format!("{rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    assert_eq!(uncommented, 8, "expected 8 commented-out optional keys");
    let with_optional = match config::load_str(&enabled, "routing.toml (optional keys enabled)") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let defaults = config::load_file(&repo_file("routing.toml")).expect("valid");
    assert_eq!(with_optional, defaults);
    assert_eq!(defaults.server.query_wait_timeout, Duration::from_secs(30));
    assert_eq!(
        defaults.server.server_idle_timeout,
        Duration::from_secs(600)
    );
}

fn is_key(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Every key the example shows (enabled or not) is in the reference.
#[test]
fn configuration_reference_documents_every_example_key() {
    let example = read("routing.toml");
    let docs = read("docs/configuration.md");
    for line in example.lines() {
        let line = line.trim_start_matches("# ");
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if !is_key(key) {
            continue;
        }
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/configuration.md does not document `{key}`"
        );
    }
}

#[test]
fn unknown_key_and_bad_shard_reference_are_both_reported_with_lines() {
    let dir = std::env::temp_dir().join(format!("tenantgate-config-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("broken.toml");
    let text = r#"[server]
listen = "127.0.0.1:6432"
listen_port = 6432

[[shards]]
name = "s0"
url = "postgres://postgres@127.0.0.1:5433/app"

[[tenants]]
id = "acme"
shard = "s1"
"#;
    std::fs::write(&path, text).expect("write config");
    let errors = config::load_file(&path).expect_err("broken config");
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(errors.errors.len(), 2, "{errors}");
    assert_eq!(errors.errors[0].line, Some(3));
    assert!(
        errors.errors[0]
            .message
            .contains("unknown field `listen_port`"),
        "{errors}"
    );
    assert_eq!(errors.errors[1].line, Some(11));
    assert!(
        errors.errors[1]
            .message
            .contains("tenant \"acme\" names unknown shard \"s1\""),
        "{errors}"
    );
    let shown = errors.to_string();
    let origin = path.display().to_string();
    assert!(
        shown.contains(&format!("{origin}: line 3: unknown field `listen_port`")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("{origin}: line 11: tenant \"acme\"")),
        "{shown}"
    );
}

/// `tenantgate route` names a tenant's home, and refuses an id the proxy
/// would refuse (an empty one got a home printed).
#[test]
fn route_names_the_home_and_refuses_invalid_ids() {
    let route = |tenant: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tenantgate"))
            .args(["route", "--config"])
            .arg(repo_file("routing.toml"))
            .arg(tenant)
            .output()
            .expect("run tenantgate route")
    };
    let ok = route("acme");
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        String::from_utf8_lossy(&ok.stdout).starts_with("acme -> shard "),
        "{ok:?}"
    );
    for bad in ["", "a\\b"] {
        let out = route(bad);
        assert!(!out.status.success(), "{bad:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{bad:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid tenant id"),
            "{bad:?}: {out:?}"
        );
    }
}
