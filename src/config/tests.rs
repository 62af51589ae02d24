//! Validation rules: each problem is reported, with the right line.
//!
//! Test configs mark the line an error must point at with a trailing
//! `# <- NAME` comment, so the expected lines are visible in the config text.

use std::path::{Path, PathBuf};

use super::*;

/// The 1-based line carrying `# <- {marker}`.
fn marked(text: &str, marker: &str) -> usize {
    let tag = format!("# <- {marker}");
    let found = text
        .lines()
        .position(|l| l.trim_end().ends_with(&tag))
        .unwrap_or_else(|| panic!("no line marked {tag:?}"));
    found + 1
}

fn errors(text: &str) -> Vec<ConfigError> {
    match load_str(text, "t.toml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.errors,
    }
}

/// Asserts an error containing `needle` on the line marked `marker`.
#[track_caller]
fn assert_error(errors: &[ConfigError], text: &str, marker: &str, needle: &str) {
    let line = marked(text, marker);
    assert!(
        errors
            .iter()
            .any(|e| e.line == Some(line) && e.message.contains(needle)),
        "no error {needle:?} on line {line}; got {errors:#?}"
    );
}

/// Asserts exactly one error, containing `needle`, on the line marked `marker`.
#[track_caller]
fn assert_only_error(text: &str, marker: &str, needle: &str) {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_error(&errors, text, marker, needle);
}

/// A valid config; tests append to it or replace parts of it.
const BASE: &str = r#"
[server]
listen = "127.0.0.1:6432"

[[users]]
name = "app"
password = "app-secret"

[[shards]]
name = "s0"
url = "postgres://postgres@127.0.0.1:5433/app"

[[shards]]
name = "solo"
url = "postgres://postgres@127.0.0.1:5435/solo"
dedicated = true
"#;

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn base_is_valid() {
    let config = load_str(BASE, "t.toml").unwrap();
    assert_eq!(config.shards.len(), 2);
    assert_eq!(config.server.max_client_conn, 10_000);
}

// ---- TOML-level errors ----

#[test]
fn unknown_key_reports_its_line() {
    let text = BASE.replace(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"127.0.0.1:6432\"\nlisten_addr = \"x\" # <- A",
    );
    assert_only_error(&text, "A", "unknown field `listen_addr`");
}

#[test]
fn unknown_keys_everywhere_are_all_reported_with_semantic_errors() {
    let text = format!(
        r#"{BASE}
[[shards]]
name = "s1"
url = "postgres://postgres@127.0.0.1:5434/app"
poolsize = 5 # <- A

[bogus] # <- B
x = 1

[[tenants]]
id = "acme"
shard = "s9" # <- C
"#
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_error(&errors, &text, "A", "unknown field `poolsize`");
    assert_error(&errors, &text, "B", "unknown field `bogus`");
    assert_error(&errors, &text, "C", "unknown shard \"s9\"");
    // In line order.
    let lines: Vec<_> = errors.iter().map(|e| e.line.unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
}

#[test]
fn misspelled_required_key_reports_both_the_typo_and_the_missing_key() {
    let text = with("\n[[shards]] # <- B\nname = \"s1\"\nurll = \"postgres://u@h/d\" # <- A\n");
    let errors = errors(&text);
    assert_error(&errors, &text, "A", "unknown field `urll`");
    assert_error(&errors, &text, "B", "missing field `url`");
}

#[test]
fn every_syntax_error_is_reported_with_its_line() {
    let text = "[server]\nlisten = 127.0.0.1 # <- A\n\n[[users]]\nname = \"x # <- B\n";
    let errors = errors(text);
    assert!(errors.len() >= 2, "{errors:#?}");
    assert!(errors.iter().any(|e| e.line == Some(marked(text, "A"))));
    assert!(errors.iter().any(|e| e.line == Some(marked(text, "B"))));
}

#[test]
fn every_type_error_is_reported_with_unknown_keys_and_semantic_errors() {
    let text = format!(
        r#"{BASE}
[[shards]]
name = "s1"
url = "postgres://postgres@127.0.0.1:5434/app"
pool_size = "ten" # <- A
dedicated = "yes" # <- B
poolsize = 5 # <- C

[routing]
hash_shards = ["s0", 7] # <- D

[[tenants]]
id = "acme"
shard = "s9" # <- E
"#
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert_error(&errors, &text, "A", "invalid type: string \"ten\"");
    assert_error(&errors, &text, "B", "invalid type: string \"yes\"");
    assert_error(&errors, &text, "C", "unknown field `poolsize`");
    assert_error(&errors, &text, "D", "invalid type: integer `7`");
    assert_error(&errors, &text, "E", "unknown shard \"s9\"");
}

#[test]
fn a_required_key_of_the_wrong_type_is_reported_once() {
    let text = with("\n[[shards]]\nname = 5 # <- A\nurl = \"postgres://u@h/d\"\n");
    assert_only_error(&text, "A", "invalid type: integer `5`");
}

#[test]
fn type_errors_report_their_line() {
    let text = with("\n[[tenants]]\nid = \"acme\"\nshard = 5 # <- A\n");
    assert_only_error(&text, "A", "invalid type");
    let text = BASE.replace(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"127.0.0.1:6432\"\nquery_wait_timeout = \"5 parsecs\" # <- A",
    );
    assert_only_error(&text, "A", "");
    let text = BASE.replace(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"127.0.0.1:6432\"\npool_mode = \"statement\" # <- A",
    );
    assert_only_error(&text, "A", "statement");
}

#[test]
fn durations_are_humantime_strings() {
    let text = BASE.replace(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"127.0.0.1:6432\"\nquery_wait_timeout = \"10m\"\nshutdown_timeout = \"1m 30s\"",
    );
    let config = load_str(&text, "t.toml").unwrap();
    assert_eq!(
        config.server.query_wait_timeout,
        std::time::Duration::from_secs(600)
    );
    assert_eq!(
        config.server.shutdown_timeout,
        std::time::Duration::from_secs(90)
    );
}

// ---- [server] ----

#[test]
fn listen_addresses_must_be_socket_addresses() {
    let text = BASE.replace(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"localhost\" # <- A\nmetrics_listen = \"9930\" # <- B",
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors,
        &text,
        "A",
        "server.listen \"localhost\" is not a socket address",
    );
    assert_error(&errors, &text, "B", "server.metrics_listen \"9930\"");
    let text = BASE.replace("127.0.0.1:6432", "[::1]:6432");
    assert!(load_str(&text, "t.toml").is_ok());
}

#[test]
fn metrics_listen_must_not_take_the_client_port() {
    for metrics in ["127.0.0.1:6432", "0.0.0.0:6432"] {
        let text = BASE.replace(
            "listen = \"127.0.0.1:6432\"",
            &format!("listen = \"127.0.0.1:6432\"\nmetrics_listen = \"{metrics}\" # <- A"),
        );
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_error(&errors, &text, "A", "overlaps server.listen");
    }
    for metrics in ["127.0.0.1:9930", "127.0.0.2:6432"] {
        let text = BASE.replace(
            "listen = \"127.0.0.1:6432\"",
            &format!("listen = \"127.0.0.1:6432\"\nmetrics_listen = \"{metrics}\""),
        );
        assert!(load_str(&text, "t.toml").is_ok(), "{metrics}");
    }
}

#[test]
fn max_client_conn_at_least_one() {
    let text = BASE.replace(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"127.0.0.1:6432\"\nmax_client_conn = 0 # <- A",
    );
    assert_only_error(&text, "A", "max_client_conn must be at least 1");
}

#[test]
fn max_message_size_range() {
    for (size, ok) in [
        (1023usize, false),
        (1024, true),
        (1 << 30, true),
        ((1 << 30) + 1, false),
    ] {
        let text = BASE.replace(
            "listen = \"127.0.0.1:6432\"",
            &format!("listen = \"127.0.0.1:6432\"\nmax_message_size = {size} # <- A"),
        );
        if ok {
            assert!(load_str(&text, "t.toml").is_ok(), "{size}");
        } else {
            assert_only_error(&text, "A", "max_message_size");
        }
    }
}

#[test]
fn database_names() {
    let text = BASE.replace(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"127.0.0.1:6432\"\ndatabase = \"tenantgate\"\nadmin_database = \"tenantgate\" # <- A",
    );
    assert_only_error(&text, "A", "must differ from server.database");
    let text = BASE.replace(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"127.0.0.1:6432\"\ndatabase = \"\" # <- A",
    );
    assert_only_error(&text, "A", "server.database must not be empty");
}

// ---- [tenancy] ----

#[test]
fn tenancy_column_and_session_variable() {
    let text = with(
        "\n[tenancy]\ncolumn = \"\" # <- A\nsession_variable = \"current_tenant\" # <- B\nglobal_tables = [\"plans\", \"\"] # <- C\n",
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_error(&errors, &text, "A", "tenancy.column must not be empty");
    assert_error(
        &errors,
        &text,
        "B",
        "must be a custom setting name with a dot",
    );
    assert_error(
        &errors,
        &text,
        "C",
        "global_tables entries must not be empty",
    );
    for bad in ["", ".x", "x.", "a b.c"] {
        let text = with(&format!("\n[tenancy]\nsession_variable = {bad:?} # <- A\n"));
        assert_only_error(&text, "A", "session_variable");
    }
}

// ---- [[users]] ----

#[test]
fn user_names_non_empty_and_unique() {
    let text = with(
        "\n[[users]]\nname = \"\" # <- A\npassword = \"x\"\n\n[[users]]\nname = \"app\" # <- B\npassword = \"x\"\n",
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(&errors, &text, "A", "user name must not be empty");
    assert_error(
        &errors,
        &text,
        "B",
        &format!("duplicate user name \"app\" (first at line {})", 6),
    );
}

#[test]
fn empty_password_is_an_error() {
    let text = with("\n[[users]]\nname = \"u\"\npassword = \"\" # <- A\n");
    assert_only_error(&text, "A", "password must not be empty");
}

#[test]
fn user_tenant_must_be_routable() {
    let text = with("\n[[users]]\nname = \"r\"\npassword = \"x\"\ntenant = \"acme\" # <- A\n");
    assert_only_error(&text, "A", "tenant \"acme\" cannot be routed");
    // An explicit entry makes it routable…
    let explicit = format!("{text}\n[[tenants]]\nid = \"acme\"\nshard = \"s0\"\n");
    assert!(load_str(&explicit, "t.toml").is_ok());
    // …and so do hash shards.
    let hashed = format!("{text}\n[routing]\nhash_shards = [\"s0\"]\n");
    assert!(load_str(&hashed, "t.toml").is_ok());
}

#[test]
fn admin_users_cannot_have_a_tenant() {
    let text = with(
        "\n[routing]\nhash_shards = [\"s0\"]\n\n[[users]]\nname = \"ops\"\npassword = \"x\"\nadmin = true\ntenant = \"acme\" # <- A\n",
    );
    assert_only_error(&text, "A", "admin user cannot be bound to a tenant");
}

#[test]
fn md5_auth_with_a_scram_verifier() {
    let verifier = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
    let ok = with(&format!(
        "\n[[users]]\nname = \"u\"\npassword = \"{verifier}\"\n"
    ));
    assert!(load_str(&ok, "t.toml").is_ok());
    let text = with(&format!(
        "\n[[users]]\nname = \"u\"\npassword = \"{verifier}\"\nauth = \"md5\" # <- A\n"
    ));
    assert_only_error(
        &text,
        "A",
        "auth = \"md5\" needs a plain-text or md5 password",
    );
    let text = with("\n[[users]]\nname = \"u\"\npassword = \"SCRAM-SHA-256$1:x\" # <- A\n");
    assert_only_error(&text, "A", "malformed SCRAM-SHA-256 verifier");
}

#[test]
fn md5_hash_needs_md5_auth() {
    let hash = "md5d41d8cd98f00b204e9800998ecf8427e";
    let text = with(&format!(
        "\n[[users]]\nname = \"u\"\npassword = \"{hash}\" # <- A\n"
    ));
    assert_only_error(
        &text,
        "A",
        "md5 password hash cannot be checked with SCRAM-SHA-256",
    );
    let ok = with(&format!(
        "\n[[users]]\nname = \"u\"\npassword = \"{hash}\"\nauth = \"md5\"\n"
    ));
    assert!(load_str(&ok, "t.toml").is_ok());
}

// ---- [[shards]] ----

#[test]
fn shard_names_unique_and_non_empty() {
    let text = with(
        "\n[[shards]]\nname = \"s0\" # <- A\nurl = \"postgres://u@h/d\"\n\n[[shards]]\nname = \"\" # <- B\nurl = \"postgres://u@h/d\"\n",
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors,
        &text,
        "A",
        "duplicate shard name \"s0\" (first at line 10)",
    );
    assert_error(&errors, &text, "B", "shard name must not be empty");
}

#[test]
fn shard_url_must_parse() {
    let text = with(
        "\n[[shards]]\nname = \"s1\"\nurl = \"postgres://u:hunter2@h:99999/d\" # <- A\n\n[[shards]]\nname = \"s2\"\nurl = \"postgres://u@h/d?sslmode=require\" # <- B\n",
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(&errors, &text, "A", "shard \"s1\": url: invalid port");
    assert_error(&errors, &text, "B", "unsupported sslmode");
    assert!(errors.iter().all(|e| !e.message.contains("hunter2")));
}

#[test]
fn pool_size_at_least_one() {
    let text =
        with("\n[[shards]]\nname = \"s1\"\nurl = \"postgres://u@h/d\"\npool_size = 0 # <- A\n");
    assert_only_error(&text, "A", "pool_size must be at least 1");
}

#[test]
fn max_pinned_per_tenant_defaults_to_half_a_shared_pool() {
    let text = with(
        "\n[[shards]]\nname = \"s1\"\nurl = \"postgres://u@h/d\"\npool_size = 5\n\
         max_pinned_per_tenant = 0 # <- A\n",
    );
    assert_only_error(&text, "A", "max_pinned_per_tenant must be at least 1");
    let shard = |extra: &str| -> ShardConfig {
        toml::from_str(&format!(
            "name = \"s\"\nurl = \"postgres://u@h/d\"\n{extra}"
        ))
        .expect("shard")
    };
    assert_eq!(shard("pool_size = 5").pinned_per_tenant_limit(), 3);
    assert_eq!(shard("pool_size = 1").pinned_per_tenant_limit(), 1);
    assert_eq!(
        shard("pool_size = 20\ndedicated = true").pinned_per_tenant_limit(),
        0
    );
    assert_eq!(
        shard("pool_size = 20\nmax_pinned_per_tenant = 7").pinned_per_tenant_limit(),
        7
    );
}

// ---- [routing] ----

#[test]
fn hash_shards_must_be_known_shared_and_listed_once() {
    let text = with(
        "\n[routing]\nhash_shards = [\n  \"s0\",\n  \"nope\", # <- A\n  \"solo\", # <- B\n  \"s0\", # <- C\n]\n",
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_error(&errors, &text, "A", "unknown shard \"nope\"");
    assert_error(&errors, &text, "B", "dedicated shard \"solo\"");
    assert_error(&errors, &text, "C", "lists shard \"s0\" twice");
}

// ---- [[tenants]] ----

#[test]
fn tenant_on_unknown_shard() {
    let text = with("\n[[tenants]]\nid = \"acme\"\nshard = \"s9\" # <- A\n");
    assert_only_error(&text, "A", "tenant \"acme\" names unknown shard \"s9\"");
}

#[test]
fn tenant_ids_unique_and_non_empty() {
    let text = with(
        "\n[[tenants]]\nid = \"acme\"\nshard = \"s0\"\n\n[[tenants]]\nid = \"acme\" # <- A\nshard = \"s0\"\n\n[[tenants]]\nid = \"\" # <- B\nshard = \"s0\"\n",
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let first = marked(&text, "A") - 4;
    assert_error(
        &errors,
        &text,
        "A",
        &format!("duplicate tenant id \"acme\" (first at line {first})"),
    );
    assert_error(&errors, &text, "B", "tenant id must not be empty");
}

#[test]
fn dedicated_shard_holds_one_tenant() {
    let text = with(
        "\n[[tenants]]\nid = \"a\"\nshard = \"solo\"\n\n[[tenants]]\nid = \"b\"\nshard = \"solo\" # <- A\n",
    );
    assert_only_error(
        &text,
        "A",
        "shard \"solo\" is dedicated and already holds tenant \"a\"",
    );
}

#[test]
fn schema_rules() {
    let text = with(
        "\n[[tenants]]\nid = \"a\"\nshard = \"solo\"\nschema = \"a\" # <- A\n\n\
         [[tenants]]\nid = \"b\"\nshard = \"s0\"\nschema = \"B-corp\" # <- B\n\n\
         [[tenants]]\nid = \"c\"\nshard = \"s0\"\nschema = \"shared\"\n\n\
         [[tenants]]\nid = \"d\"\nshard = \"s0\"\nschema = \"shared\" # <- C\n\n\
         [[tenants]]\nid = \"e\"\nshard = \"s0\"\nschema = \"pg_temp\" # <- D\n",
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_error(&errors, &text, "A", "schema is only for shared shards");
    assert_error(&errors, &text, "B", "must start with a lower-case letter");
    assert_error(
        &errors,
        &text,
        "C",
        "schema \"shared\" on shard \"s0\" already belongs to tenant \"c\"",
    );
    assert_error(&errors, &text, "D", "system schema");
}

// ---- every problem at once ----

#[test]
fn all_problems_are_reported_at_once_in_line_order() {
    let text = r#"
[server]
listen = "nowhere" # <- A
max_client_conn = 0 # <- B

[[users]]
name = "ops"
password = "x"
admin = true
tenant = "acme" # <- C

[[shards]]
name = "s0"
url = "mysql://x@y/z" # <- D
pool_size = 0 # <- E

[routing]
hash_shards = ["s7"] # <- F

[[tenants]]
id = "acme"
shard = "s8" # <- G
"#;
    let errors = errors(text);
    assert_eq!(errors.len(), 7, "{errors:#?}");
    for (marker, needle) in [
        ("A", "server.listen"),
        ("B", "max_client_conn"),
        ("C", "admin user"),
        ("D", "url"),
        ("E", "pool_size"),
        ("F", "unknown shard \"s7\""),
        ("G", "unknown shard \"s8\""),
    ] {
        assert_error(&errors, text, marker, needle);
    }
    let lines: Vec<_> = errors.iter().map(|e| e.line.unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn errors_display_with_origin_and_line() {
    let text = with("\n[[tenants]]\nid = \"acme\"\nshard = \"s9\"\n");
    let e = load_str(&text, "routing.toml").unwrap_err();
    let line = text.lines().count();
    assert_eq!(
        e.to_string(),
        format!("routing.toml: line {line}: tenant \"acme\" names unknown shard \"s9\"")
    );
}

// ---- tenants_file ----

/// A fresh directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tenantgate-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn tenants_file_is_read_relative_to_the_config_file() {
    let dir = temp_dir("relative");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    write(
        &dir.join("data/tenants.toml"),
        "[[tenants]]\nid = \"t1\"\nshard = \"s0\"\n\n[[tenants]]\nid = \"t2\"\nshard = \"s0\"\nschema = \"t2\"\n",
    );
    write(
        &dir.join("routing.toml"),
        &with(
            "\n[routing]\ntenants_file = \"data/tenants.toml\"\n\n[[tenants]]\nid = \"t0\"\nshard = \"solo\"\n",
        ),
    );
    let config = load_file(&dir.join("routing.toml")).unwrap();
    let ids: Vec<_> = config.tenants.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["t0", "t1", "t2"]);
    assert_eq!(config.tenants[2].schema.as_deref(), Some("t2"));
    assert_eq!(
        config.routing.tenants_file.as_deref(),
        Some(dir.join("data/tenants.toml").as_path())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tenants_file_errors_name_that_file_and_line() {
    let dir = temp_dir("errors");
    let tenants = "[[tenants]]\nid = \"t0\"\nshard = \"s0\"\n\n[[tenants]]\nid = \"t0\" # <- A\nshard = \"s9\" # <- B\n";
    write(&dir.join("tenants.toml"), tenants);
    let main = with(
        "\n[routing]\ntenants_file = \"tenants.toml\"\n\n[[tenants]]\nid = \"x\"\nshard = \"nope\" # <- M\n",
    );
    write(&dir.join("routing.toml"), &main);
    let e = load_file(&dir.join("routing.toml")).unwrap_err();
    let file = dir.join("tenants.toml").display().to_string();
    assert_eq!(e.errors.len(), 3, "{e:#?}");
    // Main file first.
    assert_eq!(e.errors[0].file, None);
    assert_eq!(e.errors[0].line, Some(marked(&main, "M")));
    assert_eq!(e.errors[1].file.as_deref(), Some(file.as_str()));
    assert_eq!(e.errors[1].line, Some(marked(tenants, "A")));
    assert!(
        e.errors[1]
            .message
            .contains("duplicate tenant id \"t0\" (first at line 2)")
    );
    assert_eq!(e.errors[2].file.as_deref(), Some(file.as_str()));
    assert_eq!(e.errors[2].line, Some(marked(tenants, "B")));
    assert!(e.errors[2].message.contains("unknown shard \"s9\""));
    let shown = e.to_string();
    assert!(
        shown.contains(&format!("{file}: line 6: duplicate tenant id")),
        "{shown}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tenants_file_duplicate_of_an_inline_tenant_points_at_the_main_file() {
    let dir = temp_dir("dup");
    write(
        &dir.join("t.toml"),
        "[[tenants]]\nid = \"acme\"\nshard = \"s0\"\n",
    );
    let main = with(
        "\n[routing]\ntenants_file = \"t.toml\"\n\n[[tenants]]\nid = \"acme\" # <- A\nshard = \"s0\"\n",
    );
    write(&dir.join("routing.toml"), &main);
    let e = load_file(&dir.join("routing.toml")).unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e:#?}");
    assert_eq!(e.errors[0].line, Some(2));
    let expected = format!(
        "(first at {} line {})",
        dir.join("routing.toml").display(),
        marked(&main, "A")
    );
    assert!(e.errors[0].message.contains(&expected), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tenants_file_syntax_and_unknown_keys() {
    let dir = temp_dir("syntax");
    let tenants = "[[tenants]]\nid = \"a\"\nshard = \"s0\"\nzone = \"eu\" # <- A\n";
    write(&dir.join("t.toml"), tenants);
    write(
        &dir.join("routing.toml"),
        &with("\n[routing]\ntenants_file = \"t.toml\"\n"),
    );
    let e = load_file(&dir.join("routing.toml")).unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e:#?}");
    assert!(e.errors[0].file.as_deref().unwrap().ends_with("t.toml"));
    assert_eq!(e.errors[0].line, Some(marked(tenants, "A")));
    assert!(e.errors[0].message.contains("unknown field `zone`"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_tenants_file_is_reported_at_its_key() {
    let dir = temp_dir("missing");
    let main = with(
        "\n[routing]\ntenants_file = \"absent.toml\" # <- A\n\n[[users]]\nname = \"r\"\npassword = \"x\"\ntenant = \"acme\"\n",
    );
    write(&dir.join("routing.toml"), &main);
    let e = load_file(&dir.join("routing.toml")).unwrap_err();
    // Only the unreadable file: the user's tenant may well be in it.
    assert_eq!(e.errors.len(), 1, "{e:#?}");
    assert_eq!(e.errors[0].line, Some(marked(&main, "A")));
    assert!(e.errors[0].message.contains("cannot read tenants_file"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run with `cargo test --release -- --ignored million`: the design's target
/// is ≤ 2 s for 1,000,000 tenants.
#[test]
#[ignore = "timing; run in release"]
fn million_tenants_load_fast() {
    let dir = temp_dir("million");
    let mut tenants = String::with_capacity(50_000_000);
    for i in 0..1_000_000 {
        tenants.push_str(&format!(
            "[[tenants]]\nid = \"tenant-{i}\"\nshard = \"s{}\"\n\n",
            i % 2
        ));
    }
    write(&dir.join("tenants.toml"), &tenants);
    write(
        &dir.join("routing.toml"),
        "[server]\nlisten = \"127.0.0.1:6432\"\n[[shards]]\nname = \"s0\"\nurl = \"postgres://u@h/d\"\n\
         [[shards]]\nname = \"s1\"\nurl = \"postgres://u@h/e\"\n[routing]\ntenants_file = \"tenants.toml\"\n",
    );
    let start = std::time::Instant::now();
    let config = load_file(&dir.join("routing.toml")).unwrap();
    let took = start.elapsed();
    assert_eq!(config.tenants.len(), 1_000_000);
    eprintln!("1,000,000 tenants loaded in {took:?}");
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
