//! Real client drivers through the proxy: psycopg 3, asyncpg, node-postgres
//! and PostgreSQL JDBC. Each test starts a throwaway cluster (two tenants on
//! one shard, tables with a `tenant_id` column) and a proxy in transaction
//! pooling with fewer server connections than the program opens, then runs a
//! small program written with that driver (`tests/drivers/`). The program
//! checks SCRAM login as tenant-bound users, isolation, named/server-side
//! prepared statements reused over many transactions by concurrent
//! connections, an error and rollback inside a transaction, and cancel; it
//! prints `ok <check>` / `FAIL <check> <detail>` lines. The test asserts the
//! exit status and every expected `ok` line, and checks directly on the
//! cluster where the program's rows landed.
//!
//! The drivers are installed by `scripts/install-deps` at fixed paths; a
//! missing one fails the test (it is never skipped).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tenantgate::localpg::Cluster;

/// Server connections of shard `s0`.
const POOL_SIZE: usize = 2;
/// Concurrent connections of the prepared-statement check (half per tenant).
const CLIENTS: usize = 6;
/// Transactions per connection in the prepared-statement check.
const TXNS: usize = 50;
/// Rows of `items` per tenant (ids 1..n, note `<tenant>-<id>`).
const ITEMS_A: usize = 3;
const ITEMS_B: usize = 4;
/// How long one driver program may run.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(50);

const TENANT_A: &str = "acme";
const TENANT_B: &str = "globex";
/// A schema-per-tenant tenant on the same shard (schema of the same name),
/// for the client pool checks (asyncpg's pool resets with `RESET ALL`).
const TENANT_S: &str = "umbrella";
/// A trusted user (no `tenant`): it chooses one with `SET app.current_tenant`.
const TRUSTED: &str = "app";

/// Checks every program prints `ok` for.
const COMMON_CHECKS: &[&str] = &[
    "login",
    "bad_password",
    "isolation",
    "insert_default_tenant",
    "refusal",
    "prepared_concurrent",
    "error_rollback",
    "error_first_use",
];

// ------------------------------------------------------------------ set-up

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `path` (relative to the repository root, or absolute), or a failure that
/// says how to get it.
fn require(relative_or_absolute: &str, what: &str) -> PathBuf {
    let path = manifest_dir().join(relative_or_absolute);
    assert!(
        path.exists(),
        "{what} is missing ({}): run scripts/install-deps",
        path.display()
    );
    path
}

/// A command found on PATH, or a failure that says how to get it.
fn require_command(name: &str, what: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| panic!("{what} (`{name}`) is not on PATH: run scripts/install-deps"))
}

/// A cluster with database `app`: `items` seeded for both tenants, `events`
/// empty (the programs write it).
async fn start_cluster() -> Cluster {
    let cluster = support::start_app_cluster().await;
    let mut sql = String::from(
        "CREATE TABLE items (tenant_id text NOT NULL, id int NOT NULL, note text NOT NULL, \
                             PRIMARY KEY (tenant_id, id));\n\
         CREATE TABLE events (id bigserial PRIMARY KEY, tenant_id text NOT NULL, \
                              driver text NOT NULL, note text NOT NULL, n int NOT NULL);\n",
    );
    for (tenant, n) in [(TENANT_A, ITEMS_A), (TENANT_B, ITEMS_B)] {
        for id in 1..=n {
            sql.push_str(&format!(
                "INSERT INTO items VALUES ('{tenant}', {id}, '{tenant}-{id}');\n"
            ));
        }
    }
    sql.push_str(&format!(
        "CREATE SCHEMA {TENANT_S};\n\
         CREATE TABLE {TENANT_S}.items (id int PRIMARY KEY, note text NOT NULL);\n\
         INSERT INTO {TENANT_S}.items VALUES (1, '{TENANT_S}-1');\n"
    ));
    support::exec(&cluster, "app", &sql).await;
    cluster
}

/// Transaction pooling, `pool_size` [`POOL_SIZE`], users `acme` and `globex`
/// bound to their tenants (SCRAM, the default), both on shard `s0`.
fn config_text(cluster: &Cluster) -> String {
    let rest = format!(
        "pool_mode = \"transaction\"\nquery_wait_timeout = \"30s\"\n\n\
         [tenancy]\n\n\
         [[users]]\nname = \"{TENANT_A}\"\npassword = \"{TENANT_A}-secret\"\ntenant = \"{TENANT_A}\"\n\n\
         [[users]]\nname = \"{TENANT_B}\"\npassword = \"{TENANT_B}-secret\"\ntenant = \"{TENANT_B}\"\n\n\
         [[users]]\nname = \"{TENANT_S}\"\npassword = \"{TENANT_S}-secret\"\ntenant = \"{TENANT_S}\"\n\n\
         [[users]]\nname = \"{TRUSTED}\"\npassword = \"{TRUSTED}-secret\"\n\n\
         [routing]\nhash_shards = [\"s0\"]\n\n\
         [[tenants]]\nid = \"{TENANT_S}\"\nshard = \"s0\"\nschema = \"{TENANT_S}\"\n\n\
         [[tenants]]\nid = \"{TENANT_A}\"\nshard = \"s0\"\n\n\
         [[tenants]]\nid = \"{TENANT_B}\"\nshard = \"s0\"\n"
    );
    let mut text = support::config_text_for(&[("s0", cluster, "app")], &rest);
    // The shard table comes last, so this key belongs to it.
    text.push_str(&format!("pool_size = {POOL_SIZE}\n"));
    text
}

// --------------------------------------------------------------- programs

/// Watches, directly on `cluster`, the proxy's server connections to `app`
/// (every client backend but the catalog reader's and the watcher's own)
/// until `stop` is cancelled; returns the most seen at once and how many
/// distinct backends were seen.
async fn watch_server_connections(
    cluster: &Cluster,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<(usize, usize)> {
    let c = support::connect_direct(cluster, "app").await;
    tokio::spawn(async move {
        let mut most = 0;
        let mut seen = std::collections::BTreeSet::new();
        while !stop.is_cancelled() {
            let rows = c
                .query(
                    "SELECT pid FROM pg_stat_activity \
                     WHERE backend_type = 'client backend' AND datname = 'app' \
                       AND pid <> pg_backend_pid() \
                       AND application_name IS DISTINCT FROM 'tenantgate catalog'",
                    &[],
                )
                .await
                .unwrap_or_else(|e| panic!("pg_stat_activity watch: {}", support::error_chain(&e)));
            most = most.max(rows.len());
            seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (most, seen.len())
    })
}

/// Runs `cmd` (a driver program) with the connection settings in its
/// environment, then asserts it exited 0 and printed `ok` for every check in
/// `checks`, and that the proxy never held more than [`POOL_SIZE`] server
/// connections meanwhile. Shows the whole output otherwise. Returns stdout.
async fn run_program(
    cluster: &Cluster,
    mut cmd: tokio::process::Command,
    driver: &str,
    port: u16,
    checks: &[&str],
) -> String {
    cmd.current_dir(manifest_dir())
        .env("TG_HOST", "127.0.0.1")
        .env("TG_PORT", port.to_string())
        .env("TG_DB", "app")
        .env("TG_DRIVER", driver)
        .env("TG_POOL_SIZE", POOL_SIZE.to_string())
        .env("TG_CLIENTS", CLIENTS.to_string())
        .env("TG_TXNS", TXNS.to_string())
        .env("TG_USER_A", TENANT_A)
        .env("TG_PASSWORD_A", format!("{TENANT_A}-secret"))
        .env("TG_TENANT_A", TENANT_A)
        .env("TG_USER_B", TENANT_B)
        .env("TG_PASSWORD_B", format!("{TENANT_B}-secret"))
        .env("TG_TENANT_B", TENANT_B)
        .env("TG_USER_T", TRUSTED)
        .env("TG_PASSWORD_T", format!("{TRUSTED}-secret"))
        .env("TG_USER_S", TENANT_S)
        .env("TG_PASSWORD_S", format!("{TENANT_S}-secret"))
        .env("TG_ITEMS_A", ITEMS_A.to_string())
        .env("TG_ITEMS_B", ITEMS_B.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    for var in [
        "PGOPTIONS",
        "PGSERVICE",
        "PGSSLMODE",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let stop = tokio_util::sync::CancellationToken::new();
    let watch = watch_server_connections(cluster, stop.clone()).await;
    let started = Instant::now();
    let out = match tokio::time::timeout(PROGRAM_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run the {driver} program ({cmd:?}): {e}"),
        Err(_) => panic!("the {driver} program did not finish within {PROGRAM_TIMEOUT:?}"),
    };
    stop.cancel();
    let (most, distinct) = watch.await.expect("pg_stat_activity watch task");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let shown = format!(
        "{driver} program ({:.1} s, {}; server connections: at most {most} at once, \
         {distinct} in all):\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
        started.elapsed().as_secs_f64(),
        out.status
    );
    let missing: Vec<&str> = checks
        .iter()
        .copied()
        .filter(|c| !stdout.lines().any(|l| l.trim_end() == format!("ok {c}")))
        .collect();
    assert!(
        out.status.success() && missing.is_empty() && !stdout.contains("FAIL "),
        "checks without `ok`: {missing:?}\n{shown}"
    );
    assert!(
        (1..=POOL_SIZE).contains(&most),
        "the proxy held {most} server connections at once (pool_size {POOL_SIZE})\n{shown}"
    );
    eprintln!("{shown}");
    stdout
}

/// One column of every row of `sql` (with `$1` = the driver), as text,
/// read directly on the cluster.
async fn direct(cluster: &Cluster, sql: &str, driver: &str) -> Vec<String> {
    let c = support::connect_direct(cluster, "app").await;
    let rows = c
        .query(sql, &[&driver])
        .await
        .unwrap_or_else(|e| panic!("direct query failed: {}\n{sql}", support::error_chain(&e)));
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

/// What every program left in `events`, checked directly on the cluster:
/// rows inserted without `tenant_id` carry the session's tenant, each
/// prepared-loop connection's rows all belong to its tenant, nothing of a
/// rolled-back transaction remains.
async fn assert_common_rows(cluster: &Cluster, driver: &str) {
    let defaults = direct(
        cluster,
        "SELECT note || ' -> ' || tenant_id FROM events \
         WHERE driver = $1 AND note LIKE 'default-tenant-%' ORDER BY note",
        driver,
    )
    .await;
    assert_eq!(
        defaults,
        [
            format!("default-tenant-{TENANT_A} -> {TENANT_A}"),
            format!("default-tenant-{TENANT_B} -> {TENANT_B}"),
        ],
        "{driver}: INSERTs without tenant_id, as stored"
    );
    let loops = direct(
        cluster,
        "SELECT note || ' ' || tenant_id || ' ' || count(*) || ' ' || min(n) || '..' || max(n) \
         FROM events WHERE driver = $1 AND note LIKE 'loop-%' \
         GROUP BY note, tenant_id ORDER BY note",
        driver,
    )
    .await;
    let mut want: Vec<String> = (0..CLIENTS)
        .map(|k| {
            let tenant = if k % 2 == 0 { TENANT_A } else { TENANT_B };
            format!("loop-{k} {tenant} {TXNS} 0..{}", TXNS - 1)
        })
        .collect();
    want.sort();
    assert_eq!(
        loops, want,
        "{driver}: prepared-loop rows per connection, as stored"
    );
    let rolled_back = direct(
        cluster,
        "SELECT count(*)::text FROM events WHERE driver = $1 AND note = 'rolled-back'",
        driver,
    )
    .await;
    assert_eq!(
        rolled_back,
        ["0"],
        "{driver}: rows of a rolled-back transaction"
    );
}

fn checks(extra: &[&'static str]) -> Vec<&'static str> {
    COMMON_CHECKS.iter().chain(extra).copied().collect()
}

/// Program path under the repository, which must exist (it is committed).
fn program(relative: &str) -> PathBuf {
    let p = manifest_dir().join(relative);
    assert!(p.is_file(), "driver program {} is missing", p.display());
    p
}

fn python() -> PathBuf {
    require(".drivers/venv/bin/python", "the drivers' Python venv")
}

fn command(exe: &Path) -> tokio::process::Command {
    tokio::process::Command::new(exe)
}

/// Runs the driver program `cmd` against a fresh cluster and proxy: checks
/// its `ok` lines (the common ones and `extra`) and the rows every program
/// writes. The caller checks the driver's own rows and shuts the proxy down.
async fn drive(
    driver: &str,
    cmd: tokio::process::Command,
    extra: &[&'static str],
) -> (Cluster, support::ProxyHandle) {
    let cluster = start_cluster().await;
    let proxy = support::start_proxy(support::load_config(&config_text(&cluster))).await;
    run_program(&cluster, cmd, driver, proxy.port, &checks(extra)).await;
    assert_common_rows(&cluster, driver).await;
    (cluster, proxy)
}

/// The 20 rows a program wrote with `executemany` as tenant B, as stored.
async fn assert_executemany_rows(cluster: &Cluster, driver: &str) {
    let many = direct(
        cluster,
        "SELECT tenant_id || ' ' || count(*) FROM events \
         WHERE driver = $1 AND note = 'many' GROUP BY tenant_id",
        driver,
    )
    .await;
    assert_eq!(
        many,
        [format!("{TENANT_B} 20")],
        "executemany rows, as stored"
    );
}

// -------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psycopg3() {
    let mut cmd = command(&python());
    cmd.arg(program("tests/drivers/psycopg_check.py"));
    let (cluster, proxy) = drive(
        "psycopg",
        cmd,
        &[
            "executemany",
            "cancel",
            "trusted_choice_in_transaction",
            "trusted_choice_elsewhere_in_transaction",
            "orm_full_row_update",
        ],
    )
    .await;
    assert_executemany_rows(&cluster, "psycopg").await;
    proxy.shutdown().await.expect("proxy shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn asyncpg() {
    let mut cmd = command(&python());
    cmd.arg(program("tests/drivers/asyncpg_check.py"));
    let (cluster, proxy) = drive(
        "asyncpg",
        cmd,
        &[
            "executemany",
            "copy_records_refused",
            "cancel",
            "schema_pool_reset",
            "cached_statement_across_homes",
        ],
    )
    .await;
    assert_executemany_rows(&cluster, "asyncpg").await;
    let copied = direct(
        &cluster,
        "SELECT count(*)::text FROM events WHERE note = 'copy' AND driver = $1",
        "asyncpg",
    )
    .await;
    assert_eq!(copied, ["0"], "rows of the refused COPY, as stored");
    proxy.shutdown().await.expect("proxy shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_postgres() {
    let node = require_command("node", "Node.js");
    require(
        "tests/drivers/node/node_modules/pg/package.json",
        "node-postgres (npm ci in tests/drivers/node)",
    );
    let mut cmd = command(&node);
    cmd.arg(program("tests/drivers/node/pg_check.js"));
    let (_cluster, proxy) = drive("node-pg", cmd, &["cancel"]).await;
    proxy.shutdown().await.expect("proxy shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jdbc() {
    let java = require_command("java", "a Java runtime (JDK)");
    let jar = require(
        "/usr/share/java/postgresql.jar",
        "the PostgreSQL JDBC driver (Debian package libpostgresql-jdbc-java)",
    );
    let mut cmd = command(&java);
    cmd.arg("-cp")
        .arg(&jar)
        .arg(program("tests/drivers/jdbc/JdbcCheck.java"));
    let (cluster, proxy) = drive("jdbc", cmd, &["batch", "cancel"]).await;
    let batch = direct(
        &cluster,
        "SELECT tenant_id || ' ' || count(*) || ' ' || min(n) || '..' || max(n) FROM events \
         WHERE driver = $1 AND note = 'many' GROUP BY tenant_id",
        "jdbc",
    )
    .await;
    assert_eq!(
        batch,
        [format!("{TENANT_B} 20 0..19")],
        "batch rows, as stored"
    );
    proxy.shutdown().await.expect("proxy shutdown");
}
