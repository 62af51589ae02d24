//! Admin console commands: parsing one statement of a simple Query.

use super::pause::Scope;
use crate::error::ProxyError;

/// What `SHOW` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// One row per shard pool.
    Pools,
    /// One row per client session.
    Clients,
    /// One row per server connection.
    Servers,
    /// One row per shard.
    Shards,
    /// One row per tenant with traffic or sessions.
    Tenants,
    /// One row per shard: traffic totals.
    Stats,
    /// The effective configuration, without passwords.
    Config,
    /// tenantgate's version.
    Version,
    /// The commands.
    Help,
}

/// One admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SHOW …`.
    Show(Show),
    /// `RELOAD`.
    Reload,
    /// `PAUSE [SHARD s | TENANT t]`.
    Pause(Scope),
    /// `RESUME [SHARD s | TENANT t]`.
    Resume(Scope),
    /// `KILL CLIENT id`.
    KillClient(u64),
}

/// The commands and what they do, for `SHOW HELP` and error hints.
pub const HELP: &[(&str, &str)] = &[
    (
        "SHOW POOLS",
        "server connections and waiting clients per shard",
    ),
    ("SHOW CLIENTS", "client sessions"),
    ("SHOW SERVERS", "server connections"),
    ("SHOW SHARDS", "shards and their configuration"),
    ("SHOW TENANTS", "per-tenant traffic counters"),
    ("SHOW STATS", "per-shard traffic counters"),
    ("SHOW CONFIG", "the effective configuration (no passwords)"),
    ("SHOW VERSION", "tenantgate's version"),
    ("SHOW HELP", "this list"),
    ("RELOAD", "re-read the configuration file (as SIGHUP)"),
    (
        "PAUSE",
        "new transactions wait (PAUSE SHARD s, PAUSE TENANT t: only those)",
    ),
    (
        "RESUME",
        "lift every pause (RESUME SHARD s, RESUME TENANT t: only that one)",
    ),
    (
        "KILL CLIENT id",
        "disconnect the client session with this id",
    ),
];

/// Splits a Query's text into statements (on `;`, outside quotes).
pub fn split(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    for (i, c) in sql.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                out.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&sql[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// A name as typed: `acme`, `'acme'` or `"acme"`.
fn name(word: &str) -> String {
    let w = word.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = w.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    w.to_string()
}

/// Parses one statement (no trailing `;`).
pub fn parse(stmt: &str) -> Result<Command, ProxyError> {
    let words: Vec<&str> = stmt.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let u: Vec<&str> = upper.iter().map(String::as_str).collect();
    let unknown = || ProxyError::admin_unknown_command(stmt);
    Ok(match u.as_slice() {
        ["SHOW", what] => Command::Show(match *what {
            "POOLS" => Show::Pools,
            "CLIENTS" => Show::Clients,
            "SERVERS" => Show::Servers,
            "SHARDS" => Show::Shards,
            "TENANTS" => Show::Tenants,
            "STATS" => Show::Stats,
            "CONFIG" => Show::Config,
            "VERSION" => Show::Version,
            "HELP" => Show::Help,
            _ => return Err(unknown()),
        }),
        ["RELOAD"] => Command::Reload,
        ["PAUSE"] => Command::Pause(Scope::All),
        ["RESUME"] => Command::Resume(Scope::All),
        [verb @ ("PAUSE" | "RESUME"), kind @ ("SHARD" | "TENANT"), _] => {
            let n = name(words[2]);
            if n.is_empty() {
                return Err(unknown());
            }
            let scope = if *kind == "SHARD" {
                Scope::Shard(n)
            } else {
                Scope::Tenant(n)
            };
            if *verb == "PAUSE" {
                Command::Pause(scope)
            } else {
                Command::Resume(scope)
            }
        }
        ["KILL", "CLIENT", _] => match name(words[2]).parse::<u64>() {
            Ok(id) => Command::KillClient(id),
            Err(_) => return Err(ProxyError::admin_no_such("client", words[2])),
        },
        _ => return Err(unknown()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse("show pools").unwrap(), Command::Show(Show::Pools));
        assert_eq!(
            parse("SHOW  Tenants").unwrap(),
            Command::Show(Show::Tenants)
        );
        assert_eq!(parse("reload").unwrap(), Command::Reload);
        assert_eq!(parse("PAUSE").unwrap(), Command::Pause(Scope::All));
        assert_eq!(
            parse("pause tenant 'acme'").unwrap(),
            Command::Pause(Scope::Tenant("acme".into()))
        );
        assert_eq!(
            parse("RESUME SHARD s0").unwrap(),
            Command::Resume(Scope::Shard("s0".into()))
        );
        assert_eq!(parse("kill client 12").unwrap(), Command::KillClient(12));
    }

    #[test]
    fn refuses_the_rest() {
        for bad in [
            "SHOW NOTHING",
            "DROP TABLE x",
            "PAUSE SHARD",
            "KILL CLIENT x",
            "SELECT 1",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(matches!(e.code.code(), "42601" | "22023"), "{bad}: {e}");
        }
        assert_eq!(parse("FROB").unwrap_err().code.code(), "42601");
    }

    #[test]
    fn splits_statements() {
        assert_eq!(
            split("SHOW POOLS; show clients;"),
            vec!["SHOW POOLS", "show clients"]
        );
        assert_eq!(split("PAUSE TENANT 'a;b'"), vec!["PAUSE TENANT 'a;b'"]);
        assert!(split(" ; ").is_empty());
    }
}
