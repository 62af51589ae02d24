//! pgbench through the proxy under transaction pooling: 64 clients over a
//! pool of 10 server connections, select-only and TPC-B, with the simple,
//! extended and prepared protocols. Every run must finish with no failed
//! transactions, and after each TPC-B run the bank must balance and the
//! history must hold exactly one row per transaction pgbench reports.

mod support;

use std::process::Output;
use std::time::Duration;

use tenantgate::localpg::Cluster;

const USER: &str = "app";
const PASSWORD: &str = "app-secret";
const DB: &str = "app";
const CLIENTS: &str = "64";
const POOL_SIZE: usize = 10;

fn config_text(cluster: &Cluster) -> String {
    let mut text = support::standard_config_text(cluster);
    let listen = "listen = \"127.0.0.1:0\"\n";
    assert!(text.contains(listen), "unexpected config text:\n{text}");
    text = text.replacen(
        listen,
        &format!("{listen}pool_mode = \"transaction\"\nquery_wait_timeout = \"60s\"\n"),
        1,
    );
    // The shard table comes last, so this key belongs to it.
    text.push_str(&format!("pool_size = {POOL_SIZE}\n"));
    text
}

/// Runs pgbench with `args` against 127.0.0.1:`port` as `user`.
async fn pgbench(port: u16, user: &str, password: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(support::pg_tool("pgbench"));
    cmd.args(["-h", "127.0.0.1"])
        .arg("-p")
        .arg(port.to_string())
        .args(["-U", user])
        .args(args)
        .arg(DB)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGOPTIONS")
        .env_remove("PGSERVICE")
        .env_remove("PGSSLMODE")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(120), cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run pgbench: {e}"),
        Err(_) => panic!("pgbench {args:?} did not finish within 120 s"),
    }
}

/// A cluster with the pgbench tables at scale 1, initialised directly.
async fn pgbench_cluster() -> Cluster {
    let cluster = support::start_app_cluster().await;
    let out = pgbench(cluster.port(), "postgres", "", &["-i", "-s", "1", "-q"]).await;
    assert!(
        out.status.success(),
        "pgbench -i failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    cluster
}

/// Runs pgbench through the proxy, checks it succeeded with no failed
/// transactions, and returns the number of transactions it processed.
async fn bench(port: u16, mode: &str, extra: &[&str]) -> u64 {
    let mut args = vec!["-c", CLIENTS, "-j", "2", "-M", mode];
    args.extend_from_slice(extra);
    let out = pgbench(port, USER, PASSWORD, &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!(
        "pgbench {args:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(out.status.success(), "{report}");
    let failed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .unwrap_or_else(|| panic!("no failed-transactions line; {report}"));
    assert!(
        failed.starts_with("0 "),
        "pgbench reports failed transactions; {report}"
    );
    let processed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .unwrap_or_else(|| panic!("no processed line; {report}"));
    let (done, wanted) = processed.split_once('/').unwrap_or((processed, processed));
    assert_eq!(
        done, wanted,
        "not every transaction was processed; {report}"
    );
    let done: u64 = done
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("bad processed count {done:?}; {report}"));
    assert!(done > 0, "{report}");
    done
}

/// sum(abalance), sum(bbalance), sum(tbalance) and count(pgbench_history),
/// read directly on the cluster.
async fn bank(cluster: &Cluster) -> (i64, i64, i64, i64) {
    let c = support::connect_direct(cluster, DB).await;
    let r = c
        .query_one(
            "SELECT (SELECT coalesce(sum(abalance), 0)::int8 FROM pgbench_accounts), \
                    (SELECT coalesce(sum(bbalance), 0)::int8 FROM pgbench_branches), \
                    (SELECT coalesce(sum(tbalance), 0)::int8 FROM pgbench_tellers), \
                    (SELECT count(*) FROM pgbench_history)",
            &[],
        )
        .await
        .expect("bank query");
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_only_with_every_protocol() {
    let cluster = pgbench_cluster().await;
    let proxy = support::start_proxy(support::load_config(&config_text(&cluster))).await;
    for mode in ["simple", "extended", "prepared"] {
        let n = bench(proxy.port, mode, &["-S", "-t", "150"]).await;
        assert_eq!(n, 64 * 150, "-S -M {mode}");
    }
    // The proxy still serves after 3 × 64 clients came and went.
    let c = support::connect(proxy.port, USER, PASSWORD, DB).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM pgbench_accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 100_000);
    proxy.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpcb_with_every_protocol_keeps_the_bank_balanced() {
    let cluster = pgbench_cluster().await;
    let proxy = support::start_proxy(support::load_config(&config_text(&cluster))).await;
    for (mode, extra) in [
        ("simple", &["-t", "50"][..]),
        ("extended", &["-t", "50"][..]),
        ("prepared", &["-T", "3"][..]),
    ] {
        let n = bench(proxy.port, mode, extra).await;
        if extra[0] == "-t" {
            assert_eq!(n, 64 * 50, "TPC-B -M {mode}");
        }
        let (a, b, t, history) = bank(&cluster).await;
        assert!(
            a == b && b == t,
            "bank out of balance after -M {mode}: accounts {a}, branches {b}, tellers {t}"
        );
        assert_eq!(
            history, n as i64,
            "pgbench_history rows vs transactions pgbench processed (-M {mode})"
        );
    }
    proxy.shutdown().await.unwrap();
}
