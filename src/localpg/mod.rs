//! Throwaway local Postgres clusters (initdb / pg_ctl) for the demo and tests.
//!
//! [`Cluster::start`] creates a fresh data directory under a temp dir, runs
//! `initdb`, configures the cluster for speed (durability off — the data is
//! disposable) and loopback-only access on a free port, and starts it. When
//! this process is root the server programs run as OS user `postgres` via
//! `runuser`. Dropping the [`Cluster`] stops the server and deletes its files.

mod bin;
mod conf;
mod error;
mod process;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use bin::{PG_BIN_ENV, PgBinaries};
pub use conf::AuthMode;
pub use error::LocalPgError;

/// The database superuser every cluster is initialised with.
pub const SUPERUSER: &str = "postgres";

/// How many free ports are tried before giving up when another process takes
/// the one picked (only when [`ClusterOptions::port`] is 0).
const START_ATTEMPTS: u32 = 5;

/// Longest Unix socket directory path used as is; longer ones get a short
/// directory under `/tmp` (socket paths are limited to about 107 bytes).
const MAX_SOCKET_DIR_LEN: usize = 80;

/// Lines of the server log quoted when the server fails to start.
const LOG_TAIL_LINES: usize = 20;

/// How a throwaway cluster is set up. `Default` is a trusted cluster on a
/// free port under the system temp dir.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Directory the cluster's own directory is created in (default: the system
    /// temp dir). The server user must be able to enter it.
    pub base_dir: Option<PathBuf>,
    /// Label used in the cluster's directory name (default `pg`).
    pub name: String,
    /// TCP port on 127.0.0.1; 0 (default) picks a free one.
    pub port: u16,
    /// How TCP clients authenticate (default: trust).
    pub auth: AuthMode,
    /// `max_connections` (default 200).
    pub max_connections: u32,
    /// `shared_buffers` (default `128MB`).
    pub shared_buffers: String,
    /// Extra `postgresql.conf` lines, verbatim (e.g. `"log_statement = 'all'"`).
    pub extra_settings: Vec<String>,
    /// Keep the cluster's files when it is dropped (the server is still stopped).
    pub keep: bool,
    /// Server binaries to use (default: [`PgBinaries::find`]).
    pub binaries: Option<PgBinaries>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            base_dir: None,
            name: "pg".into(),
            port: 0,
            auth: AuthMode::Trust,
            max_connections: 200,
            shared_buffers: "128MB".into(),
            extra_settings: Vec::new(),
            keep: false,
            binaries: None,
        }
    }
}

/// A running (or stopped) throwaway Postgres cluster. Dropping it stops the
/// server (immediate mode) and removes its directory unless `keep` was set.
#[derive(Debug)]
pub struct Cluster {
    bins: PgBinaries,
    /// The cluster's own directory: data dir, log, socket.
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    socket_dir: PathBuf,
    /// A short socket directory outside `root`, always removed on drop.
    extra_socket_dir: Option<PathBuf>,
    port: u16,
    auth: AuthMode,
    as_server_user: bool,
    running: bool,
    keep: bool,
}

impl Cluster {
    /// Creates, configures and starts a cluster. Blocks for a second or two;
    /// from async code prefer [`Cluster::start_async`].
    pub fn start(opts: ClusterOptions) -> Result<Cluster, LocalPgError> {
        let bins = match opts.binaries.clone() {
            Some(b) => b,
            None => PgBinaries::find()?,
        };
        let base = opts.base_dir.clone().unwrap_or_else(std::env::temp_dir);
        let root = make_unique_dir(&base, &opts.name)?;
        // From here on, dropping `cluster` cleans up whatever was created.
        let mut cluster = Cluster {
            bins,
            data: root.join("data"),
            log: root.join("server.log"),
            socket_dir: root.clone(),
            extra_socket_dir: None,
            root,
            port: opts.port,
            auth: opts.auth.clone(),
            as_server_user: process::running_as_root(),
            running: false,
            keep: opts.keep,
        };
        cluster.init()?;
        cluster.first_start(&opts)?;
        Ok(cluster)
    }

    /// [`Cluster::start`] on a blocking thread, so the async runtime keeps running.
    pub async fn start_async(opts: ClusterOptions) -> Result<Cluster, LocalPgError> {
        tokio::task::spawn_blocking(move || Cluster::start(opts))
            .await
            .map_err(|e| LocalPgError::Other(format!("cluster start task failed: {e}")))?
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password, when the cluster was started with one.
    pub fn password(&self) -> Option<&str> {
        self.auth.password()
    }

    /// How TCP clients authenticate.
    pub fn auth(&self) -> &AuthMode {
        &self.auth
    }

    /// `postgres://postgres[:password]@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        conf::url(SUPERUSER, self.password(), self.port, db)
    }

    /// `postgres://ROLE@127.0.0.1:PORT/db`, for a role that logs in without
    /// a password (the cluster trusts local TCP connections).
    pub fn url_as(&self, role: &str, db: &str) -> String {
        conf::url(role, None, self.port, db)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The cluster's own directory (data dir, server log, socket), removed on drop.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// The server log file.
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// The Unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The binaries this cluster runs (e.g. for [`PgBinaries::tool`]).
    pub fn binaries(&self) -> &PgBinaries {
        &self.bins
    }

    /// Whether the server is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Keep (or not) the cluster's files when it is dropped.
    pub fn set_keep(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// A tokio-postgres config for `db` as the superuser over TCP.
    pub fn pg_config(&self, db: &str) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user(SUPERUSER)
            .dbname(db)
            .connect_timeout(Duration::from_secs(10));
        if let Some(p) = self.password() {
            cfg.password(p);
        }
        cfg
    }

    /// Connects to `db` as the superuser; the connection runs on a spawned task.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client, LocalPgError> {
        let (client, conn) = self
            .pg_config(db)
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| {
                LocalPgError::postgres(format!("cannot connect to {}", self.url(db)), &e)
            })?;
        tokio::spawn(async move {
            // The error, if any, surfaces on the client's next call.
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Runs `sql` (one or more statements, simple protocol) in `db`.
    pub async fn exec(&self, db: &str, sql: &str) -> Result<(), LocalPgError> {
        let client = self.connect(db).await?;
        client
            .batch_execute(sql)
            .await
            .map_err(|e| LocalPgError::postgres(format!("SQL failed in database {db}"), &e))
    }

    /// `CREATE DATABASE name`.
    pub async fn create_database(&self, name: &str) -> Result<(), LocalPgError> {
        self.exec(
            "postgres",
            &format!("CREATE DATABASE {}", conf::quote_ident(name)),
        )
        .await
    }

    /// Stops the server (`pg_ctl stop -m fast`); the files stay. Blocking.
    pub fn stop(&mut self) -> Result<(), LocalPgError> {
        if !self.running {
            return Ok(());
        }
        process::run(self.stop_command("fast"))?;
        self.running = false;
        Ok(())
    }

    /// [`Cluster::stop`] without blocking the async runtime.
    pub async fn stop_async(&mut self) -> Result<(), LocalPgError> {
        if !self.running {
            return Ok(());
        }
        process::run_async(self.stop_command("fast")).await?;
        self.running = false;
        Ok(())
    }

    /// Starts a stopped server again: same data dir, same port. Blocking.
    pub fn start_again(&mut self) -> Result<(), LocalPgError> {
        if self.running {
            return Ok(());
        }
        let log_start = self.log_len();
        let result = process::run(self.start_command());
        self.after_start(result, log_start)
    }

    /// [`Cluster::start_again`] without blocking the async runtime.
    pub async fn start_again_async(&mut self) -> Result<(), LocalPgError> {
        if self.running {
            return Ok(());
        }
        let log_start = self.log_len();
        let result = process::run_async(self.start_command()).await;
        self.after_start(result, log_start)
    }

    /// initdb, then the config files (everything but the port).
    fn init(&mut self) -> Result<(), LocalPgError> {
        let probe = self.socket_dir.join(".s.PGSQL.65535");
        if probe.as_os_str().len() > MAX_SOCKET_DIR_LEN {
            let short = make_unique_dir(Path::new("/tmp"), "tgsock")?;
            self.socket_dir = short.clone();
            self.extra_socket_dir = Some(short);
        }
        if self.as_server_user {
            process::chown_to_server_user(&self.root)?;
            if let Some(d) = &self.extra_socket_dir {
                process::chown_to_server_user(d)?;
            }
        }
        let pwfile = match conf::password_file(&self.auth, SUPERUSER) {
            Some(content) => Some(self.write_private(&self.root.join("pwfile"), &content)?),
            None => None,
        };
        let mut cmd = process::server_command(&self.bins.initdb, self.as_server_user, &self.root);
        cmd.arg("-D").arg(&self.data).args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        if let Some(p) = &pwfile {
            cmd.arg(format!("--pwfile={}", p.display()));
        }
        let result = process::run(cmd);
        if let Some(p) = &pwfile {
            let _ = std::fs::remove_file(p);
        }
        result?;
        append(&self.data.join("postgresql.conf"), &conf::include_line())?;
        write(&self.data.join("pg_hba.conf"), &conf::pg_hba(&self.auth))?;
        Ok(())
    }

    /// Writes the settings with a port and starts the server; with port 0,
    /// retries on another free port when the chosen one was taken meanwhile.
    fn first_start(&mut self, opts: &ClusterOptions) -> Result<(), LocalPgError> {
        let mut attempt = 1;
        loop {
            self.port = if opts.port == 0 {
                free_port()?
            } else {
                opts.port
            };
            let settings = conf::settings_file(&conf::ServerSettings {
                port: self.port,
                socket_dir: &self.socket_dir,
                max_connections: opts.max_connections,
                shared_buffers: &opts.shared_buffers,
                auth: &self.auth,
                extra: &opts.extra_settings,
            });
            let path = self.data.join(conf::SETTINGS_FILE);
            write(&path, &settings)?;
            if self.as_server_user {
                process::chown_to_server_user(&path)?;
            }
            let log_start = self.log_len();
            let result = process::run(self.start_command());
            let port_taken =
                result.is_err() && self.log_since(log_start).contains("already in use");
            match self.after_start(result, log_start) {
                Err(_) if port_taken && opts.port == 0 && attempt < START_ATTEMPTS => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Marks the server running, or adds the new server log lines to the error.
    fn after_start(
        &mut self,
        result: Result<std::process::Output, LocalPgError>,
        log_start: u64,
    ) -> Result<(), LocalPgError> {
        match result {
            Ok(_) => {
                self.running = true;
                Ok(())
            }
            Err(LocalPgError::Command {
                command,
                status,
                mut output,
            }) => {
                let log = error::tail(&self.log_since(log_start), LOG_TAIL_LINES);
                if !log.is_empty() {
                    output.push_str(&format!("\n--- {} ---\n{log}", self.log.display()));
                }
                Err(LocalPgError::Command {
                    command,
                    status,
                    output,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// `pg_ctl start`, waiting until the server accepts connections.
    fn start_command(&self) -> Command {
        let mut cmd = process::server_command(&self.bins.pg_ctl, self.as_server_user, &self.root);
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .arg("-p")
            .arg(&self.bins.postgres)
            .args(["-w", "-t", "60", "start"]);
        cmd
    }

    /// `pg_ctl stop` in `mode` (`fast` or `immediate`), waiting for the exit.
    fn stop_command(&self, mode: &str) -> Command {
        let mut cmd = process::server_command(&self.bins.pg_ctl, self.as_server_user, &self.root);
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        cmd
    }

    /// Writes a file only its owner (the server user, when root) can read.
    fn write_private(&self, path: &Path, content: &str) -> Result<PathBuf, LocalPgError> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| LocalPgError::io(format!("cannot create {}", path.display()), e))?;
        f.write_all(content.as_bytes())
            .map_err(|e| LocalPgError::io(format!("cannot write {}", path.display()), e))?;
        if self.as_server_user {
            process::chown_to_server_user(path)?;
        }
        Ok(path.to_path_buf())
    }

    /// Current length of the server log (0 when absent).
    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The server log from byte `start` on (lossy, empty when unreadable).
    fn log_since(&self, start: u64) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(start)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = process::run(self.stop_command("immediate"));
            self.running = false;
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
        // The short socket directory holds nothing once the server is down.
        if let Some(d) = &self.extra_socket_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close).
pub fn free_port() -> Result<u16, LocalPgError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| LocalPgError::io("cannot bind 127.0.0.1:0 to find a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| LocalPgError::io("cannot read the free port", e))
}

/// Creates a new directory `base/tenantgate-<label>-<pid>-<n>`.
fn make_unique_dir(base: &Path, label: &str) -> Result<PathBuf, LocalPgError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let label = sanitize(label);
    std::fs::create_dir_all(base)
        .map_err(|e| LocalPgError::io(format!("cannot create {}", base.display()), e))?;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("tenantgate-{label}-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(LocalPgError::io(
                    format!("cannot create {}", dir.display()),
                    e,
                ));
            }
        }
    }
}

/// Keeps ASCII letters, digits, `-` and `_`; anything else becomes `_`.
fn sanitize(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "pg".into() } else { s }
}

/// Overwrites `path` with `content`.
fn write(path: &Path, content: &str) -> Result<(), LocalPgError> {
    std::fs::write(path, content)
        .map_err(|e| LocalPgError::io(format!("cannot write {}", path.display()), e))
}

/// Appends `content` to `path`.
fn append(path: &Path, content: &str) -> Result<(), LocalPgError> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| LocalPgError::io(format!("cannot open {}", path.display()), e))?;
    f.write_all(content.as_bytes())
        .map_err(|e| LocalPgError::io(format!("cannot write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_labels() {
        assert_eq!(sanitize("bigcorp-db"), "bigcorp-db");
        assert_eq!(sanitize("a/b c"), "a_b_c");
        assert_eq!(sanitize(""), "pg");
    }

    #[test]
    fn unique_dirs_differ() {
        let base = std::env::temp_dir();
        let a = make_unique_dir(&base, "unit").expect("dir a");
        let b = make_unique_dir(&base, "unit").expect("dir b");
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
        let _ = std::fs::remove_dir(&a);
        let _ = std::fs::remove_dir(&b);
    }

    #[test]
    fn free_port_is_nonzero() {
        assert_ne!(free_port().expect("port"), 0);
    }

    #[test]
    fn default_options() {
        let o = ClusterOptions::default();
        assert_eq!(o.port, 0);
        assert_eq!(o.auth, AuthMode::Trust);
        assert_eq!(o.max_connections, 200);
        assert_eq!(o.shared_buffers, "128MB");
    }
}
