//! Text of the files a throwaway cluster is configured with: the
//! `postgresql.conf` include, `pg_hba.conf`, the initdb password file, and
//! connection URLs. Pure functions; no I/O.

use std::path::Path;

/// How TCP clients authenticate to the cluster (the Unix socket is always `trust`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// No password (the default).
    #[default]
    Trust,
    /// MD5 challenge; user `postgres` gets this password, stored md5-hashed.
    Md5(String),
    /// SCRAM-SHA-256; user `postgres` gets this password, stored as a SCRAM verifier.
    ScramSha256(String),
}

impl AuthMode {
    /// The superuser's password, if any.
    pub fn password(&self) -> Option<&str> {
        match self {
            AuthMode::Trust => None,
            AuthMode::Md5(p) | AuthMode::ScramSha256(p) => Some(p),
        }
    }

    /// The `pg_hba.conf` method name.
    pub fn hba_method(&self) -> &'static str {
        match self {
            AuthMode::Trust => "trust",
            AuthMode::Md5(_) => "md5",
            AuthMode::ScramSha256(_) => "scram-sha-256",
        }
    }
}

/// Server settings for one cluster, written to `tenantgate.conf` in the data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerSettings<'a> {
    /// TCP port.
    pub port: u16,
    /// Directory of the Unix socket.
    pub socket_dir: &'a Path,
    /// `max_connections`.
    pub max_connections: u32,
    /// `shared_buffers`, e.g. `128MB`.
    pub shared_buffers: &'a str,
    /// Authentication for TCP connections (decides `password_encryption`).
    pub auth: &'a AuthMode,
    /// Extra `postgresql.conf` lines, verbatim.
    pub extra: &'a [String],
}

/// Name of the settings file included from `postgresql.conf`.
pub(crate) const SETTINGS_FILE: &str = "tenantgate.conf";

/// Line appended to `postgresql.conf` so that our settings file wins.
pub(crate) fn include_line() -> String {
    format!("\n# throwaway cluster settings (tenantgate localpg)\ninclude '{SETTINGS_FILE}'\n")
}

/// The settings file: durability off (throwaway data), loopback only.
pub(crate) fn settings_file(s: &ServerSettings<'_>) -> String {
    let encryption = match s.auth {
        AuthMode::Md5(_) => "md5",
        AuthMode::Trust | AuthMode::ScramSha256(_) => "scram-sha-256",
    };
    let mut text = format!(
        "# written by tenantgate localpg; the cluster is throwaway\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = {sock}\n\
         max_connections = {maxc}\n\
         shared_buffers = {sb}\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         password_encryption = '{encryption}'\n",
        port = s.port,
        sock = quote(&s.socket_dir.to_string_lossy()),
        maxc = s.max_connections,
        sb = quote(s.shared_buffers),
    );
    for line in s.extra {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// `pg_hba.conf`: the Unix socket trusted, loopback TCP with `auth`.
pub(crate) fn pg_hba(auth: &AuthMode) -> String {
    let m = auth.hba_method();
    format!(
        "# written by tenantgate localpg\n\
         # TYPE  DATABASE  USER  ADDRESS       METHOD\n\
         local   all       all                 trust\n\
         host    all       all   127.0.0.1/32  {m}\n\
         host    all       all   ::1/128       {m}\n"
    )
}

/// Contents of initdb's `--pwfile`: the password already hashed the way
/// `auth` needs it (Postgres stores pre-hashed passwords as given, whatever
/// its `password_encryption` default).
pub(crate) fn password_file(auth: &AuthMode, user: &str) -> Option<String> {
    match auth {
        AuthMode::Trust => None,
        AuthMode::Md5(p) => Some(postgres_protocol::password::md5(p.as_bytes(), user)),
        AuthMode::ScramSha256(p) => Some(postgres_protocol::password::scram_sha_256(p.as_bytes())),
    }
}

/// `postgres://user[:password]@127.0.0.1:port/db`, user info percent-encoded.
pub(crate) fn url(user: &str, password: Option<&str>, port: u16, db: &str) -> String {
    let auth = match password {
        Some(p) => format!("{}:{}", encode(user), encode(p)),
        None => encode(user),
    };
    format!("postgres://{auth}@127.0.0.1:{port}/{}", encode(db))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A single-quoted `postgresql.conf` string value.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// A double-quoted SQL identifier.
pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_contain_required_lines() {
        let auth = AuthMode::Trust;
        let extra = vec!["log_statement = 'all'".to_string()];
        let text = settings_file(&ServerSettings {
            port: 5555,
            socket_dir: Path::new("/tmp/it's"),
            max_connections: 200,
            shared_buffers: "128MB",
            auth: &auth,
            extra: &extra,
        });
        for want in [
            "port = 5555\n",
            "unix_socket_directories = '/tmp/it''s'\n",
            "listen_addresses = '127.0.0.1'\n",
            "fsync = off\n",
            "synchronous_commit = off\n",
            "full_page_writes = off\n",
            "max_connections = 200\n",
            "shared_buffers = '128MB'\n",
            "password_encryption = 'scram-sha-256'\n",
            "log_statement = 'all'\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn md5_mode_stores_md5() {
        let auth = AuthMode::Md5("pw".into());
        let text = settings_file(&ServerSettings {
            port: 1,
            socket_dir: Path::new("/s"),
            max_connections: 10,
            shared_buffers: "16MB",
            auth: &auth,
            extra: &[],
        });
        assert!(text.contains("password_encryption = 'md5'"));
        let pw = password_file(&auth, "postgres").unwrap_or_default();
        assert!(pw.starts_with("md5") && pw.len() == 35, "{pw}");
    }

    #[test]
    fn hba_uses_method_for_tcp_only() {
        let hba = pg_hba(&AuthMode::ScramSha256("x".into()));
        assert!(hba.contains("local   all       all                 trust"));
        assert!(hba.contains("127.0.0.1/32  scram-sha-256"));
        assert!(pg_hba(&AuthMode::Trust).contains("127.0.0.1/32  trust"));
    }

    #[test]
    fn password_file_per_mode() {
        assert_eq!(password_file(&AuthMode::Trust, "postgres"), None);
        let v =
            password_file(&AuthMode::ScramSha256("s3cret".into()), "postgres").unwrap_or_default();
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
    }

    #[test]
    fn url_encodes_password() {
        assert_eq!(
            url("postgres", None, 5433, "app"),
            "postgres://postgres@127.0.0.1:5433/app"
        );
        assert_eq!(
            url("postgres", Some("p@ss:w/rd"), 1, "app"),
            "postgres://postgres:p%40ss%3Aw%2Frd@127.0.0.1:1/app"
        );
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("app"), "\"app\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
