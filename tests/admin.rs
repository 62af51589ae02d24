//! The admin console through psql and tokio-postgres: every command and its
//! columns, KILL CLIENT, refusals and errors, PAUSE / RESUME, RELOAD.

mod raw_client;
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;
use tenantgate::localpg::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::SimpleQueryMessage;
use tokio_util::sync::CancellationToken;

/// The documented columns of every SHOW command (docs/observability.md).
const SHOW_COLUMNS: &[(&str, &[&str])] = &[
    (
        "SHOW POOLS",
        &[
            "database",
            "user",
            "shard",
            "cl_active",
            "cl_waiting",
            "sv_active",
            "sv_idle",
            "sv_used",
            "sv_login",
            "maxwait",
            "maxwait_us",
            "pool_mode",
            "pool_size",
            "paused",
        ],
    ),
    (
        "SHOW CLIENTS",
        &[
            "type",
            "user",
            "database",
            "state",
            "addr",
            "port",
            "connect_time",
            "request_time",
            "wait",
            "wait_us",
            "application_name",
            "id",
            "tenant",
            "shard",
            "link",
        ],
    ),
    (
        "SHOW SERVERS",
        &[
            "type",
            "user",
            "database",
            "state",
            "addr",
            "port",
            "connect_time",
            "request_time",
            "id",
            "shard",
            "remote_pid",
            "link",
        ],
    ),
    (
        "SHOW SHARDS",
        &[
            "shard",
            "host",
            "port",
            "database",
            "user",
            "pool_size",
            "dedicated",
            "hash",
            "tenants",
            "sv_open",
            "connects",
            "connect_errors",
            "paused",
        ],
    ),
    (
        "SHOW TENANTS",
        &[
            "tenant",
            "shard",
            "cl_active",
            "cl_waiting",
            "total_xact_count",
            "total_query_count",
            "total_errors",
            "total_refusals",
            "total_received",
            "total_sent",
            "total_query_time",
            "total_wait_time",
            "avg_query_time",
            "paused",
        ],
    ),
    (
        "SHOW STATS",
        &[
            "shard",
            "database",
            "total_xact_count",
            "total_query_count",
            "total_received",
            "total_sent",
            "total_query_time",
            "total_wait_time",
            "total_errors",
            "total_refusals",
            "avg_query_time",
            "avg_wait_time",
        ],
    ),
    ("SHOW CONFIG", &["key", "value", "changeable"]),
    ("SHOW VERSION", &["version"]),
    ("SHOW HELP", &["command", "description"]),
];

/// Shard passwords that must never be shown (the cluster trusts everyone,
/// so the password in the URL is never used).
const SHARD_PASSWORD: &str = "shard-pw-never-shown";

async fn two_shard_cluster() -> Cluster {
    let cluster = start_cluster().await;
    for db in ["app", "app2"] {
        create_database(&cluster, db).await;
        exec(
            &cluster,
            db,
            "CREATE TABLE items (tenant_id text NOT NULL, id int NOT NULL, v text);
             INSERT INTO items VALUES ('a', 1, 'x'), ('b', 2, 'y');",
        )
        .await;
    }
    cluster
}

fn url(cluster: &Cluster, db: &str) -> String {
    format!(
        "postgres://postgres:{SHARD_PASSWORD}@127.0.0.1:{}/{db}",
        cluster.port()
    )
}

/// Tenant `a` (users `a`, `a2`) on s0, tenant `b` on s1, admin `ops`,
/// trusted `app`; `extra` is appended to `[server]`.
fn config_text(cluster: &Cluster, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
         query_wait_timeout = \"3s\"\n{extra}\n\
         [tenancy]\n\
         [[users]]\nname = \"a\"\npassword = \"a-secret\"\ntenant = \"a\"\n\
         [[users]]\nname = \"a2\"\npassword = \"a2-secret\"\ntenant = \"a\"\n\
         [[users]]\nname = \"b\"\npassword = \"b-secret\"\ntenant = \"b\"\n\
         [[users]]\nname = \"app\"\npassword = \"app-secret\"\n\
         [[users]]\nname = \"ops\"\npassword = \"ops-secret\"\nadmin = true\n\
         [routing]\nhash_shards = [\"s0\"]\n\
         [[shards]]\nname = \"s0\"\nurl = {}\n\
         [[shards]]\nname = \"s1\"\nurl = {}\n\
         [[tenants]]\nid = \"a\"\nshard = \"s0\"\n\
         [[tenants]]\nid = \"b\"\nshard = \"s1\"\n",
        toml_str(&url(cluster, "app")),
        toml_str(&url(cluster, "app2")),
    )
}

struct Running {
    port: u16,
    metrics: SocketAddr,
    token: CancellationToken,
    path: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Writes `text` to a fresh config file and serves it (RELOAD re-reads it).
async fn start(text: &str) -> Running {
    let dir = std::env::temp_dir().join(format!(
        "tenantgate-admin-{}-{}",
        std::process::id(),
        tenantgate::localpg::free_port().expect("a free port")
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("routing.toml");
    std::fs::write(&path, text).expect("write config");
    let config = tenantgate::config::load_file(&path).expect("config loads");
    let proxy = tenantgate::server::Proxy::bind_with_path(config, Some(path.clone()))
        .await
        .expect("bind");
    let port = proxy.local_addr().expect("addr").port();
    let metrics = proxy.metrics_addr().expect("metrics_listen is set");
    let token = proxy.shutdown_token();
    tokio::spawn(proxy.run());
    Running {
        port,
        metrics,
        token,
        path,
    }
}

async fn admin(p: &Running) -> tokio_postgres::Client {
    connect(p.port, "ops", "ops-secret", "tenantgate").await
}

/// A simple-query result: column names and rows (NULL as `None`).
struct Result {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

impl Result {
    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    /// Rows where column `name` is `value`.
    fn rows_where(&self, name: &str, value: &str) -> Vec<&Vec<Option<String>>> {
        let i = self.col(name);
        self.rows
            .iter()
            .filter(|r| r[i].as_deref() == Some(value))
            .collect()
    }

    fn get<'a>(&self, row: &'a [Option<String>], name: &str) -> Option<&'a str> {
        row[self.col(name)].as_deref()
    }
}

async fn show(client: &tokio_postgres::Client, sql: &str) -> Result {
    let messages = match client.simple_query(sql).await {
        Ok(m) => m,
        Err(e) => panic!("{sql}: {}", error_chain(&e)),
    };
    let mut result = Result {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                result.columns = cols.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                result.rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    result
}

async fn run(client: &tokio_postgres::Client, sql: &str) {
    if let Err(e) = client.simple_query(sql).await {
        panic!("{sql}: {}", error_chain(&e));
    }
}

/// psql with headers, unaligned, no footer; returns stdout lines.
async fn psql_table(port: u16, sql: &str) -> Vec<String> {
    let out = psql_args(
        port,
        "ops",
        "ops-secret",
        "tenantgate",
        &["-P", "tuples_only=off", "-P", "footer=off", "-c", sql],
    )
    .await;
    psql_ok(&out).lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_has_its_documented_columns() {
    let cluster = two_shard_cluster().await;
    let p = start(&config_text(&cluster, "")).await;
    let a = connect(p.port, "a", "a-secret", "app").await;
    run(&a, "SELECT id FROM items").await;
    run(&a, "SELECT id FROM items").await;
    let b = connect(p.port, "b", "b-secret", "app").await;
    run(&b, "SELECT id FROM items").await;
    let ops = admin(&p).await;

    for (sql, columns) in SHOW_COLUMNS {
        let r = show(&ops, sql).await;
        assert_eq!(&r.columns, columns, "{sql} through tokio-postgres");
        assert!(r.rows.iter().all(|row| row.len() == columns.len()));
        let lower = show(&ops, &sql.to_lowercase()).await;
        assert_eq!(&lower.columns, columns, "{sql} in lower case");
        let lines = psql_table(p.port, sql).await;
        assert_eq!(
            lines.first().map(String::as_str),
            Some(columns.join("|").as_str()),
            "{sql} through psql"
        );
    }

    let pools = show(&ops, "SHOW POOLS").await;
    assert_eq!(pools.rows.len(), 2);
    let s0 = pools.rows_where("shard", "s0")[0];
    assert_eq!(pools.get(s0, "database"), Some("app"));
    assert_eq!(pools.get(s0, "user"), Some("postgres"));
    assert_eq!(pools.get(s0, "pool_mode"), Some("transaction"));
    assert_eq!(pools.get(s0, "cl_active"), Some("1"));
    assert_eq!(pools.get(s0, "cl_waiting"), Some("0"));
    assert_eq!(pools.get(s0, "sv_active"), Some("0"));
    assert_eq!(pools.get(s0, "sv_idle"), Some("1"));

    let clients = show(&ops, "SHOW CLIENTS").await;
    let a_rows = clients.rows_where("user", "a");
    assert_eq!(a_rows.len(), 1);
    assert_eq!(clients.get(a_rows[0], "tenant"), Some("a"));
    assert_eq!(clients.get(a_rows[0], "shard"), Some("s0"));
    assert_eq!(clients.get(a_rows[0], "state"), Some("idle"));
    assert_eq!(clients.get(a_rows[0], "database"), Some("app"));
    assert_eq!(clients.get(a_rows[0], "addr"), Some("127.0.0.1"));
    assert!(
        clients
            .get(a_rows[0], "request_time")
            .is_some_and(|t| t.ends_with(" UTC"))
    );
    let ops_rows = clients.rows_where("user", "ops");
    assert!(!ops_rows.is_empty());
    assert_eq!(clients.get(ops_rows[0], "database"), Some("tenantgate"));

    let servers = show(&ops, "SHOW SERVERS").await;
    assert_eq!(servers.rows_where("shard", "s0").len(), 1);
    assert_eq!(servers.rows_where("state", "idle").len(), 2);
    // Ids name one connection whatever its shard (`link` in SHOW CLIENTS).
    let mut ids: Vec<&str> = servers
        .rows
        .iter()
        .filter_map(|r| servers.get(r, "id"))
        .collect();
    assert_eq!(ids.len(), 2);
    ids.dedup();
    assert_eq!(ids.len(), 2, "server ids repeat across shards");

    let shards = show(&ops, "SHOW SHARDS").await;
    let s1 = shards.rows_where("shard", "s1")[0];
    assert_eq!(shards.get(s1, "database"), Some("app2"));
    assert_eq!(shards.get(s1, "tenants"), Some("1"));
    assert_eq!(shards.get(s1, "hash"), Some("no"));

    let tenants = show(&ops, "SHOW TENANTS").await;
    let ta = tenants.rows_where("tenant", "a")[0];
    assert_eq!(tenants.get(ta, "total_query_count"), Some("2"));
    assert_eq!(tenants.get(ta, "shard"), Some("s0"));
    assert_eq!(tenants.get(ta, "cl_active"), Some("1"));
    let tb = tenants.rows_where("tenant", "b")[0];
    assert_eq!(tenants.get(tb, "total_xact_count"), Some("1"));

    let stats = show(&ops, "SHOW STATS").await;
    let st0 = stats.rows_where("shard", "s0")[0];
    assert_eq!(stats.get(st0, "total_query_count"), Some("2"));
    assert!(stats.get(st0, "total_received").is_some_and(|v| v != "0"));

    let version = show(&ops, "SHOW VERSION").await;
    assert_eq!(
        version.rows[0][0].as_deref(),
        Some(format!("tenantgate {}", env!("CARGO_PKG_VERSION")).as_str())
    );

    let config = show(&ops, "SHOW CONFIG").await;
    for row in &config.rows {
        for v in row.iter().flatten() {
            assert!(
                !v.contains(SHARD_PASSWORD) && !v.contains("-secret"),
                "SHOW CONFIG shows a password: {row:?}"
            );
        }
    }
    let url0 = config.rows_where("key", "shards.s0.url")[0];
    assert_eq!(
        config.get(url0, "value"),
        Some(format!("postgres://postgres@127.0.0.1:{}/app", cluster.port()).as_str())
    );
    let generation = config.rows_where("key", "generation")[0];
    assert_eq!(config.get(generation, "value"), Some("1"));
    let listen = config.rows_where("key", "server.listen")[0];
    assert_eq!(config.get(listen, "changeable"), Some("no"));

    // Several statements in one Query.
    let msgs = ops
        .simple_query("SHOW VERSION; SHOW VERSION")
        .await
        .expect("two statements");
    let rows = msgs
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(rows, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_disconnects_only_that_client() {
    let cluster = two_shard_cluster().await;
    let p = start(&config_text(&cluster, "")).await;
    let mut victim_cfg = client_config(p.port, "a", "a-secret", "app");
    victim_cfg.application_name("victim");
    let victim = try_connect_config(&victim_cfg)
        .await
        .expect("victim connects");
    let mut bystander_cfg = client_config(p.port, "a2", "a2-secret", "app");
    bystander_cfg.application_name("bystander");
    let bystander = try_connect_config(&bystander_cfg)
        .await
        .expect("bystander connects");
    run(&victim, "SELECT id FROM items").await;
    run(&bystander, "SELECT id FROM items").await;

    let ops = admin(&p).await;
    let clients = show(&ops, "SHOW CLIENTS").await;
    let row = clients.rows_where("application_name", "victim")[0];
    let id = clients.get(row, "id").expect("id").to_string();

    let done = show(&ops, &format!("KILL CLIENT {id}")).await;
    assert!(done.rows.is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match victim.simple_query("SELECT id FROM items").await {
            Err(e) => {
                let text = error_chain(&e);
                assert!(
                    victim.is_closed() || text.contains("57P01") || text.contains("administrator"),
                    "{text}"
                );
                break;
            }
            Ok(_) => {
                assert!(Instant::now() < deadline, "the killed client still works");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    run(&bystander, "SELECT id FROM items").await;
    let clients = show(&ops, "SHOW CLIENTS").await;
    assert!(clients.rows_where("application_name", "victim").is_empty());
    assert_eq!(clients.rows_where("application_name", "bystander").len(), 1);

    let e = ops
        .simple_query("KILL CLIENT 999999")
        .await
        .expect_err("no such client");
    assert_eq!(sqlstate(&e).as_deref(), Some("22023"));
}

/// KILL CLIENT on a client that stopped reading in the middle of a large
/// result: its server connection is freed at once and the session ends
/// within a bounded time; a client that does not read holds neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_that_stopped_reading() {
    let cluster = two_shard_cluster().await;
    let p = start(&config_text(&cluster, "")).await;
    let ops = admin(&p).await;
    let mut stuck = raw_client::RawClient::login(p.port, "app", "app-secret", "app").await;
    // About 200 MB of rows, never read.
    stuck
        .send(&raw_client::query_msg(
            "SELECT repeat('x', 1000) FROM generate_series(1, 200000)",
        ))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let clients = show(&ops, "SHOW CLIENTS").await;
        let row = clients.rows_where("user", "app")[0];
        if clients.get(row, "state") == Some("active") {
            break clients.get(row, "id").expect("id").to_string();
        }
        assert!(Instant::now() < deadline, "the query never became active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Let the buffers fill up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    run(&ops, &format!("KILL CLIENT {id}")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let clients = show(&ops, "SHOW CLIENTS").await;
        let pools = show(&ops, "SHOW POOLS").await;
        let s0 = pools.rows_where("shard", "s0")[0];
        if clients.rows_where("user", "app").is_empty() && pools.get(s0, "sv_active") == Some("0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a killed client that does not read keeps its session or server connection"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stuck);
    // The proxy serves on.
    let a = connect(p.port, "a", "a-secret", "app").await;
    run(&a, "SELECT id FROM items").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_errors() {
    let cluster = two_shard_cluster().await;
    let p = start(&config_text(&cluster, "")).await;

    // A non-admin user is refused at login.
    let Err(e) = try_connect(p.port, "a", "a-secret", "tenantgate").await else {
        panic!("a is not an admin")
    };
    assert_sqlstate(&e, "42501");
    let out = psql(p.port, "app", "app-secret", "tenantgate", "SHOW POOLS").await;
    assert!(!out.status.success());

    let ops = admin(&p).await;
    for bad in ["SHOW NOTHING", "SELECT 1", "FROBNICATE", "PAUSE SHARD"] {
        let e = ops.simple_query(bad).await.expect_err(bad);
        assert_eq!(
            sqlstate(&e).as_deref(),
            Some("42601"),
            "{bad}: {}",
            error_chain(&e)
        );
    }
    let e = ops
        .simple_query("PAUSE SHARD nosuch")
        .await
        .expect_err("unknown shard");
    assert_eq!(sqlstate(&e).as_deref(), Some("22023"));
    let e = ops
        .simple_query("RESUME SHARD nosuch")
        .await
        .expect_err("unknown shard, not paused");
    assert_eq!(sqlstate(&e).as_deref(), Some("22023"));
    // CopyData, CopyDone outside COPY are ignored, as Postgres ignores them.
    let mut raw = raw_client::RawClient::login(p.port, "ops", "ops-secret", "tenantgate").await;
    raw.send(
        &[
            raw_client::copy_data(b"stray"),
            raw_client::copy_done(),
            raw_client::query_msg("SHOW VERSION"),
        ]
        .concat(),
    )
    .await;
    loop {
        let m = raw.read_msg().await.expect("the console answers");
        assert!(!m.is_error(), "{}", m.message());
        if m.ready_status().is_some() {
            break;
        }
    }
    // The extended protocol is refused; the session goes on.
    let e = ops
        .query("SHOW POOLS", &[])
        .await
        .expect_err("extended protocol");
    assert_sqlstate(&e, "0A000");
    assert_eq!(show(&ops, "SHOW VERSION").await.rows.len(), 1);
    // An error stops the rest of the Query.
    let e = ops
        .simple_query("PAUSE TENANT a; FROB; PAUSE TENANT b")
        .await
        .expect_err("second statement fails");
    assert_eq!(sqlstate(&e).as_deref(), Some("42601"));
    let tenants = show(&ops, "SHOW TENANTS").await;
    assert!(
        tenants
            .rows_where("tenant", "b")
            .iter()
            .all(|r| tenants.get(r, "paused") != Some("yes"))
    );
    run(&ops, "RESUME").await;
    // One Query runs at most MAX_COMMANDS commands; more are refused whole.
    let max = tenantgate::admin::console::MAX_COMMANDS;
    let many = "SHOW VERSION;".repeat(max + 1);
    let e = ops
        .simple_query(&many)
        .await
        .expect_err("too many commands");
    assert_sqlstate(&e, "54000");
    let rows = ops
        .simple_query(&"SHOW VERSION;".repeat(max))
        .await
        .expect("at the limit")
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(rows, max);
    // psql reports the error too.
    let out = psql(p.port, "ops", "ops-secret", "tenantgate", "SHOW NOTHING").await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown admin command"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_tenant_holds_new_transactions_only() {
    let cluster = two_shard_cluster().await;
    let p = start(&config_text(&cluster, "")).await;
    let a = connect(p.port, "a", "a-secret", "app").await;
    let a_tx = connect(p.port, "a2", "a2-secret", "app").await;
    let b = connect(p.port, "b", "b-secret", "app").await;
    let ops = admin(&p).await;
    run(&a, "SELECT id FROM items").await;
    run(&a_tx, "BEGIN").await;
    run(&a_tx, "SELECT id FROM items").await;

    // PAUSE returns once the transaction already running has finished
    // (which it may: it goes on under the pause).
    let pausing = {
        let ops = admin(&p).await;
        tokio::spawn(async move { ops.simple_query("PAUSE TENANT a").await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !pausing.is_finished(),
        "PAUSE must wait for a's running transaction"
    );
    run(&a_tx, "SELECT id FROM items").await;
    run(&a_tx, "COMMIT").await;
    tokio::time::timeout(Duration::from_secs(5), pausing)
        .await
        .expect("PAUSE returns once the transaction is over")
        .expect("task")
        .expect("PAUSE TENANT a");
    // A new one waits...
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let r = a.simple_query("SELECT id FROM items").await.map(|_| ());
        (r, started.elapsed(), a)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!waiting.is_finished(), "tenant a's transaction should wait");
    // ...while another tenant proceeds.
    run(&b, "SELECT id FROM items").await;
    let clients = show(&ops, "SHOW CLIENTS").await;
    let row = clients.rows_where("user", "a")[0];
    assert_eq!(clients.get(row, "state"), Some("waiting"));
    let tenants = show(&ops, "SHOW TENANTS").await;
    let ta = tenants.rows_where("tenant", "a")[0];
    assert_eq!(tenants.get(ta, "paused"), Some("yes"));
    assert_eq!(tenants.get(ta, "cl_waiting"), Some("1"));
    let pools = show(&ops, "SHOW POOLS").await;
    let s0 = pools.rows_where("shard", "s0")[0];
    assert_eq!(pools.get(s0, "cl_waiting"), Some("1"));

    run(&ops, "RESUME TENANT a").await;
    let (r, took, a) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("released by RESUME")
        .expect("task");
    r.expect("the paused query runs after RESUME");
    assert!(took >= Duration::from_millis(600), "{took:?}");

    // A pause longer than query_wait_timeout (3s) ends in 57014.
    run(&ops, "PAUSE SHARD s0").await;
    let started = Instant::now();
    let e = a
        .simple_query("SELECT id FROM items")
        .await
        .expect_err("paused past query_wait_timeout");
    assert_sqlstate(&e, "57014");
    assert!(started.elapsed() >= Duration::from_secs(2));
    run(&b, "SELECT id FROM items").await;
    // A transaction that outlasts query_wait_timeout: PAUSE gives up
    // waiting with 57014, and the pause stays in force.
    run(&b, "BEGIN").await;
    run(&b, "SELECT id FROM items").await;
    let e = ops
        .simple_query("PAUSE TENANT b")
        .await
        .expect_err("b's transaction outlasts the wait");
    assert_sqlstate(&e, "57014");
    assert!(
        error_chain(&e).contains("1 transaction(s) still running"),
        "{}",
        error_chain(&e)
    );
    let tenants = show(&ops, "SHOW TENANTS").await;
    let tb = tenants.rows_where("tenant", "b")[0];
    assert_eq!(tenants.get(tb, "paused"), Some("yes"));
    // A RESUME while a PAUSE waits: the PAUSE does not report success for
    // a pause no longer in force.
    let pausing = {
        let ops = admin(&p).await;
        tokio::spawn(async move { ops.simple_query("PAUSE TENANT b").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    run(&ops, "RESUME TENANT b").await;
    let e = tokio::time::timeout(Duration::from_secs(5), pausing)
        .await
        .expect("PAUSE ends once resumed")
        .expect("task")
        .expect_err("a PAUSE lifted while it waited");
    assert_sqlstate(&e, "57014");
    assert!(
        error_chain(&e).contains("was resumed"),
        "{}",
        error_chain(&e)
    );
    run(&b, "COMMIT").await;
    // PAUSE (everything) holds b too; RESUME lifts every pause.
    run(&ops, "PAUSE").await;
    let b_wait =
        tokio::spawn(async move { b.simple_query("SELECT id FROM items").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b_wait.is_finished());
    run(&ops, "RESUME").await;
    tokio::time::timeout(Duration::from_secs(5), b_wait)
        .await
        .expect("released")
        .expect("task")
        .expect("b's query runs");
    run(&a, "SELECT id FROM items").await;
}

/// A transaction queued for a server connection when PAUSE comes does not
/// start once the connection frees up: it waits for RESUME like a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_a_transaction_queued_for_a_connection() {
    let cluster = two_shard_cluster().await;
    // s0 (the shard of tenant a and of untenanted sessions) has one connection.
    let text = config_text(&cluster, "").replacen(
        "[[shards]]\nname = \"s1\"",
        "pool_size = 1\n[[shards]]\nname = \"s1\"",
        1,
    );
    assert!(text.contains("pool_size = 1"));
    let p = start(&text).await;
    let holder = connect(p.port, "app", "app-secret", "app").await;
    let a = connect(p.port, "a", "a-secret", "app").await;
    let ops = admin(&p).await;
    run(&holder, "BEGIN").await;
    run(&holder, "SELECT 1").await;
    let queued = tokio::spawn(async move {
        let r = a.simple_query("SELECT id FROM items").await.map(|_| ());
        (r, a)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let clients = show(&ops, "SHOW CLIENTS").await;
    let row = clients.rows_where("user", "a")[0];
    assert_eq!(
        clients.get(row, "state"),
        Some("waiting"),
        "a queues for s0"
    );
    run(&ops, "PAUSE TENANT a").await;
    // The connection frees up; a's transaction must not take it.
    run(&holder, "COMMIT").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !queued.is_finished(),
        "a transaction queued before PAUSE started after it"
    );
    let clients = show(&ops, "SHOW CLIENTS").await;
    let row = clients.rows_where("user", "a")[0];
    assert_eq!(clients.get(row, "state"), Some("waiting"));
    run(&ops, "RESUME TENANT a").await;
    let (r, _a) = tokio::time::timeout(Duration::from_secs(5), queued)
        .await
        .expect("runs after RESUME")
        .expect("task");
    r.expect("a's query runs after RESUME");
    run(&holder, "SELECT 1").await;
}

async fn scrape(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("response");
    out
}

fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

/// A reload that removes `[tenancy]` (a change that needs a restart) is
/// applied without it, and says so: tenant sessions opened afterwards are
/// still scoped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_cannot_switch_isolation_off() {
    let cluster = two_shard_cluster().await;
    let text = config_text(&cluster, "");
    let p = start(&text).await;
    let ops = admin(&p).await;
    let without = text.replacen("[tenancy]\n", "", 1);
    assert!(!without.contains("[tenancy]"));
    write_config(
        &p.path,
        &without.replace("query_wait_timeout = \"3s\"", "query_wait_timeout = \"4s\""),
    );
    // The operator is told, with the reply (psql prints the WARNING).
    let out = psql(p.port, "ops", "ops-secret", "tenantgate", "RELOAD").await;
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARNING")
            && stderr.contains("keep their running values")
            && stderr.contains("tenancy"),
        "{stderr}"
    );
    let config = show(&ops, "SHOW CONFIG").await;
    assert_eq!(
        config.get(config.rows_where("key", "generation")[0], "value"),
        Some("2"),
        "the rest of the file is applied"
    );
    let a = connect(p.port, "a", "a-secret", "app").await;
    let rows = a
        .query("SELECT tenant_id FROM items", &[])
        .await
        .expect("a's query");
    let tenants: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(tenants, ["a"], "a new session of tenant a is still scoped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reports_errors_and_keeps_serving() {
    let cluster = two_shard_cluster().await;
    let p = start(&config_text(&cluster, "")).await;
    let a = connect(p.port, "a", "a-secret", "app").await;
    let ops = admin(&p).await;

    write_config(
        &p.path,
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_port = 1\n[[shards]]\nname = \"s0\"\nurl = \"nope\"\n",
    );
    let e = ops.simple_query("RELOAD").await.expect_err("broken file");
    assert_sqlstate(&e, "22023");
    let db = e.as_db_error().expect("a server error");
    assert!(db.message().contains("RELOAD failed"), "{}", db.message());
    let detail = db.detail().unwrap_or_default();
    assert!(
        detail.contains("line 3") && detail.contains("listen_port"),
        "{detail}"
    );
    assert!(
        detail.contains("line 6"),
        "every error is reported: {detail}"
    );
    // Still serving, on the old configuration.
    run(&a, "SELECT id FROM items").await;
    let b = connect(p.port, "b", "b-secret", "app").await;
    run(&b, "SELECT id FROM items").await;
    let config = show(&ops, "SHOW CONFIG").await;
    assert_eq!(
        config.get(config.rows_where("key", "generation")[0], "value"),
        Some("1")
    );
    let metrics = scrape(p.metrics).await;
    assert!(
        metrics.contains("tenantgate_config_reloads_total{outcome=\"failure\"} 1\n"),
        "{metrics}"
    );
    // psql shows the errors.
    let out = psql(p.port, "ops", "ops-secret", "tenantgate", "RELOAD").await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_port"));

    // A good file is applied.
    write_config(
        &p.path,
        &config_text(&cluster, "slow_query_threshold = \"2s\""),
    );
    let done = ops.simple_query("RELOAD").await.expect("reload");
    assert!(
        done.iter()
            .any(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
    );
    let config = show(&ops, "SHOW CONFIG").await;
    assert_eq!(
        config.get(config.rows_where("key", "generation")[0], "value"),
        Some("2")
    );
    let threshold = config.rows_where("key", "server.slow_query_threshold")[0];
    assert_eq!(config.get(threshold, "value"), Some("2s"));
    run(&a, "SELECT id FROM items").await;
    let metrics = scrape(p.metrics).await;
    assert!(
        metrics.contains("tenantgate_config_reloads_total{outcome=\"success\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenantgate_config_reloads_total{outcome=\"failure\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenantgate_config_generation 2\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_without_a_file_is_refused() {
    let cluster = two_shard_cluster().await;
    let proxy = start_proxy(load_config(&config_text(&cluster, ""))).await;
    let ops = connect(proxy.port, "ops", "ops-secret", "tenantgate").await;
    let e = ops.simple_query("RELOAD").await.expect_err("no file");
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"));
}
