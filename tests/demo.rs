//! `tenantgate demo`, embedded: three throwaway clusters, the sample
//! tenants and the proxy. Each tenant sees its own rows; the proxy logs in
//! to the shards as an ordinary role, so a dedicated tenant (whose
//! statements pass through untouched) cannot act as a superuser.

mod support;

use support::{assert_sqlstate, try_connect};
use tenantgate::demo::{APP_ROLE, Demo, DemoOptions};

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
