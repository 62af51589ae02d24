//! Faults: cancels, clients vanishing, a shard going away and coming back,
//! pool exhaustion, the connection cap, graceful shutdown, and a huge COPY.
//! Each must end in a clear error or a clean result, with the proxy still
//! serving everyone else.

mod raw_client;
mod support;

use std::time::{Duration, Instant};

use raw_client::{MustFail, RawClient, ReadEnd, cancel_request, copy_data, copy_done, query_msg};
use support::{
    ProxyHandle, STANDARD_USERS, assert_sqlstate, connect, connect_direct, error_chain, exec,
    load_config, sqlstate, start_app_cluster, start_proxy, toml_str, try_connect,
};
use tenantgate::localpg::Cluster;
use tokio_postgres::NoTls;

/// A cluster with database `app` and table `items` holding one row of t1.
async fn items_cluster() -> Cluster {
    let cluster = start_app_cluster().await;
    exec(
        &cluster,
        "app",
        "CREATE TABLE items (tenant_id text NOT NULL, id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO items VALUES ('t1', 1, 0);
         CREATE TABLE big (tenant_id text NOT NULL, id int NOT NULL, payload text NOT NULL);",
    )
    .await;
    cluster
}

/// The standard users and tenant t1 on shard s0 (= `cluster`/app) with
/// `pool_size`, plus extra `[server]` lines.
/// Fault tests exercise the pooler: no `[tenancy]`, so statements pass
/// through unparsed (isolation has its own tests).
fn fault_config_text(cluster: &Cluster, server_extra: &str, pool_size: usize) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n\
         \n{STANDARD_USERS}\n\
         [routing]\nhash_shards = [\"s0\"]\n\n\
         [[tenants]]\nid = \"t1\"\nshard = \"s0\"\n\n\
         [[shards]]\nname = \"s0\"\nurl = {}\npool_size = {pool_size}\n",
        toml_str(&cluster.url("app"))
    )
}

async fn start(cluster: &Cluster, server_extra: &str, pool_size: usize) -> ProxyHandle {
    start_proxy(load_config(&fault_config_text(
        cluster,
        server_extra,
        pool_size,
    )))
    .await
}

async fn app(proxy: &ProxyHandle) -> tokio_postgres::Client {
    connect(proxy.port, "app", "app-secret", "app").await
}

async fn t1(proxy: &ProxyHandle) -> tokio_postgres::Client {
    connect(proxy.port, "t1user", "t1-secret", "app").await
}

/// Waits (up to 10 s) until `n` backends run a query whose text contains
/// `marker`, as seen directly on the cluster.
async fn wait_active(cluster: &Cluster, marker: &str, n: i64) {
    let direct = connect_direct(cluster, "app").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE state = 'active' AND query LIKE '%' || $1 || '%' \
                 AND pid <> pg_backend_pid()",
                &[&marker],
            )
            .await
            .expect("pg_stat_activity");
        let count: i64 = row.get(0);
        if count == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{count} backends run {marker:?}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Backends running a query that contains `marker`.
async fn active_count(cluster: &Cluster, marker: &str) -> i64 {
    let direct = connect_direct(cluster, "app").await;
    direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE state = 'active' AND query LIKE '%' || $1 || '%' \
             AND pid <> pg_backend_pid()",
            &[&marker],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

async fn send_cancel(proxy: &ProxyHandle, pid: i32, secret: i32) {
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&cancel_request(pid, secret)).await;
    // The proxy answers a cancel request with nothing and closes.
    let seen = c.expect_closed_within(Duration::from_secs(10)).await;
    assert!(seen.is_empty(), "answer to a CancelRequest: {seen:?}");
}

async fn value(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", error_chain(&e)));
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

// ------------------------------------------------------------------ cancel

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_query() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "", 4).await;
    let client = app(&proxy).await;
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let r = client.simple_query("SELECT pg_sleep(30) -- tok").await;
        (client, r)
    });
    wait_active(&cluster, "-- tok", 1).await;
    let asked = Instant::now();
    token.cancel_query(NoTls).await.expect("cancel_query");
    let (client, result) = tokio::time::timeout(Duration::from_secs(5), sleeper)
        .await
        .expect("the cancelled query still runs after 5 s")
        .expect("task");
    let err = result.must_fail("the cancelled query succeeded");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err:?}");
    assert!(asked.elapsed() < Duration::from_secs(5));
    // The session goes on, and so does the server connection.
    assert_eq!(
        value(&client, "SELECT 'after cancel'").await,
        "after cancel"
    );
    let row = client
        .query_one("SELECT $1::int + 1", &[&1i32])
        .await
        .expect("extended query after cancel");
    assert_eq!(row.get::<_, i32>(0), 2);
    // A cancel of an idle session does nothing harmful.
    client
        .cancel_token()
        .cancel_query(NoTls)
        .await
        .expect("idle cancel");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(value(&client, "SELECT 'still fine'").await, "still fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_a_wrong_key_does_nothing() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "", 4).await;
    let mut c = RawClient::login(proxy.port, "app", "app-secret", "app").await;
    let (pid, secret) = c.key.expect("BackendKeyData");
    c.send(&query_msg("SELECT pg_sleep(30) -- wrongkey")).await;
    wait_active(&cluster, "-- wrongkey", 1).await;
    // Right pid, wrong secret; a random pid; the server's own key space.
    send_cancel(&proxy, pid, secret.wrapping_add(1)).await;
    send_cancel(&proxy, pid ^ 0x5a5a, rand_i32()).await;
    send_cancel(&proxy, 0, 0).await;
    assert_eq!(
        c.read_msg_within(Duration::from_millis(1500)).await,
        Err(ReadEnd::TimedOut),
        "a cancel with a wrong key reached the query"
    );
    assert_eq!(active_count(&cluster, "-- wrongkey").await, 1);
    // The right key cancels it.
    let asked = Instant::now();
    send_cancel(&proxy, pid, secret).await;
    let msgs = c.until_ready().await;
    let err = msgs.iter().find(|m| m.is_error()).expect("no error");
    assert_eq!(err.code().as_deref(), Some("57014"), "{:?}", err.fields());
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert_eq!(c.query_values("SELECT 1").await, [Some("1".into())]);
}

fn rand_i32() -> i32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(12345);
    (nanos as i32) ^ 0x2d3c_4b5a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_hits_only_its_own_session() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "", 4).await;
    let mut a = RawClient::login(proxy.port, "app", "app-secret", "app").await;
    let mut b = RawClient::login(proxy.port, "app", "app-secret", "app").await;
    a.send(&query_msg("SELECT pg_sleep(30) -- sleeper_a")).await;
    b.send(&query_msg("SELECT pg_sleep(30) -- sleeper_b")).await;
    wait_active(&cluster, "-- sleeper_a", 1).await;
    wait_active(&cluster, "-- sleeper_b", 1).await;
    let (pid, secret) = a.key.expect("key");
    send_cancel(&proxy, pid, secret).await;
    let msgs = a.until_ready().await;
    let err = msgs.iter().find(|m| m.is_error()).expect("a not cancelled");
    assert_eq!(err.code().as_deref(), Some("57014"));
    // b is still sleeping.
    assert_eq!(
        b.read_msg_within(Duration::from_millis(1000)).await,
        Err(ReadEnd::TimedOut),
        "cancelling a disturbed b"
    );
    assert_eq!(active_count(&cluster, "-- sleeper_b").await, 1);
    assert_eq!(active_count(&cluster, "-- sleeper_a").await, 0);
    // a is usable, then b is cancelled with its own key.
    assert_eq!(a.query_values("SELECT 'a ok'").await, [Some("a ok".into())]);
    let (pid, secret) = b.key.expect("key");
    send_cancel(&proxy, pid, secret).await;
    let msgs = b.until_ready().await;
    assert!(msgs.iter().any(|m| m.code().as_deref() == Some("57014")));
}

// -------------------------------------------------------- vanishing client

/// Drops the socket with a RST (SO_LINGER 0), as a killed client would.
fn kill(c: RawClient) {
    let s = c.into_stream();
    let _ = s.set_zero_linger();
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_transaction_releases_its_locks() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "query_wait_timeout = \"20s\"", 1).await;
    let mut a = RawClient::login(proxy.port, "t1user", "t1-secret", "app").await;
    a.query_values("BEGIN").await;
    let msgs = a.query("UPDATE items SET v = 1 WHERE id = 1").await;
    assert!(
        msgs.iter()
            .any(|m| m.command_tag().as_deref() == Some("UPDATE 1")),
        "{msgs:?}"
    );
    assert_eq!(msgs.last().and_then(|m| m.ready_status()), Some(b'T'));
    kill(a);

    let started = Instant::now();
    let b = tokio::time::timeout(Duration::from_secs(10), async {
        let b = t1(&proxy).await;
        let n = b
            .execute("UPDATE items SET v = 2 WHERE id = 1", &[])
            .await
            .expect("update after the holder vanished");
        (b, n)
    })
    .await;
    let (b, n) = b.expect("the vanished client's lock or server was not released");
    assert_eq!(n, 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // a's update was rolled back, b's is there.
    let direct = connect_direct(&cluster, "app").await;
    let v: i32 = direct
        .query_one("SELECT v FROM items WHERE id = 1", &[])
        .await
        .expect("direct read")
        .get(0);
    assert_eq!(v, 2);
    // The single pooled connection keeps serving one client after another.
    drop(b);
    for i in 0..5 {
        let c = t1(&proxy).await;
        assert_eq!(value(&c, &format!("SELECT {i}")).await, i.to_string());
    }
}

/// A client killed while its query runs: the server must not keep running
/// the query (and holding the transaction's locks) for a client that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_query_releases_its_locks() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "query_wait_timeout = \"20s\"", 2).await;
    let mut a = RawClient::login(proxy.port, "t1user", "t1-secret", "app").await;
    a.query_values("BEGIN").await;
    a.query("UPDATE items SET v = 10 WHERE id = 1").await;
    a.send(&query_msg("SELECT pg_sleep(25) -- vanishing")).await;
    wait_active(&cluster, "-- vanishing", 1).await;
    kill(a);

    let b = t1(&proxy).await;
    let updated = tokio::time::timeout(
        Duration::from_secs(8),
        b.execute("UPDATE items SET v = 20 WHERE id = 1", &[]),
    )
    .await;
    let n = updated
        .expect("the vanished client's query still holds its row lock after 8 s")
        .expect("update");
    assert_eq!(n, 1);
    assert_eq!(active_count(&cluster, "-- vanishing").await, 0);
}

/// While a shard is down, its pool tries one connection per
/// `CONNECT_RETRY` and answers the queries in between with the failure at
/// once: many clients retrying in a loop cost a connection attempt (and a
/// log line) a quarter of a second, not one each (a run saw 40,000 in 7 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_is_down_is_not_tried_for_every_query() {
    let mut cluster = items_cluster().await;
    let proxy = tenantgate::server::Proxy::bind(load_config(&fault_config_text(&cluster, "", 4)))
        .await
        .expect("bind");
    let port = proxy.local_addr().expect("addr").port();
    let state = proxy.state();
    let token = proxy.shutdown_token();
    tokio::spawn(proxy.run());
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(connect(port, "app", "app-secret", "app").await);
    }
    for c in &clients {
        assert_eq!(value(c, "SELECT 'up'").await, "up");
    }
    cluster.stop_async().await.expect("stop cluster");
    let pool = state.pool("s0").expect("pool");
    let before = pool
        .stats
        .connect_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let mut refused = 0;
    while started.elapsed() < Duration::from_millis(600) {
        for c in &clients {
            if let Err(e) = c.simple_query("SELECT 1").await {
                assert!(
                    sqlstate(&e).is_some_and(|c| c.starts_with("08")) || c.is_closed(),
                    "{}",
                    error_chain(&e)
                );
                refused += 1;
            }
        }
    }
    let attempts = pool
        .stats
        .connect_errors
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    assert!(refused >= 20, "only {refused} queries were answered");
    assert!(
        attempts <= 4,
        "{attempts} connection attempts for {refused} queries in 600 ms"
    );
    token.cancel();
}

/// A backend terminated under a running query: the client gets the
/// server's FATAL (57P01) and the close, one error as from Postgres itself
/// (the proxy added its own 08006 "server connection lost" after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_backend_gives_one_fatal() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "", 4).await;
    let mut raw = RawClient::login(proxy.port, "t1user", "t1-secret", "app").await;
    raw.send(&query_msg("SELECT pg_sleep(30) -- terminated"))
        .await;
    wait_active(&cluster, "-- terminated", 1).await;
    connect_direct(&cluster, "app")
        .await
        .simple_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE '%-- terminated' AND pid <> pg_backend_pid()",
        )
        .await
        .expect("terminate");
    let seen = raw.expect_closed().await;
    let errors: Vec<String> = seen.iter().filter_map(|m| m.code()).collect();
    assert_eq!(errors, ["57P01"], "{seen:?}");
}

// --------------------------------------------------------------- shard down

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_stopped_and_restarted() {
    let mut cluster = items_cluster().await;
    let proxy = start(&cluster, "server_connect_timeout = \"2s\"", 4).await;
    let a = app(&proxy).await;
    assert_eq!(value(&a, "SELECT 'before'").await, "before");

    cluster.stop_async().await.expect("stop cluster");

    // A query of a connected client: a clear, bounded error.
    let asked = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(15), a.simple_query("SELECT 1"))
        .await
        .expect("a query hung while the shard was down");
    let err = r.must_fail("a query succeeded with the shard down");
    let code = sqlstate(&err).unwrap_or_default();
    assert!(
        code.starts_with("08"),
        "SQLSTATE {code}: {}",
        error_chain(&err)
    );
    let msg = err.as_db_error().map(|d| d.message().to_string());
    assert!(
        msg.as_deref().is_some_and(|m| m.contains("s0")),
        "the error does not name the shard: {}",
        error_chain(&err)
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    let a_survives = err.as_db_error().is_some_and(|d| d.severity() != "FATAL");

    // A new client: refused at login, or logged in (the proxy may answer a
    // login from what it knows) and refused at its first query; clearly and
    // quickly either way.
    let asked = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(15), async {
        let c = try_connect(proxy.port, "app", "app-secret", "app").await?;
        c.simple_query("SELECT 1").await.map(|_| ())
    })
    .await
    .expect("a new client hung while the shard was down");
    let err = r.must_fail("a new client ran a query with the shard down");
    let code = sqlstate(&err).unwrap_or_default();
    assert!(
        code.starts_with("08"),
        "SQLSTATE {code}: {}",
        error_chain(&err)
    );
    assert!(
        err.as_db_error()
            .is_some_and(|d| d.message().contains("s0")),
        "{}",
        error_chain(&err)
    );
    assert!(asked.elapsed() < Duration::from_secs(10));

    cluster.start_again_async().await.expect("restart cluster");

    // New clients and new queries work, with the same proxy (after a failed
    // attempt the pool tries the server again within CONNECT_RETRY).
    let b = app(&proxy).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match b.simple_query("SELECT 'after'").await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the pool did not reconnect: {}",
                    error_chain(&e)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(value(&b, "SELECT 'after'").await, "after");
    let c = t1(&proxy).await;
    c.execute("UPDATE items SET v = v + 1 WHERE id = 1", &[])
        .await
        .expect("write after restart");
    if a_survives {
        assert_eq!(value(&a, "SELECT 'a again'").await, "a again");
    } else {
        assert!(a.is_closed() || a.simple_query("SELECT 1").await.is_err());
    }
    // Several clients at once after the restart (fresh server connections).
    let mut tasks = Vec::new();
    for i in 0..6 {
        let port = proxy.port;
        tasks.push(tokio::spawn(async move {
            let c = connect(port, "app", "app-secret", "app").await;
            value(&c, &format!("SELECT {i}, pg_sleep(0.1)")).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.expect("task"), i.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_lost_mid_transaction_is_a_clear_fatal() {
    let mut cluster = items_cluster().await;
    let proxy = start(&cluster, "server_connect_timeout = \"2s\"", 2).await;
    let mut a = RawClient::login(proxy.port, "t1user", "t1-secret", "app").await;
    a.query_values("BEGIN").await;
    a.query("UPDATE items SET v = 5 WHERE id = 1").await;
    cluster.stop_async().await.expect("stop");
    // The server told the proxy it is going away; the client hears of it
    // (now or at its next message) with a class 08 / 57P01 error naming the
    // problem, and the connection ends.
    let _ = a.try_send(&query_msg("SELECT 1")).await;
    let seen = a.expect_closed_within(Duration::from_secs(15)).await;
    let err = seen
        .iter()
        .find(|m| m.is_error())
        .unwrap_or_else(|| panic!("no error before the close: {seen:?}"));
    let code = err.code().unwrap_or_default();
    assert!(
        code.starts_with("08") || code == "57P01",
        "SQLSTATE {code}: {:?}",
        err.fields()
    );
    assert_eq!(err.severity().as_deref(), Some("FATAL"));
    cluster.start_again_async().await.expect("restart");
    let b = t1(&proxy).await;
    // The lost transaction was rolled back.
    assert_eq!(value(&b, "SELECT v FROM items WHERE id = 1").await, "0");
}

// ------------------------------------------------------------- pool limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_wait_timeout_is_57014_then_recovers() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "query_wait_timeout = \"1s\"", 1).await;
    // Both log in while the single server connection is free.
    let a = t1(&proxy).await;
    let b = t1(&proxy).await;
    a.batch_execute("BEGIN; UPDATE items SET v = 3 WHERE id = 1")
        .await
        .expect("a begins");
    let asked = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), b.simple_query("SELECT 1"))
        .await
        .expect("b waited far past query_wait_timeout");
    let waited = asked.elapsed();
    let err = r.must_fail("b got a server connection a holds");
    assert_sqlstate(&err, "57014");
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_millis(3000),
        "waited {waited:?} for a 1 s query_wait_timeout"
    );
    // The extended protocol times out the same way, and b stays usable.
    let r = b.query_one("SELECT $1::int", &[&1i32]).await;
    let err = r.must_fail("extended query got the held connection");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"));
    a.batch_execute("COMMIT").await.expect("a commits");
    assert_eq!(value(&b, "SELECT v FROM items WHERE id = 1").await, "3");
    let row = b.query_one("SELECT $1::int", &[&7i32]).await.expect("b");
    assert_eq!(row.get::<_, i32>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_conn_refuses_the_third_with_53300() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "max_client_conn = 2", 4).await;
    let a = app(&proxy).await;
    let b = app(&proxy).await;
    let err = try_connect(proxy.port, "app", "app-secret", "app")
        .await
        .must_fail("a third client got in");
    assert_sqlstate(&err, "53300");
    // Raw: the refusal is an ErrorResponse once the startup packet is read
    // (an SSLRequest before it is declined as usual), then the close.
    let mut raw = RawClient::connect(proxy.addr).await;
    raw.send(&raw_client::ssl_request()).await;
    assert_eq!(raw.read_byte().await, Ok(b'N'));
    raw.send(&raw_client::startup_message(
        3,
        0,
        &[("user", "app"), ("database", "app")],
    ))
    .await;
    let seen = raw.expect_closed().await;
    assert_eq!(
        seen.iter().find_map(|m| m.code()).as_deref(),
        Some("53300"),
        "{seen:?}"
    );
    // The two admitted clients are unaffected.
    assert_eq!(value(&a, "SELECT 'a'").await, "a");
    assert_eq!(value(&b, "SELECT 'b'").await, "b");
    // A query stays cancellable while the proxy is full: the CancelRequest
    // comes on a connection of its own (it was refused with 53300, and the
    // query ran to its end).
    let token = b.cancel_token();
    let started = Instant::now();
    let (sleep, cancel) = tokio::join!(b.batch_execute("SELECT pg_sleep(30)"), async {
        wait_active(&cluster, "pg_sleep(30)", 1).await;
        token.cancel_query(NoTls).await
    });
    cancel.expect("the cancel is carried out");
    assert_sqlstate(&sleep.expect_err("the sleep was cancelled"), "57014");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // When one leaves, its slot is free again.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    let c = loop {
        match try_connect(proxy.port, "app", "app-secret", "app").await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(sqlstate(&e).as_deref(), Some("53300"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("slot not freed: {}", error_chain(&e)),
        }
    };
    assert_eq!(value(&c, "SELECT 'c'").await, "c");
}

// --------------------------------------------------------------- shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_open_transactions_finish() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "shutdown_timeout = \"10s\"", 4).await;
    let a = t1(&proxy).await;
    let mut b = RawClient::login(proxy.port, "app", "app-secret", "app").await;
    a.batch_execute("BEGIN; UPDATE items SET v = 42 WHERE id = 1")
        .await
        .expect("a begins");

    let cancelled = Instant::now();
    proxy.token().cancel();

    // The idle client is told and disconnected.
    let seen = b.expect_closed_within(Duration::from_secs(5)).await;
    let err = seen
        .iter()
        .find(|m| m.is_error())
        .unwrap_or_else(|| panic!("idle client got no FATAL: {seen:?}"));
    assert_eq!(err.code().as_deref(), Some("57P01"), "{:?}", err.fields());
    assert_eq!(err.severity().as_deref(), Some("FATAL"));

    // New connections are refused.
    let deadline = Instant::now() + Duration::from_secs(3);
    while tokio::net::TcpStream::connect(proxy.addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the listener still accepts during shutdown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The open transaction finishes.
    a.batch_execute("UPDATE items SET v = v + 1 WHERE id = 1")
        .await
        .expect("statement in the open transaction during shutdown");
    a.batch_execute("COMMIT")
        .await
        .expect("commit during shutdown");

    // Then a is disconnected.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if a.is_closed() || a.simple_query("SELECT 1").await.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a is still served after its transaction ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // And the proxy finishes well within shutdown_timeout.
    let result = tokio::time::timeout(Duration::from_secs(15), proxy.shutdown())
        .await
        .expect("proxy did not stop");
    result.expect("run() result");
    assert!(
        cancelled.elapsed() < Duration::from_secs(10),
        "{:?}",
        cancelled.elapsed()
    );

    // Nothing was lost: the commit is there.
    let direct = connect_direct(&cluster, "app").await;
    let v: i32 = direct
        .query_one("SELECT v FROM items WHERE id = 1", &[])
        .await
        .expect("direct read")
        .get(0);
    assert_eq!(v, 43);
}

/// A statement still running when `shutdown_timeout` expires is cancelled
/// before the process exits: its client is told its connection was
/// terminated (57P01), so the statement must not commit behind it. (The
/// cancel was sent from a task the exiting process never ran: the backend
/// went on and committed the row after the proxy was gone.) The real binary,
/// since only a process that exits shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_running_at_the_shutdown_timeout_is_cancelled() {
    let cluster = items_cluster().await;
    let port = tenantgate::localpg::free_port().expect("free port");
    let dir = std::env::temp_dir().join(format!("tenantgate-faults-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("routing.toml");
    let text = fault_config_text(&cluster, "shutdown_timeout = \"1s\"", 4)
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&path, text).expect("write config");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantgate"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start tenantgate");
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        match try_connect(port, "t1user", "t1-secret", "app").await {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "tenantgate does not serve: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let running = tokio::spawn(async move {
        client
            .simple_query("INSERT INTO items SELECT 't1', 2, 7 FROM pg_sleep(4)")
            .await
    });
    wait_active(&cluster, "pg_sleep(4)", 1).await;
    let pid = child.id().expect("pid").to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}");
    let told = running.await.expect("client task");
    assert!(told.is_err(), "the client was answered: {told:?}");
    // Past the end of the sleep: nothing committed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let n: i64 = connect_direct(&cluster, "app")
        .await
        .query_one("SELECT count(*) FROM items WHERE id = 2", &[])
        .await
        .expect("direct read")
        .get(0);
    assert_eq!(n, 0, "the statement committed after the proxy exited");
    let _ = std::fs::remove_dir_all(&dir);
}

/// When `shutdown_timeout` expires, `run()` returns and the sessions still
/// open are closed (their transactions roll back), as the design says:
/// "let transactions finish up to a timeout, then close".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_bounds_the_drain() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "shutdown_timeout = \"2s\"", 4).await;
    let a = t1(&proxy).await;
    a.batch_execute("BEGIN; UPDATE items SET v = 99 WHERE id = 1")
        .await
        .expect("a begins");
    let cancelled = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(15), proxy.shutdown())
        .await
        .expect("proxy did not stop after shutdown_timeout");
    result.expect("run() result");
    let took = cancelled.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "drain took {took:?} with shutdown_timeout 2s"
    );
    // After run() returns, the straggler is closed and its transaction
    // rolled back.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if a.is_closed() || a.simple_query("SELECT 1").await.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a session is still served after the proxy stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let direct = connect_direct(&cluster, "app").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v: i32 = direct
            .query_one("SELECT v FROM items WHERE id = 1", &[])
            .await
            .expect("direct read")
            .get(0);
        if v == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the open transaction committed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// -------------------------------------------------------------------- COPY

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_copy_from_stdin_streams_through() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "", 2).await;
    let mut c = RawClient::login(proxy.port, "t1user", "t1-secret", "app").await;
    let mut witness = RawClient::login(proxy.port, "app", "app-secret", "app").await;

    // About 50 MB of rows, cut into CopyData messages regardless of line
    // boundaries: mostly 1 MiB, one of 8 MiB, some small ones.
    let payload = "p".repeat(90);
    let mut data = Vec::with_capacity(52 * 1024 * 1024);
    let mut rows = 0u64;
    while data.len() < 50 * 1024 * 1024 {
        rows += 1;
        data.extend_from_slice(format!("t1\t{rows}\t{payload}\n").as_bytes());
    }
    let sizes = [1 << 20, 8 << 20, 100, 1 << 20, 70_000, 3];
    c.send(&query_msg("COPY big (tenant_id, id, payload) FROM STDIN"))
        .await;
    let first = c.expect_msg().await;
    assert_eq!(first.tag, b'G', "not CopyInResponse: {:?}", first.fields());

    let started = Instant::now();
    let mut pos = 0;
    let mut i = 0;
    let mut messages = 0;
    while pos < data.len() {
        let n = sizes[i % sizes.len()].min(data.len() - pos);
        c.send(&copy_data(&data[pos..pos + n])).await;
        pos += n;
        i += 1;
        messages += 1;
    }
    c.send(&copy_done()).await;
    let msgs = c.until_ready().await;
    let tags: Vec<String> = msgs
        .iter()
        .map(|m| {
            m.command_tag()
                .or_else(|| m.code())
                .unwrap_or_else(|| m.tag_char().to_string())
        })
        .collect();
    assert_eq!(tags, [format!("COPY {rows}"), "Z".to_string()], "{msgs:?}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{messages} messages took {:?}",
        started.elapsed()
    );
    // Meanwhile another session was fine.
    assert_eq!(witness.query_values("SELECT 1").await, [Some("1".into())]);

    // Every row arrived intact (lines cut across messages included).
    let direct = connect_direct(&cluster, "app").await;
    let row = direct
        .query_one(
            "SELECT count(*), count(DISTINCT id), min(id), max(id), \
             bool_and(payload = repeat('p', 90) AND tenant_id = 't1') FROM big",
            &[],
        )
        .await
        .expect("direct check");
    assert_eq!(row.get::<_, i64>(0), rows as i64);
    assert_eq!(row.get::<_, i64>(1), rows as i64);
    assert_eq!(row.get::<_, i32>(2), 1);
    assert_eq!(row.get::<_, i32>(3), rows as i32);
    assert!(row.get::<_, bool>(4));
    // The session is usable after the COPY.
    assert_eq!(
        c.query_values("SELECT 'after copy'").await,
        [Some("after copy".into())]
    );
}

/// A COPY that fails on the server half way (bad row) reports the error,
/// stores nothing, and the session and pool recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_copy_recovers() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "", 1).await;
    let mut c = RawClient::login(proxy.port, "t1user", "t1-secret", "app").await;
    c.send(&query_msg("COPY big (tenant_id, id, payload) FROM STDIN"))
        .await;
    assert_eq!(c.expect_msg().await.tag, b'G');
    let mut data = Vec::new();
    for i in 0..20_000 {
        data.extend_from_slice(format!("t1\t{i}\tok\n").as_bytes());
    }
    data.extend_from_slice(b"t1\tnot-a-number\tbad\n");
    for chunk in data.chunks(256 * 1024) {
        let _ = c.try_send(&copy_data(chunk)).await;
    }
    let _ = c.try_send(&copy_data(&vec![b'x'; 200_000])).await;
    c.send(&copy_done()).await;
    let msgs = c.until_ready().await;
    let err = msgs.iter().find(|m| m.is_error()).expect("no error");
    assert_eq!(err.code().as_deref(), Some("22P02"), "{:?}", err.fields());
    assert_eq!(msgs.last().and_then(|m| m.ready_status()), Some(b'I'));
    assert_eq!(
        c.query_values("SELECT count(*) FROM big").await,
        [Some("0".into())]
    );
    let other = t1(&proxy).await;
    assert_eq!(value(&other, "SELECT 'pool ok'").await, "pool ok");
}

/// A client that vanishes in the middle of a large CopyData message: the
/// COPY is aborted (nothing stored), the server connection is not reused
/// half-way through a message, and the single pooled slot serves the next
/// client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_copy_message() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "query_wait_timeout = \"10s\"", 1).await;
    let mut c = RawClient::login(proxy.port, "t1user", "t1-secret", "app").await;
    c.send(&query_msg("COPY big (tenant_id, id, payload) FROM STDIN"))
        .await;
    assert_eq!(c.expect_msg().await.tag, b'G');
    let mut rows = Vec::new();
    for i in 0..5_000 {
        rows.extend_from_slice(format!("t1\t{i}\tcomplete\n").as_bytes());
    }
    c.send(&copy_data(&rows)).await;
    // A CopyData announcing 1 MiB, of which 300 KB arrive.
    let mut partial = copy_data(&vec![b'z'; 1 << 20]);
    partial.truncate(300 * 1024);
    c.send(&partial).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(c);

    let started = Instant::now();
    let next = tokio::time::timeout(Duration::from_secs(10), t1(&proxy))
        .await
        .expect("the pool slot was not freed");
    assert_eq!(value(&next, "SELECT count(*) FROM big").await, "0");
    assert!(started.elapsed() < Duration::from_secs(5));
    next.execute("UPDATE items SET v = 7 WHERE id = 1", &[])
        .await
        .expect("write on the pool after the vanished COPY");
}

/// Large results: a single 16 MiB row, and 50 MB of rows to a client that
/// reads nothing for a while. Others are served meanwhile and the reader
/// gets every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_reach_a_slow_reader() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "", 2).await;
    let mut c = RawClient::login(proxy.port, "app", "app-secret", "app").await;
    let big = c.query("SELECT repeat('x', 16 * 1024 * 1024)").await;
    let row = big
        .iter()
        .find_map(|m| m.data_row())
        .expect("no DataRow for the 16 MiB value");
    let v = row[0].as_deref().expect("value");
    assert_eq!(v.len(), 16 * 1024 * 1024);
    assert!(v.bytes().all(|b| b == b'x'));

    let rows = 50_000usize;
    c.send(&query_msg(&format!(
        "SELECT g, repeat('r', 1000) FROM generate_series(1, {rows}) g"
    )))
    .await;
    // Not reading: the proxy must apply back-pressure, not block others.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let other = app(&proxy).await;
    for i in 0..5 {
        assert_eq!(value(&other, &format!("SELECT {i}")).await, i.to_string());
    }
    let msgs = c.until_ready().await;
    let data: Vec<_> = msgs.iter().filter_map(|m| m.data_row()).collect();
    assert_eq!(data.len(), rows);
    assert_eq!(
        data[rows - 1][0].as_deref(),
        Some(rows.to_string().as_str())
    );
    assert!(
        data.iter()
            .all(|r| r[1].as_deref().map(str::len) == Some(1000))
    );
    assert!(
        msgs.iter()
            .any(|m| m.command_tag() == Some(format!("SELECT {rows}")))
    );
    assert_eq!(
        c.query_values("SELECT 'after'").await,
        [Some("after".into())]
    );
    // A notice of 8 MiB (streamed through like a large row) arrives whole,
    // in its place before the command's completion.
    let msgs = c
        .query("DO $$ BEGIN RAISE NOTICE '%', repeat('n', 8 * 1024 * 1024); END $$")
        .await;
    let notice = msgs
        .iter()
        .position(|m| m.tag == b'N')
        .expect("no NoticeResponse");
    let text = msgs[notice].field(b'M').expect("notice text");
    assert_eq!(text.len(), 8 * 1024 * 1024);
    assert!(text.bytes().all(|b| b == b'n'));
    let done = msgs
        .iter()
        .position(|m| m.command_tag().as_deref() == Some("DO"))
        .expect("no CommandComplete");
    assert!(notice < done);
    assert_eq!(
        c.query_values("SELECT 'after notice'").await,
        [Some("after notice".into())]
    );
}

/// A TCP relay between the proxy and a shard that can be frozen: while
/// frozen it forwards nothing (a server that stopped answering).
struct Relay {
    port: u16,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    async fn start(upstream: u16) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = frozen.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                for (mut from, mut to) in [(dr, uw), (ur, dw)].map(|(r, w)| (r, w)) {
                    let flag = flag.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match from.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            while flag.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Relay { port, frozen }
    }

    fn freeze(&self, on: bool) {
        self.frozen.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A shard that stops answering after login: bringing a pooled connection
/// in line with a new client's settings is bounded by
/// `server_connect_timeout`, and the client gets a clear FATAL instead of
/// hanging after AuthenticationOk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_cannot_hang_a_login() {
    let cluster = items_cluster().await;
    let relay = Relay::start(cluster.port()).await;
    let url = cluster.url("app").replace(
        &format!(":{}/", cluster.port()),
        &format!(":{}/", relay.port),
    );
    assert!(url.contains(&relay.port.to_string()), "{url}");
    let text = fault_config_text(&cluster, "server_connect_timeout = \"1s\"", 1)
        .replace(&toml_str(&cluster.url("app")), &toml_str(&url));
    assert!(text.contains(&relay.port.to_string()));
    let proxy = start_proxy(load_config(&text)).await;
    // One server connection, opened through the relay and now idle.
    let first = app(&proxy).await;
    assert_eq!(value(&first, "SELECT 1::text").await, "1");
    relay.freeze(true);
    // Other settings: the idle connection needs them replayed first.
    let started = std::time::Instant::now();
    let mut cfg = support::client_config(proxy.port, "app", "app-secret", "app");
    cfg.application_name("another-app");
    let e = match tokio::time::timeout(Duration::from_secs(30), support::try_connect_config(&cfg))
        .await
    {
        Ok(Err(e)) => e,
        Ok(Ok(_)) => panic!("a login over a silent server succeeded"),
        Err(_) => panic!("the login hung on a server that stopped answering"),
    };
    assert_sqlstate(&e, "08001");
    assert!(started.elapsed() < Duration::from_secs(20));
    relay.freeze(false);
    // The proxy recovers: the stuck connection was closed, a new one opens.
    let again = support::try_connect_config(&cfg)
        .await
        .expect("login after the thaw");
    assert_eq!(value(&again, "SELECT 2::text").await, "2");
}

/// A login whose startup setting the server refuses fails with the
/// server's reason, and the pooled connection the proxy tried it on stays
/// open for the next client (a bad setting cannot cost a server connection
/// per attempt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_startup_setting_keeps_the_server_connection() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "", 1).await;
    let pid = value(&app(&proxy).await, "SELECT pg_backend_pid()::text").await;
    for _ in 0..3 {
        let mut cfg = support::client_config(proxy.port, "app", "app-secret", "app");
        cfg.options("-c statement_timeout=abc");
        let e = match support::try_connect_config(&cfg).await {
            Err(e) => e,
            Ok(_) => panic!("a login with statement_timeout=abc succeeded"),
        };
        assert_sqlstate(&e, "22023");
        assert!(
            error_chain(&e).contains("statement_timeout"),
            "{}",
            error_chain(&e)
        );
    }
    let after = value(&app(&proxy).await, "SELECT pg_backend_pid()::text").await;
    assert_eq!(
        after, pid,
        "the server connection was closed over a refused setting"
    );
}

/// The test process's virtual memory size (the proxy runs in it), in KiB.
fn vm_size_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmSize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .expect("VmSize in /proc/self/status")
}

/// A length header alone does not make the proxy reserve the size it
/// announces: twenty clients that each announce a 60 MiB Query and send
/// only its first bytes cost it about a MiB each, not 1.2 GB of address
/// space (committed memory under strict overcommit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_message_sizes_are_not_reserved_up_front() {
    let cluster = items_cluster().await;
    let proxy = start(&cluster, "", 2).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(RawClient::login(proxy.port, "app", "app-secret", "app").await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = vm_size_kib();
    for c in &mut clients {
        let mut head = vec![b'Q'];
        head.extend_from_slice(&(60u32 << 20).to_be_bytes());
        head.extend_from_slice(b"SELECT 1 /* ");
        c.send(&head).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown_mib = vm_size_kib().saturating_sub(before) / 1024;
    // Up front, the twenty would take 1,200 MiB; the margin is for what
    // other tests in this process map meanwhile (a new malloc arena alone
    // reserves 64 MiB).
    assert!(
        grown_mib < 600,
        "twenty announced 60 MiB messages grew the address space by {grown_mib} MiB"
    );
    drop(clients);
    let other = app(&proxy).await;
    assert_eq!(
        value(&other, "SELECT 'still serving'").await,
        "still serving"
    );
}
