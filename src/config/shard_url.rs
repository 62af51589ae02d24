//! Backend connection URLs: `postgres://user[:password]@host[:port]/dbname`.
//!
//! The backend code connects with the parsed parts; validation uses the same
//! parser so that a config that passes `tenantgate check` can be connected to.
//! Neither `Display` nor `Debug` ever shows the password, and no error message
//! repeats any part of the userinfo.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// Whether to ask a backend for TLS (`?sslmode=` in a shard URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Use TLS when the server offers it, plain TCP otherwise (libpq's default).
    #[default]
    Prefer,
}

/// A parsed shard URL: `postgres://user[:password]@host[:port]/dbname[?sslmode=disable|prefer]`.
///
/// `postgresql://` is accepted as well. User, password and database name are
/// percent-decoded; an IPv6 host is written in brackets (`[::1]:5433`) and
/// stored without them.
#[derive(Clone, PartialEq, Eq)]
pub struct ShardUrl {
    /// Role tenantgate logs in as.
    pub user: String,
    /// Password for `user`, if the URL has one.
    pub password: Option<String>,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port; 5432 when the URL names none.
    pub port: u16,
    /// Database to connect to.
    pub dbname: String,
    /// TLS to the backend; `prefer` when the URL says nothing.
    pub sslmode: SslMode,
}

/// Why a shard URL was rejected. The message never contains the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardUrlError {
    message: String,
}

impl ShardUrlError {
    fn new(message: impl Into<String>) -> Self {
        ShardUrlError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ShardUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ShardUrlError {}

const FORM: &str = "postgres://user[:password]@host[:port]/dbname";

impl ShardUrl {
    /// The port used when a URL names none.
    pub const DEFAULT_PORT: u16 = 5432;

    /// Parses `postgres://user[:password]@host[:port]/dbname[?sslmode=disable|prefer]`.
    pub fn parse(url: &str) -> Result<ShardUrl, ShardUrlError> {
        if let Some(c) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(ShardUrlError::new(format!(
                "URL contains {c:?}; spaces and control characters must be percent-encoded"
            )));
        }
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| {
                ShardUrlError::new(format!("URL must start with postgres:// ({FORM})"))
            })?;
        if rest.contains('#') {
            return Err(ShardUrlError::new("URL must not have a #fragment"));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = before_query
            .split_once('/')
            .ok_or_else(|| ShardUrlError::new(format!("URL has no /dbname ({FORM})")))?;
        let (userinfo, hostport) = authority
            .rsplit_once('@')
            .ok_or_else(|| ShardUrlError::new(format!("URL has no user@ ({FORM})")))?;

        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        let user = percent_decode(user).map_err(|e| ShardUrlError::new(format!("user: {e}")))?;
        if user.is_empty() {
            return Err(ShardUrlError::new(format!(
                "URL has an empty user ({FORM})"
            )));
        }
        let password = match password {
            Some(p) => {
                let p =
                    percent_decode(p).map_err(|e| ShardUrlError::new(format!("password: {e}")))?;
                (!p.is_empty()).then_some(p)
            }
            None => None,
        };

        let (host, port) = parse_host_port(hostport)?;

        let dbname =
            percent_decode(path).map_err(|e| ShardUrlError::new(format!("dbname: {e}")))?;
        if dbname.is_empty() {
            return Err(ShardUrlError::new(format!(
                "URL has an empty dbname ({FORM})"
            )));
        }
        if path.contains('/') {
            return Err(ShardUrlError::new(
                "dbname must not contain '/' (percent-encode it as %2F)",
            ));
        }

        let mut sslmode = SslMode::default();
        for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match (key, value) {
                ("sslmode", "disable") => sslmode = SslMode::Disable,
                ("sslmode", "prefer") => sslmode = SslMode::Prefer,
                ("sslmode", other) => {
                    return Err(ShardUrlError::new(format!(
                        "unsupported sslmode {other:?} (expected \"disable\" or \"prefer\")"
                    )));
                }
                (other, _) => {
                    return Err(ShardUrlError::new(format!(
                        "unsupported URL parameter {other:?} (only sslmode=disable|prefer is allowed)"
                    )));
                }
            }
        }

        Ok(ShardUrl {
            user,
            password,
            host,
            port,
            dbname,
            sslmode,
        })
    }

    /// `host:port`, with an IPv6 host in brackets: `[::1]:5432`.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Splits `host[:port]` / `[v6][:port]` and checks both parts.
fn parse_host_port(hostport: &str) -> Result<(String, u16), ShardUrlError> {
    let (host, port) = if let Some(after_bracket) = hostport.strip_prefix('[') {
        let (v6, after) = after_bracket
            .split_once(']')
            .ok_or_else(|| ShardUrlError::new("unclosed '[' in host"))?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(ShardUrlError::new(format!(
                "host [{v6}] is not an IPv6 address"
            )));
        }
        let port =
            match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| {
                    ShardUrlError::new(format!("unexpected {p:?} after IPv6 host"))
                })?),
            };
        (v6, port)
    } else {
        match hostport.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(ShardUrlError::new(
                    "too many ':' in host:port (write an IPv6 host in brackets: [::1]:5432)",
                ));
            }
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(ShardUrlError::new(format!(
            "URL has an empty host ({FORM})"
        )));
    }
    if host.contains(',') {
        return Err(ShardUrlError::new(
            "several hosts in one URL are not supported; use one shard per server",
        ));
    }
    if !hostport.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(ShardUrlError::new(format!("invalid host {host:?}")));
    }
    let port = match port {
        None => ShardUrl::DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(ShardUrlError::new(format!(
                    "invalid port {p:?} (expected 1-65535)"
                )));
            }
        },
    };
    Ok((host.to_string(), port))
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, &'static str> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            let hi = hex_value(hex[0]).ok_or("invalid %-escape")?;
            let lo = hex_value(hex[1]).ok_or("invalid %-escape")?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "%-escapes do not decode to UTF-8")
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl FromStr for ShardUrl {
    type Err = ShardUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ShardUrl::parse(s)
    }
}

/// `postgres://user@host:port/dbname` — the password is never shown.
impl fmt::Display for ShardUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgres://{}@{}/{}",
            self.user,
            self.host_port(),
            self.dbname
        )?;
        if self.sslmode == SslMode::Disable {
            f.write_str("?sslmode=disable")?;
        }
        Ok(())
    }
}

/// Like the derived `Debug`, with the password redacted.
impl fmt::Debug for ShardUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardUrl")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(url: &str) -> String {
        ShardUrl::parse(url).unwrap_err().to_string()
    }

    #[test]
    fn minimal_url_defaults_port_and_sslmode() {
        let u = ShardUrl::parse("postgres://postgres@127.0.0.1/app").unwrap();
        assert_eq!(u.user, "postgres");
        assert_eq!(u.password, None);
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 5432);
        assert_eq!(u.dbname, "app");
        assert_eq!(u.sslmode, SslMode::Prefer);
    }

    #[test]
    fn full_url_with_password_port_and_sslmode() {
        let u = ShardUrl::parse("postgresql://app:s3cret@db.internal:5433/orders?sslmode=disable")
            .unwrap();
        assert_eq!(u.user, "app");
        assert_eq!(u.password.as_deref(), Some("s3cret"));
        assert_eq!(u.host, "db.internal");
        assert_eq!(u.port, 5433);
        assert_eq!(u.dbname, "orders");
        assert_eq!(u.sslmode, SslMode::Disable);
        let u = ShardUrl::parse("postgres://a@h/d?sslmode=prefer").unwrap();
        assert_eq!(u.sslmode, SslMode::Prefer);
    }

    #[test]
    fn percent_decoding_of_user_password_and_dbname() {
        let u = ShardUrl::parse("postgres://us%40er:p%3Aa%2Fss%25w%C3%B6rd@h:1/my%20db").unwrap();
        assert_eq!(u.user, "us@er");
        assert_eq!(u.password.as_deref(), Some("p:a/ss%wörd"));
        assert_eq!(u.dbname, "my db");
        // An unencoded '@' in the password still works: the last '@' ends the userinfo.
        let u = ShardUrl::parse("postgres://u:p@ss@h/d").unwrap();
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.host, "h");
    }

    #[test]
    fn empty_password_is_none() {
        let u = ShardUrl::parse("postgres://u:@h/d").unwrap();
        assert_eq!(u.password, None);
    }

    #[test]
    fn ipv6_host_in_brackets() {
        let u = ShardUrl::parse("postgres://u@[::1]:6000/d").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, 6000);
        assert_eq!(u.host_port(), "[::1]:6000");
        let u = ShardUrl::parse("postgres://u@[fe80::1]/d").unwrap();
        assert_eq!(u.port, 5432);
        assert!(err("postgres://u@::1:5432/d").contains("brackets"));
        assert!(err("postgres://u@[::1/d").contains("unclosed"));
        assert!(err("postgres://u@[nothost]/d").contains("IPv6"));
    }

    #[test]
    fn rejects_malformed_urls() {
        assert!(err("mysql://u@h/d").contains("postgres://"));
        assert!(err("postgres://h/d").contains("user@"));
        assert!(err("postgres://@h/d").contains("empty user"));
        assert!(err("postgres://u@h").contains("/dbname"));
        assert!(err("postgres://u@h/").contains("empty dbname"));
        assert!(err("postgres://u@/d").contains("empty host"));
        assert!(err("postgres://u@h:/d").contains("invalid port"));
        assert!(err("postgres://u@h:0/d").contains("invalid port"));
        assert!(err("postgres://u@h:65536/d").contains("invalid port"));
        assert!(err("postgres://u@h:+5/d").contains("invalid port"));
        assert!(err("postgres://u@h:x/d").contains("invalid port"));
        assert!(err("postgres://u@h1,h2/d").contains("several hosts"));
        assert!(err("postgres://u@h/d/e").contains("'/'"));
        assert!(err("postgres://u@h/d#frag").contains("fragment"));
        assert!(err("postgres://u@h o/d").contains("spaces"));
        assert!(err("postgres://u@h!/d").contains("invalid host"));
    }

    #[test]
    fn rejects_query_parameters_other_than_sslmode() {
        assert!(err("postgres://u@h/d?sslmode=require").contains("sslmode"));
        assert!(err("postgres://u@h/d?sslmode=verify-full").contains("sslmode"));
        assert!(err("postgres://u@h/d?application_name=x").contains("application_name"));
        assert!(
            err("postgres://u@h/d?sslmode=disable&connect_timeout=3").contains("connect_timeout")
        );
    }

    #[test]
    fn bad_percent_escapes() {
        assert!(err("postgres://u%zz@h/d").contains("user"));
        assert!(err("postgres://u:p%4@h/d").contains("password"));
        assert!(err("postgres://u:%ff@h/d").contains("UTF-8"));
    }

    #[test]
    fn password_never_shown() {
        let u = ShardUrl::parse("postgres://app:hunter2@h:5433/d").unwrap();
        assert_eq!(u.to_string(), "postgres://app@h:5433/d");
        assert!(!format!("{u:?}").contains("hunter2"));
        assert!(format!("{u:?}").contains("redacted"));
        // Errors do not echo the password either.
        let e = err("postgres://app:hunter2@h:bad/d");
        assert!(!e.contains("hunter2"), "{e}");
        let e = err("postgres://app:hunter2%zz@h/d");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn from_str_matches_parse() {
        let u: ShardUrl = "postgres://a@b/c".parse().unwrap();
        assert_eq!(u, ShardUrl::parse("postgres://a@b/c").unwrap());
    }
}
