//! Error positions. A server error's position counts characters of the text
//! the server got. For a statement tenantgate rewrote, that text is not the
//! client's, so the position comes back as Postgres reports one inside a
//! statement it generated itself: internal position plus internal query (the
//! rewritten text). A statement sent as the client wrote it keeps its
//! position, also behind the `rls` prefix (shifted back by it).

mod raw_client;
mod support;

use raw_client::{RawClient, parse, query_msg, sync};

use support::{connect, exec, load_config, start_app_cluster, start_proxy, toml_str};
use tokio_postgres::error::ErrorPosition;

/// Tenant user `a`, trusted user `app`, one shard; `rls` as given.
fn config(url: &str, rls: bool) -> tenantgate::config::Config {
    load_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[tenancy]\nrls = {rls}\n\n\
         [[users]]\nname = \"app\"\npassword = \"app-secret\"\n\n\
         [[users]]\nname = \"a\"\npassword = \"a-secret\"\ntenant = \"a\"\n\n\
         [[shards]]\nname = \"s0\"\nurl = {}\npool_size = 2\n\n\
         [routing]\nhash_shards = [\"s0\"]\n",
        toml_str(url)
    ))
}

/// The position of the error `e` from the server.
fn position(e: &tokio_postgres::Error) -> Option<ErrorPosition> {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e}"));
    assert_eq!(db.code().code(), "42703", "{db:?}");
    db.position().cloned()
}

/// Checks an internal position: it points at `word` inside the internal
/// query, which is the rewritten text (it carries the tenant predicate).
fn assert_internal_at(p: Option<ErrorPosition>, word: &str) {
    match p {
        Some(ErrorPosition::Internal { position, query }) => {
            let at: String = query.chars().skip(position as usize - 1).collect();
            assert!(at.starts_with(word), "position {position} in {query:?}");
            assert!(
                query.contains("tenant_id"),
                "not the rewritten text: {query:?}"
            );
        }
        other => panic!("expected an internal position, got {other:?}"),
    }
}

/// Runs `sql` (which names an unknown column) and checks that the error's
/// position is the client's own, `at`.
async fn assert_original_at(c: &tokio_postgres::Client, sql: &str, at: u32) {
    let e = c.simple_query(sql).await.expect_err("unknown column");
    match position(&e) {
        Some(ErrorPosition::Original(p)) => assert_eq!(p, at, "{sql}"),
        other => panic!("{sql}: expected the client's position, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_statements_report_internal_positions() {
    let cluster = start_app_cluster().await;
    exec(
        &cluster,
        "app",
        "CREATE TABLE items (tenant_id text NOT NULL, id int NOT NULL);",
    )
    .await;
    for rls in [false, true] {
        let proxy = start_proxy(config(&cluster.url("app"), rls)).await;
        let a = connect(proxy.port, "a", "a-secret", "app").await;

        // Simple protocol, rewritten.
        let e = a
            .simple_query("SELECT id, nosuchcol FROM items")
            .await
            .expect_err("unknown column");
        assert_internal_at(position(&e), "nosuchcol");

        // Extended protocol, rewritten (the unnamed statement's Parse).
        let e = a
            .prepare("SELECT id FROM items WHERE nosuchcol = $1")
            .await
            .expect_err("unknown column");
        assert_internal_at(position(&e), "nosuchcol");

        // Not rewritten (no tenant table): the client's own position, with
        // or without the rls prefix in front of it on the server.
        assert_original_at(&a, "SELECT nosuchcol", 8).await;

        // A trusted session without a tenant is never rewritten.
        let app = connect(proxy.port, "app", "app-secret", "app").await;
        assert_original_at(&app, "SELECT 1, nosuchcol", 11).await;

        // Behind a DEALLOCATE of a prepared statement, which the server
        // runs as the proxy's stand-in, padded to as many characters.
        let mut raw = RawClient::login(proxy.port, "a", "a-secret", "app").await;
        for dealloc in [
            "DEALLOCATE p1",
            "deallocate /* é */ \"p1\"  ",
            "DEALLOCATE PREPARE p1",
        ] {
            let mut prepare = parse("p1", "SELECT 1");
            prepare.extend(sync());
            raw.send(&prepare).await;
            // The name is free again after each round's DEALLOCATE.
            let replies = raw.until_ready().await;
            assert!(replies.iter().all(|m| !m.is_error()), "{replies:?}");
            raw.send(&query_msg(&format!("{dealloc}; SELECT nosuchcol")))
                .await;
            let e = raw.expect_error().await;
            assert_eq!(e.code().as_deref(), Some("42703"), "{}", e.message());
            let at = dealloc.chars().count() + "; SELECT ".len() + 1;
            assert_eq!(e.field(b'P'), Some(at.to_string()), "{dealloc}");
            raw.until_ready().await;
        }
        raw.terminate().await;

        // The session goes on.
        a.simple_query("SELECT count(*) FROM items").await.unwrap();
        drop((a, app));
        proxy.shutdown().await.unwrap();
    }
}
