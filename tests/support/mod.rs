//! Shared integration-test support: throwaway Postgres clusters, a proxy on a
//! free port, configs built through the real loader, and client helpers.
//!
//! Use with `mod support;` from a file in `tests/`. Nothing is serialised
//! globally: every cluster and proxy gets its own free port and directory, so
//! tests run in parallel within a process and across processes.
//!
//! Everything that waits on a cluster or a client is `async` so that a proxy
//! running on the same (current-thread) runtime keeps being served.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use tenantgate::config::Config;
use tenantgate::localpg::{AuthMode, Cluster, ClusterOptions, PgBinaries};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a client connect may take before the test fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- clusters

/// Starts a trusted throwaway cluster on a free port; removed when dropped.
pub async fn start_cluster() -> Cluster {
    start_cluster_with(ClusterOptions::default()).await
}

/// Starts a throwaway cluster with `opts`; removed when dropped.
pub async fn start_cluster_with(opts: ClusterOptions) -> Cluster {
    match Cluster::start_async(opts).await {
        Ok(c) => c,
        Err(e) => panic!("cannot start a throwaway Postgres cluster: {e}"),
    }
}

/// Starts a cluster whose TCP logins need `password` (SCRAM-SHA-256).
pub async fn start_scram_cluster(password: &str) -> Cluster {
    start_cluster_with(ClusterOptions {
        auth: AuthMode::ScramSha256(password.into()),
        ..ClusterOptions::default()
    })
    .await
}

/// Starts a trusted cluster with database `app` created (what
/// [`standard_config`] points shard `s0` at).
pub async fn start_app_cluster() -> Cluster {
    let cluster = start_cluster().await;
    create_database(&cluster, "app").await;
    cluster
}

/// `CREATE DATABASE name` on `cluster`, panicking on failure.
pub async fn create_database(cluster: &Cluster, name: &str) {
    if let Err(e) = cluster.create_database(name).await {
        panic!("cannot create database {name}: {e}");
    }
}

/// Runs `sql` directly on `cluster` (not through the proxy), panicking on failure.
pub async fn exec(cluster: &Cluster, db: &str, sql: &str) {
    if let Err(e) = cluster.exec(db, sql).await {
        panic!(
            "direct SQL on port {} failed: {e}\nSQL: {sql}",
            cluster.port()
        );
    }
}

/// A direct superuser client of `cluster`'s `db` (not through the proxy).
pub async fn connect_direct(cluster: &Cluster, db: &str) -> tokio_postgres::Client {
    match cluster.connect(db).await {
        Ok(c) => c,
        Err(e) => panic!("cannot connect directly to {}: {e}", cluster.url(db)),
    }
}

// ----------------------------------------------------------------- configs

/// The standard users: `app`/`app-secret` (trusted application, no tenant),
/// `t1user`/`t1-secret` bound to tenant `t1`, admin `ops`/`ops-secret`.
pub const STANDARD_USERS: &str = r#"
[[users]]
name = "app"
password = "app-secret"

[[users]]
name = "t1user"
password = "t1-secret"
tenant = "t1"

[[users]]
name = "ops"
password = "ops-secret"
admin = true
"#;

/// A TOML basic string (quoted, escaped).
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `[[shards]]` table for shard `name` at `cluster`'s database `db`.
pub fn shard_toml(name: &str, cluster: &Cluster, db: &str) -> String {
    format!(
        "\n[[shards]]\nname = {}\nurl = {}\n",
        toml_str(name),
        toml_str(&cluster.url(db))
    )
}

/// Loads config text through the real loader (`config::load_str`), panicking
/// with every error (and the text) when it does not load.
pub fn load_config(text: &str) -> Config {
    match tenantgate::config::load_str(text, "test") {
        Ok(c) => c,
        Err(e) => panic!("test config does not load:\n{e}\n--- text ---\n{text}"),
    }
}

/// Replaces each `{name}` in `template` with its value, then loads it.
/// Only the names given are replaced, so TOML inline tables are left alone.
pub fn config_from(template: &str, vars: &[(&str, String)]) -> Config {
    load_config(&substitute(template, vars))
}

/// Replaces each `{name}` in `template` with its value.
pub fn substitute(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter()
        .fold(template.to_string(), |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), value)
        })
}

/// A config listening on `127.0.0.1:0` with `rest` (users, tenancy, routing,
/// tenants, …) followed by one `[[shards]]` per `(name, cluster, db)`.
pub fn config_for(shards: &[(&str, &Cluster, &str)], rest: &str) -> Config {
    load_config(&config_text_for(shards, rest))
}

/// The text [`config_for`] loads.
pub fn config_text_for(shards: &[(&str, &Cluster, &str)], rest: &str) -> String {
    let mut text = String::from("[server]\nlisten = \"127.0.0.1:0\"\n");
    text.push_str(rest);
    text.push('\n');
    for (name, cluster, db) in shards {
        text.push_str(&shard_toml(name, cluster, db));
    }
    text
}

/// The standard config text: shard `s0` = `cluster`'s database `app`,
/// [`STANDARD_USERS`], `plans` global, tenant `t1` on `s0`, hash over `s0`.
pub fn standard_config_text(cluster: &Cluster) -> String {
    let rest = format!(
        "\n[tenancy]\nglobal_tables = [\"plans\"]\n{STANDARD_USERS}\n\
         [routing]\nhash_shards = [\"s0\"]\n\n\
         [[tenants]]\nid = \"t1\"\nshard = \"s0\"\n"
    );
    config_text_for(&[("s0", cluster, "app")], &rest)
}

/// [`standard_config_text`], loaded.
pub fn standard_config(cluster: &Cluster) -> Config {
    load_config(&standard_config_text(cluster))
}

// ------------------------------------------------------------------- proxy

/// A proxy serving on a free port, on the test's runtime.
pub struct ProxyHandle {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// `addr.port()`.
    pub port: u16,
    token: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl ProxyHandle {
    /// The proxy's shutdown token (cancel to drain and stop).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Cancels the token and waits for `run()` to return (at most 60 s).
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.token.cancel();
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(Duration::from_secs(60), task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => panic!("proxy task panicked or was cancelled: {join}"),
            Err(_) => panic!("proxy did not shut down within 60 s"),
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Binds the proxy for `config` (its `server.listen` should be
/// `127.0.0.1:0`) and spawns `run()` on the current runtime.
pub async fn start_proxy(config: Config) -> ProxyHandle {
    let proxy = match tenantgate::server::Proxy::bind(config).await {
        Ok(p) => p,
        Err(e) => panic!("proxy bind failed: {e}"),
    };
    let addr = proxy.local_addr().expect("proxy local_addr");
    let token = proxy.shutdown_token();
    let task = tokio::spawn(proxy.run());
    ProxyHandle {
        addr,
        port: addr.port(),
        token,
        task: Some(task),
    }
}

// ----------------------------------------------------------------- clients

/// A tokio-postgres config for `user`/`password` at 127.0.0.1:`port`/`db`.
pub fn client_config(port: u16, user: &str, password: &str, db: &str) -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(CONNECT_TIMEOUT);
    cfg
}

/// Connects with `cfg`; the connection runs on a spawned task.
pub async fn try_connect_config(
    cfg: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Connects as `user` to 127.0.0.1:`port`/`db`, or returns the error.
pub async fn try_connect(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    try_connect_config(&client_config(port, user, password, db)).await
}

/// Connects as `user` to 127.0.0.1:`port`/`db`, panicking on failure.
pub async fn connect(port: u16, user: &str, password: &str, db: &str) -> tokio_postgres::Client {
    match try_connect(port, user, password, db).await {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot connect as {user} to 127.0.0.1:{port}/{db}: {}",
            error_chain(&e)
        ),
    }
}

/// Like [`connect`], with startup `options` (e.g. `-c app.current_tenant=acme`).
pub async fn connect_with_options(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    options: &str,
) -> tokio_postgres::Client {
    let mut cfg = client_config(port, user, password, db);
    cfg.options(options);
    match try_connect_config(&cfg).await {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot connect as {user} ({options}) to 127.0.0.1:{port}/{db}: {}",
            error_chain(&e)
        ),
    }
}

/// An error and all its causes on one line (tokio-postgres's Display alone
/// says only "db error").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The SQLSTATE of a server error, if `e` is one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// Asserts that `e` carries SQLSTATE `code` (the whole error chain shown
/// when it does not).
pub fn assert_sqlstate(e: &tokio_postgres::Error, code: &str) {
    assert_eq!(sqlstate(e).as_deref(), Some(code), "{}", error_chain(e));
}

/// Path of a client program (`psql`, `pgbench`) of the installed Postgres.
pub fn pg_tool(name: &str) -> std::path::PathBuf {
    match PgBinaries::find() {
        Ok(b) => b.tool(name),
        Err(_) => name.into(),
    }
}

/// Runs `psql -X -v ON_ERROR_STOP=1 -c sql` as `user` against
/// 127.0.0.1:`port`/`db` (password via `PGPASSWORD`), unaligned tuples-only
/// output; returns its output whatever the exit status.
pub async fn psql(port: u16, user: &str, password: &str, db: &str, sql: &str) -> Output {
    psql_args(port, user, password, db, &["-c", sql]).await
}

/// Runs `psql` with the connection flags above and extra `args`.
pub async fn psql_args(port: u16, user: &str, password: &str, db: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(pg_tool("psql"));
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
    ])
    .arg("-p")
    .arg(port.to_string())
    .args(["-U", user, "-d", db])
    .args(args)
    .env("PGPASSWORD", password)
    .env("PGCONNECT_TIMEOUT", "10")
    .env_remove("PGOPTIONS")
    .env_remove("PGSERVICE")
    .env_remove("PGSSLMODE")
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(120), cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run psql: {e}"),
        Err(_) => panic!("psql did not finish within 120 s"),
    }
}

/// stdout of a successful [`psql`] run, trimmed; panics with stderr otherwise.
pub fn psql_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "psql failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
