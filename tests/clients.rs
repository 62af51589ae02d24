//! Real clients through the proxy under transaction pooling: tokio-postgres
//! (simple and extended protocol, prepared statements shared by concurrent
//! clients over a small pool, pipelining, transactions, errors, COPY,
//! notices, large values) and psql. Pool sizes are small and several clients
//! run at once, so server connections really change hands between
//! transactions.

mod pooling;
mod support;
use pooling::*;

use std::collections::BTreeSet;
use std::time::Duration;

use tenantgate::localpg::Cluster;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, SimpleQueryMessage};

// ------------------------------------------------------------------ helpers

/// Standard config with `pool_mode` and shard `s0`'s `pool_size`.
fn config_text(cluster: &Cluster, pool_size: usize, pool_mode: &str) -> String {
    let mut text = support::standard_config_text(cluster);
    let listen = "listen = \"127.0.0.1:0\"\n";
    assert!(text.contains(listen), "unexpected config text:\n{text}");
    text = text.replacen(
        listen,
        &format!("{listen}pool_mode = \"{pool_mode}\"\nquery_wait_timeout = \"30s\"\n"),
        1,
    );
    // The shard table comes last, so this key belongs to it.
    text.push_str(&format!("pool_size = {pool_size}\n"));
    text
}

async fn start(cluster: &Cluster, pool_size: usize) -> support::ProxyHandle {
    support::start_proxy(support::load_config(&config_text(
        cluster,
        pool_size,
        "transaction",
    )))
    .await
}

fn code(e: &tokio_postgres::Error) -> String {
    support::sqlstate(e).unwrap_or_else(|| format!("no sqlstate: {}", support::error_chain(e)))
}

// ------------------------------------------------------- raw protocol client

/// A minimal Postgres wire-protocol client, for what tokio-postgres cannot
/// express (one Sync for several statements, text COPY both ways).
mod pg_raw;
use pg_raw as raw;

// -------------------------------------------------------------------- tests

#[tokio::test]
async fn simple_query_with_several_statements() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let c = connect(proxy.port).await;
    let msgs = c
        .simple_query(
            "CREATE TABLE sq (id int PRIMARY KEY, v text); \
             INSERT INTO sq VALUES (1, 'a'), (2, 'b'), (3, 'c'); \
             UPDATE sq SET v = upper(v) WHERE id >= 2; \
             SELECT id, v FROM sq ORDER BY id; \
             SELECT 'x' AS y, NULL::text AS z",
        )
        .await
        .expect("multi-statement simple query");
    let mut rows = Vec::new();
    let mut completes = Vec::new();
    for m in &msgs {
        match m {
            SimpleQueryMessage::Row(r) => rows.push(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            SimpleQueryMessage::CommandComplete(n) => completes.push(*n),
            _ => {}
        }
    }
    assert_eq!(rows, ["1,a", "2,B", "3,C", "x,NULL"]);
    assert_eq!(completes, [0, 3, 2, 3, 1]);

    // An error in the middle of a multi-statement query rolls back the
    // whole implicit transaction, as in Postgres.
    let err = c
        .simple_query("INSERT INTO sq VALUES (4, 'd'); SELECT 1/0; INSERT INTO sq VALUES (5, 'e')")
        .await
        .expect_err("division by zero");
    assert_eq!(code(&err), "22012");
    let n: i64 = c
        .query_one("SELECT count(*) FROM sq", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3, "the failed multi-statement query must leave nothing");
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn extended_query_with_parameters() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let c = connect(proxy.port).await;
    let row = c
        .query_one(
            "SELECT $1::int4 + $2::int4, $3::text || '!', $4::int8 IS NULL, $5::float8 * 2",
            &[&1i32, &41i32, &"hello wörld", &None::<i64>, &1.25f64],
        )
        .await
        .expect("parameterised query");
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, String>(1), "hello wörld!");
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, f64>(3), 2.5);

    c.batch_execute("CREATE TABLE ext (id int8 PRIMARY KEY, name text)")
        .await
        .unwrap();
    for i in 0..20i64 {
        let n = c
            .execute(
                "INSERT INTO ext VALUES ($1, $2)",
                &[&i, &format!("name-{i}")],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let rows = c
        .query(
            "SELECT id, name FROM ext WHERE id % $1 = 0 ORDER BY id",
            &[&5i64],
        )
        .await
        .unwrap();
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [0, 5, 10, 15].map(|i| (i, format!("name-{i}"))).to_vec()
    );
    // Rows limited by max rows (portal suspended) are not part of the API;
    // a query returning nothing works too.
    assert!(
        c.query("SELECT 1 WHERE false", &[])
            .await
            .unwrap()
            .is_empty()
    );
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn prepared_statements_from_concurrent_clients_over_two_servers() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let port = proxy.port;

    let mut set = tokio::task::JoinSet::new();
    for k in 0..6i32 {
        set.spawn(async move {
            let c = connect(port).await;
            // Same text in every client, and one text of its own.
            let shared = c
                .prepare("SELECT pg_backend_pid(), $1::int4 * 2")
                .await
                .expect("prepare shared");
            let own = c
                .prepare(&format!("SELECT $1::int4 + {k}, 'client-{k}'::text"))
                .await
                .expect("prepare own");
            let mut pids = BTreeSet::new();
            for i in 0..40i32 {
                let row = c.query_one(&shared, &[&i]).await.expect("execute shared");
                pids.insert(row.get::<_, i32>(0));
                assert_eq!(row.get::<_, i32>(1), i * 2);
                let row = c.query_one(&own, &[&i]).await.expect("execute own");
                assert_eq!(row.get::<_, i32>(0), i + k);
                assert_eq!(row.get::<_, String>(1), format!("client-{k}"));
                tokio::task::yield_now().await;
            }
            pids
        });
    }
    let mut all = BTreeSet::new();
    let mut switched = 0;
    while let Some(r) = set.join_next().await {
        let pids = r.expect("client task");
        if pids.len() > 1 {
            switched += 1;
        }
        all.extend(pids);
    }
    assert!(all.len() <= 2, "pool_size = 2 but saw backends {all:?}");
    assert!(
        switched > 0,
        "no client ever ran on a second server connection (backends {all:?})"
    );

    // Deterministically: a statement prepared on one server connection runs
    // on the other one.
    let c = connect(port).await;
    let stmt = c
        .prepare("SELECT pg_backend_pid(), $1::text || '!'")
        .await
        .unwrap();
    let first = c.query_one(&stmt, &[&"a"]).await.unwrap();
    let pid1: i32 = first.get(0);
    assert_eq!(first.get::<_, String>(1), "a!");
    let blocker = occupy(port, 2, pid1).await;
    let second = c
        .query_one(&stmt, &[&"b"])
        .await
        .expect("execute after switch");
    let pid2: i32 = second.get(0);
    assert_ne!(pid1, pid2, "the occupied server connection was handed out");
    assert_eq!(second.get::<_, String>(1), "b!");
    blocker.batch_execute("COMMIT").await.unwrap();
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn pipelined_queries() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let c = connect(proxy.port).await;
    let other = connect(proxy.port).await;
    let s1 = c.prepare("SELECT $1::int4 + 1").await.unwrap();
    let s2 = c.prepare("SELECT $1::text || 'x'").await.unwrap();
    for round in 0..20i32 {
        let round64 = i64::from(round);
        let round10 = round * 10;
        let p_round: [&(dyn ToSql + Sync); 1] = [&round];
        let p_round64: [&(dyn ToSql + Sync); 1] = [&round64];
        let p_round10: [&(dyn ToSql + Sync); 1] = [&round10];
        let (a, b, d, e, f, g) = tokio::join!(
            c.query_one(&s1, &p_round),
            c.query_one(&s2, &[&"p"]),
            c.query_one("SELECT $1::int8 * 3", &p_round64),
            c.simple_query("SELECT 7"),
            c.query_one(&s1, &p_round10),
            other.query_one("SELECT 99", &[]),
        );
        assert_eq!(a.unwrap().get::<_, i32>(0), round + 1);
        assert_eq!(b.unwrap().get::<_, String>(0), "px");
        assert_eq!(d.unwrap().get::<_, i64>(0), i64::from(round) * 3);
        let e = e.unwrap();
        assert!(
            matches!(&e[1], SimpleQueryMessage::Row(r) if r.get(0) == Some("7")),
            "simple query in the pipeline: {e:?}"
        );
        assert_eq!(f.unwrap().get::<_, i32>(0), round * 10 + 1);
        assert_eq!(g.unwrap().get::<_, i32>(0), 99);
    }
    // Preparing several statements at once pipelines Parse/Describe/Sync.
    let (p1, p2, p3) = tokio::join!(
        c.prepare("SELECT 1::int4"),
        c.prepare("SELECT 2::int4"),
        c.prepare("SELECT 3::int4")
    );
    let (p1, p2, p3) = (p1.unwrap(), p2.unwrap(), p3.unwrap());
    let (r1, r2, r3) = tokio::join!(
        c.query_one(&p3, &[]),
        c.query_one(&p1, &[]),
        c.query_one(&p2, &[])
    );
    assert_eq!(
        (
            r1.unwrap().get::<_, i32>(0),
            r2.unwrap().get::<_, i32>(0),
            r3.unwrap().get::<_, i32>(0)
        ),
        (3, 1, 2)
    );
    proxy.shutdown().await.unwrap();
}

/// Outcomes of pipelined queries with an error in the middle, outside and
/// inside a transaction block, and of the session afterwards.
async fn pipeline_error_outcomes(c: &Client) -> Vec<String> {
    fn outcome(r: Result<tokio_postgres::Row, tokio_postgres::Error>) -> String {
        match r {
            Ok(row) => format!("ok {}", row.get::<_, i32>(0)),
            Err(e) => format!("err {}", code(&e)),
        }
    }
    // Prepared first, so that each query below is exactly one
    // Bind/Execute/Sync, sent in join order.
    let one = c.prepare("SELECT 1::int4").await.unwrap();
    let fail = c
        .prepare("SELECT (1/(random() * 0)::int)::int4")
        .await
        .unwrap();
    let three = c.prepare("SELECT 3::int4").await.unwrap();
    let mut out = Vec::new();
    let (a, b, d) = tokio::join!(
        c.query_one(&one, &[]),
        c.query_one(&fail, &[]),
        c.query_one(&three, &[]),
    );
    out.extend([outcome(a), outcome(b), outcome(d)]);
    c.batch_execute("BEGIN").await.unwrap();
    let (a, b, d) = tokio::join!(
        c.query_one(&one, &[]),
        c.query_one(&fail, &[]),
        c.query_one(&three, &[]),
    );
    out.extend([outcome(a), outcome(b), outcome(d)]);
    out.push(outcome(c.query_one("SELECT 4::int4", &[]).await));
    c.batch_execute("ROLLBACK").await.unwrap();
    out.push(outcome(c.query_one("SELECT 5::int4", &[]).await));
    out
}

#[tokio::test]
async fn error_in_the_middle_of_a_pipeline_matches_postgres() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let direct = support::connect_direct(&cluster, DB).await;
    let expected = pipeline_error_outcomes(&direct).await;
    // What Postgres does: each tokio-postgres query has its own Sync, so
    // outside a transaction block only the failing query fails; inside one,
    // every later query fails with 25P02 until ROLLBACK.
    assert_eq!(
        expected,
        [
            "ok 1",
            "err 22012",
            "ok 3",
            "ok 1",
            "err 22012",
            "err 25P02",
            "err 25P02",
            "ok 5"
        ]
    );
    let c = connect(proxy.port).await;
    for _ in 0..3 {
        assert_eq!(pipeline_error_outcomes(&c).await, expected);
    }

    // One Sync for three statements: after the error the server skips the
    // rest of the batch; the next batch works.
    let mut batch = raw::pbe("SELECT 1");
    batch.extend(raw::pbe("SELECT 1/(random() * 0)::int"));
    batch.extend(raw::pbe("SELECT 3"));
    batch.extend(raw::sync());
    batch.extend(raw::query("SELECT 4"));
    let mut seen = Vec::new();
    for port in [cluster.port(), proxy.port] {
        let (user, password) = login_for(port, proxy.port);
        let mut r = raw::Raw::connect(port, user, password, DB).await;
        r.send(&batch).await;
        let mut got = r.until_ready().await;
        got.extend(r.until_ready().await);
        r.terminate().await;
        seen.push(got);
    }
    assert_eq!(
        seen[0],
        [
            "ParseComplete",
            "BindComplete",
            "Row 1",
            "Complete SELECT 1",
            "ParseComplete",
            "BindComplete",
            "Error 22012",
            "Ready I",
            "RowDescription",
            "Row 4",
            "Complete SELECT 1",
            "Ready I"
        ]
    );
    assert_eq!(seen[1], seen[0], "through the proxy vs directly");
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn transactions_commit_and_roll_back() {
    let cluster = support::start_app_cluster().await;
    support::exec(
        &cluster,
        DB,
        "CREATE TABLE acct (id int PRIMARY KEY, n int)",
    )
    .await;
    let proxy = start(&cluster, 2).await;
    let port = proxy.port;
    let mut c = connect(port).await;
    let observer = connect(port).await;

    // Keep the pool busy so server connections change hands.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut noise = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let stop = stop.clone();
        noise.spawn(async move {
            let n = connect(port).await;
            while !stop.is_cancelled() {
                n.query_one("SELECT pg_backend_pid()", &[]).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
    }

    for i in 0..10i32 {
        let tx = c.transaction().await.unwrap();
        let first: (i32, i64) = {
            let r = tx
                .query_one("SELECT pg_backend_pid(), txid_current()", &[])
                .await
                .unwrap();
            (r.get(0), r.get(1))
        };
        tx.execute("INSERT INTO acct VALUES ($1, 0)", &[&i])
            .await
            .unwrap();
        for _ in 0..5 {
            tokio::task::yield_now().await;
            tx.execute("UPDATE acct SET n = n + 1 WHERE id = $1", &[&i])
                .await
                .unwrap();
            let r = tx
                .query_one("SELECT pg_backend_pid(), txid_current()", &[])
                .await
                .unwrap();
            assert_eq!(
                (r.get::<_, i32>(0), r.get::<_, i64>(1)),
                first,
                "a transaction must stay on one server connection"
            );
        }
        // Not visible to others before commit.
        let seen: i64 = observer
            .query_one("SELECT count(*) FROM acct WHERE id = $1", &[&i])
            .await
            .unwrap()
            .get(0);
        assert_eq!(seen, 0, "uncommitted row visible to another client");
        if i % 2 == 0 {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    }
    // BEGIN/COMMIT through the extended protocol hold the server, too.
    c.execute("BEGIN", &[]).await.unwrap();
    let pid = backend_pid(&c).await;
    c.execute("INSERT INTO acct VALUES (50, 1)", &[])
        .await
        .unwrap();
    for _ in 0..5 {
        tokio::task::yield_now().await;
        assert_eq!(backend_pid(&c).await, pid, "extended-protocol transaction");
    }
    c.execute("COMMIT", &[]).await.unwrap();
    c.execute("BEGIN", &[]).await.unwrap();
    c.execute("INSERT INTO acct VALUES (51, 1)", &[])
        .await
        .unwrap();
    c.execute("ROLLBACK", &[]).await.unwrap();
    // Explicit BEGIN/COMMIT/ROLLBACK via simple query, too.
    c.batch_execute("BEGIN; INSERT INTO acct VALUES (100, 1); COMMIT")
        .await
        .unwrap();
    c.batch_execute("BEGIN; INSERT INTO acct VALUES (101, 1)")
        .await
        .unwrap();
    c.batch_execute("ROLLBACK").await.unwrap();
    stop.cancel();
    while let Some(r) = noise.join_next().await {
        r.unwrap();
    }

    let rows = observer
        .query("SELECT id, n FROM acct ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(i32, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [(0, 5), (2, 5), (4, 5), (6, 5), (8, 5), (50, 1), (100, 1)]
    );
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn error_mid_transaction_then_rollback() {
    let cluster = support::start_app_cluster().await;
    support::exec(&cluster, DB, "CREATE TABLE em (id int PRIMARY KEY)").await;
    let proxy = start(&cluster, 2).await;
    let c = connect(proxy.port).await;
    let other = connect(proxy.port).await;
    for round in 0..3 {
        c.batch_execute("BEGIN").await.unwrap();
        c.execute("INSERT INTO em VALUES ($1)", &[&round])
            .await
            .unwrap();
        let err = c
            .execute("INSERT INTO em VALUES ($1)", &[&round])
            .await
            .expect_err("duplicate key");
        assert_eq!(code(&err), "23505");
        // Others keep working while this transaction is aborted.
        assert_eq!(
            other
                .query_one("SELECT 1", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            1
        );
        let err = c.query_one("SELECT 1", &[]).await.expect_err("aborted");
        assert_eq!(code(&err), "25P02");
        let err = c.simple_query("SELECT 1").await.expect_err("aborted");
        assert_eq!(code(&err), "25P02");
        // COMMIT of a failed transaction reports ROLLBACK.
        let msgs = if round == 2 {
            c.simple_query("COMMIT").await.unwrap()
        } else {
            c.simple_query("ROLLBACK").await.unwrap()
        };
        assert!(matches!(
            msgs.last(),
            Some(SimpleQueryMessage::CommandComplete(0))
        ));
        assert_eq!(
            c.query_one("SELECT 2", &[]).await.unwrap().get::<_, i32>(0),
            2
        );
    }
    let n: i64 = other
        .query_one("SELECT count(*) FROM em", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "rolled-back inserts must not persist");
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn copy_in_and_out() {
    let cluster = support::start_app_cluster().await;
    support::exec(
        &cluster,
        DB,
        "CREATE TABLE cp (id int4 PRIMARY KEY, name text, note text)",
    )
    .await;
    let proxy = start(&cluster, 2).await;
    let port = proxy.port;
    let c = connect(port).await;

    // Binary COPY FROM STDIN through tokio-postgres, 30 000 rows.
    let sink = c
        .copy_in("COPY cp (id, name, note) FROM STDIN (FORMAT binary)")
        .await
        .expect("copy_in");
    let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(
        sink,
        &[Type::INT4, Type::TEXT, Type::TEXT],
    );
    tokio::pin!(writer);
    for i in 0..30_000i32 {
        let note: Option<String> = (i % 7 != 0).then(|| format!("n\t{i}\\"));
        writer
            .as_mut()
            .write(&[&i, &format!("row-{i}"), &note])
            .await
            .expect("copy row");
    }
    let copied = writer.as_mut().finish().await.expect("copy finish");
    assert_eq!(copied, 30_000);
    let r = c
        .query_one(
            "SELECT count(*), sum(id)::int8, count(note), \
             bool_and(name = 'row-' || id), \
             bool_and(note IS NULL OR note = E'n\\t' || id || E'\\\\') FROM cp",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), 30_000);
    assert_eq!(r.get::<_, i64>(1), (0..30_000i64).sum::<i64>());
    assert_eq!(
        r.get::<_, i64>(2),
        (0..30_000).filter(|i| i % 7 != 0).count() as i64
    );
    assert!(r.get::<_, bool>(3));
    assert!(r.get::<_, bool>(4));

    // Text COPY FROM STDIN in many CopyData messages (some over 64 KiB).
    let mut r = raw::Raw::connect(port, USER, PASSWORD, DB).await;
    r.send(&raw::query("COPY cp (id, name, note) FROM STDIN"))
        .await;
    let (tag, _) = r.recv().await;
    assert_eq!(tag, b'G', "expected CopyInResponse");
    let mut chunk = String::new();
    for i in 100_000..120_000 {
        chunk.push_str(&format!("{i}\ttext-{i}\t\\N\n"));
        if chunk.len() > 100_000 || i % 997 == 0 {
            r.send(&raw::copy_data(chunk.as_bytes())).await;
            chunk.clear();
        }
    }
    r.send(&raw::copy_data(chunk.as_bytes())).await;
    r.send(&raw::copy_done()).await;
    assert_eq!(r.until_ready().await, ["Complete COPY 20000", "Ready I"]);

    // A COPY the server rejects mid-stream: error, then the session works.
    r.send(&raw::query("COPY cp (id, name) FROM STDIN")).await;
    let (tag, _) = r.recv().await;
    assert_eq!(tag, b'G');
    r.send(&raw::copy_data(b"1\tduplicate\n")).await;
    r.send(&raw::copy_done()).await;
    assert_eq!(r.until_ready().await, ["Error 23505", "Ready I"]);

    // Text COPY TO STDOUT, data checked row by row.
    r.send(&raw::query(
        "COPY (SELECT id, name, note FROM cp WHERE id >= 100000 OR id < 10 ORDER BY id) TO STDOUT",
    ))
    .await;
    let (tag, _) = r.recv().await;
    assert_eq!(tag, b'H', "expected CopyOutResponse");
    let mut out = Vec::new();
    loop {
        let (tag, body) = r.recv().await;
        match tag {
            b'd' => out.extend_from_slice(&body),
            b'c' => {}
            b'C' => {
                assert_eq!(&body[..], b"COPY 20010\0");
            }
            b'Z' => break,
            other => panic!("unexpected message {} in COPY OUT", other as char),
        }
    }
    let mut expected = String::new();
    for i in 0..10 {
        if i % 7 == 0 {
            expected.push_str(&format!("{i}\trow-{i}\t\\N\n"));
        } else {
            expected.push_str(&format!("{i}\trow-{i}\tn\\t{i}\\\\\n"));
        }
    }
    for i in 100_000..120_000 {
        expected.push_str(&format!("{i}\ttext-{i}\t\\N\n"));
    }
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    r.terminate().await;

    // Binary COPY TO STDOUT is not needed by tokio-postgres users here; the
    // table as a whole is checked once more through another client.
    let n: i64 = connect(port)
        .await
        .query_one("SELECT count(*) FROM cp", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 50_000);
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn notices_pass_through() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let (c, mut messages) = connect_with_messages(proxy.port).await;
    c.batch_execute("DO $$ BEGIN RAISE NOTICE 'hi'; END $$")
        .await
        .expect("DO block");
    c.batch_execute("DO $$ BEGIN RAISE WARNING 'careful %', 42; END $$")
        .await
        .expect("DO block");
    let mut got = Vec::new();
    while got.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), messages.recv()).await {
            Ok(Some(AsyncMessage::Notice(n))) => {
                got.push(format!("{} {}", n.severity(), n.message()))
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(got, ["NOTICE hi", "WARNING careful 42"]);

    let out = support::psql(
        proxy.port,
        USER,
        PASSWORD,
        DB,
        "DO $$ BEGIN RAISE NOTICE 'hello from psql'; END $$",
    )
    .await;
    support::psql_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NOTICE:  hello from psql"),
        "psql stderr: {stderr}"
    );
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn large_results_and_values_arrive_intact() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let c = connect(proxy.port).await;
    let other = connect(proxy.port).await;

    let rows = c
        .query(
            "SELECT g, md5(g::text) FROM generate_series(1, 200000) g ORDER BY g",
            &[],
        )
        .await
        .expect("200k rows");
    assert_eq!(rows.len(), 200_000);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.get::<_, i32>(0), i as i32 + 1);
        assert_eq!(r.get::<_, &str>(1).len(), 32);
    }
    let sum: i64 = rows.iter().map(|r| i64::from(r.get::<_, i32>(0))).sum();
    assert_eq!(sum, 200_000 * 200_001 / 2);
    let last_md5: String = rows[199_999].get(1);
    let expected: String = other
        .query_one("SELECT md5('200000')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last_md5, expected);

    // A 5 MB value from the server.
    let big: String = c
        .query_one("SELECT repeat('ab', 2500000) || 'end'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 5_000_003);
    assert!(big.starts_with("abab") && big.ends_with("abend"));

    // A 6 MB parameter to the server and back, byte for byte.
    let value: String = (0..6_000_000u32)
        .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
        .collect();
    let back = c
        .query_one(
            "SELECT $1::text, length($1::text), md5($1::text)",
            &[&value],
        )
        .await
        .unwrap();
    assert_eq!(back.get::<_, i32>(1), 6_000_000);
    assert!(
        back.get::<_, &str>(0) == value,
        "6 MB value changed on the way"
    );
    let direct = support::connect_direct(&cluster, DB).await;
    let md5_direct: String = direct
        .query_one("SELECT md5($1::text)", &[&value])
        .await
        .unwrap()
        .get(0);
    assert_eq!(back.get::<_, String>(2), md5_direct);

    // The session and the pool are fine afterwards.
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn psql_multi_statement_and_copy() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let port = proxy.port;
    let out = support::psql(
        port,
        USER,
        PASSWORD,
        DB,
        "CREATE TABLE pq (id int PRIMARY KEY, v text); \
         INSERT INTO pq SELECT g, 'v' || g FROM generate_series(1, 5) g; \
         SELECT id || ':' || v FROM pq ORDER BY id",
    )
    .await;
    assert_eq!(support::psql_ok(&out), "1:v1\n2:v2\n3:v3\n4:v4\n5:v5");

    // \copy FROM a file and TO stdout.
    let dir = std::env::temp_dir().join(format!("tg-clients-psql-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("in.csv");
    let mut csv = String::new();
    for i in 10..1010 {
        csv.push_str(&format!("{i},\"val, {i}\"\n"));
    }
    std::fs::write(&file, &csv).unwrap();
    let copy_in = format!("\\copy pq FROM '{}' WITH (FORMAT csv)", file.display());
    let out = support::psql_args(port, USER, PASSWORD, DB, &["-c", &copy_in]).await;
    support::psql_ok(&out);
    let out = support::psql_args(
        port,
        USER,
        PASSWORD,
        DB,
        &[
            "-c",
            "\\copy (SELECT * FROM pq WHERE id >= 10 ORDER BY id) TO STDOUT WITH (FORMAT csv)",
        ],
    )
    .await;
    let text = support::psql_ok(&out);
    assert_eq!(format!("{text}\n"), csv);
    let out = support::psql(port, USER, PASSWORD, DB, "SELECT count(*) FROM pq").await;
    assert_eq!(support::psql_ok(&out), "1005");

    // An error with ON_ERROR_STOP: psql fails and reports it.
    let out = support::psql(port, USER, PASSWORD, DB, "SELECT 1; SELECT * FROM nope").await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("relation \"nope\" does not exist"),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn cancel_request_reaches_the_right_query() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let port = proxy.port;
    let victim = connect(port).await;
    let bystander = connect(port).await;
    // Cancelling an idle client does nothing to it.
    victim
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel while idle");
    assert_eq!(
        victim
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );

    let token = victim.cancel_token();
    let sleeping = victim.simple_query("SELECT pg_sleep(20)");
    let other = bystander.query_one("SELECT pg_sleep(1.5)::text, 7", &[]);
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("cancel request");
    };
    let started = std::time::Instant::now();
    let (slept, other, ()) = tokio::join!(sleeping, other, cancel);
    let err = slept.expect_err("the query must be cancelled");
    assert_eq!(code(&err), "57014");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        started.elapsed()
    );
    assert_eq!(
        other
            .expect("the bystander's query must not be cancelled")
            .get::<_, i32>(1),
        7
    );
    // Both sessions go on.
    assert_eq!(
        victim
            .query_one("SELECT 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    assert_eq!(
        bystander
            .query_one("SELECT 3", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        3
    );
    proxy.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_pipeline_with_large_responses() {
    let cluster = support::start_app_cluster().await;
    let proxy = start(&cluster, 2).await;
    let c = std::sync::Arc::new(connect(proxy.port).await);
    let s = c
        .prepare("SELECT $1::int4, repeat(md5($1::text), 400)")
        .await
        .unwrap();
    // 3000 queries in flight on one connection, ~12 KB per answer: far more
    // than either direction's buffer, so the proxy must keep reading
    // requests while the client is not reading answers yet, and vice versa.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..3000i32 {
        let c = c.clone();
        let s = s.clone();
        set.spawn(async move {
            let r = c.query_one(&s, &[&i]).await.expect("pipelined query");
            assert_eq!(r.get::<_, i32>(0), i);
            assert_eq!(r.get::<_, &str>(1).len(), 32 * 400);
            i
        });
    }
    let mut done = 0;
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(r) = set.join_next().await {
            r.expect("query task");
            done += 1;
        }
    })
    .await;
    assert!(all.is_ok(), "pipeline stalled after {done} of 3000 answers");
    assert_eq!(done, 3000);
    proxy.shutdown().await.unwrap();
}
