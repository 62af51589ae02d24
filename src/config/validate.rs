//! Whole-config validation: every problem is reported, each with its place.
//!
//! Rules work on the typed [`Config`] and name places with [`Loc`]; the
//! loader turns those into file names and line numbers. Checks over tenants
//! use hash sets, so a million tenants validate in linear time.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::locate::Loc;
use super::{AuthMethod, Config, ShardConfig, ShardUrl};
use crate::protocol::auth::{AuthConfigError, ScramVerifier};

/// Smallest allowed `server.max_message_size` (1 KiB).
pub(super) const MIN_MESSAGE_SIZE: usize = 1024;
/// Largest allowed `server.max_message_size` (1 GiB, Postgres's own limit).
pub(super) const MAX_MESSAGE_SIZE: usize = 1024 * 1024 * 1024;

/// One problem, before its line is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Issue {
    /// Where the problem is.
    pub(super) loc: Loc,
    /// What is wrong.
    pub(super) message: String,
    /// For duplicates: where the first occurrence is.
    pub(super) first: Option<Loc>,
}

impl Issue {
    fn at(loc: Loc, message: String) -> Self {
        Issue {
            loc,
            message,
            first: None,
        }
    }
}

/// Returns every problem in `config`. `tenants_complete` is false when the
/// tenants file could not be read, so that users' tenants are not reported
/// unroutable because of it.
pub(super) fn validate(config: &Config, tenants_complete: bool) -> Vec<Issue> {
    let mut issues = Vec::new();
    server(config, &mut issues);
    tenancy(config, &mut issues);
    let shards = shards(config, &mut issues);
    routing(config, &shards, &mut issues);
    let tenant_ids = tenants(config, &shards, &mut issues);
    users(config, &tenant_ids, tenants_complete, &mut issues);
    issues
}

fn server(config: &Config, issues: &mut Vec<Issue>) {
    let s = &config.server;
    if let Err(e) = s.listen.parse::<SocketAddr>() {
        issues.push(Issue::at(
            Loc::Key("server", "listen"),
            format!(
                "server.listen {:?} is not a socket address like \"127.0.0.1:6432\": {e}",
                s.listen
            ),
        ));
    }
    if let Some(m) = &s.metrics_listen
        && let Err(e) = m.parse::<SocketAddr>()
    {
        issues.push(Issue::at(
            Loc::Key("server", "metrics_listen"),
            format!(
                "server.metrics_listen {m:?} is not a socket address like \"127.0.0.1:9930\": {e}"
            ),
        ));
    }
    if let (Ok(listen), Some(Ok(metrics))) = (
        s.listen.parse::<SocketAddr>(),
        s.metrics_listen.as_deref().map(str::parse::<SocketAddr>),
    ) && listen.port() == metrics.port()
        && listen.port() != 0
        && (listen.ip() == metrics.ip()
            || listen.ip().is_unspecified()
            || metrics.ip().is_unspecified())
    {
        issues.push(Issue::at(
            Loc::Key("server", "metrics_listen"),
            format!(
                "server.metrics_listen {metrics} overlaps server.listen {listen}: \
                 the two need different ports (or addresses)"
            ),
        ));
    }
    if s.database.is_empty() {
        issues.push(Issue::at(
            Loc::Key("server", "database"),
            "server.database must not be empty".into(),
        ));
    }
    if s.admin_database.is_empty() {
        issues.push(Issue::at(
            Loc::Key("server", "admin_database"),
            "server.admin_database must not be empty".into(),
        ));
    } else if s.admin_database == s.database {
        issues.push(Issue::at(
            Loc::Key("server", "admin_database"),
            format!(
                "server.admin_database {:?} must differ from server.database",
                s.admin_database
            ),
        ));
    }
    if s.max_client_conn < 1 {
        issues.push(Issue::at(
            Loc::Key("server", "max_client_conn"),
            "server.max_client_conn must be at least 1".into(),
        ));
    }
    if !(MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&s.max_message_size) {
        issues.push(Issue::at(
            Loc::Key("server", "max_message_size"),
            format!(
                "server.max_message_size {} is out of range: it must be between {MIN_MESSAGE_SIZE} (1 KiB) and {MAX_MESSAGE_SIZE} (1 GiB) bytes",
                s.max_message_size
            ),
        ));
    }
}

fn tenancy(config: &Config, issues: &mut Vec<Issue>) {
    let Some(t) = &config.tenancy else { return };
    if t.column.trim().is_empty() {
        issues.push(Issue::at(
            Loc::Key("tenancy", "column"),
            "tenancy.column must not be empty".into(),
        ));
    }
    let var = &t.session_variable;
    let custom_guc = var
        .split_once('.')
        .is_some_and(|(prefix, name)| !prefix.is_empty() && !name.is_empty())
        && !var.chars().any(char::is_whitespace);
    if !custom_guc {
        issues.push(Issue::at(
            Loc::Key("tenancy", "session_variable"),
            format!(
                "tenancy.session_variable {var:?} must be a custom setting name with a dot, like \"app.current_tenant\""
            ),
        ));
    }
    for (i, table) in t.global_tables.iter().enumerate() {
        if table.trim().is_empty() {
            issues.push(Issue::at(
                Loc::Item("tenancy", "global_tables", i),
                "tenancy.global_tables entries must not be empty".into(),
            ));
        }
    }
}

/// Checks `[[shards]]`; returns the shards by name (first of each name).
fn shards<'c>(config: &'c Config, issues: &mut Vec<Issue>) -> HashMap<&'c str, &'c ShardConfig> {
    let mut by_name: HashMap<&str, (usize, &ShardConfig)> = HashMap::new();
    for (i, shard) in config.shards.iter().enumerate() {
        if shard.name.is_empty() {
            issues.push(Issue::at(
                Loc::Entry("shards", i, Some("name")),
                "shard name must not be empty".into(),
            ));
        } else if let Some(&(first, _)) = by_name.get(shard.name.as_str()) {
            issues.push(Issue {
                loc: Loc::Entry("shards", i, Some("name")),
                message: format!("duplicate shard name {:?}", shard.name),
                first: Some(Loc::Entry("shards", first, Some("name"))),
            });
        } else {
            by_name.insert(&shard.name, (i, shard));
        }
        if let Err(e) = ShardUrl::parse(&shard.url) {
            issues.push(Issue::at(
                Loc::Entry("shards", i, Some("url")),
                format!("shard {:?}: url: {e}", shard.name),
            ));
        }
        if shard.pool_size < 1 {
            issues.push(Issue::at(
                Loc::Entry("shards", i, Some("pool_size")),
                format!("shard {:?}: pool_size must be at least 1", shard.name),
            ));
        }
        if shard.max_pinned_per_tenant == Some(0) {
            issues.push(Issue::at(
                Loc::Entry("shards", i, Some("max_pinned_per_tenant")),
                format!(
                    "shard {:?}: max_pinned_per_tenant must be at least 1",
                    shard.name
                ),
            ));
        }
    }
    by_name.into_iter().map(|(k, (_, s))| (k, s)).collect()
}

fn routing(config: &Config, shards: &HashMap<&str, &ShardConfig>, issues: &mut Vec<Issue>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in config.routing.hash_shards.iter().enumerate() {
        let loc = Loc::Item("routing", "hash_shards", i);
        match shards.get(name.as_str()) {
            None => issues.push(Issue::at(
                loc,
                format!("routing.hash_shards names unknown shard {name:?}"),
            )),
            Some(s) if s.dedicated => issues.push(Issue::at(
                loc,
                format!(
                    "routing.hash_shards names dedicated shard {name:?}: a dedicated shard holds one explicitly placed tenant"
                ),
            )),
            Some(_) => {}
        }
        if let Some(&first) = seen.get(name.as_str()) {
            issues.push(Issue {
                loc,
                message: format!("routing.hash_shards lists shard {name:?} twice"),
                first: Some(Loc::Item("routing", "hash_shards", first)),
            });
        } else {
            seen.insert(name, i);
        }
    }
}

/// Checks the tenants; returns the tenant ids (each with its first index).
fn tenants<'c>(
    config: &'c Config,
    shards: &HashMap<&str, &ShardConfig>,
    issues: &mut Vec<Issue>,
) -> HashMap<&'c str, usize> {
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(config.tenants.len());
    // Dedicated shard → its first tenant; (shard, schema) → tenant holding it.
    let mut dedicated_owner: HashMap<&str, usize> = HashMap::new();
    let mut schemas: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, t) in config.tenants.iter().enumerate() {
        if t.id.is_empty() {
            issues.push(Issue::at(
                Loc::Tenant(i, Some("id")),
                "tenant id must not be empty".into(),
            ));
        } else if let Some(&first) = ids.get(t.id.as_str()) {
            issues.push(Issue {
                loc: Loc::Tenant(i, Some("id")),
                message: format!("duplicate tenant id {:?}", t.id),
                first: Some(Loc::Tenant(first, Some("id"))),
            });
        } else {
            ids.insert(&t.id, i);
        }
        let shard = shards.get(t.shard.as_str());
        match shard {
            None => issues.push(Issue::at(
                Loc::Tenant(i, Some("shard")),
                format!("tenant {:?} names unknown shard {:?}", t.id, t.shard),
            )),
            Some(s) if s.dedicated => {
                if let Some(&first) = dedicated_owner.get(t.shard.as_str()) {
                    issues.push(Issue {
                        loc: Loc::Tenant(i, Some("shard")),
                        message: format!(
                            "tenant {:?}: shard {:?} is dedicated and already holds tenant {:?}",
                            t.id, t.shard, config.tenants[first].id
                        ),
                        first: Some(Loc::Tenant(first, Some("shard"))),
                    });
                } else {
                    dedicated_owner.insert(&t.shard, i);
                }
            }
            Some(_) => {}
        }
        if let Some(schema) = &t.schema {
            let loc = Loc::Tenant(i, Some("schema"));
            if shard.is_some_and(|s| s.dedicated) {
                issues.push(Issue::at(
                    loc,
                    format!(
                        "tenant {:?}: schema is only for shared shards; shard {:?} is dedicated",
                        t.id, t.shard
                    ),
                ));
            }
            if let Err(why) = check_identifier(schema) {
                issues.push(Issue::at(
                    loc,
                    format!("tenant {:?}: schema {schema:?} {why}", t.id),
                ));
            } else if let Some(&first) = schemas.get(&(t.shard.as_str(), schema.as_str())) {
                issues.push(Issue {
                    loc,
                    message: format!(
                        "tenant {:?}: schema {schema:?} on shard {:?} already belongs to tenant {:?}",
                        t.id, t.shard, config.tenants[first].id
                    ),
                    first: Some(Loc::Tenant(first, Some("schema"))),
                });
            } else {
                schemas.insert((&t.shard, schema), i);
            }
        }
    }
    ids
}

fn users(
    config: &Config,
    tenant_ids: &HashMap<&str, usize>,
    tenants_complete: bool,
    issues: &mut Vec<Issue>,
) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, u) in config.users.iter().enumerate() {
        let at = |key| Loc::Entry("users", i, Some(key));
        if u.name.is_empty() {
            issues.push(Issue::at(at("name"), "user name must not be empty".into()));
        } else if let Some(&first) = names.get(u.name.as_str()) {
            issues.push(Issue {
                loc: at("name"),
                message: format!("duplicate user name {:?}", u.name),
                first: Some(Loc::Entry("users", first, Some("name"))),
            });
        } else {
            names.insert(&u.name, i);
        }
        match password_kind(&u.password) {
            Password::Empty => issues.push(Issue::at(
                at("password"),
                format!("user {:?}: password must not be empty", u.name),
            )),
            Password::Malformed(why) => issues.push(Issue::at(
                at("password"),
                format!("user {:?}: {why}", u.name),
            )),
            Password::Scram if u.auth == AuthMethod::Md5 => issues.push(Issue::at(
                at("auth"),
                format!(
                    "user {:?}: auth = \"md5\" needs a plain-text or md5 password, but the password is a SCRAM-SHA-256 verifier",
                    u.name
                ),
            )),
            Password::Md5 if u.auth == AuthMethod::ScramSha256 => issues.push(Issue::at(
                at("password"),
                format!(
                    "user {:?}: an md5 password hash cannot be checked with SCRAM-SHA-256; set auth = \"md5\" or give a plain-text password or SCRAM verifier",
                    u.name
                ),
            )),
            _ => {}
        }
        if let Some(tenant) = &u.tenant {
            if u.admin {
                issues.push(Issue::at(
                    at("tenant"),
                    format!(
                        "user {:?}: an admin user cannot be bound to a tenant; use separate users",
                        u.name
                    ),
                ));
            }
            if tenant.is_empty() {
                issues.push(Issue::at(
                    at("tenant"),
                    format!("user {:?}: tenant must not be empty", u.name),
                ));
            } else if tenants_complete
                && config.routing.hash_shards.is_empty()
                && !tenant_ids.contains_key(tenant.as_str())
            {
                issues.push(Issue::at(
                    at("tenant"),
                    format!(
                        "user {:?}: tenant {tenant:?} cannot be routed: it has no [[tenants]] entry and routing.hash_shards is empty",
                        u.name
                    ),
                ));
            }
        }
    }
}

/// What a configured password is (as `protocol::auth::StoredPassword` will
/// read it at login, without deriving a verifier from plain text).
#[derive(Debug, PartialEq, Eq)]
enum Password {
    Empty,
    Plain,
    /// `md5` followed by 32 lower-case hex digits, as Postgres stores md5 passwords.
    Md5,
    /// A well-formed `SCRAM-SHA-256$…` verifier.
    Scram,
    /// Looks like a verifier or an md5 hash but is not a valid one.
    Malformed(AuthConfigError),
}

fn password_kind(password: &str) -> Password {
    if password.is_empty() {
        return Password::Empty;
    }
    if password.starts_with("SCRAM-SHA-256$") {
        return match ScramVerifier::parse(password) {
            Ok(_) => Password::Scram,
            Err(e) => Password::Malformed(e),
        };
    }
    let hex = password.strip_prefix("md5");
    if hex.is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit())) {
        if hex.is_some_and(|h| h.bytes().any(|b| b.is_ascii_uppercase())) {
            return Password::Malformed(AuthConfigError::MalformedMd5);
        }
        return Password::Md5;
    }
    Password::Plain
}

/// Words Postgres reserves, which cannot be unquoted schema names.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// A schema name must mean the same quoted or unquoted: a lower-case SQL
/// identifier of at most 63 bytes, not reserved, not a system schema.
pub(super) fn check_identifier(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("must not be empty"),
        Some(c) if c.is_ascii_lowercase() || c == '_' => {}
        Some(_) => return Err("must start with a lower-case letter or '_'"),
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$') {
        return Err("may only contain lower-case letters, digits, '_' and '$'");
    }
    if name.len() > 63 {
        return Err("is longer than 63 bytes");
    }
    if name.starts_with("pg_") || name == "information_schema" {
        return Err("is a system schema name");
    }
    if RESERVED.contains(&name) {
        return Err("is a reserved SQL keyword");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(check_identifier("globex").is_ok());
        assert!(check_identifier("_t2$x").is_ok());
        assert!(check_identifier(&"a".repeat(63)).is_ok());
        assert!(check_identifier(&"a".repeat(64)).is_err());
        for bad in [
            "",
            "Globex",
            "1abc",
            "a-b",
            "a b",
            "pg_catalog",
            "pg_x",
            "information_schema",
            "select",
            "user",
        ] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_kinds() {
        use base64::Engine as _;
        use base64::engine::general_purpose::STANDARD as BASE64;
        let verifier = format!(
            "SCRAM-SHA-256$4096:{}${}:{}",
            BASE64.encode(b"saltsalt"),
            BASE64.encode([1u8; 32]),
            BASE64.encode([2u8; 32])
        );
        assert_eq!(password_kind(&verifier), Password::Scram);
        assert!(matches!(
            password_kind("SCRAM-SHA-256$x"),
            Password::Malformed(_)
        ));
        assert!(matches!(
            password_kind("SCRAM-SHA-256$0:c2FsdA==$AA==:AA=="),
            Password::Malformed(_)
        ));
        assert_eq!(
            password_kind("md5d41d8cd98f00b204e9800998ecf8427e"),
            Password::Md5
        );
        assert_eq!(
            password_kind("md5D41D8CD98F00B204E9800998ECF8427E"),
            Password::Malformed(AuthConfigError::MalformedMd5)
        );
        assert_eq!(password_kind("md5-but-plain"), Password::Plain);
        assert_eq!(password_kind("secret"), Password::Plain);
        assert_eq!(password_kind(""), Password::Empty);
    }
}
