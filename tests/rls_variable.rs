//! `tenancy.rls = true`: the server's copy of the session variable (what
//! row-level security policies read with current_setting) always equals the
//! session's tenant, on whichever server connection a transaction runs, and
//! never carries one client's tenant into another client's transaction.

mod support;

use support::{
    connect, connect_with_options, exec, load_config, start_app_cluster, start_proxy, toml_str,
};

async fn server_tenant(c: &tokio_postgres::Client) -> String {
    let rows = c
        .simple_query("SELECT current_setting('app.current_tenant', true)")
        .await
        .expect("current_setting");
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_variable_follows_the_session_tenant() {
    let cluster = start_app_cluster().await;
    exec(
        &cluster,
        "app",
        "CREATE TABLE items (tenant_id text NOT NULL, id int NOT NULL);",
    )
    .await;
    let config = load_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[tenancy]\nrls = true\n\n\
         [[users]]\nname = \"app\"\npassword = \"app-secret\"\n\n\
         [[users]]\nname = \"a\"\npassword = \"a-secret\"\ntenant = \"a\"\n\n\
         [[shards]]\nname = \"s0\"\nurl = {}\npool_size = 1\n\n\
         [routing]\nhash_shards = [\"s0\"]\n",
        toml_str(&cluster.url("app"))
    ));
    let proxy = start_proxy(config).await;
    // pool_size 1: every client's transactions share one server connection.
    let bound = connect(proxy.port, "a", "a-secret", "app").await;
    let by_option = connect_with_options(
        proxy.port,
        "app",
        "app-secret",
        "app",
        "-c app.current_tenant=b",
    )
    .await;
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
