//! Named prepared statements under transaction pooling: the proxy renames
//! them on servers and prepares them on demand, so a client's statement works
//! on whichever server connection its next transaction gets. Checked with
//! pool_size 1 and 2 and several clients, and, wherever an error is
//! involved, against what Postgres itself answers.

mod pooling;
mod support;
use pooling::*;

use std::collections::BTreeSet;
use std::time::Duration;

use tenantgate::localpg::Cluster;
use tokio_postgres::Client;

// ------------------------------------------------------------------ helpers

/// Standard config with transaction pooling and shard `s0`'s `pool_size`.
fn config_text(cluster: &Cluster, pool_size: usize) -> String {
    let mut text = support::standard_config_text(cluster);
    let listen = "listen = \"127.0.0.1:0\"\n";
    assert!(text.contains(listen), "unexpected config text:\n{text}");
    text = text.replacen(
        listen,
        &format!("{listen}pool_mode = \"transaction\"\nquery_wait_timeout = \"30s\"\n"),
        1,
    );
    // The shard table comes last, so this key belongs to it.
    text.push_str(&format!("pool_size = {pool_size}\n"));
    text
}

async fn start(cluster: &Cluster, pool_size: usize) -> support::ProxyHandle {
    support::start_proxy(support::load_config(&config_text(cluster, pool_size))).await
}

fn code(e: &tokio_postgres::Error) -> String {
    support::sqlstate(e).unwrap_or_else(|| format!("no sqlstate: {}", support::error_chain(e)))
}

/// Clients that keep the pool busy (so server connections change hands)
/// until the token is cancelled.
fn noise(
    port: u16,
    clients: usize,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinSet<()>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..clients {
        let stop = stop.clone();
        set.spawn(async move {
            let c = connect(port).await;
            let s = c
                .prepare(&format!("SELECT pg_backend_pid() + {i} - $1::int4"))
                .await
                .expect("noise prepare");
            while !stop.is_cancelled() {
                c.query_one(&s, &[&(i as i32)]).await.expect("noise query");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }
    (stop, set)
}

/// Runs `steps` on a fresh raw connection to the proxy (`proxy = true`) or
/// directly to the cluster; each step must end with exactly one Sync or
/// Query. Returns the summarised answer of each step.
async fn raw_script(
    cluster: &Cluster,
    proxy_port: u16,
    proxy: bool,
    steps: &[Vec<u8>],
) -> Vec<Vec<String>> {
    let mut r = if proxy {
        raw::Raw::connect(proxy_port, USER, PASSWORD, DB).await
    } else {
        raw::Raw::connect(cluster.port(), "postgres", "", DB).await
    };
    let mut out = Vec::new();
    for step in steps {
        r.send(step).await;
        out.push(r.until_ready().await);
    }
    r.terminate().await;
    out
}

/// [`raw_script`] directly and through the proxy; asserts both answer the
/// same and returns the answer.
async fn same_as_postgres(
    cluster: &Cluster,
    proxy_port: u16,
    steps: &[Vec<u8>],
) -> Vec<Vec<String>> {
    let direct = raw_script(cluster, proxy_port, false, steps).await;
    let proxied = raw_script(cluster, proxy_port, true, steps).await;
    assert_eq!(
        proxied, direct,
        "through the proxy (left) vs Postgres (right)"
    );
    direct
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// Bind of statement `stmt` to the unnamed portal, Execute, Sync.
fn run_stmt(stmt: &str) -> Vec<u8> {
    cat(&[raw::bind("", stmt, &[]), raw::execute(""), raw::sync()])
}

// ------------------------------------------------------- raw protocol client

/// A minimal Postgres wire-protocol client, for what tokio-postgres cannot
/// express (statement names of our choosing, unknown names, one Sync for
/// several messages).
mod pg_raw;
use pg_raw as raw;

// -------------------------------------------------------------------- tests

/// What another client gets for a query: within 10 s only if a server
/// connection is free for it (with a pool of one, that the last client's
/// connection went back to the pool).
async fn another_client_is_served(port: u16, user: &str, password: &str) -> Vec<String> {
    let mut other = raw::Raw::connect(port, user, password, DB).await;
    other.send(&raw::query("SELECT 'other'")).await;
    let got = tokio::time::timeout(Duration::from_secs(10), other.until_ready())
        .await
        .expect("the server connection was given back");
    other.terminate().await;
    got
}

fn rows(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Four clients prepare the same statement name "q"; two with the same text,
/// two with texts of their own. Every execution returns the client's own
/// result however the server connections are shared.
async fn same_name_in_different_clients(pool_size: usize) {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, pool_size).await;
    let sql = |k: usize| {
        if k < 2 {
            "SELECT 'shared:' || $1::text".to_string()
        } else {
            format!("SELECT 'client{k}:' || $1::text")
        }
    };
    let mut clients = Vec::new();
    for k in 0..4 {
        let mut r = raw::Raw::connect(proxy.port, USER, PASSWORD, DB).await;
        r.send(&cat(&[raw::parse("q", &sql(k)), raw::sync()])).await;
        assert_eq!(r.until_ready().await, ["ParseComplete", "Ready I"]);
        clients.push(r);
    }
    let bind_exec = |p: &str| {
        cat(&[
            raw::bind("", "q", &[Some(p)]),
            raw::execute(""),
            raw::sync(),
        ])
    };
    for round in 0..25 {
        // Everyone sends before anyone reads: the proxy serves them at once.
        for r in clients.iter_mut() {
            r.send(&bind_exec(&round.to_string())).await;
        }
        for (k, r) in clients.iter_mut().enumerate() {
            let want = if k == 0 && round > 10 {
                format!("Row client0:{round}")
            } else if k < 2 {
                format!("Row shared:{round}")
            } else {
                format!("Row client{k}:{round}")
            };
            assert_eq!(
                r.until_ready().await,
                rows(&["BindComplete", &want, "Complete SELECT 1", "Ready I"]),
                "client {k}, round {round}, pool_size {pool_size}"
            );
        }
        if round == 10 {
            // Client 0 redefines "q"; the others keep theirs.
            let r = &mut clients[0];
            r.send(&cat(&[
                raw::close_stmt("q"),
                raw::parse("q", "SELECT 'client0:' || $1::text"),
                raw::sync(),
            ]))
            .await;
            assert_eq!(
                r.until_ready().await,
                ["CloseComplete", "ParseComplete", "Ready I"]
            );
        }
    }
    for r in clients {
        r.terminate().await;
    }
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn same_statement_name_in_different_clients_pool_size_1() {
    same_name_in_different_clients(1).await;
}

#[tokio::test]
async fn same_statement_name_in_different_clients_pool_size_2() {
    same_name_in_different_clients(2).await;
}

#[tokio::test]
async fn statement_survives_server_switches() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let port = proxy.port;
    let c = connect(port).await;
    let s = c
        .prepare("SELECT pg_backend_pid(), $1::int4 * 3")
        .await
        .unwrap();
    let mut pid: i32 = c.query_one(&s, &[&0i32]).await.unwrap().get(0);
    let mut pids = BTreeSet::from([pid]);
    for i in 1..6i32 {
        let blocker = occupy(port, 2, pid).await;
        let row = c.query_one(&s, &[&i]).await.unwrap_or_else(|e| {
            panic!(
                "execute after a server switch: {}",
                support::error_chain(&e)
            )
        });
        let now: i32 = row.get(0);
        assert_ne!(now, pid, "expected a different server connection");
        assert_eq!(row.get::<_, i32>(1), i * 3);
        blocker.batch_execute("COMMIT").await.unwrap();
        pid = now;
        pids.insert(now);
    }
    assert_eq!(pids.len(), 2);

    // And with other clients preparing and executing all the while.
    let busy = noise(port, 3);
    let mut seen = BTreeSet::new();
    for i in 0..100i32 {
        let row = c.query_one(&s, &[&i]).await.unwrap();
        seen.insert(row.get::<_, i32>(0));
        assert_eq!(row.get::<_, i32>(1), i * 3);
        tokio::task::yield_now().await;
    }
    stop_noise(busy).await;
    assert!(seen.len() <= 2, "pool_size 2, backends {seen:?}");
    proxy.shutdown().await.unwrap();
}

/// Another client's DEALLOCATE ALL / DISCARD ALL on the (single) server
/// connection must not take this client's statements away.
#[tokio::test]
async fn other_clients_clearing_statements_does_not_break_mine() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 1).await;
    let a = connect(proxy.port).await;
    let b = connect(proxy.port).await;
    let s = a.prepare("SELECT $1::int4 + 1000").await.unwrap();
    assert_eq!(
        a.query_one(&s, &[&1i32]).await.unwrap().get::<_, i32>(0),
        1001
    );
    let clears: [&str; 4] = [
        "DEALLOCATE ALL",
        "DISCARD ALL",
        "DEALLOCATE PREPARE ALL",
        "BEGIN; DEALLOCATE ALL; ROLLBACK",
    ];
    for (i, clear) in clears.iter().enumerate() {
        b.simple_query(clear)
            .await
            .unwrap_or_else(|e| panic!("{clear}: {}", support::error_chain(&e)));
        let i = i as i32;
        let got = a.query_one(&s, &[&i]).await.unwrap_or_else(|e| {
            panic!(
                "after another client's {clear}: {}",
                support::error_chain(&e)
            )
        });
        assert_eq!(got.get::<_, i32>(0), i + 1000);
    }
    // The extended-protocol form, too.
    b.execute("DEALLOCATE ALL", &[]).await.unwrap();
    assert_eq!(
        a.query_one(&s, &[&7i32]).await.unwrap().get::<_, i32>(0),
        1007
    );
    proxy.shutdown().await.unwrap();
}

fn outcome(r: Result<tokio_postgres::Row, tokio_postgres::Error>) -> String {
    match r {
        Ok(row) => format!("ok {}", row.get::<_, i32>(0)),
        Err(e) => format!("err {}", code(&e)),
    }
}

/// DEALLOCATE ALL and DISCARD ALL by the client itself, then re-preparing.
async fn clear_and_reprepare(c: &Client) -> Vec<String> {
    let sql = "SELECT $1::int4 + 1";
    let mut out = Vec::new();
    let s1 = c.prepare(sql).await.unwrap();
    out.push(outcome(c.query_one(&s1, &[&1i32]).await));
    c.simple_query("DEALLOCATE ALL").await.unwrap();
    out.push(outcome(c.query_one(&s1, &[&2i32]).await));
    let s2 = c.prepare(sql).await.unwrap();
    out.push(outcome(c.query_one(&s2, &[&3i32]).await));
    c.simple_query("DISCARD ALL").await.unwrap();
    out.push(outcome(c.query_one(&s2, &[&4i32]).await));
    out.push(outcome(c.query_one(&s1, &[&5i32]).await));
    let s3 = c.prepare(sql).await.unwrap();
    out.push(outcome(c.query_one(&s3, &[&6i32]).await));
    c.execute("DEALLOCATE ALL", &[]).await.unwrap();
    out.push(outcome(c.query_one(&s3, &[&7i32]).await));
    let s4 = c.prepare(sql).await.unwrap();
    out.push(outcome(c.query_one(&s4, &[&8i32]).await));
    // Statements that were never deallocated by name but re-prepared
    // under new names work on whatever server comes next.
    for i in 0..10i32 {
        out.push(outcome(c.query_one(&s4, &[&i]).await));
    }
    out
}

#[tokio::test]
async fn deallocate_all_and_discard_all_then_reprepare_match_postgres() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let direct = support::connect_direct(&cluster, DB).await;
    let expected = clear_and_reprepare(&direct).await;
    assert_eq!(
        expected[..8],
        [
            "ok 2",
            "err 26000",
            "ok 4",
            "err 26000",
            "err 26000",
            "ok 7",
            "err 26000",
            "ok 9"
        ]
    );
    let busy = noise(proxy.port, 3);
    let c = connect(proxy.port).await;
    for _ in 0..3 {
        assert_eq!(clear_and_reprepare(&c).await, expected);
    }
    stop_noise(busy).await;
    proxy.shutdown().await.unwrap();
}

/// A `DEALLOCATE ALL` or `DISCARD ALL` pipelined in front of Parses in one
/// batch drops only the statements prepared before it, also where the
/// server already holds the same text for the proxy; one that fails (in an
/// aborted transaction) drops nothing.
#[tokio::test]
async fn drops_in_a_pipeline_match_postgres() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 1).await;
    let run = |name: &str, portal: &str| cat(&[raw::bind(portal, name, &[]), raw::execute(portal)]);
    let mut steps = Vec::new();
    for drop in ["DEALLOCATE ALL", "DISCARD ALL"] {
        steps.extend([
            cat(&[raw::parse("mine", "SELECT 777"), raw::sync()]),
            // The same text prepared again under another name, after the drop.
            cat(&[
                raw::pbe(drop),
                raw::parse("other", "SELECT 777"),
                run("other", ""),
                raw::sync(),
            ]),
            cat(&[run("other", ""), raw::sync()]),
            cat(&[run("mine", ""), raw::sync()]),
            raw::query("DEALLOCATE ALL"),
        ]);
    }
    // A name defined again behind the drop, and one used behind it.
    steps.extend([
        cat(&[
            raw::parse("s1", "SELECT 'one'"),
            raw::pbe("DEALLOCATE ALL"),
            raw::parse("s1", "SELECT 'two'"),
            run("s1", ""),
            raw::sync(),
        ]),
        cat(&[run("s1", ""), raw::sync()]),
        cat(&[raw::parse("s2", "SELECT 'x'"), raw::sync()]),
        cat(&[raw::pbe("DEALLOCATE ALL"), run("s2", ""), raw::sync()]),
        raw::query("DEALLOCATE ALL"),
    ]);
    // A drop that fails: everything stays.
    steps.extend([
        cat(&[raw::parse("kept", "SELECT 778"), raw::sync()]),
        raw::query("BEGIN"),
        raw::query("SELECT 1/0"),
        cat(&[
            raw::pbe("DEALLOCATE ALL"),
            raw::parse("late", "SELECT 778"),
            raw::sync(),
        ]),
        raw::query("ROLLBACK"),
        cat(&[run("kept", ""), raw::sync()]),
        cat(&[run("late", ""), raw::sync()]),
    ]);
    let answer = same_as_postgres(&cluster, proxy.port, &steps).await;
    let has = |step: &[String], what: &str| step.iter().any(|m| m.contains(what));
    for at in [1, 6] {
        assert!(has(&answer[at], "777"), "{:?}", answer[at]);
        assert!(has(&answer[at + 1], "777"), "{:?}", answer[at + 1]);
        assert!(has(&answer[at + 2], "26000"), "{:?}", answer[at + 2]);
    }
    assert!(has(&answer[10], "two"), "{:?}", answer[10]);
    assert!(has(&answer[11], "two"), "{:?}", answer[11]);
    assert!(has(&answer[13], "26000"), "{:?}", answer[13]);
    assert!(has(&answer[20], "778"), "{:?}", answer[20]);
    assert!(has(&answer[21], "26000"), "{:?}", answer[21]);
    proxy.shutdown().await.unwrap();
}

/// After an error in extended-protocol messages, Postgres skips everything
/// up to the next Sync, simple Queries included (no reply for them): sent
/// with the failing messages or after their error came back.
#[tokio::test]
async fn queries_skipped_after_an_extended_error_match_postgres() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 1).await;
    let mut answers = Vec::new();
    for port in [cluster.port(), proxy.port] {
        let (user, password) = login_for(port, proxy.port);
        let mut r = raw::Raw::connect(port, user, password, DB).await;
        let mut out = Vec::new();
        // All in one write.
        r.send(&cat(&[
            raw::parse("", "SELEC 1"),
            raw::query("SELECT 'skipped'"),
            raw::query("SELECT 'skipped too'"),
            raw::sync(),
        ]))
        .await;
        out.extend(r.until_ready().await);
        // The error is in before the Query is written.
        r.send(&cat(&[raw::bind("", "nope", &[]), raw::execute("")]))
            .await;
        let (tag, _) = r.recv().await;
        out.push(format!("{}", tag as char));
        r.send(&raw::query("SELECT 'skipped'")).await;
        r.send(&raw::sync()).await;
        out.extend(r.until_ready().await);
        r.send(&raw::query("SELECT 'after'")).await;
        out.extend(r.until_ready().await);
        // A refusal of the proxy's own in front of the Query (an Execute of
        // DEALLOCATE of a name the client never prepared).
        r.send(&cat(&[
            raw::pbe("DEALLOCATE nope"),
            raw::query("SELECT 'skipped'"),
            raw::sync(),
        ]))
        .await;
        out.extend(r.until_ready().await);
        r.send(&raw::query("SELECT 'after again'")).await;
        out.extend(r.until_ready().await);
        // Nothing is owed any more: the (single) server connection went
        // back to the pool, and another client gets it.
        out.extend(another_client_is_served(port, user, password).await);
        r.terminate().await;
        answers.push(out);
    }
    assert_eq!(
        answers[1], answers[0],
        "through the proxy (left) vs Postgres (right)"
    );
    assert!(
        answers[0].iter().any(|m| m.contains("after again")),
        "{:?}",
        answers[0]
    );
    assert!(
        !answers[0].iter().any(|m| m.contains("skipped")),
        "{:?}",
        answers[0]
    );
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn closed_statement_can_be_prepared_again() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let busy = noise(proxy.port, 3);
    let c = connect(proxy.port).await;
    for i in 0..30i32 {
        // Dropping a tokio-postgres Statement sends Close for it.
        let s = c.prepare("SELECT $1::int4 * 7").await.unwrap();
        assert_eq!(
            c.query_one(&s, &[&i]).await.unwrap().get::<_, i32>(0),
            i * 7
        );
        drop(s);
        tokio::task::yield_now().await;
    }
    stop_noise(busy).await;

    let steps = [
        cat(&[raw::parse("c1", "SELECT 1"), raw::sync()]),
        run_stmt("c1"),
        cat(&[raw::close_stmt("c1"), raw::sync()]),
        run_stmt("c1"),
        cat(&[raw::close_stmt("never-prepared"), raw::sync()]),
        cat(&[
            raw::parse("c1", "SELECT 2"),
            raw::bind("", "c1", &[]),
            raw::execute(""),
            raw::sync(),
        ]),
        // Close and Parse of the same name in one batch.
        cat(&[
            raw::close_stmt("c1"),
            raw::parse("c1", "SELECT 3"),
            raw::bind("", "c1", &[]),
            raw::execute(""),
            raw::sync(),
        ]),
    ];
    let answer = same_as_postgres(&cluster, proxy.port, &steps).await;
    assert_eq!(answer[3], ["Error 26000", "Ready I"]);
    assert_eq!(answer[4], ["CloseComplete", "Ready I"]);
    assert_eq!(
        answer[6],
        [
            "CloseComplete",
            "ParseComplete",
            "BindComplete",
            "Row 3",
            "Complete SELECT 1",
            "Ready I"
        ]
    );
    proxy.shutdown().await.unwrap();
}

async fn failed_parse(pool_size: usize) {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, pool_size).await;
    let port = proxy.port;
    let a = connect(port).await;
    let b = connect(port).await;
    let err = a.prepare("SELEC 1").await.expect_err("syntax error");
    assert_eq!(code(&err), "42601");
    let message = err.as_db_error().expect("db error").message().to_string();
    assert!(message.contains("SELEC"), "message: {message}");
    // The session is usable, with both protocols.
    assert_eq!(
        a.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    a.simple_query("SELECT 1").await.unwrap();
    let pid = backend_pid(&a).await;

    // The same text on another server connection (when there is one) fails
    // the same way: a failed Parse is never remembered as good.
    let blocker = if pool_size > 1 {
        Some(occupy(port, pool_size, pid).await)
    } else {
        None
    };
    let err_b = b.prepare("SELEC 1").await.expect_err("syntax error again");
    assert_eq!(code(&err_b), "42601");
    assert_eq!(err_b.as_db_error().unwrap().message(), message);
    if pool_size > 1 {
        assert_ne!(backend_pid(&b).await, pid);
    }
    if let Some(blocker) = blocker {
        blocker.batch_execute("COMMIT").await.unwrap();
    }
    for _ in 0..3 {
        let again = a.prepare("SELEC 1").await.expect_err("syntax error again");
        assert_eq!(code(&again), "42601");
    }
    let ok = a.prepare("SELECT 1::int4").await.unwrap();
    assert_eq!(a.query_one(&ok, &[]).await.unwrap().get::<_, i32>(0), 1);
    // A statement that parses but fails to plan (no such table) is not
    // remembered as good either.
    for c in [&a, &b] {
        let err = c
            .prepare("SELECT * FROM no_such_table")
            .await
            .expect_err("42P01");
        assert_eq!(code(&err), "42P01");
    }
    support::exec(&cluster, DB, "CREATE TABLE no_such_table (x int4)").await;
    let s = b
        .prepare("SELECT count(*)::int4 FROM no_such_table")
        .await
        .unwrap();
    assert_eq!(b.query_one(&s, &[]).await.unwrap().get::<_, i32>(0), 0);
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn failed_parse_leaves_session_usable_pool_size_1() {
    failed_parse(1).await;
}

#[tokio::test]
async fn failed_parse_leaves_session_usable_pool_size_2() {
    failed_parse(2).await;
}

#[tokio::test]
async fn bind_after_failed_parse_matches_postgres() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let steps = [
        cat(&[raw::parse("bad", "SELEC 1"), raw::sync()]),
        run_stmt("bad"),
        cat(&[raw::describe_stmt("bad"), raw::sync()]),
        // A failing Parse in a batch: the rest of the batch is skipped.
        cat(&[
            raw::parse("bad2", "SELEC 2"),
            raw::bind("", "bad2", &[]),
            raw::execute(""),
            raw::sync(),
        ]),
        run_stmt("bad2"),
        // The name is free: a good Parse under it works.
        cat(&[
            raw::parse("bad", "SELECT 5"),
            raw::bind("", "bad", &[]),
            raw::execute(""),
            raw::sync(),
        ]),
        raw::query("SELECT 1"),
    ];
    let answer = same_as_postgres(&cluster, proxy.port, &steps).await;
    assert_eq!(answer[0], ["Error 42601", "Ready I"]);
    assert_eq!(answer[1], ["Error 26000", "Ready I"]);
    assert_eq!(answer[2], ["Error 26000", "Ready I"]);
    assert_eq!(answer[4], ["Error 26000", "Ready I"]);
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_statement_names_give_26000() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    // Make sure some proxy-internal names exist on the servers.
    let c = connect(proxy.port).await;
    for i in 0..5 {
        let s = c.prepare(&format!("SELECT {i}::int4")).await.unwrap();
        c.query_one(&s, &[]).await.unwrap();
    }
    let steps = [
        run_stmt("nope"),
        cat(&[raw::describe_stmt("nope"), raw::sync()]),
        run_stmt("_tg_1"),
        cat(&[raw::describe_stmt("_tg_2"), raw::sync()]),
        cat(&[
            raw::bind("", "_tg_noop", &[]),
            raw::execute(""),
            raw::sync(),
        ]),
        raw::query("SELECT 1"),
        // Inside a transaction block the error aborts the transaction.
        raw::query("BEGIN"),
        run_stmt("nope"),
        raw::query("SELECT 1"),
        raw::query("ROLLBACK"),
        raw::query("SELECT 2"),
    ];
    let answer = same_as_postgres(&cluster, proxy.port, &steps).await;
    for i in [0, 1, 2, 3, 4] {
        assert_eq!(answer[i], ["Error 26000", "Ready I"], "step {i}");
    }
    assert_eq!(answer[7], ["Error 26000", "Ready E"]);
    assert_eq!(answer[8], ["Error 25P02", "Ready E"]);
    assert_eq!(
        answer[10],
        ["RowDescription", "Row 2", "Complete SELECT 1", "Ready I"]
    );
    proxy.shutdown().await.unwrap();
}

/// In a failed transaction Postgres looks the statement of a Bind or
/// Describe up before it refuses to run anything (26000 before 25P02),
/// also for the names the proxy answers for itself.
#[tokio::test]
async fn unknown_statement_names_in_a_failed_transaction_give_26000() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let steps = [
        raw::query("BEGIN"),
        raw::query("SELECT 1/0"),
        run_stmt(""),
        cat(&[raw::describe_stmt(""), raw::sync()]),
        run_stmt("_tg_1"),
        run_stmt("nope"),
        raw::query("SELECT 1"),
        raw::query("ROLLBACK"),
        raw::query("SELECT 2"),
    ];
    let answer = same_as_postgres(&cluster, proxy.port, &steps).await;
    assert_eq!(answer[1], ["Error 22012", "Ready E"]);
    for i in [2, 3, 4, 5] {
        assert_eq!(answer[i], ["Error 26000", "Ready E"], "step {i}");
    }
    assert_eq!(answer[6], ["Error 25P02", "Ready E"]);
    assert_eq!(
        answer[8],
        ["RowDescription", "Row 2", "Complete SELECT 1", "Ready I"]
    );
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn duplicate_statement_name_matches_postgres() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let steps = [
        cat(&[raw::parse("dup", "SELECT 1"), raw::sync()]),
        cat(&[raw::parse("dup", "SELECT 2"), raw::sync()]),
        cat(&[raw::parse("dup", "SELECT 1"), raw::sync()]),
        run_stmt("dup"),
    ];
    let answer = same_as_postgres(&cluster, proxy.port, &steps).await;
    assert_eq!(answer[1], ["Error 42P05", "Ready I"]);
    assert_eq!(answer[3][..2], ["BindComplete", "Row 1"]);
    proxy.shutdown().await.unwrap();
}

/// Postgres keys statement and portal names by their first 63 bytes:
/// longer names that share them are one name, for Parse, Bind, Describe,
/// Close and an SQL `DEALLOCATE` alike.
#[tokio::test]
async fn names_longer_than_63_bytes_are_told_apart_by_their_first_63() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let stem = "s".repeat(63);
    let (one, two) = (format!("{stem}_one"), format!("{stem}_two"));
    let portal = "p".repeat(63);
    let (p_one, p_two) = (format!("{portal}1"), format!("{portal}2"));
    let steps = [
        cat(&[raw::parse(&one, "SELECT 1"), raw::sync()]),
        // Another name to the client, the same one to Postgres.
        cat(&[raw::parse(&two, "SELECT 2"), raw::sync()]),
        run_stmt(&two),
        cat(&[raw::describe_stmt(&stem), raw::sync()]),
        cat(&[raw::close_stmt(&two), raw::sync()]),
        run_stmt(&one),
        cat(&[raw::parse(&two, "SELECT 3"), raw::sync()]),
        raw::query(&format!("DEALLOCATE {stem}")),
        run_stmt(&one),
        // A named portal, bound under one long name and run under another
        // (of a SET: the proxy follows such a portal).
        raw::query("BEGIN"),
        cat(&[
            raw::parse(&one, "SET application_name = 'long'"),
            raw::bind(&p_one, &one, &[]),
            raw::execute(&p_two),
            raw::sync(),
        ]),
        raw::query("COMMIT"),
        raw::query("SHOW application_name"),
    ];
    let answer = same_as_postgres(&cluster, proxy.port, &steps).await;
    assert_eq!(answer[1], ["Error 42P05", "Ready I"]);
    assert_eq!(answer[2][..2], ["BindComplete", "Row 1"]);
    assert_eq!(answer[3][..2], ["ParameterDescription", "RowDescription"]);
    assert_eq!(answer[4], ["CloseComplete", "Ready I"]);
    assert_eq!(answer[5], ["Error 26000", "Ready I"]);
    assert_eq!(answer[6], ["ParseComplete", "Ready I"]);
    assert_eq!(answer[7], ["Complete DEALLOCATE", "Ready I"]);
    assert_eq!(answer[8], ["Error 26000", "Ready I"]);
    assert_eq!(
        answer[10],
        ["ParseComplete", "BindComplete", "Complete SET", "Ready T"]
    );
    assert_eq!(answer[12][..2], ["RowDescription", "Row long"]);
    // The proxy knew what that portal set: the next client, which gets the
    // same server connection (the last one given back), does not see it.
    let next = connect(proxy.port).await;
    let shown: String = next
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(shown, "long", "a setting of another client's session");
    proxy.shutdown().await.unwrap();
}

/// SQL-level PREPARE/EXECUTE pins the client to its server connection.
#[tokio::test]
async fn sql_prepare_and_execute_work() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let busy = noise(proxy.port, 3);
    let c = connect(proxy.port).await;
    c.batch_execute("PREPARE p(int4) AS SELECT $1 * 2, pg_backend_pid()")
        .await
        .unwrap();
    let mut pids = BTreeSet::new();
    for i in 0..30 {
        let msgs = c.simple_query(&format!("EXECUTE p({i})")).await.unwrap();
        let row = msgs
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .expect("a row");
        assert_eq!(row.get(0), Some((i * 2).to_string().as_str()));
        pids.insert(row.get(1).unwrap().to_string());
        tokio::task::yield_now().await;
    }
    assert_eq!(pids.len(), 1, "PREPARE must pin the client: {pids:?}");
    c.batch_execute("DEALLOCATE p").await.unwrap();
    let err = c
        .simple_query("EXECUTE p(1)")
        .await
        .expect_err("deallocated");
    assert_eq!(code(&err), "26000");
    stop_noise(busy).await;
    drop(c);
    proxy.shutdown().await.unwrap();
}

/// Postgres keeps one set of names for statements prepared by SQL and by
/// Parse: an SQL `PREPARE` of a name the client prepared with Parse fails
/// (42P05) unless a `DEALLOCATE` released the name before it in the
/// string; in a failed transaction it gets 25P02 as any statement does. A
/// query string with such a `PREPARE` behind other statements is refused
/// whole (Postgres runs those first, then fails). An SQL `EXECUTE` of such
/// a statement, which Postgres runs, is refused with 0A000 (servers hold it
/// under the proxy's name only).
#[tokio::test]
async fn sql_prepare_or_execute_of_a_protocol_statement_name() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let steps = [
        cat(&[raw::parse("d", "SELECT 1"), raw::sync()]),
        raw::query("PREPARE d AS SELECT 2"),
        run_stmt("d"),
        raw::query("BEGIN"),
        raw::query("SELECT 1/0"),
        raw::query("PREPARE d AS SELECT 2"),
        raw::query("ROLLBACK"),
        raw::query("DEALLOCATE d; PREPARE d AS SELECT 4"),
        raw::query("EXECUTE d"),
        raw::query("DEALLOCATE d"),
    ];
    let answer = same_as_postgres(&cluster, proxy.port, &steps).await;
    assert_eq!(answer[1], ["Error 42P05", "Ready I"]);
    assert_eq!(
        answer[2],
        ["BindComplete", "Row 1", "Complete SELECT 1", "Ready I"]
    );
    assert_eq!(answer[5], ["Error 25P02", "Ready E"]);
    assert_eq!(
        answer[7],
        ["Complete DEALLOCATE", "Complete PREPARE", "Ready I"]
    );
    assert_eq!(
        answer[8],
        ["RowDescription", "Row 4", "Complete SELECT 1", "Ready I"]
    );
    let whole = [
        cat(&[raw::parse("d", "SELECT 1"), raw::sync()]),
        raw::query("SELECT 3; PREPARE D(int4) AS SELECT $1"),
        run_stmt("d"),
        raw::query("EXECUTE d"),
        raw::query("BEGIN"),
        raw::query("EXPLAIN (COSTS off) EXECUTE d"),
        raw::query("ROLLBACK"),
        raw::query("DEALLOCATE d; PREPARE d AS SELECT 6; EXECUTE d"),
    ];
    let answer = raw_script(&cluster, proxy.port, true, &whole).await;
    assert_eq!(answer[1], ["Error 42P05", "Ready I"]);
    assert_eq!(
        answer[2],
        ["BindComplete", "Row 1", "Complete SELECT 1", "Ready I"]
    );
    assert_eq!(answer[3], ["Error 0A000", "Ready I"]);
    assert_eq!(answer[5], ["Error 0A000", "Ready E"]);
    assert_eq!(
        answer[7],
        [
            "Complete DEALLOCATE",
            "Complete PREPARE",
            "RowDescription",
            "Row 6",
            "Complete SELECT 1",
            "Ready I"
        ]
    );
    proxy.shutdown().await.unwrap();
}

/// The other way round: a Parse of a name an SQL `PREPARE` defined (the
/// session is pinned to its server connection) fails as in Postgres, and
/// a Parse of a free name, a bad one, or one in a failed transaction gets
/// what Postgres gives.
#[tokio::test]
async fn a_parse_meets_the_names_sql_prepare_defined() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let busy = noise(proxy.port, 3);
    let steps = [
        raw::query("PREPARE e AS SELECT 3"),
        cat(&[raw::parse("e", "SELECT 4"), raw::sync()]),
        run_stmt("e"),
        cat(&[
            raw::parse("f", "SELECT 5"),
            raw::parse("e", "SELECT 4"),
            raw::bind("", "f", &[]),
            raw::execute(""),
            raw::sync(),
        ]),
        run_stmt("f"),
        raw::query("DEALLOCATE e"),
        cat(&[raw::parse("e", "SELECT 6"), raw::sync()]),
        run_stmt("e"),
        cat(&[raw::parse("g", "SELEC 7"), raw::sync()]),
        raw::query("BEGIN"),
        raw::query("SELECT 1/0"),
        cat(&[raw::parse("h", "SELECT 8"), raw::sync()]),
        raw::query("ROLLBACK"),
        cat(&[raw::parse("h", "SELECT 8"), raw::sync()]),
        run_stmt("h"),
    ];
    let answer = same_as_postgres(&cluster, proxy.port, &steps).await;
    assert_eq!(answer[1], ["Error 42P05", "Ready I"]);
    assert_eq!(
        answer[2],
        ["BindComplete", "Row 3", "Complete SELECT 1", "Ready I"]
    );
    assert_eq!(answer[3], ["ParseComplete", "Error 42P05", "Ready I"]);
    assert_eq!(
        answer[4],
        ["BindComplete", "Row 5", "Complete SELECT 1", "Ready I"]
    );
    assert_eq!(
        answer[7],
        ["BindComplete", "Row 6", "Complete SELECT 1", "Ready I"]
    );
    assert_eq!(answer[8], ["Error 42601", "Ready I"]);
    assert_eq!(answer[11], ["Error 25P02", "Ready E"]);
    assert_eq!(
        answer[14],
        ["BindComplete", "Row 8", "Complete SELECT 1", "Ready I"]
    );
    stop_noise(busy).await;
    proxy.shutdown().await.unwrap();
}

/// A `DEALLOCATE` through the extended protocol of a name the client never
/// prepared gets Postgres's 26000 in a session pinned for another reason
/// (LISTEN); once the session has sent an SQL `PREPARE`, whose statements
/// only a simple Query can release, it is refused with 0A000.
#[tokio::test]
async fn an_extended_deallocate_of_an_unknown_name_in_a_pinned_session() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let pbe = |sql: &str| cat(&[raw::pbe(sql), raw::sync()]);
    let steps = [
        raw::query("LISTEN somewhere"),
        pbe("DEALLOCATE nope"),
        raw::query("SELECT 1"),
    ];
    let answer = same_as_postgres(&cluster, proxy.port, &steps).await;
    assert_eq!(
        answer[1],
        ["ParseComplete", "BindComplete", "Error 26000", "Ready I"]
    );
    let steps = [
        raw::query("PREPARE p AS SELECT 1"),
        pbe("DEALLOCATE p"),
        raw::query("DEALLOCATE p"),
    ];
    let answer = raw_script(&cluster, proxy.port, true, &steps).await;
    assert_eq!(
        answer[1],
        ["ParseComplete", "BindComplete", "Error 0A000", "Ready I"]
    );
    assert_eq!(answer[2], ["Complete DEALLOCATE", "Ready I"]);
    proxy.shutdown().await.unwrap();
}

/// A client that deallocates the proxy's server-side names by SQL must not
/// break other clients' prepared statements.
#[tokio::test]
async fn sql_deallocate_of_proxy_names_does_not_break_other_clients() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 1).await;
    let a = connect(proxy.port).await;
    let b = connect(proxy.port).await;
    let s = a.prepare("SELECT $1::int4 + 500").await.unwrap();
    assert_eq!(
        a.query_one(&s, &[&1i32]).await.unwrap().get::<_, i32>(0),
        501
    );
    let names: Vec<String> = b
        .query(
            "SELECT name FROM pg_prepared_statements WHERE name LIKE '\\_tg\\_%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!names.is_empty(), "no proxy-named statements on the server");
    for n in &names {
        // Refused, naming the statement as Postgres would.
        let e = b
            .batch_execute(&format!("DEALLOCATE \"{n}\""))
            .await
            .expect_err("a proxy name");
        let db = e.as_db_error().expect("an error response");
        assert_eq!(db.code().code(), "26000");
        assert_eq!(
            db.message(),
            format!("prepared statement \"{n}\" does not exist")
        );
    }
    // The channel the proxy's DEALLOCATE stand-in unlistens is not the
    // clients'.
    let e = b.batch_execute("LISTEN _tg").await.expect_err("reserved");
    assert_eq!(e.code().map(|c| c.code()), Some("42939"), "{e}");
    let got = a.query_one(&s, &[&2i32]).await.unwrap_or_else(|e| {
        panic!(
            "A's statement after B's DEALLOCATE: {}",
            support::error_chain(&e)
        )
    });
    assert_eq!(got.get::<_, i32>(0), 502);
    proxy.shutdown().await.unwrap();
}

/// An unnamed statement belongs to the client that parsed it: another
/// client's Bind of the unnamed statement must not run it (Postgres answers
/// 26000 to a session that never parsed one).
#[tokio::test]
async fn unnamed_statement_of_another_client_is_not_reachable() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 1).await;
    let mut x = raw::Raw::connect(proxy.port, USER, PASSWORD, DB).await;
    x.send(&cat(&[
        raw::parse("", "SELECT 'x-secret'"),
        raw::bind("", "", &[]),
        raw::execute(""),
        raw::sync(),
    ]))
    .await;
    assert_eq!(
        x.until_ready().await,
        [
            "ParseComplete",
            "BindComplete",
            "Row x-secret",
            "Complete SELECT 1",
            "Ready I"
        ]
    );
    // Directly, a session that parsed nothing gets 26000.
    let steps = [cat(&[
        raw::bind("", "", &[]),
        raw::execute(""),
        raw::sync(),
    ])];
    let direct = raw_script(&cluster, proxy.port, false, &steps).await;
    assert_eq!(direct[0], ["Error 26000", "Ready I"]);
    // Through the proxy, on the server connection X just used.
    let proxied = raw_script(&cluster, proxy.port, true, &steps).await;
    assert_eq!(proxied, direct, "another client's unnamed statement ran");
    x.terminate().await;
    proxy.shutdown().await.unwrap();
}

/// Postgres keeps the unnamed statement across Sync until the next Parse of
/// the unnamed statement or the next simple Query.
#[tokio::test]
async fn unnamed_statement_survives_sync_like_postgres() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let steps = [
        cat(&[raw::parse("", "SELECT 41 + 1"), raw::sync()]),
        run_stmt(""),
    ];
    let direct = raw_script(&cluster, proxy.port, false, &steps).await;
    assert_eq!(
        direct[1],
        ["BindComplete", "Row 42", "Complete SELECT 1", "Ready I"]
    );
    // Through the proxy, with the second batch on another server connection.
    let mut r = raw::Raw::connect(proxy.port, USER, PASSWORD, DB).await;
    r.send(&cat(&[
        raw::parse("", "SELECT pg_backend_pid()"),
        raw::bind("", "", &[]),
        raw::execute(""),
        raw::sync(),
    ]))
    .await;
    let got = r.until_ready().await;
    let pid: i32 = got[2].strip_prefix("Row ").unwrap().parse().unwrap();
    r.send(&cat(&[raw::parse("", "SELECT 41 + 1"), raw::sync()]))
        .await;
    assert_eq!(r.until_ready().await, ["ParseComplete", "Ready I"]);
    let blocker = occupy(proxy.port, 2, pid).await;
    r.send(&cat(&[
        raw::bind("", "", &[]),
        raw::execute(""),
        raw::sync(),
    ]))
    .await;
    assert_eq!(r.until_ready().await, direct[1]);
    blocker.batch_execute("COMMIT").await.unwrap();
    r.terminate().await;
    proxy.shutdown().await.unwrap();
}

/// `DEALLOCATE name` of a statement prepared with Parse releases it, as in
/// Postgres (ActiveRecord's statement pool does this): the name is free
/// again, a Bind of it fails, and a pipelined or in-transaction DEALLOCATE
/// answers in order.
#[tokio::test]
async fn sql_deallocate_releases_a_protocol_statement() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let steps = [
        cat(&[raw::parse("a1", "SELECT 1"), raw::sync()]),
        run_stmt("a1"),
        raw::query("DEALLOCATE a1"),
        run_stmt("a1"),
        // The name is free again, with another text.
        cat(&[raw::parse("a1", "SELECT 2"), raw::sync()]),
        run_stmt("a1"),
        // Quoted and PREPARE spellings; an unknown name.
        cat(&[raw::parse("B 2", "SELECT 3"), raw::sync()]),
        raw::query("DEALLOCATE PREPARE \"B 2\""),
        raw::query("DEALLOCATE nope"),
        // In a transaction, and sent behind a pipelined Sync.
        raw::query("BEGIN"),
        cat(&[
            raw::parse("a3", "SELECT 4"),
            raw::sync(),
            raw::query("DEALLOCATE a3"),
        ]),
        // (Nothing sent: the DEALLOCATE's answer.)
        Vec::new(),
        run_stmt("a3"),
        raw::query("ROLLBACK"),
        // In a failed transaction: the server's 25P02.
        cat(&[raw::parse("a4", "SELECT 5"), raw::sync()]),
        raw::query("BEGIN"),
        raw::query("SELECT 1/0"),
        raw::query("DEALLOCATE a4"),
        raw::query("ROLLBACK"),
        run_stmt("a4"),
        raw::query("DEALLOCATE a4"),
    ];
    let answer = same_as_postgres(&cluster, proxy.port, &steps).await;
    assert_eq!(answer[2], ["Complete DEALLOCATE", "Ready I"]);
    assert_eq!(answer[3], ["Error 26000", "Ready I"]);
    assert_eq!(answer[7], ["Complete DEALLOCATE", "Ready I"]);
    assert_eq!(answer[8], ["Error 26000", "Ready I"]);
    assert_eq!(answer[11], ["Complete DEALLOCATE", "Ready T"]);
    assert_eq!(answer[12], ["Error 26000", "Ready E"]);
    assert_eq!(answer[17], ["Error 25P02", "Ready E"]);
    assert_eq!(answer[20], ["Complete DEALLOCATE", "Ready I"]);
    proxy.shutdown().await.unwrap();
}

/// `DEALLOCATE name` of a statement prepared with Parse anywhere else than
/// as a whole Query with nothing in flight (among other statements, in one
/// string with a transaction block, through the extended protocol as
/// psycopg's pipeline mode sends it, behind unsynced extended messages):
/// the name is released where Postgres releases it, and kept where the
/// DEALLOCATE fails or is skipped.
#[tokio::test]
async fn sql_deallocate_anywhere_matches_postgres() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let prep = |name: &str| cat(&[raw::parse(name, "SELECT 41 + 1"), raw::sync()]);
    let steps = [
        // 0-2: among other statements.
        prep("b1"),
        raw::query("SELECT 1; DEALLOCATE b1; SELECT 2"),
        run_stmt("b1"),
        // 3-5: in a transaction block that rolls back (DEALLOCATE is not
        // transactional).
        prep("b2"),
        raw::query("BEGIN; DEALLOCATE b2; ROLLBACK"),
        run_stmt("b2"),
        // 6-7: twice in one string: the second does not find it.
        prep("b3"),
        raw::query("DEALLOCATE b3; DEALLOCATE b3; SELECT 'not run'"),
        // 8-11: extended protocol (unnamed statement, Describe of the
        // portal), then the name is free for another text.
        prep("b4"),
        cat(&[
            raw::parse("", "DEALLOCATE b4"),
            raw::bind("", "", &[]),
            raw::describe_portal(""),
            raw::execute(""),
            raw::sync(),
        ]),
        run_stmt("b4"),
        cat(&[raw::parse("b4", "SELECT 'again'"), raw::sync()]),
        // 12-14: behind an error in its pipeline: skipped, the name stays.
        prep("b5"),
        cat(&[
            raw::pbe("SELECT 1/0"),
            raw::pbe("DEALLOCATE b5"),
            raw::sync(),
        ]),
        run_stmt("b5"),
        // 15-18: a named statement of DEALLOCATE, run twice.
        prep("b6"),
        cat(&[
            raw::parse("d6", "DEALLOCATE PREPARE b6"),
            raw::describe_stmt("d6"),
            raw::sync(),
        ]),
        run_stmt("d6"),
        run_stmt("d6"),
        // 19-20: a Query behind unsynced extended messages.
        prep("b7"),
        cat(&[raw::pbe("SELECT 7"), raw::query("DEALLOCATE b7")]),
        raw::sync(),
        run_stmt("b7"),
        // 23-27: in a failed transaction: refused, the name stays.
        prep("b8"),
        raw::query("BEGIN; SELECT 1/0"),
        raw::query("DEALLOCATE b8; SELECT 1"),
        raw::query("ROLLBACK"),
        run_stmt("b8"),
        // 28-29: after DEALLOCATE ALL in the same string.
        prep("b9"),
        raw::query("DEALLOCATE ALL; DEALLOCATE b9"),
        // 30-31: one portal executed twice.
        prep("b10"),
        cat(&[
            raw::parse("d10", "DEALLOCATE b10"),
            raw::bind("p", "d10", &[]),
            raw::execute("p"),
            raw::execute("p"),
            raw::sync(),
        ]),
    ];
    let answer = same_as_postgres(&cluster, proxy.port, &steps).await;
    let ran = ["BindComplete", "Row 42", "Complete SELECT 1", "Ready I"];
    let gone = ["Error 26000", "Ready I"];
    assert_eq!(
        answer[1],
        [
            "RowDescription",
            "Row 1",
            "Complete SELECT 1",
            "Complete DEALLOCATE",
            "RowDescription",
            "Row 2",
            "Complete SELECT 1",
            "Ready I"
        ]
    );
    assert_eq!(
        answer[4],
        [
            "Complete BEGIN",
            "Complete DEALLOCATE",
            "Complete ROLLBACK",
            "Ready I"
        ]
    );
    assert_eq!(answer[7], ["Complete DEALLOCATE", "Error 26000", "Ready I"]);
    assert_eq!(
        answer[9],
        [
            "ParseComplete",
            "BindComplete",
            "NoData",
            "Complete DEALLOCATE",
            "Ready I"
        ]
    );
    assert_eq!(answer[11], ["ParseComplete", "Ready I"]);
    assert_eq!(answer[14], ran);
    assert_eq!(
        answer[16],
        ["ParseComplete", "ParameterDescription", "NoData", "Ready I"]
    );
    assert_eq!(
        answer[17],
        ["BindComplete", "Complete DEALLOCATE", "Ready I"]
    );
    assert_eq!(answer[18], ["BindComplete", "Error 26000", "Ready I"]);
    assert!(
        answer[20].contains(&"Complete DEALLOCATE".to_string()),
        "{:?}",
        answer[20]
    );
    for at in [2, 5, 10, 22] {
        assert_eq!(answer[at], gone, "step {at}");
    }
    assert_eq!(answer[25], ["Error 25P02", "Ready E"]);
    assert_eq!(answer[27], ran);
    assert_eq!(
        answer[29],
        ["Complete DEALLOCATE ALL", "Error 26000", "Ready I"]
    );
    assert_eq!(
        answer[31],
        [
            "ParseComplete",
            "BindComplete",
            "Complete DEALLOCATE",
            "Error 55000",
            "Ready I"
        ]
    );
    proxy.shutdown().await.unwrap();
}

/// Batches pipelined behind one that may change the client's prepared
/// statements (a DEALLOCATE or DEALLOCATE ALL that fails, a Parse that an
/// error makes the server skip) see them as Postgres does: as that batch
/// left them, not as it would have if it had succeeded.
#[tokio::test]
async fn pipelined_batches_see_statements_as_an_earlier_failed_batch_left_them() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let prep = |name: &str| cat(&[raw::parse(name, "SELECT 41 + 1"), raw::sync()]);
    let fail_then_deallocate = raw::query("SELECT 1/0; DEALLOCATE a");
    // (what to send in one write, how many ReadyForQuery it gets)
    let rounds: Vec<(Vec<u8>, usize)> = vec![
        (prep("a"), 1),
        (
            cat(&[
                fail_then_deallocate.clone(),
                raw::parse("a", "SELECT 2"),
                raw::sync(),
            ]),
            2,
        ),
        (run_stmt("a"), 1),
        (cat(&[fail_then_deallocate.clone(), run_stmt("a")]), 2),
        (
            cat(&[
                fail_then_deallocate.clone(),
                raw::describe_stmt("a"),
                raw::sync(),
            ]),
            2,
        ),
        (
            cat(&[fail_then_deallocate.clone(), raw::query("DEALLOCATE a")]),
            2,
        ),
        (run_stmt("a"), 1),
        (prep("a"), 1),
        (
            cat(&[fail_then_deallocate.clone(), raw::query("DEALLOCATE ALL")]),
            2,
        ),
        (run_stmt("a"), 1),
        (prep("a"), 1),
        (
            cat(&[
                raw::pbe("SELECT 1/0"),
                raw::pbe("DEALLOCATE a"),
                raw::sync(),
                raw::query("DEALLOCATE ALL"),
            ]),
            2,
        ),
        (run_stmt("a"), 1),
        // A Parse skipped after an error, its name used in the next batch.
        (
            cat(&[
                raw::pbe("SELECT 1/0"),
                raw::parse("d", "SELECT 5"),
                raw::sync(),
                raw::describe_stmt("d"),
                raw::sync(),
                raw::parse("d", "SELECT 6"),
                raw::sync(),
            ]),
            3,
        ),
        (run_stmt("d"), 1),
        // A DEALLOCATE ALL that fails (in a failed transaction), with a
        // statement used after the ROLLBACK pipelined behind it.
        (prep("k"), 1),
        (
            cat(&[
                raw::query("BEGIN"),
                raw::query("SELECT 1/0"),
                raw::query("DEALLOCATE ALL"),
                raw::query("ROLLBACK"),
                run_stmt("k"),
            ]),
            5,
        ),
    ];
    let mut answers = Vec::new();
    for port in [cluster.port(), proxy.port] {
        let (user, password) = login_for(port, proxy.port);
        let mut r = raw::Raw::connect(port, user, password, DB).await;
        let mut out = Vec::new();
        for (send, readies) in &rounds {
            r.send(send).await;
            let mut got = Vec::new();
            for _ in 0..*readies {
                loop {
                    let (tag, body) = r.recv().await;
                    match tag {
                        b'S' | b'N' => continue,
                        // The words too: they must name the client's statement.
                        b'E' => got.push(format!(
                            "{} {}",
                            raw::describe(tag, &body),
                            raw::error_message(&body)
                        )),
                        _ => got.push(raw::describe(tag, &body)),
                    }
                    if tag == b'Z' {
                        break;
                    }
                }
            }
            out.push(got);
        }
        r.terminate().await;
        answers.push(out);
    }
    assert_eq!(
        answers[1], answers[0],
        "through the proxy (left) vs Postgres (right)"
    );
    let a = &answers[0];
    let ran = ["BindComplete", "Row 42", "Complete SELECT 1", "Ready I"];
    let has = |at: usize, what: &str| a[at].iter().any(|m| m.contains(what));
    assert!(has(1, "42P05"), "{:?}", a[1]);
    assert_eq!(a[2], ran);
    assert!(has(3, "Row 42"), "{:?}", a[3]);
    assert!(has(4, "ParameterDescription"), "{:?}", a[4]);
    assert!(has(5, "Complete DEALLOCATE"), "{:?}", a[5]);
    assert!(has(6, "26000"), "{:?}", a[6]);
    assert!(
        has(9, "26000") && has(12, "26000"),
        "{:?} {:?}",
        a[9],
        a[12]
    );
    assert!(
        has(13, "prepared statement \"d\" does not exist"),
        "{:?}",
        a[13]
    );
    assert!(has(14, "Row 6"), "{:?}", a[14]);
    assert!(has(16, "Row 42"), "{:?}", a[16]);
    proxy.shutdown().await.unwrap();
}

/// After an error in extended-protocol messages, Postgres skips a Query
/// behind them and every message after it up to the Sync, whatever failed
/// (a Describe, a Bind, a Parse, an Execute): the proxy follows, gives the
/// server connection back only once the server has had that Sync, and
/// statements whose Parse was skipped are not defined.
#[tokio::test]
async fn messages_behind_a_skipped_query_match_postgres() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 1).await;
    // (one write, how many ReadyForQuery it gets)
    let rounds: Vec<(Vec<u8>, usize)> = vec![
        (
            cat(&[
                raw::describe_stmt("nope"),
                raw::query("COMMIT"),
                raw::close_stmt(""),
                raw::sync(),
            ]),
            1,
        ),
        (
            cat(&[
                raw::parse("", "SELECT nosuch"),
                raw::query("SELECT 1"),
                raw::close_stmt("p"),
                raw::sync(),
            ]),
            1,
        ),
        (
            cat(&[
                raw::describe_portal("nope"),
                raw::query("SELECT 3"),
                raw::parse("b", "BEGIN"),
                raw::sync(),
                raw::query("SELECT 4"),
            ]),
            2,
        ),
        (
            cat(&[
                raw::bind("p", "nope", &[]),
                raw::query("SELECT 1"),
                raw::close_stmt("p"),
                raw::sync(),
            ]),
            1,
        ),
        // A Parse the server skipped, answered by the proxy (the server
        // already held the text): the name is not defined.
        (cat(&[raw::parse("held", "SELECT 11"), raw::sync()]), 1),
        (cat(&[raw::close_stmt("held"), raw::sync()]), 1),
        (
            cat(&[
                raw::execute("nope"),
                raw::query("SELECT 3"),
                raw::parse("held", "SELECT 11"),
                raw::sync(),
                raw::describe_stmt("held"),
                raw::sync(),
            ]),
            2,
        ),
        (
            cat(&[
                raw::describe_stmt("nope"),
                raw::parse("a", "SELECT 1"),
                raw::sync(),
                raw::query("SELECT 1; DEALLOCATE a"),
            ]),
            2,
        ),
        // A DEALLOCATE ALL in a second skipped Query did not run.
        (cat(&[raw::parse("kept", "SELECT 12"), raw::sync()]), 1),
        (
            cat(&[
                raw::parse("", "SELECT nosuch"),
                raw::query("SELECT 1"),
                raw::query("DEALLOCATE ALL"),
                raw::sync(),
            ]),
            1,
        ),
        (run_stmt("kept"), 1),
        (raw::query("SELECT 'after'"), 1),
    ];
    let mut answers = Vec::new();
    for port in [cluster.port(), proxy.port] {
        let (user, password) = login_for(port, proxy.port);
        let mut r = raw::Raw::connect(port, user, password, DB).await;
        let mut out = Vec::new();
        for (send, readies) in &rounds {
            r.send(send).await;
            let mut got = Vec::new();
            for _ in 0..*readies {
                got.extend(r.until_ready().await);
            }
            out.push(got);
        }
        // The (single) server connection went back to the pool.
        out.push(another_client_is_served(port, user, password).await);
        r.terminate().await;
        answers.push(out);
    }
    assert_eq!(
        answers[1], answers[0],
        "through the proxy (left) vs Postgres (right)"
    );
    let a = &answers[0];
    assert_eq!(a[0], ["Error 26000", "Ready I"]);
    assert_eq!(a[1], ["Error 42703", "Ready I"]);
    assert_eq!(a[2][..2], ["Error 34000", "Ready I"]);
    assert!(a[2].contains(&"Row 4".to_string()), "{:?}", a[2]);
    assert_eq!(a[6][..2], ["Error 34000", "Ready I"]);
    assert_eq!(a[6][2..], ["Error 26000", "Ready I"]);
    assert!(a[7].contains(&"Error 26000".to_string()), "{:?}", a[7]);
    assert!(a[10].contains(&"Row 12".to_string()), "{:?}", a[10]);
    assert!(a[12].contains(&"Row other".to_string()), "{:?}", a[12]);
    proxy.shutdown().await.unwrap();
}

/// Error messages name statements as the client named them, as Postgres
/// does: not by the proxy's server-side names (`_tg_<id>`, shared by every
/// client that prepared the same text, so they would tell one client what
/// another ran).
#[tokio::test]
async fn error_messages_name_the_clients_statements() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let steps = [
        cat(&[raw::parse("mine", "SELECT $1::int"), raw::sync()]),
        // Two parameters for one.
        cat(&[
            raw::bind("", "mine", &[Some("1"), Some("2")]),
            raw::execute(""),
            raw::sync(),
        ]),
        // No unnamed statement.
        run_stmt(""),
        // Names of the proxy's shape the client never prepared.
        run_stmt("_tg_5"),
        cat(&[raw::describe_stmt("_tg_noop"), raw::sync()]),
    ];
    let mut answers = Vec::new();
    for (port, user, password) in [
        (cluster.port(), "postgres", ""),
        (proxy.port, USER, PASSWORD),
    ] {
        let mut r = raw::Raw::connect(port, user, password, DB).await;
        let mut messages = Vec::new();
        for step in &steps {
            r.send(step).await;
            loop {
                let (tag, body) = r.recv().await;
                if tag == b'E' {
                    let m = body
                        .split(|&b| b == 0)
                        .find_map(|f| f.strip_prefix(b"M"))
                        .map(|m| String::from_utf8_lossy(m).into_owned());
                    messages.push(m.expect("a message field"));
                }
                if tag == b'Z' {
                    break;
                }
            }
        }
        r.terminate().await;
        answers.push(messages);
    }
    assert_eq!(
        answers[0],
        [
            "bind message supplies 2 parameters, but prepared statement \"mine\" requires 1",
            "unnamed prepared statement does not exist",
            "prepared statement \"_tg_5\" does not exist",
            "prepared statement \"_tg_noop\" does not exist",
        ]
    );
    assert_eq!(answers[1], answers[0], "through the proxy");
    proxy.shutdown().await.unwrap();
}
