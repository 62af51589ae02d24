//! `tenantgate demo`: local shards, sample tenants, proxy on 127.0.0.1:6432.
//!
//! Starts three throwaway Postgres clusters (shared shards `s0` and `s1` with
//! database `app`, and `bigcorp-db`, a dedicated database `bigcorp`), loads a
//! sample multi-tenant schema, writes a `routing.toml` next to them, serves
//! it, prints how to connect, and on Ctrl-C / SIGTERM shuts everything down
//! and deletes it. SIGHUP and the admin console's `RELOAD` re-read the
//! routing.toml it wrote.

mod routing;
mod schema;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigErrors;
use crate::localpg::{Cluster, ClusterOptions, LocalPgError, PgBinaries};
use crate::server::Proxy;

/// Default address the demo proxy listens on.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6432";

/// The ordinary (not superuser) role the proxy logs in to the demo's shards
/// as; it owns the sample databases.
pub const APP_ROLE: &str = "tenantgate_app";

/// Options of `tenantgate demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Address the proxy listens on (default `127.0.0.1:6432`; port 0 picks one).
    pub listen: String,
    /// Ports of the three clusters: this one and the next two (default: free ports).
    pub shard_base_port: Option<u16>,
    /// Keep the demo directory (data dirs, logs, routing.toml) on exit.
    pub keep: bool,
    /// Directory the demo directory is created in (default: the system temp dir).
    pub dir: Option<PathBuf>,
    /// Cancelling this stops the demo as Ctrl-C would (for embedding and tests).
    pub stop: Option<CancellationToken>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            listen: DEFAULT_LISTEN.into(),
            shard_base_port: None,
            keep: false,
            dir: None,
            stop: None,
        }
    }
}

/// Why the demo could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Finding, starting or loading a local cluster failed.
    #[error("local Postgres: {0}")]
    LocalPg(#[from] LocalPgError),
    /// The generated routing.toml did not load (a bug in the demo).
    #[error("the demo's routing.toml does not load:\n{0}")]
    Config(#[from] ConfigErrors),
    /// The proxy could not listen on the requested address.
    #[error(
        "cannot listen on {addr}: {source} (is another tenantgate or PgBouncer running? try --listen)"
    )]
    Listen {
        /// The requested address.
        addr: String,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// Another I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The proxy stopped with an error, or did not stop in time.
    #[error("proxy: {0}")]
    Proxy(String),
}

/// A running demo: clusters loaded, proxy serving. Dropping it stops the
/// clusters and removes the demo directory (unless `keep`).
pub struct Demo {
    dir: PathBuf,
    keep: bool,
    config_path: PathBuf,
    /// Shard name and its cluster, in [`routing::SHARDS`] order.
    clusters: Vec<(&'static str, Cluster)>,
    addr: SocketAddr,
    /// The metrics endpoint, when serving.
    metrics: Option<SocketAddr>,
    token: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
    shutdown_timeout: Duration,
}

/// Runs `tenantgate demo`: starts everything, prints how to connect, waits
/// for Ctrl-C, SIGTERM or `opts.stop`, then shuts down and cleans up.
///
/// A signal that arrives while the clusters are still starting is honoured
/// once they are up, so that nothing is left half-started.
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut term = signal(SignalKind::terminate()).map_err(|e| DemoError::Io {
        context: "cannot install the SIGTERM handler".into(),
        source: e,
    })?;
    // SIGHUP re-reads the routing table once the proxy serves (as for
    // `tenantgate run`); from now on it no longer ends the process, which
    // would leave the clusters running and their directory behind.
    let _hangup = signal(SignalKind::hangup()).map_err(|e| DemoError::Io {
        context: "cannot install the SIGHUP handler".into(),
        source: e,
    })?;
    let quit = opts.stop.clone().unwrap_or_default().child_token();
    let watcher = {
        let quit = quit.clone();
        tokio::spawn(async move {
            tokio::select! {
                // Should the Ctrl-C handler fail to install, SIGTERM and `stop` still work.
                Ok(()) = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                _ = quit.cancelled() => {}
            }
            quit.cancel();
        })
    };
    say("tenantgate demo: starting three throwaway Postgres clusters...");
    let started = Demo::start(&opts).await;
    let mut demo = match started {
        Ok(d) => d,
        Err(e) => {
            watcher.abort();
            return Err(e);
        }
    };
    let outcome = if quit.is_cancelled() {
        Ok(())
    } else {
        say(&demo.instructions());
        tokio::select! {
            _ = quit.cancelled() => Ok(()),
            r = demo.proxy_exit() => r.and(Err(DemoError::Proxy("stopped unexpectedly".into()))),
        }
    };
    watcher.abort();
    say("\ntenantgate demo: shutting down...");
    let kept = demo.keep.then(|| demo.dir.clone());
    let shutdown = demo.shutdown().await;
    match kept {
        Some(dir) => say(&format!(
            "tenantgate demo: stopped; files kept in {}",
            dir.display()
        )),
        None => say("tenantgate demo: stopped and cleaned up"),
    }
    outcome.and(shutdown)
}

/// A line on stdout that cannot fail the clean-up: after the terminal is
/// gone (the demo keeps running through its SIGHUP), `println!` would panic.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}

impl Demo {
    /// Starts the clusters, loads the sample data, writes and loads
    /// routing.toml and starts the proxy. Prints nothing.
    pub async fn start(opts: &DemoOptions) -> Result<Demo, DemoError> {
        let bins = PgBinaries::find()?;
        check_listen(&opts.listen)?;
        let base = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = make_demo_dir(&base)?;
        let mut demo = Demo {
            config_path: dir.join("routing.toml"),
            dir,
            keep: opts.keep,
            clusters: Vec::new(),
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            metrics: None,
            token: CancellationToken::new(),
            task: None,
            shutdown_timeout: Duration::from_secs(5),
        };
        // On any error below, dropping `demo` stops what was started and cleans up.
        demo.start_clusters(opts, &bins).await?;
        demo.load_data().await?;
        let urls: Vec<String> = routing::SHARDS
            .iter()
            .zip(&demo.clusters)
            .map(|(shard, (_, cluster))| cluster.url_as(APP_ROLE, shard.database))
            .collect();
        let text = routing::routing_toml(&opts.listen, &urls);
        std::fs::write(&demo.config_path, text).map_err(|e| DemoError::Io {
            context: format!("cannot write {}", demo.config_path.display()),
            source: e,
        })?;
        let config = crate::config::load_file(&demo.config_path)?;
        demo.shutdown_timeout = config.server.shutdown_timeout;
        // With its file: the admin console's RELOAD and SIGHUP re-read the
        // routing.toml the demo printed (SIGHUP no longer ends the demo
        // without its clean-up).
        let proxy = Proxy::bind_with_path(config, Some(demo.config_path.clone()))
            .await
            .map_err(|e| DemoError::Listen {
                addr: opts.listen.clone(),
                source: e.into(),
            })?;
        demo.addr = proxy.local_addr().map_err(|e| DemoError::Io {
            context: "cannot read the proxy's address".into(),
            source: e,
        })?;
        demo.metrics = proxy.metrics_addr();
        demo.token = proxy.shutdown_token();
        demo.task = Some(tokio::spawn(proxy.run()));
        Ok(demo)
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The routing.toml the proxy serves.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The demo directory (clusters, logs, routing.toml).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster behind shard `name` (`s0`, `s1`, `bigcorp-db`).
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c)
    }

    /// The text printed once the demo is up: shards, routing.toml, and the
    /// commands to connect as each kind of user.
    pub fn instructions(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let at = SocketAddr::new(ip, self.addr.port());
        let url = |user: &str, password: &str, db: &str| {
            format!("postgres://{user}:{password}@{at}/{db}")
        };
        let mut s = format!(
            "\ntenantgate demo is serving on {}\n\nShards (throwaway Postgres clusters):\n",
            self.addr
        );
        let rows: Vec<(&str, String, String)> = routing::SHARDS
            .iter()
            .zip(&self.clusters)
            .map(|(shard, (_, cluster))| {
                let kind = if shard.dedicated {
                    " (dedicated database)"
                } else {
                    ""
                };
                let mut names: Vec<String> = shard.tenants.iter().map(|t| t.to_string()).collect();
                names.extend(
                    routing::SCHEMA_TENANTS
                        .iter()
                        .filter(|(_, on, _)| *on == shard.name)
                        .map(|(t, _, schema)| format!("{t} (schema {schema})")),
                );
                let tenants = format!("tenants: {}{kind}", names.join(", "));
                (
                    shard.name,
                    cluster.url_as(APP_ROLE, shard.database),
                    tenants,
                )
            })
            .collect();
        let name_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let url_w = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        for (name, url, tenants) in &rows {
            s.push_str(&format!("  {name:name_w$}  {url:url_w$}  {tenants}\n"));
        }
        s.push_str(&format!("Routing table: {}\n", self.config_path.display()));
        s.push_str("\nConnect as a tenant (each sees only its own rows):\n");
        for user in routing::USERS.iter().filter(|u| u.tenant.is_some()) {
            s.push_str(&format!(
                "  psql \"{}\" -c \"SELECT * FROM customers\"\n",
                url(user.name, user.password, "app")
            ));
        }
        s.push_str(&format!(
            "\nAs the trusted application, choosing the tenant per session:\n  \
             PGOPTIONS=\"-c app.current_tenant=acme\" psql \"{}\"\n  \
             or, inside the session:  SET app.current_tenant = 'globex';\n",
            url("app", "app-secret", "app")
        ));
        s.push_str(&format!(
            "\nAdmin console:\n  psql \"{}\" -c \"SHOW TENANTS\"\n",
            url("ops", "ops-secret", "tenantgate")
        ));
        if let Some(m) = self.metrics {
            s.push_str(&format!(
                "\nMetrics and health:\n  curl -s http://{m}/metrics | grep tenantgate_queries_total\n  curl -s http://{m}/readyz\n"
            ));
        }
        s.push_str("\nTables: plans (global), customers and orders (tenant column tenant_id).\n");
        s.push_str(
            "Row-level security policies on the shared shards back the rewriter up (rls = true).\n",
        );
        if self.keep {
            s.push_str(&format!(
                "Press Ctrl-C to stop; files are kept in {}\n",
                self.dir.display()
            ));
        } else {
            s.push_str(&format!(
                "Press Ctrl-C to stop; the clusters and {} are removed.\n",
                self.dir.display()
            ));
        }
        s
    }

    /// Stops the proxy (waiting for its drain), then the clusters, then
    /// removes the demo directory (unless `keep`).
    pub async fn shutdown(mut self) -> Result<(), DemoError> {
        self.token.cancel();
        let mut result = Ok(());
        if let Some(task) = self.task.take() {
            let limit = self.shutdown_timeout + Duration::from_secs(5);
            result = match tokio::time::timeout(limit, task).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(DemoError::Proxy(e.to_string())),
                Ok(Err(join)) => Err(DemoError::Proxy(format!("task failed: {join}"))),
                Err(_) => Err(DemoError::Proxy(format!(
                    "did not stop within {} s",
                    limit.as_secs()
                ))),
            };
        }
        for (_, cluster) in &mut self.clusters {
            if let Err(e) = cluster.stop_async().await
                && result.is_ok()
            {
                result = Err(e.into());
            }
        }
        // Drop removes the (now stopped) clusters' files and the directory.
        result
    }

    /// Waits until the proxy task ends on its own; its error, if any.
    async fn proxy_exit(&mut self) -> Result<(), DemoError> {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let r = task.await;
        self.task = None;
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DemoError::Proxy(e.to_string())),
            Err(join) => Err(DemoError::Proxy(format!("task failed: {join}"))),
        }
    }

    /// Starts the three clusters in parallel, waiting for all of them (so a
    /// failure leaves none running unobserved).
    async fn start_clusters(
        &mut self,
        opts: &DemoOptions,
        bins: &PgBinaries,
    ) -> Result<(), DemoError> {
        let options = |i: u16, name: &str| -> Result<ClusterOptions, DemoError> {
            let port = match opts.shard_base_port {
                None => 0,
                Some(base) => base.checked_add(i).ok_or_else(|| {
                    DemoError::LocalPg(LocalPgError::Other(format!(
                        "shard base port {base} leaves no room for three clusters"
                    )))
                })?,
            };
            Ok(ClusterOptions {
                base_dir: Some(self.dir.clone()),
                name: name.to_string(),
                port,
                shared_buffers: "32MB".into(),
                max_connections: 100,
                keep: opts.keep,
                binaries: Some(bins.clone()),
                ..ClusterOptions::default()
            })
        };
        let [a, b, c] = [0, 1, 2].map(|i| options(i, routing::SHARDS[usize::from(i)].name));
        let (a, b, c) = tokio::join!(
            Cluster::start_async(a?),
            Cluster::start_async(b?),
            Cluster::start_async(c?)
        );
        let mut first_error = None;
        for (shard, result) in routing::SHARDS.iter().zip([a, b, c]) {
            match result {
                Ok(cluster) => self.clusters.push((shard.name, cluster)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Creates each shard's database and loads the schema and its tenants' rows.
    /// Creates each shard's database, owned by [`APP_ROLE`], and its tables
    /// as that role: the proxy logs in to the shards as an ordinary role, as
    /// it should in production (statements of dedicated tenants pass
    /// through untouched, and a superuser could run programs on the host).
    async fn load_data(&self) -> Result<(), DemoError> {
        for (shard, (_, cluster)) in routing::SHARDS.iter().zip(&self.clusters) {
            let db = shard.database;
            cluster
                .exec("postgres", &format!("CREATE ROLE {APP_ROLE} LOGIN"))
                .await?;
            cluster
                .exec(
                    "postgres",
                    &format!("CREATE DATABASE {db} OWNER {APP_ROLE}"),
                )
                .await?;
            let as_app = |sql: String| format!("SET ROLE {APP_ROLE};\n{sql}");
            cluster
                .exec(db, &as_app(schema::sql_for(shard.tenants)))
                .await?;
            if !shard.dedicated {
                cluster
                    .exec(db, &as_app(schema::ROW_SECURITY.into()))
                    .await?;
            }
            for (_, _, schema_name) in routing::SCHEMA_TENANTS
                .iter()
                .filter(|(_, on, _)| *on == shard.name)
            {
                cluster
                    .exec(db, &as_app(schema::schema_tenant_sql(schema_name)))
                    .await?;
            }
        }
        Ok(())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.token.cancel();
        // Clusters live inside `dir`: stop and remove them first.
        self.clusters.clear();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Fails fast, before starting clusters, when `listen` cannot be bound.
fn check_listen(listen: &str) -> Result<(), DemoError> {
    std::net::TcpListener::bind(listen)
        .map(drop)
        .map_err(|e| DemoError::Listen {
            addr: listen.to_string(),
            source: e,
        })
}

/// Creates `base/tenantgate-demo-<pid>[-n]`.
fn make_demo_dir(base: &Path) -> Result<PathBuf, DemoError> {
    let io = |context: String| move |e| DemoError::Io { context, source: e };
    std::fs::create_dir_all(base).map_err(io(format!("cannot create {}", base.display())))?;
    let pid = std::process::id();
    for n in 0u32.. {
        let name = if n == 0 {
            format!("tenantgate-demo-{pid}")
        } else {
            format!("tenantgate-demo-{pid}-{n}")
        };
        let dir = base.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(format!("cannot create {}", dir.display()))(e)),
        }
    }
    Err(DemoError::Io {
        context: format!("cannot create a demo directory in {}", base.display()),
        source: std::io::Error::other("every name is taken"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options() {
        let o = DemoOptions::default();
        assert_eq!(o.listen, "127.0.0.1:6432");
        assert!(!o.keep);
        assert!(o.shard_base_port.is_none());
    }

    #[test]
    fn listen_check_reports_busy_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        match check_listen(&addr) {
            Err(DemoError::Listen { addr: a, .. }) => assert_eq!(a, addr),
            other => panic!("unexpected {other:?}"),
        }
        assert!(check_listen("127.0.0.1:0").is_ok());
    }

    #[test]
    fn demo_dirs_are_distinct() {
        let base = std::env::temp_dir();
        let a = make_demo_dir(&base).expect("a");
        let b = make_demo_dir(&base).expect("b");
        assert_ne!(a, b);
        let _ = std::fs::remove_dir(&a);
        let _ = std::fs::remove_dir(&b);
    }
}
