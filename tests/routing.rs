//! Routing against three real clusters: two hash shards and a dedicated
//! database, plus a schema-per-tenant tenant. Each tenant's rows must land in
//! and be read from its home (checked directly on the backends); a reload
//! that moves a tenant sends its next transaction to the new shard without
//! dropping the session; a broken file changes nothing.

mod raw_client;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use support::{connect, connect_direct, connect_with_options, exec, start_app_cluster, toml_str};
use tenantgate::localpg::Cluster;
use tenantgate::server::Proxy;
use tenantgate::state::ProxyState;

const TABLES: &str = "CREATE TABLE items (tenant_id text NOT NULL, id int NOT NULL, v text, PRIMARY KEY (tenant_id, id));";

struct Fleet {
    s0: Cluster,
    s1: Cluster,
    dedicated: Cluster,
    dir: PathBuf,
}

async fn fleet() -> Fleet {
    let (s0, s1, dedicated) = tokio::join!(
        start_app_cluster(),
        start_app_cluster(),
        start_app_cluster()
    );
    exec(&s0, "app", TABLES).await;
    exec(&s1, "app", TABLES).await;
    exec(
        &s1,
        "app",
        "CREATE SCHEMA umbrella; CREATE TABLE umbrella.items (id int PRIMARY KEY, v text);",
    )
    .await;
    exec(&dedicated, "app", TABLES).await;
    let dir = std::env::temp_dir().join(format!(
        "tenantgate-routing-{}-{}",
        std::process::id(),
        s0.port()
    ));
    std::fs::create_dir_all(&dir).expect("test dir");
    Fleet {
        s0,
        s1,
        dedicated,
        dir,
    }
}

/// The routing table with `mover` placed on `mover_shard`.
fn config_text(f: &Fleet, mover_shard: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[tenancy]\n\n\
         [[users]]\nname = \"app\"\npassword = \"app-secret\"\n\n\
         [[users]]\nname = \"acme\"\npassword = \"acme-secret\"\ntenant = \"acme\"\n\n\
         [[shards]]\nname = \"s0\"\nurl = {}\npool_size = 4\n\n\
         [[shards]]\nname = \"s1\"\nurl = {}\npool_size = 4\n\n\
         [[shards]]\nname = \"bigcorp-db\"\nurl = {}\npool_size = 2\ndedicated = true\n\n\
         [routing]\nhash_shards = [\"s0\", \"s1\"]\n\n\
         [[tenants]]\nid = \"acme\"\nshard = \"s0\"\n\n\
         [[tenants]]\nid = \"bigcorp\"\nshard = \"bigcorp-db\"\n\n\
         [[tenants]]\nid = \"umbrella\"\nshard = \"s1\"\nschema = \"umbrella\"\n\n\
         [[tenants]]\nid = \"mover\"\nshard = \"{mover_shard}\"\n",
        toml_str(&f.s0.url("app")),
        toml_str(&f.s1.url("app")),
        toml_str(&f.dedicated.url("app")),
    )
}

struct Running {
    port: u16,
    state: Arc<ProxyState>,
    path: PathBuf,
}

async fn start(f: &Fleet, mover_shard: &str) -> Running {
    let path = f.dir.join("routing.toml");
    std::fs::write(&path, config_text(f, mover_shard)).expect("write config");
    let config = tenantgate::config::load_file(&path).expect("config loads");
    let proxy = Proxy::bind_with_path(config, Some(path.clone()))
        .await
        .expect("bind");
    let port = proxy.local_addr().expect("addr").port();
    let state = proxy.state();
    tokio::spawn(proxy.run());
    Running { port, state, path }
}

async fn as_tenant(port: u16, tenant: &str) -> tokio_postgres::Client {
    connect_with_options(
        port,
        "app",
        "app-secret",
        "app",
        &format!("-c app.current_tenant={tenant}"),
    )
    .await
}

/// A raw-protocol session of the trusted user with `tenant` chosen at login.
/// The first column of every row `sql` returns, as text.
async fn rows_of(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every non-NULL value of every DataRow in `msgs`, in order.
fn row_values(msgs: &[raw_client::Msg]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| m.data_row())
        .flatten()
        .flatten()
        .collect()
}

/// The SQLSTATE of every ErrorResponse in `msgs`.
fn error_codes(msgs: &[raw_client::Msg]) -> Vec<String> {
    msgs.iter().filter_map(|m| m.code()).collect()
}

async fn raw_as_tenant(port: u16, tenant: &str) -> raw_client::RawClient {
    let mut c = raw_client::RawClient::connect_port(port).await;
    c.send(&raw_client::startup_message(
        3,
        0,
        &[
            ("user", "app"),
            ("database", "app"),
            ("options", &format!("-c app.current_tenant={tenant}")),
        ],
    ))
    .await;
    c.authenticate("app", "app-secret")
        .await
        .unwrap_or_else(|e| panic!("{tenant} logs in: {e:?}"));
    c
}

/// The fleet served with the mover on s0, and one row of acme (`mine`) and
/// one of globex (`theirs`) on s0.
async fn fleet_with_rows_of_acme_and_globex() -> (Fleet, Running) {
    let f = fleet().await;
    let r = start(&f, "s0").await;
    exec(
        &f.s0,
        "app",
        "INSERT INTO items VALUES ('acme', 1, 'mine'), ('globex', 1, 'theirs')",
    )
    .await;
    (f, r)
}

/// [`fleet_with_rows_of_acme_and_globex`], and bigcorp's row `big` in its
/// dedicated database.
async fn fleet_with_rows_of_three_homes() -> (Fleet, Running) {
    let (f, r) = fleet_with_rows_of_acme_and_globex().await;
    exec(
        &f.dedicated,
        "app",
        "INSERT INTO items VALUES ('bigcorp', 1, 'big')",
    )
    .await;
    (f, r)
}

/// Rows of `items` for `tenant` seen directly on a cluster.
async fn rows_on(c: &Cluster, sql: &str) -> Vec<String> {
    connect_direct(c, "app")
        .await
        .query(sql, &[])
        .await
        .expect("direct query")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

async fn count_on(c: &Cluster, tenant: &str) -> i64 {
    connect_direct(c, "app")
        .await
        .query_one(
            "SELECT count(*) FROM items WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .expect("direct count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_lives_in_its_home() {
    let f = fleet().await;
    let r = start(&f, "s0").await;

    // Explicit placement, via tenant-bound credentials.
    let acme = connect(r.port, "acme", "acme-secret", "app").await;
    acme.batch_execute("INSERT INTO items (id, v) VALUES (1, 'acme-row')")
        .await
        .unwrap();
    assert_eq!(count_on(&f.s0, "acme").await, 1);
    assert_eq!(count_on(&f.s1, "acme").await, 0);

    // Hash placement for unlisted tenants: where `place` says, and nowhere else.
    for t in ["t1", "t2", "t3", "t4", "t5", "t6"] {
        let c = as_tenant(r.port, t).await;
        c.batch_execute(&format!("INSERT INTO items (id, v) VALUES (1, '{t}-row')"))
            .await
            .unwrap();
        let home = tenantgate::router::place(t, 2).expect("hash shards");
        let (here, there) = if home == 0 {
            (&f.s0, &f.s1)
        } else {
            (&f.s1, &f.s0)
        };
        assert_eq!(
            count_on(here, t).await,
            1,
            "{t} must land on hash shard {home}"
        );
        assert_eq!(
            count_on(there, t).await,
            0,
            "{t} must not land on the other shard"
        );
        let seen: String = c
            .query_one("SELECT v FROM items", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(seen, format!("{t}-row"));
    }

    // Dedicated database: statements pass through unrewritten (the client
    // writes the tenant column itself, and sees the whole table).
    let big = as_tenant(r.port, "bigcorp").await;
    big.batch_execute(
        "INSERT INTO items (tenant_id, id, v) VALUES ('bigcorp', 1, 'big-row'), ('other', 2, 'x')",
    )
    .await
    .unwrap();
    assert_eq!(
        rows_on(&f.dedicated, "SELECT v FROM items ORDER BY id").await,
        ["big-row", "x"]
    );
    let n: i64 = big
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "a dedicated tenant sees its whole database");
    assert_eq!(
        count_on(&f.s0, "bigcorp").await + count_on(&f.s1, "bigcorp").await,
        0
    );

    // Schema tenant: its own schema on s1, search_path pinned.
    let umbrella = as_tenant(r.port, "umbrella").await;
    umbrella
        .batch_execute("INSERT INTO items (id, v) VALUES (7, 'umbrella-row')")
        .await
        .unwrap();
    assert_eq!(
        rows_on(&f.s1, "SELECT v FROM umbrella.items").await,
        ["umbrella-row"]
    );
    let path: String = umbrella
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(path, "\"umbrella\", public");
    // Nothing that resets the search_path gets through: it would leave
    // `items` naming the shared public.items, unscoped, for the rest of the
    // batch.
    exec(
        &f.s1,
        "app",
        "INSERT INTO items VALUES ('other', 1, 'not yours')",
    )
    .await;
    for sql in [
        "RESET ALL; SELECT v FROM items",
        "BEGIN; RESET ALL",
        "BEGIN; DISCARD ALL",
        "COMMIT; reset/**/all",
        "SELECT pg_advisory_lock(7); RESET ALL",
    ] {
        let err = umbrella.batch_execute(sql).await.expect_err(sql);
        assert_eq!(support::sqlstate(&err).as_deref(), Some("42501"), "{sql}");
        let _ = umbrella.batch_execute("ROLLBACK").await;
    }
    // Inside a transaction block, and in the extended protocol (a later
    // Execute of the pipeline could follow it on the same connection).
    umbrella.batch_execute("BEGIN").await.unwrap();
    let err = umbrella
        .batch_execute("RESET ALL")
        .await
        .expect_err("in block");
    assert_eq!(support::sqlstate(&err).as_deref(), Some("42501"));
    umbrella.batch_execute("ROLLBACK").await.unwrap();
    let err = umbrella
        .execute("RESET ALL", &[])
        .await
        .expect_err("extended");
    assert_eq!(support::sqlstate(&err).as_deref(), Some("42501"));
    // Alone, or last of a query string outside a transaction block, they
    // run (client pools reset connections so: asyncpg sends the string
    // below), and the next statement gets a server connection whose
    // search_path is pinned again.
    for sql in [
        "RESET ALL",
        "DISCARD ALL",
        "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;",
    ] {
        umbrella.batch_execute(sql).await.expect(sql);
        let path: String = umbrella
            .query_one("SHOW search_path", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(path, "\"umbrella\", public", "after {sql}");
        assert_eq!(
            rows_of(&umbrella, "SELECT v FROM items").await,
            ["umbrella-row"],
            "after {sql}"
        );
    }
    // Sent without waiting for the reset's reply: the query behind it
    // waits, and does not run on the reset connection.
    let mut raw = raw_as_tenant(r.port, "umbrella").await;
    raw.send(&raw_client::batch(&[
        raw_client::query_msg("RESET ALL"),
        raw_client::query_msg("SELECT v FROM items"),
        raw_client::query_msg("SHOW search_path"),
    ]))
    .await;
    let mut msgs = Vec::new();
    for _ in 0..3 {
        msgs.extend(raw.until_ready().await);
    }
    let values = row_values(&msgs);
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(values, ["umbrella-row", "\"umbrella\", public"], "{msgs:?}");
    assert_eq!(
        rows_of(&umbrella, "SELECT v FROM items").await,
        ["umbrella-row"]
    );
    // Another tenant cannot reach the schema.
    let err = acme
        .query("SELECT * FROM umbrella.items", &[])
        .await
        .expect_err("refused");
    assert_eq!(support::sqlstate(&err).as_deref(), Some("42501"));
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_moves_a_tenant_without_dropping_sessions() {
    let f = fleet().await;
    let r = start(&f, "s0").await;
    let mover = as_tenant(r.port, "mover").await;
    let acme = connect(r.port, "acme", "acme-secret", "app").await;
    mover
        .batch_execute("INSERT INTO items (id, v) VALUES (1, 'before')")
        .await
        .unwrap();
    acme.batch_execute("INSERT INTO items (id, v) VALUES (1, 'a1')")
        .await
        .unwrap();
    assert_eq!(count_on(&f.s0, "mover").await, 1);

    // A transaction open across the reload finishes where it started.
    mover
        .batch_execute("BEGIN; INSERT INTO items (id, v) VALUES (2, 'during')")
        .await
        .unwrap();
    std::fs::write(&r.path, config_text(&f, "s1")).unwrap();
    assert!(
        tenantgate::server::reload(&r.state, &r.path),
        "reload accepted"
    );
    assert_eq!(r.state.loaded().generation, 2);
    mover
        .batch_execute("INSERT INTO items (id, v) VALUES (3, 'still-old'); COMMIT")
        .await
        .unwrap();
    assert_eq!(
        count_on(&f.s0, "mover").await,
        3,
        "the open transaction stayed on s0"
    );

    // The next transaction of the same session goes to the new home.
    mover
        .batch_execute("INSERT INTO items (id, v) VALUES (4, 'after')")
        .await
        .unwrap();
    assert_eq!(count_on(&f.s1, "mover").await, 1);
    assert_eq!(count_on(&f.s0, "mover").await, 3);
    // Other tenants are unaffected, and no connection dropped.
    acme.batch_execute("INSERT INTO items (id, v) VALUES (2, 'a2')")
        .await
        .unwrap();
    assert_eq!(count_on(&f.s0, "acme").await, 2);
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// The tenant-move procedure (docs/operations.md): a transaction of the
/// tenant that waits under PAUSE runs, after the routing table moved the
/// tenant and RESUME, on its new home, never on the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_paused_during_a_move_runs_on_the_new_home() {
    use tenantgate::admin::Scope;
    let f = fleet().await;
    let r = start(&f, "s0").await;
    let mover = as_tenant(r.port, "mover").await;
    mover
        .batch_execute("INSERT INTO items (id, v) VALUES (1, 'before')")
        .await
        .unwrap();
    assert_eq!(count_on(&f.s0, "mover").await, 1);

    let scope = Scope::Tenant("mover".into());
    r.state.pauses.pause(&scope);
    let waiting = tokio::spawn(async move {
        mover
            .batch_execute("INSERT INTO items (id, v) VALUES (2, 'after-move')")
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the paused transaction waits");
    std::fs::write(&r.path, config_text(&f, "s1")).unwrap();
    assert!(
        tenantgate::server::reload(&r.state, &r.path),
        "reload accepted"
    );
    r.state.pauses.resume(&scope);
    tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("runs once resumed")
        .expect("task")
        .expect("the insert succeeds");
    assert_eq!(count_on(&f.s1, "mover").await, 1, "written on the new home");
    assert_eq!(
        count_on(&f.s0, "mover").await,
        1,
        "nothing new on the old one"
    );
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// Client backends on `c` other than the asking one.
async fn backends_on(c: &Cluster) -> i64 {
    connect_direct(c, "app")
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' \
             AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("direct count")
        .get(0)
}

/// A reload that shrinks a shard's pool while its connections are busy:
/// they stay counted, no new transaction starts until the busy ones are
/// below the new size, and the shard ends up with no more connections than
/// that. New timeouts apply to the same pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_resizes_a_busy_pool_in_place() {
    let f = fleet().await;
    let r = start(&f, "s0").await;
    let mut busy = Vec::new();
    for _ in 0..3 {
        let c = connect(r.port, "acme", "acme-secret", "app").await;
        c.batch_execute("BEGIN; SELECT count(*) FROM items")
            .await
            .unwrap();
        busy.push(c);
    }
    let pool = r.state.pool("s0").expect("pool s0");
    assert_eq!((pool.size(), pool.in_use()), (4, 3));

    let smaller = config_text(&f, "s0")
        .replacen("pool_size = 4", "pool_size = 2", 1)
        .replacen(
            "listen = \"127.0.0.1:0\"\n",
            "listen = \"127.0.0.1:0\"\nserver_connect_timeout = \"7s\"\n",
            1,
        );
    std::fs::write(&r.path, smaller).unwrap();
    assert!(
        tenantgate::server::reload(&r.state, &r.path),
        "reload accepted"
    );
    let after = r.state.pool("s0").expect("pool s0");
    assert!(Arc::ptr_eq(&pool, &after), "the shard keeps its pool");
    assert_eq!(after.size(), 2);
    assert_eq!(after.in_use(), 3, "busy connections stay counted");
    assert_eq!(after.connect_timeout(), std::time::Duration::from_secs(7));

    let late = connect(r.port, "acme", "acme-secret", "app").await;
    let waiting =
        tokio::spawn(async move { late.batch_execute("SELECT count(*) FROM items").await });
    let pause = std::time::Duration::from_millis(400);
    tokio::time::sleep(pause).await;
    assert!(
        !waiting.is_finished(),
        "3 busy of 2: the new transaction waits"
    );
    busy[0].batch_execute("COMMIT").await.unwrap();
    tokio::time::sleep(pause).await;
    assert!(!waiting.is_finished(), "2 busy of 2: it still waits");
    busy[1].batch_execute("COMMIT").await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("runs once a slot is free")
        .expect("task")
        .expect("the query succeeds");
    busy[2].batch_execute("COMMIT").await.unwrap();
    tokio::time::sleep(pause).await;
    assert!(
        backends_on(&f.s0).await <= 2,
        "the shard keeps no more connections than the new size"
    );
    assert_eq!(after.in_use(), 0);
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A reload that points a shard at another server: a transaction open
/// across it finishes on the old server, whose connection is then closed;
/// the next one runs on the new server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_a_shard_to_another_server() {
    let f = fleet().await;
    let r = start(&f, "s0").await;
    let bigcorp = as_tenant(r.port, "bigcorp").await;
    bigcorp
        .batch_execute("BEGIN; INSERT INTO items VALUES ('bigcorp', 1, 'old server')")
        .await
        .unwrap();
    let moved = config_text(&f, "s0").replace(
        &toml_str(&f.dedicated.url("app")),
        &toml_str(&f.s1.url("app")),
    );
    std::fs::write(&r.path, moved).unwrap();
    assert!(
        tenantgate::server::reload(&r.state, &r.path),
        "reload accepted"
    );
    bigcorp.batch_execute("COMMIT").await.unwrap();
    bigcorp
        .batch_execute("INSERT INTO items VALUES ('bigcorp', 2, 'new server')")
        .await
        .unwrap();
    assert_eq!(count_on(&f.dedicated, "bigcorp").await, 1);
    assert_eq!(count_on(&f.s1, "bigcorp").await, 1);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        backends_on(&f.dedicated).await,
        0,
        "the old server's connection was closed when given back"
    );
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_reload_keeps_the_old_table() {
    let f = fleet().await;
    let r = start(&f, "s0").await;
    let mover = as_tenant(r.port, "mover").await;
    for broken in [
        "this is not toml [".to_string(),
        config_text(&f, "nowhere"),
        format!(
            "{}\n[[tenants]]\nid = \"x\"\nshard = \"s0\"\nunknown_key = 1\n",
            config_text(&f, "s1")
        ),
    ] {
        std::fs::write(&r.path, broken).unwrap();
        assert!(
            !tenantgate::server::reload(&r.state, &r.path),
            "a broken file is refused"
        );
        assert_eq!(r.state.loaded().generation, 1);
        mover
            .batch_execute("INSERT INTO items (id, v) VALUES (1, 'x') ON CONFLICT DO NOTHING")
            .await
            .unwrap();
        assert_eq!(
            count_on(&f.s0, "mover").await,
            1,
            "still served from the old table"
        );
    }
    assert!(!Path::new(&r.path).with_extension("missing").exists());
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A dedicated tenant's session forwards its statements unrewritten, so it
/// can prepare exactly the text a shared tenant's statement is rewritten
/// into. The proxy-wide statement registry must not lend that entry (which
/// carries no tenant binding) to the shared tenant: its Bind would go
/// unchecked, and a value of its own would stand for the tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedicated_tenant_cannot_lend_its_statement_to_a_shared_one() {
    use raw_client::{RawClient, batch, bind, execute, message, parse, sync};
    let (f, r) = fleet_with_rows_of_acme_and_globex().await;
    // bigcorp (dedicated): the rewritten text of acme's statement, with
    // the parameter types the proxy gives it (unknown, then text).
    let mut big = raw_as_tenant(r.port, "bigcorp").await;
    let rewritten =
        "SELECT v FROM (SELECT * FROM items WHERE tenant_id = $2) AS items WHERE id = $1";
    let mut body = b"poison\0".to_vec();
    body.extend_from_slice(rewritten.as_bytes());
    body.push(0);
    body.extend_from_slice(&2i16.to_be_bytes());
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&25i32.to_be_bytes());
    big.send(&batch(&[message(b'P', &body), sync()])).await;
    big.until_ready().await;
    // acme binds a value of its own where the tenant goes.
    let mut acme = RawClient::login(r.port, "acme", "acme-secret", "app").await;
    acme.send(&batch(&[
        parse("q", "SELECT v FROM items WHERE id = $1"),
        bind("", "q", &[Some("1"), Some("globex")]),
        execute(""),
        sync(),
    ]))
    .await;
    let msgs = acme.until_ready().await;
    let values: Vec<Option<String>> = msgs.iter().filter_map(|m| m.data_row()).flatten().collect();
    assert!(
        !values.contains(&Some("theirs".to_string())),
        "acme read globex's row through bigcorp's statement"
    );
    // Its own statement, bound as it should be, sees its own row only.
    acme.send(&batch(&[bind("", "q", &[Some("1")]), execute(""), sync()]))
        .await;
    let msgs = acme.until_ready().await;
    let values: Vec<Option<String>> = msgs.iter().filter_map(|m| m.data_row()).flatten().collect();
    assert_eq!(values, [Some("mine".to_string())]);
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// Inside a transaction block the server connection belongs to the home of
/// the tenant it began with: a `SET LOCAL` of a tenant served elsewhere
/// (here its own database) is refused with 25001, and the transaction goes
/// on as before; it would otherwise read or write that tenant's rows in
/// the wrong database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_local_of_a_tenant_served_elsewhere_is_refused_in_a_transaction() {
    use raw_client::query_msg;
    let (f, r) = fleet_with_rows_of_acme_and_globex().await;
    let mut c = raw_as_tenant(r.port, "acme").await;
    c.send(&query_msg("BEGIN")).await;
    c.until_ready().await;
    c.send(&query_msg("SET LOCAL app.current_tenant = 'bigcorp'"))
        .await;
    let msgs = c.until_ready().await;
    assert_eq!(error_codes(&msgs), ["25001"], "{msgs:?}");
    c.send(&query_msg("ROLLBACK")).await;
    c.until_ready().await;
    // Outside a transaction block, the session moves (a SET, or SET LOCAL
    // as the first statement after BEGIN on the new home).
    c.send(&query_msg("SET app.current_tenant = 'bigcorp'"))
        .await;
    let msgs = c.until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    c.send(&query_msg("SELECT count(*) FROM items")).await;
    let msgs = c.until_ready().await;
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A trusted session's tenant change must not land on a server connection
/// routed for the old tenant. Inside one extended-protocol batch, statements
/// executed before it hold that connection until the Sync behind the
/// change, so it is refused with 25001 and nothing after it runs. Simple
/// Queries sent without waiting are answered in order: the change waits
/// for the replies before it and then counts, as in Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_change_inside_a_pipeline_waits_or_is_refused() {
    use raw_client::{batch, bind, execute, parse, query_msg, sync};
    let (f, r) = fleet_with_rows_of_three_homes().await;
    let mut c = raw_as_tenant(r.port, "acme").await;

    // Extended protocol: one pipeline, one Sync.
    let step = |sql: &str| [parse("", sql), bind("", "", &[]), execute("")];
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for sql in [
        "SELECT 1",
        "SET app.current_tenant = 'bigcorp'",
        "SELECT v FROM items",
    ] {
        parts.extend(step(sql));
    }
    parts.push(sync());
    c.send(&batch(&parts)).await;
    let msgs = c.until_ready().await;
    assert_eq!(error_codes(&msgs), ["25001"], "{msgs:?}");
    assert!(row_values(&msgs).iter().all(|v| v == "1"), "{msgs:?}");

    // Simple Queries sent without waiting (the first one slow, so the SET
    // surely arrives while it runs): the SET waits for the replies before
    // it, then the query after it runs as bigcorp, on its own database.
    c.send(&batch(&[
        query_msg("SELECT 2 FROM pg_sleep(0.2)"),
        query_msg("SET app.current_tenant = 'bigcorp'"),
        query_msg("SELECT v FROM items"),
    ]))
    .await;
    let mut msgs = Vec::new();
    for _ in 0..3 {
        msgs.extend(c.until_ready().await);
    }
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(row_values(&msgs), ["2", "big"]);

    // And back, the same way, after an error (tokio-postgres sends its next
    // query once it has the ErrorResponse, before the ReadyForQuery).
    c.send(&batch(&[
        query_msg("SELECT 1/0 FROM pg_sleep(0.2)"),
        query_msg("SET app.current_tenant = 'acme'"),
        query_msg("SELECT v FROM items"),
    ]))
    .await;
    let mut msgs = Vec::new();
    for _ in 0..3 {
        msgs.extend(c.until_ready().await);
    }
    assert_eq!(error_codes(&msgs), ["22012"], "{msgs:?}");
    assert_eq!(row_values(&msgs), ["mine"]);
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// In session pooling a session keeps its server connection, so a tenant
/// change is allowed only to a tenant served by the same shard and schema:
/// a change to a dedicated database (or another shard or schema) would run
/// the new tenant's statements, rewritten for it or not at all, on the old
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_refuses_a_tenant_change_to_another_server() {
    let f = fleet().await;
    let path = f.dir.join("routing-session.toml");
    let text = config_text(&f, "s0").replacen(
        "listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.1:0\"\npool_mode = \"session\"\n",
        1,
    );
    std::fs::write(&path, text).expect("write config");
    let config = tenantgate::config::load_file(&path).expect("config loads");
    let proxy = Proxy::bind(config).await.expect("bind");
    let port = proxy.local_addr().expect("addr").port();
    tokio::spawn(proxy.run());
    exec(
        &f.s0,
        "app",
        "INSERT INTO items VALUES ('acme', 1, 'mine'), ('mover', 1, 'moved'), ('globex', 1, 'theirs')",
    )
    .await;
    let c = as_tenant(port, "acme").await;
    for other in ["bigcorp", "umbrella"] {
        let err = c
            .batch_execute(&format!("SET app.current_tenant = '{other}'"))
            .await
            .expect_err(other);
        assert_eq!(support::sqlstate(&err).as_deref(), Some("0A000"), "{other}");
    }
    // Still acme, on s0.
    let rows = c.query("SELECT v FROM items", &[]).await.unwrap();
    let seen: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(seen, ["mine"]);
    // The same shard: allowed.
    c.batch_execute("SET app.current_tenant = 'mover'")
        .await
        .unwrap();
    let rows = c.query("SELECT v FROM items", &[]).await.unwrap();
    let seen: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(seen, ["moved"]);
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A statement that sets the tenant counts when it is bound, as Postgres
/// runs it at Execute, also when bound again without a new Parse, as
/// drivers do once they prepare it on the server (JDBC from its fifth use):
/// the session used to take the tenant of the last Parse, so an honest
/// application read and wrote another tenant's rows, and preparing a SET
/// changed the tenant. Statements after such a change in the same pipeline
/// are refused (they would run on the connection routed for the old
/// tenant). acme and mover both live on s0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_tenant_set_counts_when_it_is_bound() {
    use raw_client::{batch, bind, describe, execute, flush, parse, sync};
    let (f, r) = fleet_with_rows_of_acme_and_globex().await;
    exec(
        &f.s0,
        "app",
        "INSERT INTO items VALUES ('mover', 1, 'moved')",
    )
    .await;
    let mut c = raw_as_tenant(r.port, "acme").await;
    c.send(&batch(&[
        parse("set_acme", "SET app.current_tenant = 'acme'"),
        parse("set_mover", "SET app.current_tenant = 'mover'"),
        sync(),
    ]))
    .await;
    assert!(error_codes(&c.until_ready().await).is_empty());
    assert_eq!(
        c.query_values("SELECT v FROM items").await,
        [Some("mine".to_string())],
        "preparing a SET changes nothing"
    );
    for (stmt, expected) in [
        ("set_acme", "mine"),
        ("set_mover", "moved"),
        ("set_acme", "mine"),
    ] {
        c.send(&batch(&[bind("", stmt, &[]), execute(""), sync()]))
            .await;
        assert!(error_codes(&c.until_ready().await).is_empty(), "{stmt}");
        assert_eq!(
            c.query_values("SELECT v FROM items").await,
            [Some(expected.to_string())],
            "after binding {stmt}"
        );
    }
    // In one pipeline: the statement after the change is refused.
    c.send(&batch(&[
        bind("", "set_mover", &[]),
        execute(""),
        parse("", "SELECT v FROM items"),
        bind("", "", &[]),
        execute(""),
        sync(),
    ]))
    .await;
    let msgs = c.until_ready().await;
    assert_eq!(error_codes(&msgs), ["25001"], "{msgs:?}");
    assert!(msgs.iter().all(|m| m.data_row().is_none()), "{msgs:?}");
    // The failed pipeline's SET did not count, as in Postgres.
    assert_eq!(
        c.query_values("SELECT v FROM items").await,
        [Some("mine".to_string())]
    );
    // Bound in the batch after a slow one, sent without waiting: the SET
    // waits for the earlier batch's replies and counts; the batch after it
    // runs as mover.
    c.send(&batch(&[
        parse("", "SELECT 1 FROM pg_sleep(0.2)"),
        bind("", "", &[]),
        execute(""),
        sync(),
        bind("", "set_mover", &[]),
        execute(""),
        sync(),
        parse("", "SELECT v FROM items"),
        bind("", "", &[]),
        execute(""),
        sync(),
    ]))
    .await;
    let mut msgs = Vec::new();
    for _ in 0..3 {
        msgs.extend(c.until_ready().await);
    }
    assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(row_values(&msgs), ["1", "moved"], "{msgs:?}");
    c.send(&batch(&[bind("", "set_acme", &[]), execute(""), sync()]))
        .await;
    assert!(error_codes(&c.until_ready().await).is_empty());
    // What drivers send: the SET's own Parse (and Describe) in its pipeline
    // are not earlier statements. libpq (unnamed), pgjdbc (named, with
    // Describes), asyncpg (Parse, Describe and Flush first).
    let shapes: [(&str, Vec<Vec<u8>>); 3] = [
        (
            "moved",
            vec![
                parse("", "SET app.current_tenant = 'mover'"),
                bind("", "", &[]),
                execute(""),
                sync(),
            ],
        ),
        (
            "mine",
            vec![
                parse("S_1", "SET app.current_tenant = 'acme'"),
                describe(b'S', "S_1"),
                bind("", "S_1", &[]),
                describe(b'P', ""),
                execute(""),
                sync(),
            ],
        ),
        (
            "moved",
            vec![
                parse("a_1", "SET app.current_tenant = 'mover'"),
                describe(b'S', "a_1"),
                flush(),
            ],
        ),
    ];
    for (expected, pipeline) in shapes {
        let flushed = pipeline.last() == Some(&flush());
        c.send(&batch(&pipeline)).await;
        if flushed {
            // ParseComplete, ParameterDescription, NoData.
            for _ in 0..3 {
                assert!(!c.expect_msg().await.is_error());
            }
            c.send(&batch(&[bind("", "a_1", &[]), execute(""), sync()]))
                .await;
        }
        let msgs = c.until_ready().await;
        assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
        assert_eq!(
            c.query_values("SELECT v FROM items").await,
            [Some(expected.to_string())]
        );
    }
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A reload that changes what kind of home a tenant has (here: from a
/// shared shard into a schema of its own) while a transaction is open:
/// the rest of the transaction is rewritten for the connection it holds,
/// the old home, as it finishes there; the next transaction goes to the new
/// home. (Rewritten for the new home, the old shard's rows were read
/// unscoped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_across_a_move_keeps_its_rewrite() {
    let (f, r) = fleet_with_rows_of_acme_and_globex().await;
    exec(
        &f.s0,
        "app",
        "INSERT INTO items VALUES ('mover', 1, 'old home')",
    )
    .await;
    exec(
        &f.s1,
        "app",
        "CREATE SCHEMA moverschema; CREATE TABLE moverschema.items (id int PRIMARY KEY, v text); \
         INSERT INTO moverschema.items VALUES (1, 'new home')",
    )
    .await;
    let mover = as_tenant(r.port, "mover").await;
    let values =
        |rows: Vec<tokio_postgres::Row>| -> Vec<String> { rows.iter().map(|r| r.get(0)).collect() };
    mover.batch_execute("BEGIN").await.unwrap();
    let before = mover.query("SELECT v FROM items", &[]).await.unwrap();
    assert_eq!(values(before), ["old home"]);
    let moved = config_text(&f, "s0").replace(
        "id = \"mover\"\nshard = \"s0\"\n",
        "id = \"mover\"\nshard = \"s1\"\nschema = \"moverschema\"\n",
    );
    std::fs::write(&r.path, moved).unwrap();
    assert!(
        tenantgate::server::reload(&r.state, &r.path),
        "reload accepted"
    );
    let during = mover.query("SELECT v FROM items", &[]).await.unwrap();
    assert_eq!(values(during), ["old home"], "still the old home's rewrite");
    mover.batch_execute("COMMIT").await.unwrap();
    let after = mover.query("SELECT v FROM items", &[]).await.unwrap();
    assert_eq!(values(after), ["new home"]);
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// `FOR NO KEY UPDATE` (Hibernate's pessimistic write lock) is rewritten
/// and keeps its strength: a foreign-key check's `FOR KEY SHARE` from
/// another session is not blocked by it, as it would be by `FOR UPDATE`
/// (the statement was refused as a syntax error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_key_update_lock_keeps_its_strength() {
    let (f, r) = fleet_with_rows_of_acme_and_globex().await;
    let acme = as_tenant(r.port, "acme").await;
    acme.batch_execute("BEGIN").await.unwrap();
    let rows = acme
        .query(
            "SELECT v FROM items WHERE id = $1 FOR NO KEY UPDATE",
            &[&1i32],
        )
        .await
        .expect("FOR NO KEY UPDATE");
    assert_eq!(rows.len(), 1);
    let direct = connect_direct(&f.s0, "app").await;
    direct
        .batch_execute("SET lock_timeout = '2s'")
        .await
        .unwrap();
    direct
        .batch_execute("SELECT 1 FROM items WHERE tenant_id = 'acme' AND id = 1 FOR KEY SHARE")
        .await
        .expect("KEY SHARE is compatible with NO KEY UPDATE");
    let e = direct
        .batch_execute("SELECT 1 FROM items WHERE tenant_id = 'acme' AND id = 1 FOR SHARE")
        .await
        .expect_err("SHARE conflicts with NO KEY UPDATE");
    assert_eq!(e.code().map(|c| c.code()), Some("55P03"), "{e:?}");
    acme.batch_execute("COMMIT").await.unwrap();
    // Several relations after OF (Django's select_for_update(of=…)).
    let rows = acme
        .query(
            "SELECT a.v FROM items a JOIN items b ON b.id = a.id \
             WHERE a.id = $1 FOR NO KEY UPDATE OF a, b NOWAIT",
            &[&1i32],
        )
        .await
        .expect("an OF list");
    assert_eq!(rows.len(), 1);
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A table created after the catalog was read (a migration) is picked up
/// when a tenant session first names it (the catalog is read again, at most
/// every 2 s), and scoped like the others; it was 42P01 until a RELOAD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_created_later_is_picked_up_when_named() {
    let (f, r) = fleet_with_rows_of_acme_and_globex().await;
    let acme = as_tenant(r.port, "acme").await;
    assert_eq!(rows_of(&acme, "SELECT v FROM items").await, ["mine"]);
    exec(
        &f.s0,
        "app",
        "CREATE TABLE late (tenant_id text NOT NULL, v text); \
         INSERT INTO late VALUES ('acme', 'late mine'), ('globex', 'late theirs');",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(rows_of(&acme, "SELECT v FROM late").await, ["late mine"]);
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// Settings a trusted session made before it chose a shared tenant (or
/// while on a dedicated database), which would change how the rewritten
/// text resolves or parses (`search_path`, `standard_conforming_strings`),
/// are not replayed where rows are scoped. (Replayed after the schema
/// tenant's pinned path, `search_path = public` made the schema tenant's
/// unqualified names reach the shard's shared tables unscoped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_from_before_a_tenant_do_not_follow_it_to_a_shared_shard() {
    let (f, r) = fleet_with_rows_of_three_homes().await;
    exec(
        &f.s1,
        "app",
        "INSERT INTO items VALUES ('initech', 1, 'initech row'); \
         INSERT INTO umbrella.items VALUES (1, 'umbrella row');",
    )
    .await;
    let app = connect(r.port, "app", "app-secret", "app").await;
    let big = as_tenant(r.port, "bigcorp").await;
    for (c, setup, tenant, want) in [
        (
            &app,
            "SELECT set_config('search_path', 'public', false)",
            "umbrella",
            "umbrella row",
        ),
        (
            &app,
            "SELECT set_config('standard_conforming_strings', 'off', false)",
            "acme",
            "mine",
        ),
        (&big, "SET search_path = umbrella, public", "acme", "mine"),
        (&big, "SET search_path = public", "umbrella", "umbrella row"),
    ] {
        c.batch_execute(setup).await.expect(setup);
        c.batch_execute(&format!("SET app.current_tenant = '{tenant}'"))
            .await
            .expect("choose the tenant");
        assert_eq!(
            rows_of(c, "SELECT v FROM items").await,
            [want],
            "{setup}, then {tenant}"
        );
        c.batch_execute("RESET ALL").await.expect("reset");
    }
    // Back on the dedicated database, its own setting applies again.
    big.batch_execute("SET search_path = public").await.unwrap();
    big.batch_execute("SET app.current_tenant = 'acme'")
        .await
        .unwrap();
    assert_eq!(rows_of(&big, "SELECT v FROM items").await, ["mine"]);
    big.batch_execute("SET app.current_tenant = 'bigcorp'")
        .await
        .unwrap();
    let path = big
        .simple_query("SHOW search_path")
        .await
        .expect("show")
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
    assert_eq!(path.as_deref(), Some("public"));
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A trusted session that has chosen no tenant may run DDL, but not DDL
/// that reads tenant rows as it runs (`CREATE TABLE … AS`, a materialized
/// view): like the query alone, it is refused until a tenant is chosen (it
/// copied every tenant's rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_that_reads_tenant_rows_needs_a_tenant() {
    let (f, r) = fleet_with_rows_of_acme_and_globex().await;
    let app = connect(r.port, "app", "app-secret", "app").await;
    for sql in [
        "CREATE TEMP TABLE copied AS SELECT * FROM items",
        "CREATE MATERIALIZED VIEW every_item AS SELECT v FROM items",
    ] {
        let e = app.batch_execute(sql).await.expect_err(sql);
        assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{sql}: {e:?}");
        assert!(
            e.as_db_error()
                .is_some_and(|d| d.message().contains("no tenant")),
            "{sql}: {e:?}"
        );
    }
    app.batch_execute("CREATE TEMP TABLE numbers AS SELECT 1 AS n")
        .await
        .expect("DDL reading no tenant rows");
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A trusted session's first choice of a tenant with another home, sent
/// right after the `BEGIN` that opened its transaction (what drivers in
/// their default mode do, psycopg with autocommit off): nothing ran there
/// yet, so the transaction moves to the tenant's home, and commits there.
/// (It was refused, 25001: such a session could only choose tenants of
/// the default shard.) A rollback undoes the choice; after any other
/// statement in the transaction the choice stays refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_choice_right_after_begin_moves_the_transaction() {
    let f = fleet().await;
    let r = start(&f, "s1").await;
    exec(
        &f.dedicated,
        "app",
        "INSERT INTO items VALUES ('bigcorp', 1, 'big')",
    )
    .await;
    let mover_row = "SELECT v FROM items WHERE tenant_id = 'mover'";
    let app = connect(r.port, "app", "app-secret", "app").await;
    app.batch_execute("BEGIN").await.expect("BEGIN");
    app.batch_execute("SET app.current_tenant = 'mover'")
        .await
        .expect("a first choice right after BEGIN");
    app.batch_execute("INSERT INTO items (tenant_id, id, v) VALUES ('mover', 1, 'moved')")
        .await
        .expect("insert in the moved transaction");
    app.batch_execute("COMMIT").await.expect("COMMIT");
    assert_eq!(
        rows_on(&f.s1, mover_row).await,
        ["moved"],
        "on the new home"
    );
    assert!(rows_on(&f.s0, mover_row).await.is_empty(), "nothing on s0");
    assert_eq!(rows_of(&app, "SELECT v FROM items").await, ["moved"]);
    assert_eq!(rows_of(&app, "SHOW app.current_tenant").await, ["mover"]);

    let app = connect(r.port, "app", "app-secret", "app").await;
    app.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .await
        .expect("BEGIN");
    app.batch_execute("SET app.current_tenant = 'bigcorp'")
        .await
        .expect("a first choice of the dedicated tenant");
    assert_eq!(rows_of(&app, "SELECT v FROM items").await, ["big"]);
    assert_eq!(
        rows_of(&app, "SHOW transaction_isolation").await,
        ["serializable"],
        "begun again as the client began it"
    );
    app.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    assert_eq!(rows_of(&app, "SHOW app.current_tenant").await, [""]);

    app.batch_execute("BEGIN").await.expect("BEGIN");
    assert_eq!(rows_of(&app, "SELECT '1'").await, ["1"]);
    let e = app
        .batch_execute("SET app.current_tenant = 'mover'")
        .await
        .expect_err("a choice after a statement ran");
    assert_eq!(e.code().map(|c| c.code()), Some("25001"), "{e:?}");
    app.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// Server connections start with standard strings whatever defaults the
/// server, database or role were given (`ALTER ROLE … IN DATABASE … SET`,
/// which a dedicated tenant sharing the cluster and role could run): with
/// `standard_conforming_strings = off` the server would read backslashes
/// in strings otherwise than the rewriter did. (Before, such a default
/// reached every pooled connection opened after it, and a shard whose
/// default was off could not have its catalog read at all.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connections_read_strings_as_the_rewriter_does() {
    let f = fleet().await;
    exec(
        &f.s0,
        "app",
        "ALTER DATABASE app SET standard_conforming_strings = off; \
         INSERT INTO items VALUES ('acme', 1, 'mine\\'), ('globex', 1, 'theirs');",
    )
    .await;
    assert_eq!(
        rows_on(&f.s0, "SHOW standard_conforming_strings").await,
        ["off"],
        "the database default a direct connection gets"
    );
    let r = start(&f, "s0").await;
    let acme = as_tenant(r.port, "acme").await;
    assert_eq!(
        rows_of(&acme, "SHOW standard_conforming_strings").await,
        ["on"]
    );
    assert_eq!(rows_of(&acme, "SELECT length('\\')::text").await, ["1"]);
    assert_eq!(
        rows_of(&acme, "SELECT v FROM items WHERE v LIKE '%\\' ESCAPE '!'").await,
        ["mine\\"]
    );
    // What RESET and DISCARD ALL return to on a pooled connection.
    acme.batch_execute("RESET ALL").await.expect("RESET ALL");
    assert_eq!(
        rows_of(&acme, "SHOW standard_conforming_strings").await,
        ["on"]
    );
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A reload that removes a shard: a transaction open on it, and a session
/// pinned to it, go on there with its catalog until they end (they got
/// 08001 "the catalog of shard is not available" for every statement,
/// ROLLBACK included, as the catalog left with the shard); the next
/// transaction goes to the tenant's new home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_a_removed_shard_finish_there() {
    let f = fleet().await;
    let r = start(&f, "s1").await;
    exec(
        &f.s1,
        "app",
        "INSERT INTO items VALUES ('mover', 1, 'old home'), ('other', 1, 'x')",
    )
    .await;
    exec(
        &f.s0,
        "app",
        "INSERT INTO items VALUES ('mover', 1, 'new home')",
    )
    .await;
    let in_tx = as_tenant(r.port, "mover").await;
    let pinned = as_tenant(r.port, "mover").await;
    in_tx.batch_execute("BEGIN").await.unwrap();
    assert_eq!(rows_of(&in_tx, "SELECT v FROM items").await, ["old home"]);
    pinned
        .batch_execute("SELECT pg_advisory_lock(7)")
        .await
        .unwrap();
    let without_s1 = config_text(&f, "s0")
        .replace(
            &format!(
                "[[shards]]\nname = \"s1\"\nurl = {}\npool_size = 4\n\n",
                toml_str(&f.s1.url("app"))
            ),
            "",
        )
        .replace("hash_shards = [\"s0\", \"s1\"]", "hash_shards = [\"s0\"]")
        .replace(
            "[[tenants]]\nid = \"umbrella\"\nshard = \"s1\"\nschema = \"umbrella\"\n\n",
            "",
        );
    assert!(!without_s1.contains("\"s1\""), "{without_s1}");
    std::fs::write(&r.path, without_s1).unwrap();
    assert!(
        tenantgate::server::reload(&r.state, &r.path),
        "reload accepted"
    );
    assert_eq!(rows_of(&in_tx, "SELECT v FROM items").await, ["old home"]);
    // SHOW SERVERS still lists the two connections held on s1 (column 9:
    // shard; it left them out once s1 was gone from the table).
    let servers = tenantgate::admin::show::servers(&r.state);
    let on_s1 = servers
        .rows
        .iter()
        .filter(|row| row[9].as_deref() == Some("s1") && row[3].as_deref() == Some("active"))
        .count();
    assert_eq!(on_s1, 2, "{:?}", servers.rows);
    in_tx
        .batch_execute("UPDATE items SET v = 'touched'")
        .await
        .unwrap();
    in_tx.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(rows_of(&in_tx, "SELECT v FROM items").await, ["new home"]);
    assert_eq!(rows_of(&pinned, "SELECT v FROM items").await, ["old home"]);
    pinned.batch_execute("DISCARD ALL").await.unwrap();
    assert_eq!(rows_of(&pinned, "SELECT v FROM items").await, ["new home"]);
    assert_eq!(
        rows_on(&f.s1, "SELECT v FROM items WHERE tenant_id = 'mover'").await,
        ["old home"],
        "the rolled-back UPDATE left the old home as it was"
    );
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A tenant change by a prepared SET (extended protocol) with more batches
/// pipelined behind it: those batches wait for the change's replies and go
/// to the new tenant's home. They ran on the connection held for the old
/// one: away from a dedicated database, acme's SELECT read bigcorp's rows
/// and its UPDATE changed bigcorp's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_pipelined_after_a_prepared_tenant_change_go_to_the_new_home() {
    use raw_client::{batch, bind, execute, parse, sync};
    let (f, r) = fleet_with_rows_of_three_homes().await;
    let unnamed = |sql: &str| batch(&[parse("", sql), bind("", "", &[]), execute(""), sync()]);
    for (from, to, want) in [("bigcorp", "acme", "mine"), ("acme", "bigcorp", "big")] {
        let mut c = raw_as_tenant(r.port, from).await;
        let mut script = unnamed(&format!("SET app.current_tenant = '{to}'"));
        script.extend(unnamed("SELECT v FROM items"));
        script.extend(unnamed("BEGIN"));
        script.extend(unnamed("UPDATE items SET v = v || '!' RETURNING v"));
        script.extend(unnamed("ROLLBACK"));
        c.send(&script).await;
        let mut rows = Vec::new();
        for _ in 0..5 {
            let msgs = c.until_ready().await;
            assert!(
                !msgs.iter().any(|m| m.is_error()),
                "{from} -> {to}: {msgs:?}"
            );
            rows.extend(msgs.iter().filter_map(|m| m.data_row()));
        }
        let want_updated = format!("{want}!");
        assert_eq!(
            rows,
            [vec![Some(want.to_string())], vec![Some(want_updated)]],
            "{from} -> {to}"
        );
    }
    // A RESET ALL pipelined the same way returns the session to its
    // startup tenant: what follows is that tenant's.
    let mut c = raw_as_tenant(r.port, "acme").await;
    let set = c.query("SET app.current_tenant = 'bigcorp'").await;
    assert!(!set.iter().any(|m| m.is_error()), "{set:?}");
    let mut script = unnamed("RESET ALL");
    script.extend(unnamed("SELECT v FROM items"));
    c.send(&script).await;
    let reset = c.until_ready().await;
    assert!(!reset.iter().any(|m| m.is_error()), "{reset:?}");
    let after = c.until_ready().await;
    let rows: Vec<_> = after.iter().filter_map(|m| m.data_row()).collect();
    assert_eq!(rows, [vec![Some("mine".to_string())]], "{after:?}");
    assert_eq!(rows_on(&f.dedicated, "SELECT v FROM items").await, ["big"]);
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// `RESET ALL` / `DISCARD ALL` of a chosen tenant, pipelined as simple
/// Queries: one sent behind a failing statement is not undone by that
/// statement's error (the session stayed on the dedicated tenant for
/// good), and a statement sent behind it waits for it and runs as the
/// startup tenant (it was refused for having none). Inside a transaction
/// held on a dedicated database, a reset leaves no tenant until it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_reset_all_counts_once_and_for_what_follows() {
    use raw_client::query_msg;
    let (f, r) = fleet_with_rows_of_three_homes().await;
    for reset in ["DISCARD ALL", "RESET ALL"] {
        let mut c = raw_as_tenant(r.port, "acme").await;
        let set = c.query("SET app.current_tenant = 'bigcorp'").await;
        assert!(error_codes(&set).is_empty(), "{set:?}");
        let mut script = query_msg("SELECT 1/0");
        script.extend(query_msg(reset));
        script.extend(query_msg("SELECT v FROM items"));
        c.send(&script).await;
        let failed = c.until_ready().await;
        assert_eq!(error_codes(&failed), ["22012"], "{failed:?}");
        let done = c.until_ready().await;
        assert!(error_codes(&done).is_empty(), "{reset}: {done:?}");
        let after = c.until_ready().await;
        let rows: Vec<_> = after.iter().filter_map(|m| m.data_row()).collect();
        assert_eq!(rows, [vec![Some("mine".to_string())]], "{reset}: {after:?}");
        let msgs = c.query("SHOW app.current_tenant").await;
        let shown: Vec<_> = msgs.iter().filter_map(|m| m.data_row()).collect();
        assert_eq!(shown, [vec![Some("acme".to_string())]], "{reset}: {msgs:?}");
    }
    // Inside a transaction on the dedicated database, after RESET ALL the
    // session has no tenant until the reset commits: statements that read
    // rows are refused there as on a shared shard (they ran as bigcorp).
    let mut c = raw_as_tenant(r.port, "acme").await;
    for sql in ["SET app.current_tenant = 'bigcorp'", "BEGIN", "RESET ALL"] {
        let msgs = c.query(sql).await;
        assert!(error_codes(&msgs).is_empty(), "{sql}: {msgs:?}");
    }
    let msgs = c.query("SELECT v FROM items").await;
    assert!(msgs.iter().all(|m| m.data_row().is_none()), "{msgs:?}");
    assert_eq!(error_codes(&msgs), ["42501"], "{msgs:?}");
    assert!(error_codes(&c.query("ROLLBACK").await).is_empty());
    let msgs = c.query("SELECT v FROM items").await;
    let rows: Vec<_> = msgs.iter().filter_map(|m| m.data_row()).collect();
    assert_eq!(
        rows,
        [vec![Some("big".to_string())]],
        "the reset rolled back: {msgs:?}"
    );
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A `RESET ALL` that returns a trusted session to its startup tenant while
/// the server connection stays held for the chosen one (a chained
/// transaction, a savepoint, unsynced extended-protocol messages, a pin)
/// never lets a statement that reads rows run on the old home: before,
/// they read and wrote the dedicated tenant's database as the startup
/// tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_all_never_leaves_statements_on_the_old_home() {
    use raw_client::{bind, execute, flush, parse};
    let (f, r) = fleet_with_rows_of_three_homes().await;
    let ok = async |c: &mut raw_client::RawClient, sql: &str| {
        let msgs = c.query(sql).await;
        assert!(error_codes(&msgs).is_empty(), "{sql}: {msgs:?}");
        msgs.iter()
            .filter_map(|m| m.data_row())
            .map(|r| r[0].clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let refused = async |c: &mut raw_client::RawClient, sql: &str| {
        let msgs = c.query(sql).await;
        assert!(
            msgs.iter().all(|m| m.data_row().is_none()),
            "{sql}: {msgs:?}"
        );
        error_codes(&msgs)
    };
    // COMMIT AND CHAIN: the chained transaction is still on bigcorp's
    // database, the tenant acme's again.
    // Each case: a session that started as acme and chose bigcorp.
    let on_bigcorp = async |then: &[&str]| {
        let mut c = raw_as_tenant(r.port, "acme").await;
        for sql in ["SET app.current_tenant = 'bigcorp'"].iter().chain(then) {
            ok(&mut c, sql).await;
        }
        c
    };
    let mut c = on_bigcorp(&["BEGIN", "RESET ALL", "COMMIT AND CHAIN"]).await;
    assert_eq!(ok(&mut c, "SHOW app.current_tenant").await, ["acme"]);
    assert_eq!(refused(&mut c, "SELECT v FROM items").await, ["25001"]);
    ok(&mut c, "ROLLBACK").await;
    assert_eq!(ok(&mut c, "SELECT v FROM items").await, ["mine"]);
    // A rollback to a savepoint set before the reset would undo it.
    let mut c = on_bigcorp(&["BEGIN", "SAVEPOINT a", "RESET ALL"]).await;
    assert_eq!(refused(&mut c, "ROLLBACK TO SAVEPOINT a").await, ["0A000"]);
    ok(&mut c, "ROLLBACK").await;
    assert_eq!(ok(&mut c, "SHOW app.current_tenant").await, ["bigcorp"]);
    assert_eq!(ok(&mut c, "SELECT v FROM items").await, ["big"]);
    // Pipelined behind the end of a transaction with a reset in it, a
    // statement waits for the end: rolled back, the chosen tenant stays.
    let mut c = on_bigcorp(&[]).await;
    let mut script = Vec::new();
    for sql in ["BEGIN", "RESET ALL", "ROLLBACK", "SHOW app.current_tenant"] {
        script.extend(raw_client::query_msg(sql));
    }
    c.send(&script).await;
    for _ in 0..3 {
        let msgs = c.until_ready().await;
        assert!(error_codes(&msgs).is_empty(), "{msgs:?}");
    }
    let shown = c.until_ready().await;
    let shown: Vec<_> = shown.iter().filter_map(|m| m.data_row()).collect();
    assert_eq!(shown, [vec![Some("bigcorp".to_string())]]);
    // Unsynced extended-protocol messages, then a simple Query: the Query
    // ends that batch, so the connection goes back after the reset.
    let mut c = on_bigcorp(&[]).await;
    let mut script = parse("", "SELECT 1");
    script.extend(bind("", "", &[]));
    script.extend(execute(""));
    script.extend(flush());
    c.send(&script).await;
    for tag in [b'1', b'2', b'D', b'C'] {
        assert_eq!(c.expect_msg().await.tag, tag);
    }
    ok(&mut c, "RESET ALL").await;
    assert_eq!(ok(&mut c, "SELECT v FROM items").await, ["mine"]);
    // (Not stuck in a batch: the tenant may change again.)
    ok(&mut c, "SET app.current_tenant = 'bigcorp'").await;
    assert_eq!(ok(&mut c, "SELECT v FROM items").await, ["big"]);
    // Pinned to the chosen tenant's connection by an advisory lock: refused
    // until DISCARD ALL lets it go.
    let mut c = raw_as_tenant(r.port, "bigcorp").await;
    ok(&mut c, "SET app.current_tenant = 'acme'").await;
    ok(&mut c, "SELECT pg_advisory_lock(42)").await;
    ok(&mut c, "RESET ALL").await;
    assert_eq!(refused(&mut c, "SELECT v FROM items").await, ["25001"]);
    ok(&mut c, "DISCARD ALL").await;
    assert_eq!(ok(&mut c, "SELECT v FROM items").await, ["big"]);
    assert_eq!(rows_on(&f.dedicated, "SELECT v FROM items").await, ["big"]);
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A trusted session's first choice of tenant made inside a transaction is
/// settled by the transaction's end: a statement pipelined behind a
/// ROLLBACK (extended protocol, its own Sync) waits for it and runs without
/// a tenant (refused), not as the rolled-back choice; one behind it in the
/// same batch is planned without the choice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_pipelined_behind_the_end_of_a_first_choice_waits_for_it() {
    use raw_client::{bind, execute, parse, sync};
    let (f, r) = fleet_with_rows_of_acme_and_globex().await;
    let mut c = raw_client::RawClient::login(r.port, "app", "app-secret", "app").await;
    for sql in ["BEGIN", "SET app.current_tenant = 'acme'"] {
        let msgs = c.query(sql).await;
        assert!(error_codes(&msgs).is_empty(), "{sql}: {msgs:?}");
    }
    let mut script = Vec::new();
    for sql in ["ROLLBACK", "SELECT v FROM items"] {
        for m in [parse("", sql), bind("", "", &[]), execute(""), sync()] {
            script.extend(m);
        }
    }
    c.send(&script).await;
    let rollback = c.until_ready().await;
    assert!(error_codes(&rollback).is_empty(), "{rollback:?}");
    let select = c.until_ready().await;
    assert!(select.iter().all(|m| m.data_row().is_none()), "{select:?}");
    assert_eq!(error_codes(&select), ["42501"], "{select:?}");
    // Behind a ROLLBACK AND CHAIN in the same batch (one Sync), too.
    for sql in ["BEGIN", "SET app.current_tenant = 'acme'"] {
        let msgs = c.query(sql).await;
        assert!(error_codes(&msgs).is_empty(), "{sql}: {msgs:?}");
    }
    let mut script = Vec::new();
    for sql in ["ROLLBACK AND CHAIN", "SELECT v FROM items", "COMMIT"] {
        script.extend(parse("", sql));
        script.extend(bind("", "", &[]));
        script.extend(execute(""));
    }
    script.extend(sync());
    c.send(&script).await;
    let msgs = c.until_ready().await;
    assert!(msgs.iter().all(|m| m.data_row().is_none()), "{msgs:?}");
    assert_eq!(error_codes(&msgs), ["42501"], "{msgs:?}");
    // (The refusal failed the chained transaction, and the COMMIT behind
    // it was skipped.)
    assert!(error_codes(&c.query("ROLLBACK").await).is_empty());
    let msgs = c.query("SHOW app.current_tenant").await;
    let shown: Vec<_> = msgs.iter().filter_map(|m| m.data_row()).collect();
    assert_eq!(shown, [vec![Some(String::new())]], "{msgs:?}");
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// `SHOW app.current_tenant` is answered by a `SELECT` of the session's
/// tenant; its CommandComplete says `SHOW`, as Postgres's does (drivers
/// read a row count from `SELECT 1`): alone, behind other statements'
/// extended-protocol results in the same batch, after a skipped one, and
/// prepared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_show_of_the_tenant_variable_completes_as_show() {
    use raw_client::{bind, execute, parse, sync};
    let (f, r) = fleet_with_rows_of_acme_and_globex().await;
    let mut c = raw_as_tenant(r.port, "acme").await;
    let tags = |msgs: &[raw_client::Msg]| -> Vec<String> {
        msgs.iter().filter_map(|m| m.command_tag()).collect()
    };
    let msgs = c.query("SHOW app.current_tenant").await;
    assert_eq!(tags(&msgs), ["SHOW"], "{msgs:?}");
    let shown: Vec<_> = msgs.iter().filter_map(|m| m.data_row()).collect();
    assert_eq!(shown, [vec![Some("acme".to_string())]], "{msgs:?}");
    // An Execute of `sql`, the SHOW as a Query with no Sync between, a
    // Sync, then the Query `next`: all sent at once.
    let pipeline = |sql: &str, next: &str| {
        let mut script = Vec::new();
        for m in [parse("", sql), bind("", "", &[]), execute("")] {
            script.extend(m);
        }
        script.extend(raw_client::query_msg("SHOW app.current_tenant"));
        script.extend(sync());
        script.extend(raw_client::query_msg(next));
        script
    };
    // Behind an Execute with no Sync between, then a Query of rows.
    c.send(&pipeline("SELECT 7", "SELECT v FROM items ORDER BY v"))
        .await;
    let first = c.until_ready().await;
    assert_eq!(tags(&first), ["SELECT 1", "SHOW"], "{first:?}");
    let rows: Vec<_> = first.iter().filter_map(|m| m.data_row()).collect();
    assert_eq!(
        rows,
        [vec![Some("7".to_string())], vec![Some("acme".to_string())]]
    );
    assert!(error_codes(&c.until_ready().await).is_empty());
    let items = c.until_ready().await;
    assert!(tags(&items)[0].starts_with("SELECT "), "{items:?}");
    // Skipped after an error in front of it: no tag; the next one says SHOW.
    c.send(&pipeline("SELECT 1/0", "SHOW app.current_tenant"))
        .await;
    let failed = c.until_ready().await;
    assert_eq!(error_codes(&failed), ["22012"], "{failed:?}");
    assert!(tags(&failed).is_empty(), "{failed:?}");
    let after = c.until_ready().await;
    assert_eq!(tags(&after), ["SHOW"], "{after:?}");
    // Prepared, as drivers run it: each Execute completes as `SHOW`, also
    // one resumed after it stopped at its row limit (PortalSuspended).
    let mut script = Vec::new();
    script.extend(parse("show", "SHOW app.current_tenant"));
    script.extend(bind("", "show", &[]));
    script.extend(execute(""));
    script.extend(bind("p", "show", &[]));
    script.extend(raw_client::message(b'E', b"p\0\0\0\0\x01"));
    script.extend(raw_client::message(b'E', b"p\0\0\0\0\0"));
    script.extend(sync());
    c.send(&script).await;
    let prepared = c.until_ready().await;
    assert!(error_codes(&prepared).is_empty(), "{prepared:?}");
    assert_eq!(tags(&prepared), ["SHOW", "SHOW"], "{prepared:?}");
    assert!(prepared.iter().any(|m| m.tag_char() == 's'), "{prepared:?}");
    let rows: Vec<_> = prepared.iter().filter_map(|m| m.data_row()).collect();
    let acme = vec![Some("acme".to_string())];
    assert_eq!(rows, [acme.clone(), acme], "{prepared:?}");
    let _ = std::fs::remove_dir_all(&f.dir);
}

/// A statement prepared while a trusted session's tenant was dedicated
/// (passed through unrewritten) and bound after a change to a shared tenant
/// is planned again from the client's text for the new home: run as
/// prepared on the shared shard, it would read every tenant's rows; refused,
/// drivers that cache statements per connection would fail for good. The
/// same the other way, and a Describe shows the client's own parameters.
/// Not between shared tables and a schema tenant's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_prepared_for_another_kind_of_home_is_planned_again() {
    use raw_client::{batch, bind, describe, execute, parse, sync};
    let (f, r) = fleet_with_rows_of_three_homes().await;
    let mut c = raw_as_tenant(r.port, "bigcorp").await;
    let rows_of = async |c: &mut raw_client::RawClient, name: &str, params: &[Option<&str>]| {
        c.send(&batch(&[bind("", name, params), execute(""), sync()]))
            .await;
        let msgs = c.until_ready().await;
        assert!(!msgs.iter().any(|m| m.is_error()), "{name}: {msgs:?}");
        msgs.iter()
            .filter_map(|m| m.data_row())
            .map(|r| r[0].clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    c.send(&batch(&[parse("all_items", "SELECT v FROM items"), sync()]))
        .await;
    c.until_ready().await;
    assert_eq!(rows_of(&mut c, "all_items", &[]).await, ["big"]);
    let switch = async |c: &mut raw_client::RawClient, t: &str| {
        let msgs = c.query(&format!("SET app.current_tenant = '{t}'")).await;
        assert!(!msgs.iter().any(|m| m.is_error()), "{t}: {msgs:?}");
    };
    switch(&mut c, "acme").await;
    assert_eq!(rows_of(&mut c, "all_items", &[]).await, ["mine"]);
    // Prepared as acme (rewritten, the tenant bound as a parameter of the
    // proxy's), bound as bigcorp: the client's text, unrewritten.
    c.send(&batch(&[
        parse("by_id", "SELECT v FROM items WHERE id = $1"),
        sync(),
    ]))
    .await;
    c.until_ready().await;
    switch(&mut c, "bigcorp").await;
    c.send(&batch(&[describe(b'S', "by_id"), sync()])).await;
    let described = c.until_ready().await;
    let params = described
        .iter()
        .find(|m| m.tag == b't')
        .unwrap_or_else(|| panic!("no ParameterDescription: {described:?}"));
    assert_eq!(&params.body[..2], &1i16.to_be_bytes(), "one parameter");
    assert_eq!(rows_of(&mut c, "by_id", &[Some("1")]).await, ["big"]);
    // Back on acme, the first one again: acme's rows only, still; and
    // back and forth, each time the client's text planned anew (not the
    // last home's plan of it).
    for (tenant, want) in [("acme", "mine"), ("bigcorp", "big"), ("acme", "mine")] {
        switch(&mut c, tenant).await;
        assert_eq!(rows_of(&mut c, "all_items", &[]).await, [want], "{tenant}");
        assert_eq!(
            rows_of(&mut c, "by_id", &[Some("1")]).await,
            [want],
            "{tenant}"
        );
    }
    // Between shared tables and a tenant's own schema the same text names
    // other tables (umbrella.items has no tenant_id): `SELECT *` would
    // change shape under the client, so that is refused, as Postgres
    // refuses a prepared statement whose result type changed.
    switch(&mut c, "acme").await;
    c.send(&batch(&[parse("star", "SELECT * FROM items"), sync()]))
        .await;
    c.until_ready().await;
    switch(&mut c, "umbrella").await;
    c.send(&batch(&[bind("", "star", &[]), execute(""), sync()]))
        .await;
    let msgs = c.until_ready().await;
    assert_eq!(error_codes(&msgs), ["0A000"], "{msgs:?}");
    assert!(msgs.iter().all(|m| m.data_row().is_none()), "{msgs:?}");
    // Session commands are the same in every home: they are planned again
    // there too (a session on umbrella can still run the prepared SET that
    // takes it back).
    switch(&mut c, "acme").await;
    c.send(&batch(&[
        parse("back", "SET app.current_tenant = 'acme'"),
        parse("shown", "SHOW app.current_tenant"),
        sync(),
    ]))
    .await;
    c.until_ready().await;
    switch(&mut c, "umbrella").await;
    assert_eq!(rows_of(&mut c, "shown", &[]).await, ["umbrella"]);
    assert!(rows_of(&mut c, "back", &[]).await.is_empty());
    assert_eq!(rows_of(&mut c, "shown", &[]).await, ["acme"]);
    // Through a dedicated database to a schema tenant, the same: refused
    // at Bind and at Describe.
    switch(&mut c, "bigcorp").await;
    c.send(&batch(&[parse("big_star", "SELECT * FROM items"), sync()]))
        .await;
    c.until_ready().await;
    switch(&mut c, "umbrella").await;
    for script in [
        batch(&[bind("", "big_star", &[]), execute(""), sync()]),
        batch(&[describe(b'S', "big_star"), sync()]),
    ] {
        c.send(&script).await;
        let msgs = c.until_ready().await;
        assert_eq!(error_codes(&msgs), ["0A000"], "{msgs:?}");
        assert!(
            msgs.iter().all(|m| m.data_row().is_none() && m.tag != b'T'),
            "{msgs:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&f.dir);
}
