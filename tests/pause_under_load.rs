//! PAUSE TENANT / RESUME TENANT while pgbench runs as another tenant: the
//! paused tenant's new transaction waits and then runs, and pgbench sees no
//! error at all.

mod support;

use std::time::{Duration, Instant};

use support::{connect, exec, load_config, start_app_cluster, start_proxy, toml_str};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_a_tenant_under_pgbench_load() {
    let cluster = start_app_cluster().await;
    exec(
        &cluster,
        "app",
        "CREATE TABLE items (tenant_id text NOT NULL, id int NOT NULL, v text, PRIMARY KEY (tenant_id, id));\
         INSERT INTO items SELECT t, g, 'v' FROM unnest(ARRAY['a', 'b']) t, generate_series(1, 100) g;",
    )
    .await;
    let config = load_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nquery_wait_timeout = \"20s\"\n\n[tenancy]\n\n\
         [[users]]\nname = \"a\"\npassword = \"a-secret\"\ntenant = \"a\"\n\n\
         [[users]]\nname = \"b\"\npassword = \"b-secret\"\ntenant = \"b\"\n\n\
         [[users]]\nname = \"ops\"\npassword = \"ops-secret\"\nadmin = true\n\n\
         [[shards]]\nname = \"s0\"\nurl = {}\npool_size = 4\n\n\
         [[tenants]]\nid = \"a\"\nshard = \"s0\"\n\n[[tenants]]\nid = \"b\"\nshard = \"s0\"\n",
        toml_str(&cluster.url("app"))
    ));
    let proxy = start_proxy(config).await;
    let dir = std::env::temp_dir().join(format!(
        "tenantgate-pause-{}-{}",
        std::process::id(),
        proxy.port
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("b.sql");
    std::fs::write(
        &script,
        "\\set id random(1, 100)\nSELECT v FROM items WHERE id = :id;\n",
    )
    .unwrap();

    // Tenant b under load for the whole test.
    let pgbench = tokio::process::Command::new(support::pg_tool("pgbench"))
        .args([
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            &proxy.port.to_string(),
            "-U",
            "b",
            "-c",
            "8",
            "-j",
            "2",
            "-T",
            "8",
        ])
        .arg("-f")
        .arg(&script)
        .arg("app")
        .env("PGPASSWORD", "b-secret")
        .output();
    let bench = tokio::spawn(pgbench);

    let a = connect(proxy.port, "a", "a-secret", "app").await;
    let ops = connect(proxy.port, "ops", "ops-secret", "tenantgate").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ops.simple_query("PAUSE TENANT a")
        .await
        .expect("PAUSE TENANT");
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let n = a
            .query("SELECT id FROM items", &[])
            .await
            .expect("a's query after RESUME")
            .len();
        (n, started.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !waiting.is_finished(),
        "the paused tenant's transaction must wait"
    );
    ops.simple_query("RESUME TENANT a")
        .await
        .expect("RESUME TENANT");
    let (rows, waited) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("a runs once resumed")
        .unwrap();
    assert_eq!(rows, 100, "a sees its own 100 rows");
    assert!(waited >= Duration::from_secs(3), "waited {waited:?}");

    let out = bench.await.unwrap().expect("pgbench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pgbench failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("number of failed transactions: 0"),
        "{stdout}"
    );
    let processed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        processed > 100,
        "pgbench kept running through the pause: {processed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
