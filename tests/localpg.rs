//! Throwaway clusters from `tenantgate::localpg`: trust and SCRAM clusters
//! start, accept connections, create databases, stop and start again, and
//! leave nothing behind when dropped. (The proxy is not involved here.)

mod support;

use tenantgate::localpg::{AuthMode, Cluster, ClusterOptions, LocalPgError};

async fn select_one(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT 1", &[])
        .await
        .expect("SELECT 1")
        .get(0)
}

#[tokio::test]
async fn trust_cluster_lifecycle() {
    let mut cluster = support::start_cluster().await;
    let root = cluster.root_dir().to_path_buf();
    let port = cluster.port();
    assert!(cluster.data_dir().join("PG_VERSION").is_file());
    assert_eq!(
        cluster.url("app"),
        format!("postgres://postgres@127.0.0.1:{port}/app")
    );
    assert_eq!(cluster.password(), None);

    let client = support::connect_direct(&cluster, "postgres").await;
    assert_eq!(select_one(&client).await, 1);
    let fsync: String = client
        .query_one("SHOW fsync", &[])
        .await
        .expect("SHOW fsync")
        .get(0);
    assert_eq!(fsync, "off");
    let max_conn: String = client
        .query_one("SHOW max_connections", &[])
        .await
        .expect("SHOW max_connections")
        .get(0);
    assert_eq!(max_conn, "200");

    support::create_database(&cluster, "app").await;
    support::exec(
        &cluster,
        "app",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
    )
    .await;
    drop(client);

    // Through psql as well (the helper the proxy tests use).
    let out = support::psql(port, "postgres", "", "app", "SELECT count(*) FROM t").await;
    assert_eq!(support::psql_ok(&out), "2");

    // Stop: connections fail. Start again: same port, data kept.
    cluster.stop_async().await.expect("stop");
    assert!(!cluster.is_running());
    assert!(
        cluster.connect("app").await.is_err(),
        "connect must fail while stopped"
    );
    cluster.start_again_async().await.expect("start again");
    assert_eq!(cluster.port(), port);
    let client = support::connect_direct(&cluster, "app").await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 2);

    // The blocking variants too.
    drop(client);
    cluster.stop().expect("blocking stop");
    cluster.start_again().expect("blocking start again");
    assert!(cluster.is_running());

    assert!(root.is_dir());
    drop(cluster);
    assert!(!root.exists(), "{} must be removed on drop", root.display());
}

#[tokio::test]
async fn scram_cluster_needs_password() {
    let cluster = support::start_scram_cluster("s3cret pass/word").await;
    let port = cluster.port();
    let root = cluster.root_dir().to_path_buf();
    assert_eq!(cluster.password(), Some("s3cret pass/word"));
    assert_eq!(
        cluster.url("postgres"),
        format!("postgres://postgres:s3cret%20pass%2Fword@127.0.0.1:{port}/postgres")
    );

    // With the password (the cluster's own config carries it).
    let client = support::connect_direct(&cluster, "postgres").await;
    assert_eq!(select_one(&client).await, 1);
    let method: String = client
        .query_one(
            "SELECT substr(rolpassword, 1, 13) FROM pg_authid WHERE rolname = 'postgres'",
            &[],
        )
        .await
        .expect("pg_authid")
        .get(0);
    assert_eq!(method, "SCRAM-SHA-256");

    // Through the URL, as a shard's `url` would be used.
    let cfg: tokio_postgres::Config = cluster.url("postgres").parse().expect("url parses");
    let c2 = support::try_connect_config(&cfg)
        .await
        .expect("url connects");
    assert_eq!(select_one(&c2).await, 1);

    // Wrong and missing passwords are refused.
    let Err(err) = support::try_connect(port, "postgres", "wrong", "postgres").await else {
        panic!("wrong password must fail");
    };
    assert_eq!(support::sqlstate(&err).as_deref(), Some("28P01"));
    let mut no_pw = tokio_postgres::Config::new();
    no_pw
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("postgres");
    assert!(support::try_connect_config(&no_pw).await.is_err());

    support::create_database(&cluster, "app").await;
    let app = support::connect_direct(&cluster, "app").await;
    assert_eq!(select_one(&app).await, 1);

    drop((client, c2, app));
    drop(cluster);
    assert!(!root.exists(), "{} must be removed on drop", root.display());
}

#[tokio::test]
async fn md5_cluster_stores_md5() {
    let cluster = support::start_cluster_with(ClusterOptions {
        auth: AuthMode::Md5("md5-secret".into()),
        ..ClusterOptions::default()
    })
    .await;
    let client = support::connect_direct(&cluster, "postgres").await;
    let stored: String = client
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'",
            &[],
        )
        .await
        .expect("pg_authid")
        .get(0);
    assert!(stored.starts_with("md5") && stored.len() == 35, "{stored}");
    let Err(err) = support::try_connect(cluster.port(), "postgres", "nope", "postgres").await
    else {
        panic!("wrong password must fail");
    };
    assert_eq!(support::sqlstate(&err).as_deref(), Some("28P01"));
}

#[tokio::test]
async fn fixed_port_and_base_dir() {
    let base = std::env::temp_dir().join(format!("tenantgate-localpg-test-{}", std::process::id()));
    let port = tenantgate::localpg::free_port().expect("free port");
    let cluster = support::start_cluster_with(ClusterOptions {
        base_dir: Some(base.clone()),
        name: "fixed".into(),
        port,
        shared_buffers: "16MB".into(),
        max_connections: 50,
        extra_settings: vec!["application_name = 'localpg-test'".into()],
        ..ClusterOptions::default()
    })
    .await;
    assert_eq!(cluster.port(), port);
    assert!(cluster.root_dir().starts_with(&base));
    let client = support::connect_direct(&cluster, "postgres").await;
    let sb: String = client
        .query_one("SHOW shared_buffers", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(sb, "16MB");

    // A second cluster on the same fixed port cannot start, and says why.
    let err = Cluster::start_async(ClusterOptions {
        base_dir: Some(base.clone()),
        port,
        ..ClusterOptions::default()
    })
    .await
    .expect_err("port already in use");
    match &err {
        LocalPgError::Command { output, .. } => {
            assert!(output.contains("already in use"), "{err}")
        }
        other => panic!("unexpected error: {other}"),
    }

    drop(client);
    drop(cluster);
    let left: Vec<_> = std::fs::read_dir(&base)
        .expect("base dir")
        .filter_map(|e| e.ok())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    std::fs::remove_dir(&base).expect("remove base");
}

#[tokio::test]
async fn parallel_clusters_get_distinct_ports() {
    let (a, b, c) = tokio::join!(
        support::start_cluster(),
        support::start_cluster(),
        support::start_cluster()
    );
    let mut ports = vec![a.port(), b.port(), c.port()];
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for cl in [&a, &b, &c] {
        let client = support::connect_direct(cl, "postgres").await;
        assert_eq!(select_one(&client).await, 1);
    }
}
