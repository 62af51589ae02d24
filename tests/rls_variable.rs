//! `tenancy.rls = true`: every transaction on the server runs with the
//! session variable (what row-level security policies read with
//! current_setting) set LOCAL to the session's tenant, in the same query
//! string or pipeline as the client's first statement, on whichever server
//! connection it runs, and never carries one client's tenant into another
//! client's transaction.

mod raw_client;
mod support;

use raw_client::{RawClient, bind, close, describe, execute, parse, query_msg, sync};

use support::{
    connect, connect_direct, connect_with_options, create_database, exec, load_config,
    start_app_cluster, start_cluster_with, start_proxy, toml_str,
};
use tenantgate::config::Config;
use tenantgate::localpg::ClusterOptions;

/// One shard (`url`) with a single server connection, `rls = true` plus
/// `tenancy_extra`, a trusted user `app` and a user `a` bound to tenant `a`.
fn rls_config(url: &str, tenancy_extra: &str) -> Config {
    load_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[tenancy]\nrls = true\n{tenancy_extra}\n\
         [[users]]\nname = \"app\"\npassword = \"app-secret\"\n\n\
         [[users]]\nname = \"a\"\npassword = \"a-secret\"\ntenant = \"a\"\n\n\
         [[shards]]\nname = \"s0\"\nurl = {}\npool_size = 1\n\n\
         [routing]\nhash_shards = [\"s0\"]\n",
        toml_str(url)
    ))
}

/// Tenant `a` by its bound user, and tenant `b` chosen in the startup options.
async fn tenants_a_and_b(port: u16) -> (tokio_postgres::Client, tokio_postgres::Client) {
    let a = connect(port, "a", "a-secret", "app").await;
    let b = connect_with_options(port, "app", "app-secret", "app", "-c app.current_tenant=b").await;
    (a, b)
}

async fn server_tenant(c: &tokio_postgres::Client) -> String {
    column(c, "SELECT current_setting('app.current_tenant', true)")
        .await
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Parse/Bind/Execute of each of `sqls` (unnamed statement and portal).
fn pbe_each(sqls: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for sql in sqls {
        out.extend(parse("", sql));
        out.extend(bind("", "", &[]));
        out.extend(execute(""));
    }
    out
}

/// A cluster with table `items`, behind a proxy with [`rls_config`].
async fn items_behind_proxy() -> (tenantgate::localpg::Cluster, support::ProxyHandle) {
    let cluster = start_app_cluster().await;
    exec(
        &cluster,
        "app",
        "CREATE TABLE items (tenant_id text NOT NULL, id int NOT NULL);",
    )
    .await;
    let proxy = start_proxy(rls_config(&cluster.url("app"), "")).await;
    (cluster, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_variable_follows_the_session_tenant() {
    let (_cluster, proxy) = items_behind_proxy().await;
    // pool_size 1: every client's transactions share one server connection.
    let (bound, by_option) = tenants_a_and_b(proxy.port).await;
    let by_set = connect(proxy.port, "app", "app-secret", "app").await;
    by_set
        .batch_execute("SET app.current_tenant = 'c'")
        .await
        .unwrap();
    let untenanted = connect(proxy.port, "app", "app-secret", "app").await;
    for _ in 0..5 {
        assert_eq!(server_tenant(&bound).await, "a");
        assert_eq!(server_tenant(&by_option).await, "b");
        assert_eq!(server_tenant(&by_set).await, "c");
        assert_eq!(
            server_tenant(&untenanted).await,
            "",
            "no tenant leaks to an untenanted session"
        );
    }
    // A tenant change takes effect on the server too.
    by_set
        .batch_execute("SET app.current_tenant = 'd'")
        .await
        .unwrap();
    assert_eq!(server_tenant(&by_set).await, "d");
    assert_eq!(server_tenant(&bound).await, "a");
    // SET LOCAL lasts one transaction.
    by_set.batch_execute("BEGIN").await.unwrap();
    by_set
        .batch_execute("SET LOCAL app.current_tenant = 'e'")
        .await
        .unwrap();
    assert_eq!(server_tenant(&by_set).await, "e");
    by_set.batch_execute("COMMIT").await.unwrap();
    assert_eq!(server_tenant(&by_set).await, "d");
    proxy.shutdown().await.unwrap();
}

/// The proxy's own `set_config` statement, sent while the server skips the
/// rest of a batch after an error (the error already answered): it was not
/// prepared there, and must not be taken for prepared by the next client of
/// that server connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_variable_statement_is_prepared_again() {
    let (_cluster, proxy) = items_behind_proxy().await;
    let mut raw = RawClient::login(proxy.port, "a", "a-secret", "app").await;
    let mut prep = parse("s", "SELECT 1");
    prep.extend(sync());
    raw.send(&prep).await;
    raw.until_ready().await;
    let mut unknown = bind("", "nope", &[]);
    unknown.extend(execute(""));
    raw.send(&unknown).await;
    assert_eq!(raw.expect_error_code().await, "26000");
    let mut rest = bind("", "s", &[]);
    rest.extend(execute(""));
    rest.extend(sync());
    raw.send(&rest).await;
    raw.until_ready().await;
    // Another client on the (single) server connection.
    let other = connect(proxy.port, "a", "a-secret", "app").await;
    for _ in 0..2 {
        let shown: String = other
            .query_one("SELECT current_setting('app.current_tenant', true)", &[])
            .await
            .expect("the proxy's statement is prepared again")
            .get(0);
        assert_eq!(shown, "a");
    }
    proxy.shutdown().await.unwrap();
}

/// A simple Query sent after an error in an unsynced extended-protocol
/// batch is skipped by the server (Postgres answers only the Sync): the
/// session, which makes batches wait for earlier answers with `rls`, goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_skipped_after_an_error_does_not_stop_the_session() {
    let (_cluster, proxy) = items_behind_proxy().await;
    let mut raw = RawClient::login(proxy.port, "a", "a-secret", "app").await;
    let mut unknown = bind("", "nope", &[]);
    unknown.extend(execute(""));
    raw.send(&unknown).await;
    assert_eq!(raw.expect_error_code().await, "26000");
    raw.send(&query_msg("SELECT 'skipped'")).await;
    raw.send(&sync()).await;
    let replies = raw.until_ready().await;
    assert!(
        replies.iter().all(|m| m.data_row().is_none()),
        "{replies:?}"
    );
    assert_eq!(
        raw.query_values("SELECT current_setting('app.current_tenant', true)")
            .await,
        [Some("a".to_string())]
    );
    // All in one write: the Query is behind the failing messages (an
    // Execute, a refusal of the proxy's own, a Describe, a Parse, a Bind),
    // and more behind it before the Sync: the server skips all of it.
    let cat = |parts: &[Vec<u8>]| parts.concat();
    let query = query_msg("SELECT count(*) FROM items");
    let rounds = [
        (
            cat(&[pbe_each(&["SELECT 1/0"]), query.clone(), sync()]),
            "22012",
        ),
        (
            cat(&[pbe_each(&["DEALLOCATE nope"]), query.clone(), sync()]),
            "26000",
        ),
        (
            cat(&[
                describe(b'S', "nope"),
                query_msg("COMMIT"),
                close(b'S', ""),
                sync(),
            ]),
            "26000",
        ),
        (
            cat(&[
                parse("", "SELECT nosuch FROM items"),
                query.clone(),
                close(b'S', "p"),
                sync(),
            ]),
            "42703",
        ),
        (
            cat(&[
                bind("p", "nope", &[]),
                query.clone(),
                close(b'P', "p"),
                sync(),
            ]),
            "26000",
        ),
    ];
    for (send, code) in rounds {
        raw.send(&send).await;
        let replies = raw.until_ready().await;
        // (ParseComplete and BindComplete of what ran before the error.)
        let kinds: Vec<char> = replies.iter().map(|m| m.tag_char()).collect();
        assert!(kinds.ends_with(&['E', 'Z']), "{replies:?}");
        assert!(
            kinds.iter().all(|k| matches!(k, '1' | '2' | 'E' | 'Z')),
            "{replies:?}"
        );
        let error = &replies[replies.len() - 2];
        assert_eq!(error.code().as_deref(), Some(code));
        assert_eq!(
            raw.query_values("SELECT current_setting('app.current_tenant', true)")
                .await,
            [Some("a".to_string())]
        );
    }
    proxy.shutdown().await.unwrap();
}

/// The proxy's `set_config` goes into a batch after client results that
/// already came back (a Flush sent them): its reply is still its own, and
/// the client gets exactly its results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_variable_after_a_flush_keeps_its_reply_to_itself() {
    let (_cluster, proxy) = items_behind_proxy().await;
    let mut raw = RawClient::login(proxy.port, "a", "a-secret", "app").await;
    let flush = raw_client::message(b'H', &[]);
    let mut first = pbe_each(&["BEGIN", "COMMIT"]);
    first.extend(&flush);
    raw.send(&first).await;
    let mut tags = Vec::new();
    while tags.len() < 2 {
        if let Some(t) = raw.expect_msg().await.command_tag() {
            tags.push(t);
        }
    }
    assert_eq!(tags, ["BEGIN", "COMMIT"]);
    let mut second = pbe_each(&["SELECT current_setting('app.current_tenant', true)"]);
    second.extend(&flush);
    raw.send(&second).await;
    let mut last = pbe_each(&["SELECT 'three'"]);
    last.extend(sync());
    raw.send(&last).await;
    let replies = raw.until_ready().await;
    let rows: Vec<_> = replies.iter().filter_map(|m| m.data_row()).collect();
    assert_eq!(
        rows,
        [vec![Some("a".to_string())], vec![Some("three".to_string())]],
        "{replies:?}"
    );
    let tags: Vec<_> = replies.iter().filter_map(|m| m.command_tag()).collect();
    assert_eq!(tags, ["SELECT 1", "SELECT 1"], "{replies:?}");
    proxy.shutdown().await.unwrap();
}

/// A simple Query sent behind extended-protocol messages with no Sync
/// between is of their batch: the `SET LOCAL` the proxy puts in front of
/// it answers after their results, and the client gets exactly its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_variable_for_a_query_behind_unsynced_messages_keeps_its_reply_to_itself() {
    let (_cluster, proxy) = items_behind_proxy().await;
    let mut raw = RawClient::login(proxy.port, "a", "a-secret", "app").await;
    // Not a statement that needs the variable: the Query's string does.
    let mut first = pbe_each(&["SHOW client_encoding"]);
    first.extend(query_msg(
        "SELECT current_setting('app.current_tenant', true), (SELECT count(*) FROM items)",
    ));
    raw.send(&first).await;
    let mut replies = raw.until_ready().await;
    raw.send(&sync()).await;
    replies.extend(raw.until_ready().await);
    let rows: Vec<_> = replies.iter().filter_map(|m| m.data_row()).collect();
    assert_eq!(
        rows,
        [
            vec![Some("UTF8".to_string())],
            vec![Some("a".to_string()), Some("0".to_string())]
        ],
        "{replies:?}"
    );
    let tags: Vec<_> = replies.iter().filter_map(|m| m.command_tag()).collect();
    assert_eq!(tags, ["SHOW", "SELECT 1"], "{replies:?}");
    // An extended-protocol BEGIN in front: its tag stays its own.
    let mut begin = pbe_each(&["BEGIN"]);
    begin.extend(query_msg(
        "SELECT current_setting('app.current_tenant', true), (SELECT count(*) FROM items)",
    ));
    raw.send(&begin).await;
    let mut replies = raw.until_ready().await;
    raw.send(&query_msg("COMMIT")).await;
    replies.extend(raw.until_ready().await);
    let tags: Vec<_> = replies.iter().filter_map(|m| m.command_tag()).collect();
    assert_eq!(tags, ["BEGIN", "SELECT 1", "COMMIT"], "{replies:?}");
    let rows: Vec<_> = replies.iter().filter_map(|m| m.data_row()).collect();
    assert_eq!(
        rows,
        [vec![Some("a".to_string()), Some("0".to_string())]],
        "{replies:?}"
    );
    proxy.shutdown().await.unwrap();
}

/// The first column of every row of a simple Query, in order (NULL as
/// the empty string).
async fn column(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let rows = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .collect()
}

/// A transaction's end and `RESET ALL` clear the variable for what runs
/// after them: in the same query string, in the same pipeline, or in the
/// same transaction block, the next statement that reads rows gets it
/// again (they ran with none: a policy saw no rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_variable_is_set_again_after_a_commit_or_reset_all() {
    let (_cluster, proxy) = items_behind_proxy().await;
    let (a, _) = tenants_a_and_b(proxy.port).await;
    const SHOWN: &str = "SELECT current_setting('app.current_tenant', true)";
    // One pipeline: the variable is bound again after COMMIT and RESET ALL.
    let mut raw = RawClient::login(proxy.port, "a", "a-secret", "app").await;
    let mut batch = pbe_each(&["BEGIN", SHOWN, "COMMIT", SHOWN, "RESET ALL", SHOWN]);
    batch.extend(sync());
    raw.send(&batch).await;
    let replies = raw.until_ready().await;
    assert!(!replies.iter().any(|m| m.is_error()), "{replies:?}");
    let rows: Vec<_> = replies.iter().filter_map(|m| m.data_row()).collect();
    assert_eq!(rows, vec![vec![Some("a".to_string())]; 3], "{replies:?}");
    let tags: Vec<_> = replies.iter().filter_map(|m| m.command_tag()).collect();
    assert_eq!(
        tags,
        [
            "BEGIN", "SELECT 1", "COMMIT", "SELECT 1", "RESET", "SELECT 1"
        ],
        "only the client's own results"
    );
    // (The RESET ALL is followed, not pinned: with one server connection,
    // the next client would wait for this one's end.)
    // One query string.
    for (sql, want) in [
        (
            format!("BEGIN; SELECT 'x'; COMMIT; {SHOWN}"),
            vec!["x", "a"],
        ),
        (format!("{SHOWN}; RESET ALL; {SHOWN}"), vec!["a", "a"]),
        (
            format!(
                "SELECT 'x'; COMMIT; SHOW transaction_isolation; {SHOWN}; ROLLBACK; RESET ALL; {SHOWN}"
            ),
            vec!["x", "read committed", "a", "a"],
        ),
        (format!("SET TimeZone = 'UTC'; COMMIT; {SHOWN}"), vec!["a"]),
    ] {
        assert_eq!(column(&a, &sql).await, want, "{sql}");
    }
    // Error positions point into the client's text past the insertions.
    let sql = format!("{SHOWN}; COMMIT; SELECT nope");
    let err = a.simple_query(&sql).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42703");
    assert_eq!(
        db.position(),
        Some(&tokio_postgres::error::ErrorPosition::Original(
            sql.find("nope").unwrap() as u32 + 1
        )),
        "{sql}"
    );
    // A transaction block, one message at a time, in either protocol.
    a.batch_execute("BEGIN").await.unwrap();
    assert_eq!(server_tenant(&a).await, "a");
    a.batch_execute("RESET ALL").await.unwrap();
    assert_eq!(server_tenant(&a).await, "a");
    a.execute("RESET ALL", &[]).await.unwrap();
    let shown: String = a.query_one(SHOWN, &[]).await.unwrap().get(0);
    assert_eq!(shown, "a");
    a.batch_execute("COMMIT").await.unwrap();
    proxy.shutdown().await.unwrap();
}

/// The `body` column of every row `sql` returns (simple protocol).
async fn bodies(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let mut out: Vec<String> = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// `SHOW transaction_isolation` (extended protocol).
async fn show_isolation(c: &tokio_postgres::Client) -> String {
    c.query_one("SHOW transaction_isolation", &[])
        .await
        .unwrap()
        .get(0)
}

/// The rows of `notes` the session sees (extended protocol).
async fn note_count(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0)
}

/// Row-level security as a second wall. `notes` is a global table without
/// the tenant column (the rewriter leaves it unscoped), so only its policy,
/// on its `owner` column, keeps tenants apart:
/// whatever a tenant sees of it proves the variable was set in that very
/// transaction, through every protocol path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_see_the_tenant_in_every_transaction() {
    let cluster = start_cluster_with(ClusterOptions {
        extra_settings: vec![
            "log_statement = 'all'".into(),
            "log_line_prefix = '%m [%p] vxid=%v '".into(),
        ],
        ..ClusterOptions::default()
    })
    .await;
    create_database(&cluster, "app").await;
    exec(
        &cluster,
        "app",
        "CREATE ROLE appuser LOGIN;
         CREATE TABLE notes (owner text NOT NULL, body text NOT NULL);
         INSERT INTO notes VALUES ('a', 'a1'), ('a', 'a2'), ('b', 'b1'), ('c', 'c1');
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY by_tenant ON notes
             USING (owner = current_setting('app.current_tenant', true));
         GRANT SELECT ON notes TO appuser;",
    )
    .await;
    // A role that row-level security applies to (superusers bypass it).
    let url = format!("postgres://appuser@127.0.0.1:{}/app", cluster.port());
    let proxy = start_proxy(rls_config(&url, "global_tables = [\"notes\"]\n")).await;
    let (a, b) = tenants_a_and_b(proxy.port).await;
    let none = connect(proxy.port, "app", "app-secret", "app").await;
    let log_start = std::fs::metadata(cluster.log_file()).map_or(0, |m| m.len());

    for _ in 0..3 {
        // Simple protocol, one statement; tenants alternate on one server connection.
        assert_eq!(bodies(&a, "SELECT body FROM notes").await, ["a1", "a2"]);
        assert_eq!(bodies(&b, "SELECT body FROM notes").await, ["b1"]);
        assert_eq!(
            bodies(&none, "SELECT current_setting('app.current_tenant', true)").await,
            [""],
            "a session without a tenant runs without the variable"
        );
    }
    // Several statements in one query string.
    assert_eq!(
        bodies(&a, "SELECT 'x' WHERE false; SELECT body FROM notes").await,
        ["a1", "a2"]
    );
    // Extended protocol, with a parameter.
    let rows = b
        .query("SELECT body FROM notes WHERE body <> $1", &[&"zz"])
        .await
        .unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>(),
        ["b1"]
    );
    // A named prepared statement, executed in later transactions.
    let stmt = a.prepare("SELECT count(*) FROM notes").await.unwrap();
    for _ in 0..2 {
        let n: i64 = a.query_one(&stmt, &[]).await.unwrap().get(0);
        assert_eq!(n, 2);
        let rows = b.query("SELECT body FROM notes", &[]).await.unwrap();
        assert_eq!(rows.len(), 1);
    }
    // Pipelined: several Syncs in flight at once.
    let (x, y, z) = tokio::join!(
        a.query_one("SELECT count(*) FROM notes", &[]),
        a.query_one("SELECT min(body) FROM notes", &[]),
        a.query_one("SELECT max(body) FROM notes", &[]),
    );
    assert_eq!(x.unwrap().get::<_, i64>(0), 2);
    assert_eq!(y.unwrap().get::<_, String>(0), "a1");
    assert_eq!(z.unwrap().get::<_, String>(0), "a2");
    // An explicit transaction: set once at BEGIN, seen by every statement.
    a.batch_execute("BEGIN").await.unwrap();
    assert_eq!(bodies(&a, "SELECT body FROM notes").await, ["a1", "a2"]);
    let n: i64 = a
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    a.batch_execute("COMMIT").await.unwrap();
    // Isolation levels, in either protocol: the variable comes with the
    // first statement that reads rows (a `SELECT set_config` in front of
    // BEGIN or SET TRANSACTION would count as the transaction's first
    // query, which Postgres refuses with 25001), but in front of a
    // savepoint, so rolling back to it cannot undo it.
    a.execute("BEGIN ISOLATION LEVEL SERIALIZABLE", &[])
        .await
        .expect("BEGIN ISOLATION LEVEL in the extended protocol");
    assert_eq!(show_isolation(&a).await, "serializable");
    assert_eq!(bodies(&a, "SELECT body FROM notes").await, ["a1", "a2"]);
    a.execute("COMMIT", &[]).await.unwrap();
    a.execute("BEGIN", &[]).await.unwrap();
    a.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", &[])
        .await
        .expect("SET TRANSACTION after BEGIN in the extended protocol");
    assert_eq!(show_isolation(&a).await, "repeatable read");
    a.execute("SAVEPOINT s", &[]).await.unwrap();
    assert_eq!(note_count(&a).await, 2);
    a.execute("ROLLBACK TO SAVEPOINT s", &[]).await.unwrap();
    assert_eq!(
        note_count(&a).await,
        2,
        "the variable outlived the savepoint"
    );
    a.execute("COMMIT", &[]).await.unwrap();
    // A cursor outside a transaction block is refused as Postgres refuses
    // it (the variable's prefix must not make an implicit block of the
    // query string, where the cursor would be gone at once); inside one it
    // reads with the variable.
    let e = a
        .simple_query("DECLARE c CURSOR FOR SELECT body FROM notes")
        .await
        .expect_err("DECLARE outside a transaction block");
    assert_eq!(e.code().map(|c| c.code()), Some("25P01"), "{e:?}");
    a.batch_execute("BEGIN").await.unwrap();
    a.batch_execute("DECLARE c CURSOR FOR SELECT body FROM notes ORDER BY body")
        .await
        .unwrap();
    assert_eq!(bodies(&a, "FETCH ALL FROM c").await, ["a1", "a2"]);
    a.batch_execute("COMMIT").await.unwrap();
    a.batch_execute("BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .await
        .expect("the same in one simple Query");
    assert_eq!(bodies(&a, "SELECT body FROM notes").await, ["a1", "a2"]);
    a.batch_execute("COMMIT").await.unwrap();
    // A transaction chained to the last one (`AND CHAIN` starts it at once,
    // without the variable the last one had): simple and extended protocol.
    a.batch_execute("BEGIN").await.unwrap();
    for chain in ["COMMIT AND CHAIN", "ROLLBACK AND CHAIN"] {
        a.batch_execute(chain).await.unwrap();
        assert_eq!(
            bodies(&a, "SELECT body FROM notes").await,
            ["a1", "a2"],
            "{chain}"
        );
        a.execute(chain, &[]).await.unwrap();
        let n: i64 = a
            .query_one("SELECT count(*) FROM notes", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2, "{chain}, extended protocol");
    }
    a.batch_execute("COMMIT").await.unwrap();
    // Errors keep their position in the client's text.
    let err = a
        .simple_query("SELECT body FROM notes WHERE nope")
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42703");
    assert_eq!(
        db.position(),
        Some(&tokio_postgres::error::ErrorPosition::Original(30)),
        "the position points into the client's own query"
    );
    // The session stays usable, and so does the server connection.
    assert_eq!(bodies(&b, "SELECT body FROM notes").await, ["b1"]);

    // The server log: the variable is set in the client's transaction (same
    // virtual transaction id as the statement), never as a session setting,
    // and no extra statement runs between tenants.
    let log = std::fs::read_to_string(cluster.log_file()).unwrap();
    let log = &log[log_start as usize..];
    assert!(
        !log.contains("RESET ALL"),
        "no reset round trip between tenants:\n{log}"
    );
    assert!(
        !log.contains("statement: SET app.current_tenant"),
        "never a session-level SET:\n{log}"
    );
    assert!(
        log.contains("statement: SET LOCAL app.current_tenant = 'a'; SELECT body FROM notes"),
        "simple Query: one query string:\n{log}"
    );
    let lines: Vec<&str> = log.lines().collect();
    let vxid = |l: &str| {
        l.split("vxid=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .map(str::to_string)
    };
    let mut checked = 0;
    for (i, l) in lines.iter().enumerate() {
        if !l.contains("SELECT pg_catalog.set_config('app.current_tenant', $1, true)")
            || !l.contains("execute")
        {
            continue;
        }
        let next = lines[i + 1..]
            .iter()
            .find(|n| n.contains("LOG:  execute"))
            .expect("a client statement follows the set_config");
        assert_eq!(vxid(l), vxid(next), "same transaction:\n{l}\n{next}");
        assert!(vxid(l).is_some_and(|v| !v.is_empty()));
        checked += 1;
    }
    assert!(
        checked >= 5,
        "extended-protocol transactions set it with set_config:\n{log}"
    );
    // One batch whose first statement does not touch rows: the variable is
    // set in front of the second, and the client sees exactly its replies.
    let mut raw = RawClient::login(proxy.port, "a", "a-secret", "app").await;
    let mut batch = pbe_each(&[
        "SET statement_timeout = 0",
        "SELECT body FROM notes ORDER BY body",
    ]);
    batch.extend(sync());
    raw.send(&batch).await;
    let replies = raw.until_ready().await;
    let tags: String = replies.iter().map(|m| m.tag_char()).collect();
    assert_eq!(tags, "12C12DDCZ", "{replies:?}");
    assert_eq!(replies[2].command_tag().as_deref(), Some("SET"));
    assert_eq!(replies[7].command_tag().as_deref(), Some("SELECT 2"));
    // Two Queries sent at once: the second waits for the first's answer.
    let mut two = query_msg("SELECT body FROM notes ORDER BY body");
    two.extend(query_msg("SELECT count(*) FROM notes"));
    raw.send(&two).await;
    let first = raw.rows_until_ready().await;
    let second = raw.rows_until_ready().await;
    assert_eq!(first.len(), 2);
    assert_eq!(second, [vec![Some("2".to_string())]]);
    // A client statement before the proxy's in the same batch keeps its
    // bookkeeping: DEALLOCATE ALL forgets the client's statements.
    let mut prep = parse("s1", "SELECT count(*) FROM notes");
    prep.extend(sync());
    raw.send(&prep).await;
    assert_eq!(raw.until_ready().await[0].tag_char(), '1');
    let mut batch = Vec::new();
    for sql in ["DEALLOCATE ALL", "SELECT body FROM notes"] {
        batch.extend(parse("", sql));
        batch.extend(bind("", "", &[]));
        batch.extend(execute(""));
    }
    batch.extend(sync());
    raw.send(&batch).await;
    let tags: String = raw
        .until_ready()
        .await
        .iter()
        .map(|m| m.tag_char())
        .collect();
    assert_eq!(tags, "12C12DDCZ");
    let mut again = parse("s1", "SELECT count(*) FROM notes");
    again.extend(bind("", "s1", &[]));
    again.extend(execute(""));
    again.extend(sync());
    raw.send(&again).await;
    let replies = raw.until_ready().await;
    assert!(!replies.iter().any(|m| m.is_error()), "{replies:?}");
    assert_eq!(
        replies
            .iter()
            .filter_map(|m| m.data_row())
            .collect::<Vec<_>>(),
        [vec![Some("2".to_string())]]
    );
    // The proxy's portal name is not the client's to use.
    let mut reserved = parse("", "SELECT 1");
    reserved.extend(bind("_tg_rls", "", &[]));
    reserved.extend(sync());
    raw.send(&reserved).await;
    assert_eq!(raw.expect_error_code().await, "34000");
    raw.until_ready().await;
    assert_eq!(
        raw.query_values("SELECT count(*) FROM notes").await,
        [Some("2".into())]
    );

    proxy.shutdown().await.unwrap();
}

/// Qualifiers that quote their input in an error cannot read another
/// tenant's row, with or without a policy. The tenant predicate the rewriter
/// adds is an ordinary qualifier, and Postgres may evaluate a client's own
/// qualifier first, on other tenants' rows: `current_setting(name)` then
/// reported b's name. The rewriter fences such statements (tenant relations
/// as `OFFSET 0` subqueries, an UPDATE/DELETE target's leaking conjuncts
/// under a CASE on the predicate); policies are evaluated before any
/// qualifier that is not leakproof. `bare` has no policy, `guarded` has one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qualifiers_cannot_quote_other_tenants_values() {
    let cluster = start_app_cluster().await;
    let mut sql = String::from("CREATE ROLE appuser LOGIN;\n");
    for table in ["guarded", "bare"] {
        sql.push_str(&format!(
            "CREATE TABLE {table} (tenant_id text NOT NULL, id int NOT NULL, name text NOT NULL);
             INSERT INTO {table} VALUES ('a', 1, 'mine'), ('b', 2, 'Secret Of B');
             GRANT SELECT, UPDATE, DELETE ON {table} TO appuser;\n"
        ));
    }
    sql.push_str(
        "ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
         CREATE POLICY by_tenant ON guarded
             USING (tenant_id = current_setting('app.current_tenant', true));",
    );
    exec(&cluster, "app", &sql).await;
    let url = format!("postgres://appuser@127.0.0.1:{}/app", cluster.port());
    let proxy = start_proxy(rls_config(&url, "")).await;
    let (a, _) = tenants_a_and_b(proxy.port).await;
    a.batch_execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
        .await
        .unwrap();
    let probe = |table: &str| {
        format!(
            "SELECT 1 FROM {table} WHERE tenant_id <> 'a' AND current_setting(name) IS NOT NULL"
        )
    };
    for table in ["bare", "guarded"] {
        for sql in [
            probe(table),
            format!(
                "SELECT 1 FROM {table} x JOIN {table} y ON y.id = x.id \
                 WHERE y.tenant_id <> 'a' AND make_date(1, y.id, 1) IS NULL \
                 AND current_setting(y.name) IS NOT NULL"
            ),
            format!(
                "SELECT * FROM (SELECT tenant_id, current_setting(name) AS v FROM {table}) s \
                 WHERE s.tenant_id <> 'a' AND s.v IS NOT NULL"
            ),
            format!(
                "UPDATE {table} SET name = name \
                 WHERE tenant_id <> 'a' AND current_setting(name) IS NOT NULL"
            ),
            format!(
                "DELETE FROM {table} WHERE tenant_id <> 'a' AND current_setting(name) IS NOT NULL"
            ),
            // A whole row compared with a record errs only when the columns
            // before the mismatch are equal: a guess of b's row.
            format!(
                "SELECT count(*) FROM {table} t WHERE t <> ('b'::text, 2, 'Secret Of B'::text, 0)"
            ),
            format!(
                "DELETE FROM {table} t WHERE t <> ('b'::text, 2, 'Secret Of B'::text, 0) AND id = -1"
            ),
            format!(
                "SELECT 1 FROM {table} t \
                 WHERE CASE t WHEN ROW('b'::text, 2, 'Secret Of B'::text, 0) THEN true END"
            ),
            // An expression that fails without reading a column, evaluated
            // only for the rows the qualifier before it lets through.
            format!(
                "SELECT 1 FROM {table} WHERE CASE WHEN name = 'Secret Of B' \
                 THEN (SELECT 1 / count(*) = 1 FROM pg_type WHERE false) ELSE false END"
            ),
            format!(
                "SELECT 1 FROM {table} WHERE CASE WHEN name = 'Secret Of B' \
                 THEN now() - interval '300000 years' < now() ELSE false END"
            ),
            format!(
                "UPDATE {table} SET name = name WHERE CASE WHEN name = 'Secret Of B' \
                 THEN (SELECT 1 / count(*) = 1 FROM pg_type WHERE false) ELSE false END"
            ),
            // A scalar subquery of more than one row fails (21000) where it
            // runs; an OR runs it only when the comparison before is false.
            format!(
                "SELECT 1 FROM {table} WHERE name <> 'Secret Of B' \
                 OR (SELECT true FROM pg_type WHERE typname LIKE 'int%')"
            ),
            format!(
                "SELECT 1 FROM {table} WHERE CASE WHEN name = 'Secret Of B' \
                 THEN current_setting('no.such') = '' ELSE false END"
            ),
            // (LIKE with a dangling escape: see the next test.)
        ] {
            let out = a
                .simple_query(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            let rows: Vec<&str> = out
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
                    _ => None,
                })
                .collect();
            // No row at all, or a's count of its own single row.
            assert!(rows.is_empty() || rows == ["1"], "{sql}: {rows:?}");
        }
        // The extended protocol too (the tenant a bound parameter).
        let rows = a
            .query(&probe(table), &[])
            .await
            .unwrap_or_else(|e| panic!("{table}: {e:?}"));
        assert!(rows.is_empty(), "{table}");
    }
    // b's row is untouched.
    let n: i64 = connect_direct(&cluster, "app")
        .await
        .query_one("SELECT count(*) FROM bare WHERE tenant_id = 'b'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
    proxy.shutdown().await.unwrap();
}

/// A value written into the text tenant column must be stored as the text
/// checked: a parameter declared with another type is converted by the
/// server (int4 `042` is stored `42`, bytea `a` as `\x61`), and a number
/// literal is stored as its canonical text, so both are refused; declared
/// as text the session's own tenant passes and another is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_values_are_checked_as_the_server_stores_them() {
    use tokio_postgres::types::Type;
    let (cluster, proxy, a) = bare_rows_of_a_and_b("theirs", "SELECT, INSERT, UPDATE").await;
    let sql = "UPDATE bare SET tenant_id = $1, name = name WHERE id = $2";
    for ty in [Type::INT4, Type::BYTEA, Type::JSON] {
        let e = a
            .prepare_typed(sql, &[ty.clone(), Type::INT4])
            .await
            .expect_err("a tenant value of another type");
        assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{ty}: {e:?}");
    }
    let text = a
        .prepare_typed(sql, &[Type::TEXT, Type::INT4])
        .await
        .expect("declared text");
    assert_eq!(
        a.execute(&text, &[&"a", &1i32]).await.expect("own tenant"),
        1
    );
    let e = a
        .execute(&text, &[&"b", &1i32])
        .await
        .expect_err("another tenant");
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e:?}");
    for sql in [
        "UPDATE bare SET tenant_id = 0, name = name WHERE id = 1",
        "INSERT INTO bare (tenant_id, id, name) VALUES (0, 3, 'x')",
    ] {
        assert!(a.simple_query(sql).await.is_err(), "{sql}");
    }
    let rows = connect_direct(&cluster, "app")
        .await
        .query("SELECT tenant_id FROM bare ORDER BY id", &[])
        .await
        .expect("direct");
    let tenants: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(tenants, ["a", "b"]);
    proxy.shutdown().await.unwrap();
}

/// `$1::int` with `$1` untyped takes the cast's type at Bind: nothing runs
/// where the qualifier is evaluated, and the statement keeps its plan. With
/// `$1` declared text in the Parse, the cast runs (and can fail) per row,
/// so the statement is prepared fenced (`OFFSET 0`): seen in the text the
/// server ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_parameter_under_a_cast_fences_the_statement() {
    use tokio_postgres::types::Type;
    let (cluster, proxy, a) = bare_rows_of_a_and_b("Secret Of B", "SELECT").await;
    let direct = connect_direct(&cluster, "app").await;
    for (marker, types, fenced) in [
        ("untyped", vec![], false),
        ("declared", vec![Type::TEXT], true),
    ] {
        let sql = format!(
            "SELECT id FROM bare WHERE CASE WHEN name = 'x' THEN $1::int = 1 ELSE true END \
             AND name <> '{marker}'"
        );
        let st = a.prepare_typed(&sql, &types).await.expect("prepare");
        let rows = a.query(&st, &[&"1"]).await;
        let rows = match rows {
            Ok(r) => r,
            // Untyped, tokio-postgres binds the cast's type (int4).
            Err(_) => a.query(&st, &[&1i32]).await.expect("query"),
        };
        assert_eq!(rows.len(), 1, "{marker}");
        let text: String = direct
            .query_one(
                "SELECT query FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
                &[&format!("%'{marker}'%")],
            )
            .await
            .expect("the statement as the server ran it")
            .get(0);
        assert_eq!(text.contains("OFFSET 0"), fenced, "{marker}: {text}");
    }
    proxy.shutdown().await.unwrap();
}

/// `x LIKE p` errs ("must not end with escape character") only for values
/// that start with what comes before `p`'s dangling escape, and the planner
/// tries a constant pattern on the column's statistics (all tenants'
/// values) before any predicate: one guess at another tenant's prefix per
/// query. A literal pattern like that is refused, and so is a bound one, at
/// Bind, whatever the data; a well-formed bound pattern still matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn like_patterns_cannot_test_other_tenants_prefixes() {
    // No policy: the rewriter alone. b's name is the common value the
    // planner's statistics keep.
    let (_cluster, proxy) = tables_behind_proxy(
        "CREATE TABLE bare (tenant_id text NOT NULL, id int NOT NULL, name text NOT NULL);
         INSERT INTO bare SELECT 'b', g, 'Secret Of B' FROM generate_series(1, 300) g;
         INSERT INTO bare SELECT 'a', g, 'mine' FROM generate_series(301, 310) g;
         GRANT SELECT, UPDATE, DELETE ON bare TO appuser;
         ANALYZE bare;",
    )
    .await;
    let (a, _) = tenants_a_and_b(proxy.port).await;
    let code = |e: &tokio_postgres::Error| e.code().map(|c| c.code().to_string());
    // The prefix of b's value and a prefix of nothing answer alike.
    for prefix in ["Secret", "Nothing"] {
        for sql in [
            format!("SELECT count(*) FROM bare WHERE name LIKE '{prefix}\\'"),
            format!("SELECT count(*) FROM bare WHERE name ~~* '{prefix}\\'"),
            format!("DELETE FROM bare WHERE name LIKE '{prefix}#' ESCAPE '#' AND id = -1"),
            format!("SELECT count(*) FROM bare WHERE name OPERATOR(pg_catalog.~~*) '{prefix}\\'"),
            format!("SELECT count(*) FROM bare WHERE name LIKE ALL (ARRAY['%{prefix}\\'])"),
            format!("SELECT count(*) FROM bare WHERE name ILIKE SOME (ARRAY['{prefix}\\'])"),
            format!("SELECT count(*) FROM bare WHERE name LIKE '{prefix}\\' COLLATE \"C\""),
        ] {
            let e = a.simple_query(&sql).await.expect_err(&sql);
            assert_eq!(code(&e).as_deref(), Some("22025"), "{sql}: {e:?}");
        }
        let select = a
            .prepare("SELECT count(*) FROM bare WHERE name LIKE $1")
            .await
            .expect("prepare");
        let pattern = format!("{prefix}\\");
        let e = a.query(&select, &[&pattern]).await.expect_err(&pattern);
        assert_eq!(code(&e).as_deref(), Some("22025"), "{pattern}: {e:?}");
        // A `character` parameter loses its trailing spaces on the way.
        let typed = a
            .prepare_typed(
                "SELECT count(*) FROM bare WHERE name LIKE $1",
                &[tokio_postgres::types::Type::BPCHAR],
            )
            .await
            .expect("prepare");
        let pattern = format!("{prefix}\\  ");
        let e = a.query(&typed, &[&pattern]).await.expect_err(&pattern);
        assert_eq!(code(&e).as_deref(), Some("22025"), "{pattern:?}: {e:?}");
        // An array written as a string has escapes of its own.
        let sql =
            format!("SELECT count(*) FROM bare WHERE name LIKE ANY ('{{\"{prefix}%\\\\\"}}')");
        let e = a.simple_query(&sql).await.expect_err(&sql);
        assert_eq!(code(&e).as_deref(), Some("22025"), "{sql}: {e:?}");
        let delete = a
            .prepare("DELETE FROM bare WHERE name NOT ILIKE $1 ESCAPE '!' AND id = -1")
            .await
            .expect("prepare");
        let pattern = format!("{prefix}!");
        let e = a.execute(&delete, &[&pattern]).await.expect_err(&pattern);
        assert_eq!(code(&e).as_deref(), Some("22025"), "{pattern}: {e:?}");
    }
    // The session goes on, and bound patterns match the tenant's own rows.
    let count = |pattern: &'static str| {
        let a = &a;
        async move {
            let n: i64 = a
                .query_one("SELECT count(*) FROM bare WHERE name LIKE $1", &[&pattern])
                .await
                .expect("count")
                .get(0);
            n
        }
    };
    assert_eq!(count("Secret%").await, 0);
    assert_eq!(count("mi%").await, 10);
    assert_eq!(count("mine\\\\").await, 0);
    proxy.shutdown().await.unwrap();
}

/// A table of tenants `a` and `b` under a policy that reads the tenant
/// variable: a row of `b` read by `a` means the variable was changed.
const GUARDED: &str =
    "CREATE TABLE guarded (tenant_id text NOT NULL, id int NOT NULL, name text NOT NULL);
     INSERT INTO guarded VALUES ('a', 1, 'mine'), ('b', 2, 'Secret Of B');
     GRANT SELECT ON guarded TO appuser;
     ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
     CREATE POLICY by_tenant ON guarded
         USING (tenant_id = current_setting('app.current_tenant', true));";

/// sqlparser reads `U&"set\005fconfig"(…)` as `U & "set\005fconfig"(…)`;
/// Postgres decodes the name. Unrefused, a tenant could change the server's
/// tenant variable past the policies and read every tenant's rows with
/// `query_to_xml`; and a trusted session's `set_config` would stay on a
/// pooled connection that the pooling analysis thought clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_in_unicode_escapes_are_refused_or_pin() {
    let (_cluster, proxy) = tables_behind_proxy(GUARDED).await;
    let (a, _) = tenants_a_and_b(proxy.port).await;
    for sql in [
        r#"SELECT U&"set\005fconfig"('app.current_tenant', 'b', true), U&"query\005fto\005fxml"('SELECT name FROM guarded', true, false, '')"#,
        r#"SELECT u&"query\005fto\005fxml"('SELECT name FROM guarded', true, false, '') FROM guarded"#,
        r#"SELECT name FROM guarded WHERE 1u&"set\005fconfig"('work_mem', '64kB', false) IS NULL"#,
    ] {
        match a.simple_query(sql).await {
            Err(e) => assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{sql}: {e:?}"),
            Ok(rows) => panic!("{sql}: ran: {rows:?}"),
        }
    }
    assert_eq!(server_tenant(&a).await, "a");
    // A trusted session without a tenant may call it (the function policy
    // is for tenants), but its connection is pinned, not lent on changed.
    let app = connect(proxy.port, "app", "app-secret", "app").await;
    app.simple_query(r#"SELECT U&"set\005fconfig"('work_mem', '1234kB', false)"#)
        .await
        .expect("trusted set_config");
    drop(app);
    for _ in 0..3 {
        let rows = a.simple_query("SHOW work_mem").await.expect("show");
        let shown = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        assert_ne!(shown.as_deref(), Some("1234kB"));
    }
    proxy.shutdown().await.unwrap();
}

/// Text whose strings Postgres reads otherwise than a naive reader: a
/// string continued on the next line keeps its escapes (`E'a'⏎'\' '` is
/// one string that ends after the space), and sqlparser prints the value
/// `\'` as `'\'`, a string that ends early. Either way, SQL the proxy took
/// for the inside of a string ran unscoped: `set_config` of the tenant
/// variable (past the policies), then the other tenant's rows. Each is
/// now split as Postgres splits it, or refused. Setting names are read as
/// Postgres reads them too (`SET app . current_tenant` is the tenant
/// variable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_are_read_as_postgres_reads_them() {
    let (_cluster, proxy) = tables_behind_proxy(GUARDED).await;
    let (a, _) = tenants_a_and_b(proxy.port).await;
    let hidden = "SELECT set_config($q$app.current_$q$ || $q$tenant$q$, $q$b$q$, true); \
                  SELECT name FROM guarded";
    for sql in [
        format!("SET application_name = E'x'\n'\\' '; {hidden}; --'"),
        format!("SET application_name = E'x' -- c\n'\\' '; {hidden}; --'"),
        format!("SELECT '\\''; {hidden}; SELECT $$' FROM guarded WHERE 1 = x$$"),
        format!("SELECT \"\\\"\"\"; {hidden}; SELECT $$\" FROM guarded WHERE 1 = x$$"),
        format!("SELECT 1 FROM guarded WHERE name = 'x'\n\u{b}'\\' '; {hidden}; --'"),
        // Printers that write a value as it is: a string type modifier
        // without its quotes, a quoted name in OPERATOR() with its quote
        // undoubled, COPY options written as E'' strings.
        r#"SELECT (1::pg_catalog.numeric('10)), (SELECT set_config(''app.current_''||''tenant'',''b'',true)), (SELECT string_agg(name, '','') FROM guarded), ((1')) AS x, name FROM guarded LIMIT 1"#.to_string(),
        r#"SELECT 1 OPERATOR("pg_catalog"".+) 2 AS a, (SELECT set_config('app.current_'||'tenant','b',true)) AS b, (SELECT string_agg(name, ',') FROM guarded) AS c, 1 OPERATOR(""pg_catalog".+) 2 AS d, name FROM guarded LIMIT 1"#.to_string(),
        format!(r#"COPY guarded TO STDOUT (NULL E'\\\x27', NULL E') ; {hidden} ; SELECT (', DELIMITER E'\x27')"#),
        // A TABLE branch's quoted name was read as SQL text.
        format!("SELECT name FROM guarded UNION ALL (TABLE \"(SELECT '\\''' AS v) AS s\" x x); SELECT 1, ' AS v) AS s); {hidden}; SELECT ' AS z -- '\n"),
    ] {
        match a.simple_query(&sql).await {
            Err(e) => {
                let code = e.code().map(|c| c.code().to_string());
                assert!(
                    matches!(code.as_deref(), Some("0A000" | "42501")),
                    "{sql:?}: {e:?}"
                );
            }
            Ok(rows) => panic!("{sql:?}: ran: {rows:?}"),
        }
    }
    assert_eq!(server_tenant(&a).await, "a");
    // Postgres reads a dotted setting name however it is spaced: these set
    // the tenant variable (the policies' wall) as the plain spelling does.
    for sql in [
        "SET app . current_tenant = 'b'",
        "SET app./**/current_tenant = 'b'",
        "SET/**/app.current_tenant = 'b'",
        "SET LOCAL \"app\" . \"current_tenant\" TO 'b'",
    ] {
        let e = a.simple_query(sql).await.expect_err(sql);
        assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{sql}: {e:?}");
    }
    assert_eq!(server_tenant(&a).await, "a");
    // A no-break space is a character of a name to Postgres, not a space:
    // `\u{a0}SET` is no SET (the proxy once trimmed it off a piece it
    // forwarded, and the SET ran unread).
    let sql = "SELECT name FROM guarded;\u{a0}SET app.current_tenant = 'b'; SELECT 1";
    a.simple_query(sql).await.expect_err(sql);
    assert_eq!(server_tenant(&a).await, "a");
    // COPY's one-character options are printed between quotes as they are.
    let e = a
        .simple_query("COPY guarded TO STDOUT WITH (FORMAT csv, QUOTE '''')")
        .await
        .expect_err("QUOTE ''''");
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e:?}");
    // A string continued on the next line (sqlparser reads two strings)
    // is refused, not run as sqlparser reads it.
    let e = a
        .simple_query("SELECT name FROM guarded WHERE name = 'mi'\n'ne'")
        .await
        .expect_err("continued string");
    assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{e:?}");
    proxy.shutdown().await.unwrap();
}

/// A trusted session's tenant follows Postgres's savepoint rules or the
/// statement is refused: a SET LOCAL undone by ROLLBACK TO SAVEPOINT must
/// not leave the transaction running as the undone tenant (a rollback to a
/// savepoint set after the SET LOCAL keeps it, and is allowed), and a SET that
/// restates a SET LOCAL's tenant would change the session's tenant for good
/// (and a savepoint rollback could undo it unseen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_cannot_leave_the_proxy_on_another_tenant() {
    let (_cluster, proxy) = bare_table_behind_proxy().await;
    let (_, b) = tenants_a_and_b(proxy.port).await;
    let code = |e: &tokio_postgres::Error| e.code().map(|c| c.code().to_string());
    // SET LOCAL after the savepoint, undone by rolling back to it (in each
    // spelling Postgres accepts).
    for back in [
        "ROLLBACK TO SAVEPOINT s",
        "ROLLBACK WORK TO s",
        "rollback transaction to savepoint s",
    ] {
        for sql in ["BEGIN", "SAVEPOINT s", "SET LOCAL app.current_tenant = 'a'"] {
            b.batch_execute(sql).await.unwrap();
        }
        match b.simple_query(back).await {
            Err(e) => assert_eq!(code(&e).as_deref(), Some("0A000"), "{back}: {e:?}"),
            Ok(_) => {
                // Postgres runs the rest of the transaction as b again.
                let rows = first_column(b.simple_query("SELECT name FROM bare").await.unwrap());
                assert_eq!(
                    rows,
                    ["Secret Of B"],
                    "{back}: the proxy stayed on tenant a"
                );
            }
        }
        b.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(
            first_column(b.simple_query("SELECT name FROM bare").await.unwrap()),
            ["Secret Of B"]
        );
        // SET LOCAL before the savepoint: it survives the rollback to it,
        // which is allowed.
        for sql in ["BEGIN", "SET LOCAL app.current_tenant = 'a'", "SAVEPOINT s"] {
            b.batch_execute(sql).await.unwrap();
        }
        b.batch_execute("SELECT 1/0")
            .await
            .expect_err("division by zero");
        b.batch_execute(back).await.unwrap();
        let rows = first_column(b.simple_query("SELECT name FROM bare").await.unwrap());
        assert_eq!(rows, ["mine"], "{back}: the proxy left tenant a");
        b.batch_execute("ROLLBACK").await.unwrap();
    }
    // A savepoint bound from a statement prepared in an earlier
    // transaction (no Parse this time) counts as well.
    let savepoint = b.prepare("SAVEPOINT s").await.unwrap();
    for _ in 0..2 {
        b.batch_execute("BEGIN").await.unwrap();
        b.execute(&savepoint, &[]).await.unwrap();
        b.batch_execute("SET LOCAL app.current_tenant = 'a'")
            .await
            .unwrap();
        match b.simple_query("ROLLBACK TO SAVEPOINT s").await {
            Err(e) => assert_eq!(code(&e).as_deref(), Some("0A000"), "{e:?}"),
            Ok(_) => {
                let rows = first_column(b.simple_query("SELECT name FROM bare").await.unwrap());
                assert_eq!(
                    rows,
                    ["Secret Of B"],
                    "the proxy stayed on tenant a (bound)"
                );
            }
        }
        b.batch_execute("ROLLBACK").await.unwrap();
    }
    // The same with the ROLLBACK TO prepared before the SET LOCAL.
    for sql in ["BEGIN", "SAVEPOINT s"] {
        b.batch_execute(sql).await.unwrap();
    }
    let back = b.prepare("ROLLBACK TO SAVEPOINT s").await.unwrap();
    b.batch_execute("SET LOCAL app.current_tenant = 'a'")
        .await
        .unwrap();
    match b.execute(&back, &[]).await {
        Err(e) => assert_eq!(code(&e).as_deref(), Some("0A000"), "{e:?}"),
        Ok(_) => {
            let rows = first_column(b.simple_query("SELECT name FROM bare").await.unwrap());
            assert_eq!(
                rows,
                ["Secret Of B"],
                "the proxy stayed on tenant a (prepared)"
            );
        }
    }
    b.batch_execute("ROLLBACK").await.unwrap();
    // A SET LOCAL ends with its transaction, also when AND CHAIN opens the
    // next at once, in either protocol.
    for chain in ["simple", "extended"] {
        for sql in ["BEGIN", "SET LOCAL app.current_tenant = 'a'"] {
            b.batch_execute(sql).await.unwrap();
        }
        if chain == "simple" {
            b.batch_execute("COMMIT AND CHAIN").await.unwrap();
        } else {
            b.execute("COMMIT AND CHAIN", &[]).await.unwrap();
        }
        let rows = first_column(b.simple_query("SELECT name FROM bare").await.unwrap());
        assert_eq!(
            rows,
            ["Secret Of B"],
            "{chain}: the chained transaction is b's"
        );
        b.batch_execute("ROLLBACK").await.unwrap();
    }
    // Statements after the COMMIT in the same query string would be b's
    // too; the string is planned for one tenant, so it is refused.
    for sql in ["BEGIN", "SET LOCAL app.current_tenant = 'a'"] {
        b.batch_execute(sql).await.unwrap();
    }
    let e = b
        .simple_query("COMMIT; SELECT name FROM bare")
        .await
        .expect_err("statements after COMMIT");
    assert_eq!(code(&e).as_deref(), Some("0A000"), "{e:?}");
    b.batch_execute("ROLLBACK").await.unwrap();
    // A SET restating the SET LOCAL's tenant changes the session's tenant.
    for sql in ["BEGIN", "SET LOCAL app.current_tenant = 'a'", "SAVEPOINT s"] {
        b.batch_execute(sql).await.unwrap();
    }
    let e = b
        .simple_query("SET app.current_tenant = 'a'")
        .await
        .expect_err("a tenant change inside a transaction");
    assert_eq!(code(&e).as_deref(), Some("25001"), "{e:?}");
    b.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        first_column(b.simple_query("SELECT name FROM bare").await.unwrap()),
        ["Secret Of B"]
    );
    assert_eq!(server_tenant(&b).await, "b");
    proxy.shutdown().await.unwrap();
}

/// A trusted session without a tenant may make its first choice inside a
/// transaction (psycopg and Django in their default mode send BEGIN before
/// the first statement): it counts at once, the server variable follows,
/// and the session keeps it if the transaction commits, loses it if it
/// rolls back. A second, different tenant in the same transaction is still
/// refused; so is a ROLLBACK TO a savepoint set before the choice (it
/// could undo the choice unseen), while one set after it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_tenant_can_be_chosen_inside_a_transaction() {
    let (_cluster, proxy) = bare_table_behind_proxy().await;
    let app = || connect(proxy.port, "app", "app-secret", "app");
    let choose_a = ["BEGIN", "SET app.current_tenant = 'a'"];
    // Committed: kept.
    let c = app().await;
    run(&c, &choose_a).await;
    assert_eq!(names_in_bare(&c).await, ["mine"]);
    assert_eq!(server_tenant(&c).await, "a");
    assert_eq!(refused(&c, "SET app.current_tenant = 'b'").await, "25001");
    run(&c, &["ROLLBACK"]).await;
    // ... and that refusal failed the transaction, so the choice is gone.
    assert_eq!(refused(&c, "SELECT name FROM bare").await, "42501");
    run(&c, &choose_a).await;
    run(&c, &["COMMIT"]).await;
    assert_eq!(shown_tenant(&c).await, ["a"]);
    assert_eq!(names_in_bare(&c).await, ["mine"]);
    // Rolled back, in the extended protocol: gone.
    let c = app().await;
    c.execute("BEGIN", &[]).await.unwrap();
    c.execute("SET app.current_tenant = 'b'", &[])
        .await
        .unwrap();
    let rows = c.query("SELECT name FROM bare", &[]).await.unwrap();
    let rows: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(rows, ["Secret Of B"]);
    c.execute("ROLLBACK", &[]).await.unwrap();
    let e = c
        .query("SELECT name FROM bare", &[])
        .await
        .expect_err("no tenant");
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e:?}");
    // A savepoint after the choice may be rolled back to.
    run(&c, &choose_a).await;
    run(&c, &["SAVEPOINT s"]).await;
    assert_eq!(refused(&c, "SELECT 1/0").await, "22012");
    run(&c, &["ROLLBACK TO SAVEPOINT s"]).await;
    assert_eq!(names_in_bare(&c).await, ["mine"]);
    run(&c, &["COMMIT"]).await;
    assert_eq!(shown_tenant(&c).await, ["a"]);
    // One set before it may not: Postgres would undo the choice with it.
    let c = app().await;
    run(
        &c,
        &["BEGIN", "SAVEPOINT s", "SET app.current_tenant = 'a'"],
    )
    .await;
    assert_eq!(refused(&c, "ROLLBACK TO SAVEPOINT s").await, "0A000");
    run(&c, &["ROLLBACK"]).await;
    assert_eq!(refused(&c, "SELECT name FROM bare").await, "42501");
    // Settled when its transaction ends, also when the next one follows
    // at once.
    let c = app().await;
    run(&c, &choose_a).await;
    run(&c, &["ROLLBACK AND CHAIN", "COMMIT"]).await;
    assert_eq!(refused(&c, "SELECT name FROM bare").await, "42501");
    run(&c, &choose_a).await;
    run(&c, &["COMMIT AND CHAIN", "ROLLBACK"]).await;
    assert_eq!(shown_tenant(&c).await, ["a"]);
    // Statements after the end in the same query string would run as a
    // tenant that the end decides: refused.
    let c = app().await;
    run(&c, &choose_a).await;
    assert_eq!(
        refused(&c, "ROLLBACK; SELECT name FROM bare").await,
        "0A000"
    );
    run(&c, &["ROLLBACK"]).await;
    assert_eq!(refused(&c, "SELECT name FROM bare").await, "42501");
    // In the extended protocol, a statement pipelined behind the end
    // waits for it: rolled back, the session has no tenant.
    let mut raw = RawClient::login(proxy.port, "app", "app-secret", "app").await;
    for sql in choose_a {
        let msgs = raw.query(sql).await;
        assert!(!msgs.iter().any(|m| m.is_error()), "{sql}: {msgs:?}");
    }
    let mut script = Vec::new();
    for sql in ["ROLLBACK", "SELECT name FROM bare"] {
        for m in [parse("", sql), bind("", "", &[]), execute(""), sync()] {
            script.extend(m);
        }
    }
    raw.send(&script).await;
    let rollback = raw.until_ready().await;
    assert!(!rollback.iter().any(|m| m.is_error()), "{rollback:?}");
    let select = raw.until_ready().await;
    assert!(select.iter().all(|m| m.data_row().is_none()), "{select:?}");
    let codes: Vec<_> = select.iter().filter_map(|m| m.code()).collect();
    assert_eq!(codes, ["42501"], "{select:?}");
    proxy.shutdown().await.unwrap();
}

/// Runs each statement as a simple Query; each must succeed.
async fn run(c: &tokio_postgres::Client, sqls: &[&str]) {
    for sql in sqls {
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
}

/// The SQLSTATE a simple Query of `sql` is refused with.
async fn refused(c: &tokio_postgres::Client, sql: &str) -> String {
    let e = c.simple_query(sql).await.expect_err(sql);
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| panic!("{sql}: no SQLSTATE: {e:?}"))
}

async fn names_in_bare(c: &tokio_postgres::Client) -> Vec<String> {
    first_column(c.simple_query("SELECT name FROM bare").await.unwrap())
}

async fn shown_tenant(c: &tokio_postgres::Client) -> Vec<String> {
    first_column(c.simple_query("SHOW app.current_tenant").await.unwrap())
}

/// A prepared `SHOW app.current_tenant`, bound again after the session
/// changed tenant, reports the tenant in force at that Bind (it kept the
/// one from when it was prepared): psycopg with prepare_threshold=0 and
/// asyncpg prepare everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_show_reports_the_tenant_at_each_bind() {
    let (_cluster, proxy) = bare_table_behind_proxy().await;
    let app = connect(proxy.port, "app", "app-secret", "app").await;
    let show = app.prepare("SHOW app.current_tenant").await.unwrap();
    assert!(show.params().is_empty(), "{:?}", show.params());
    let shown = async |c: &tokio_postgres::Client| -> String {
        c.query_one(&show, &[]).await.unwrap().get(0)
    };
    assert_eq!(shown(&app).await, "");
    for tenant in ["a", "b"] {
        app.batch_execute(&format!("SET app.current_tenant = '{tenant}'"))
            .await
            .unwrap();
        assert_eq!(shown(&app).await, tenant);
    }
    app.batch_execute("BEGIN").await.unwrap();
    app.batch_execute("SET LOCAL app.current_tenant = 'a'")
        .await
        .unwrap();
    assert_eq!(shown(&app).await, "a");
    app.batch_execute("COMMIT").await.unwrap();
    assert_eq!(shown(&app).await, "b");
    app.batch_execute("RESET app.current_tenant").await.unwrap();
    assert_eq!(shown(&app).await, "");
    proxy.shutdown().await.unwrap();
}

/// `RESET ALL` and `DISCARD ALL` return every setting to its startup value,
/// the tenant variable included (application pools run them when a
/// connection is given back): a tenant chosen with SET must not serve the
/// next borrower of the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_all_and_discard_all_forget_a_chosen_tenant() {
    let (_cluster, proxy) = bare_table_behind_proxy().await;
    // No tenant at startup: after the reset, none.
    let app = connect(proxy.port, "app", "app-secret", "app").await;
    for reset in ["DISCARD ALL", "RESET ALL"] {
        app.batch_execute("SET app.current_tenant = 'a'")
            .await
            .unwrap();
        let rows = first_column(app.simple_query("SELECT name FROM bare").await.unwrap());
        assert_eq!(rows, ["mine"]);
        app.batch_execute(reset).await.unwrap();
        let e = app
            .simple_query("SELECT name FROM bare")
            .await
            .expect_err(reset);
        assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{reset}: {e:?}");
        assert_eq!(server_tenant(&app).await, "", "{reset}");
    }
    // Tenant b at startup: back to b.
    let (_, b) = tenants_a_and_b(proxy.port).await;
    b.batch_execute("SET app.current_tenant = 'a'")
        .await
        .unwrap();
    b.batch_execute("RESET ALL").await.unwrap();
    let rows = first_column(b.simple_query("SELECT name FROM bare").await.unwrap());
    assert_eq!(rows, ["Secret Of B"]);
    // So do RESET and SET … TO DEFAULT of the variable itself.
    for reset in [
        "RESET app.current_tenant",
        "SET app.current_tenant TO DEFAULT",
    ] {
        b.batch_execute("SET app.current_tenant = 'a'")
            .await
            .unwrap();
        b.batch_execute(reset).await.unwrap();
        let rows = first_column(b.simple_query("SELECT name FROM bare").await.unwrap());
        assert_eq!(rows, ["Secret Of B"], "{reset}");
    }
    // A reset that rolls back leaves the tenant chosen.
    b.batch_execute("SET app.current_tenant = 'a'")
        .await
        .unwrap();
    b.batch_execute("BEGIN; RESET ALL; ROLLBACK").await.unwrap();
    let rows = first_column(b.simple_query("SELECT name FROM bare").await.unwrap());
    assert_eq!(rows, ["mine"]);
    // Statements after a reset in the same string would be planned for the
    // tenant it ends: refused; before it, they are the chosen tenant's.
    for sql in [
        "RESET ALL; SELECT name FROM bare",
        "DISCARD ALL; SELECT name FROM bare",
        "SELECT 1; reset all; INSERT INTO bare (id, name) VALUES (9, 'y')",
    ] {
        let e = b.simple_query(sql).await.expect_err(sql);
        assert_eq!(e.code().map(|c| c.code()), Some("0A000"), "{sql}: {e:?}");
        let rows = first_column(b.simple_query("SELECT name FROM bare").await.unwrap());
        assert_eq!(rows, ["mine"], "{sql}: nothing of it ran");
    }
    let rows = first_column(
        b.simple_query("SELECT name FROM bare; RESET ALL")
            .await
            .unwrap(),
    );
    assert_eq!(rows, ["mine"]);
    let rows = first_column(b.simple_query("SELECT name FROM bare").await.unwrap());
    assert_eq!(rows, ["Secret Of B"], "back to the startup tenant");
    proxy.shutdown().await.unwrap();
}

/// Table `bare` (no policy) with a row of `a` (`mine`) and one of `b`
/// named `b_name`, `grant` given to the proxy's role, and a session of `a`.
async fn bare_rows_of_a_and_b(
    b_name: &str,
    grant: &str,
) -> (
    tenantgate::localpg::Cluster,
    support::ProxyHandle,
    tokio_postgres::Client,
) {
    let (cluster, proxy) = tables_behind_proxy(&format!(
        "CREATE TABLE bare (tenant_id text NOT NULL, id int NOT NULL, name text NOT NULL);
         INSERT INTO bare VALUES ('a', 1, 'mine'), ('b', 2, '{b_name}');
         GRANT {grant} ON bare TO appuser;"
    ))
    .await;
    let (a, _) = tenants_a_and_b(proxy.port).await;
    (cluster, proxy, a)
}

/// A cluster set up by `sql` (after `CREATE ROLE appuser`, the role the
/// proxy logs in as) and a proxy over it (`rls_config`).
async fn tables_behind_proxy(sql: &str) -> (tenantgate::localpg::Cluster, support::ProxyHandle) {
    let cluster = start_app_cluster().await;
    exec(
        &cluster,
        "app",
        &format!("CREATE ROLE appuser LOGIN;\n{sql}"),
    )
    .await;
    let url = format!("postgres://appuser@127.0.0.1:{}/app", cluster.port());
    let proxy = start_proxy(rls_config(&url, "")).await;
    (cluster, proxy)
}

/// [`tables_behind_proxy`] with table `bare` (no policy: the rewriter
/// alone) holding a's row `mine` and b's `Secret Of B`.
async fn bare_table_behind_proxy() -> (tenantgate::localpg::Cluster, support::ProxyHandle) {
    tables_behind_proxy(
        "CREATE TABLE bare (tenant_id text NOT NULL, id int NOT NULL, name text NOT NULL);
         INSERT INTO bare VALUES ('a', 1, 'mine'), ('b', 2, 'Secret Of B');
         GRANT SELECT ON bare TO appuser;",
    )
    .await
}

/// The first column of every row of a simple Query's answer.
fn first_column(rows: Vec<tokio_postgres::SimpleQueryMessage>) -> Vec<String> {
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect()
}
