//! `tenantgate demo`, embedded: three throwaway clusters, the sample
//! tenants and the proxy. Each tenant sees its own rows; the proxy logs in
//! to the shards as an ordinary role, so a dedicated tenant (whose
//! statements pass through untouched) cannot act as a superuser.

mod support;

use support::{assert_sqlstate, try_connect};
use tenantgate::demo::{APP_ROLE, Demo, DemoOptions};
use tokio_postgres::SimpleQueryMessage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_its_tenants_through_an_ordinary_role() {
    let demo = Demo::start(&DemoOptions {
        listen: "127.0.0.1:0".into(),
        ..DemoOptions::default()
    })
    .await
    .expect("the demo starts");
    let port = demo.addr().port();
    let config = std::fs::read_to_string(demo.config_path()).expect("routing.toml");
    assert!(
        config.contains(&format!("postgres://{APP_ROLE}@"))
            && !config.contains("postgres://postgres"),
        "shard URLs must name the ordinary role:\n{config}"
    );
    // Each tenant sees its own customers only (acme 3, globex 3, bigcorp 2).
    for (tenant, n) in [("acme", 3i64), ("globex", 3), ("bigcorp", 2)] {
        let c = try_connect(port, tenant, &format!("{tenant}-secret"), "app")
            .await
            .unwrap_or_else(|e| panic!("{tenant}: {e}"));
        let rows = c
            .query("SELECT DISTINCT tenant_id FROM customers", &[])
            .await
            .expect("customers");
        let tenants: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(tenants, [tenant], "{tenant} sees only its own rows");
        let count: i64 = c
            .query_one("SELECT count(*) FROM customers", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(count, n, "{tenant}");
        let superuser: bool = c
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .expect("pg_roles")
            .get(0);
        assert!(!superuser, "{tenant}'s statements run as a superuser");
    }
    // Row-level security backs the rewriter up on the shared shards: a
    // qualifier evaluated before the tenant predicate that quotes its input
    // in an error (globex's names) finds no other tenant's row.
    assert!(config.contains("rls = true"), "{config}");
    let acme = try_connect(port, "acme", "acme-secret", "app")
        .await
        .expect("acme");
    acme.batch_execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
        .await
        .expect("planner settings");
    for sql in [
        "SELECT 1 FROM customers WHERE tenant_id <> 'acme' AND current_setting(name) IS NOT NULL",
        "SELECT 1 FROM orders WHERE tenant_id <> 'acme' AND make_date(1, total_cents, 1) IS NOT NULL",
    ] {
        for rows in [
            acme.simple_query(sql).await.map(|m| {
                m.into_iter()
                    .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
                    .count()
            }),
            acme.query(sql, &[]).await.map(|r| r.len()),
        ] {
            let rows = rows.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            assert_eq!(rows, 0, "{sql}");
        }
    }
    drop(acme);
    // psql's description commands read catalogs a tenant session may read
    // (policies and extended statistics are definitions, not rows); their
    // footers (indexes, policies) print only outside tuples-only mode.
    for (command, expect) in [
        ("\\d customers", "POLICY \"tenant_rows\""),
        ("\\d+ orders", "Access method: heap"),
        ("\\du", "tenantgate_app"),
        ("\\dp customers", "tenant_rows"),
    ] {
        let out = support::psql_args(
            port,
            "acme",
            "acme-secret",
            "app",
            &["-P", "tuples_only=off", "-c", command],
        )
        .await;
        let text = support::psql_ok(&out);
        assert!(text.contains(expect), "{command}: {text}");
    }
    // The admin console's RELOAD re-reads the routing.toml the demo wrote.
    let out = support::psql(port, "ops", "ops-secret", "tenantgate", "RELOAD").await;
    support::psql_ok(&out);
    // The dedicated tenant's statements pass through, but the role may not
    // run programs on the database host.
    let bigcorp = try_connect(port, "bigcorp", "bigcorp-secret", "app")
        .await
        .expect("bigcorp");
    bigcorp
        .batch_execute("CREATE TEMP TABLE out (line text)")
        .await
        .expect("a temporary table");
    let e = bigcorp
        .batch_execute("COPY out FROM PROGRAM 'id'")
        .await
        .expect_err("COPY FROM PROGRAM as the shard role");
    assert_sqlstate(&e, "42501");
    drop(bigcorp);
    demo.shutdown().await.expect("the demo stops cleanly");
}
