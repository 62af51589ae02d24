//! The HTTP endpoint: `/metrics` after traffic from two tenants on two
//! shards (series, labels, counts, histograms, the tenant-label cap),
//! `/healthz`, and `/readyz` before and after the shards' cluster stops.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tenantgate::localpg::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A cluster with databases `app` (shard s0) and `app2` (shard s1), each
/// with the tenant table `items`.
async fn two_shard_cluster() -> Cluster {
    let cluster = start_cluster().await;
    for db in ["app", "app2"] {
        create_database(&cluster, db).await;
        exec(
            &cluster,
            db,
            "CREATE TABLE items (tenant_id text NOT NULL, id int NOT NULL, v text);
             INSERT INTO items VALUES ('a', 1, 'x'), ('b', 2, 'y');",
        )
        .await;
    }
    cluster
}

/// Tenant `a` (user `a`) on s0, tenant `b` (user `b`) on s1, admin `ops`.
fn config_text(cluster: &Cluster, server_extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n{server_extra}\n\
         [tenancy]\n\
         [[users]]\nname = \"a\"\npassword = \"a-secret\"\ntenant = \"a\"\n\
         [[users]]\nname = \"b\"\npassword = \"b-secret\"\ntenant = \"b\"\n\
         [[users]]\nname = \"ops\"\npassword = \"ops-secret\"\nadmin = true\n\
         [[shards]]\nname = \"s0\"\nurl = {}\n\
         [[shards]]\nname = \"s1\"\nurl = {}\n\
         [[tenants]]\nid = \"a\"\nshard = \"s0\"\n\
         [[tenants]]\nid = \"b\"\nshard = \"s1\"\n",
        toml_str(&cluster.url("app")),
        toml_str(&cluster.url("app2")),
    )
}

struct Running {
    port: u16,
    metrics: SocketAddr,
    token: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn start(text: &str) -> Running {
    let proxy = tenantgate::server::Proxy::bind(load_config(text))
        .await
        .expect("bind");
    let port = proxy.local_addr().expect("addr").port();
    let metrics = proxy.metrics_addr().expect("metrics_listen is set");
    let token = proxy.shutdown_token();
    tokio::spawn(proxy.run());
    Running {
        port,
        metrics,
        token,
    }
}

/// `GET path`: status, Content-Type, body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect to /metrics");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("send request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let raw = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let mut content_type = String::new();
    let mut length = None;
    for l in lines {
        let (k, v) = l.split_once(':').expect("header");
        match k.to_ascii_lowercase().as_str() {
            "content-type" => content_type = v.trim().to_string(),
            "content-length" => length = v.trim().parse::<usize>().ok(),
            _ => {}
        }
    }
    assert_eq!(length, Some(body.len()), "Content-Length matches the body");
    (status, content_type, body.to_string())
}

/// One sample line of the exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses Prometheus / OpenMetrics text: every line is a `# ...` comment
/// or `name{label="value",...} value`; panics on anything else.
fn parse_exposition(text: &str) -> Vec<Sample> {
    assert!(text.ends_with("# EOF\n"), "exposition ends with # EOF");
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            let mut w = line.split_whitespace();
            w.next();
            match w.next() {
                Some("HELP" | "TYPE" | "UNIT") => {
                    let name = w.next().expect("metric name in comment");
                    assert!(valid_name(name), "bad name in {line:?}");
                }
                Some("EOF") => {}
                _ => panic!("unexpected comment {line:?}"),
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let name = &line[..name_end];
        assert!(valid_name(name), "bad metric name in {line:?}");
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut r = r;
            loop {
                if let Some(after) = r.strip_prefix('}') {
                    r = after;
                    break;
                }
                let eq = r
                    .find("=\"")
                    .unwrap_or_else(|| panic!("bad label in {line:?}"));
                let key = &r[..eq];
                assert!(valid_name(key), "bad label name in {line:?}");
                r = &r[eq + 2..];
                let mut value = String::new();
                let mut chars = r.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => {
                            let (_, c) = chars.next().expect("escape");
                            value.push(match c {
                                'n' => '\n',
                                c => c,
                            });
                        }
                        Some((i, '"')) => break i,
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value in {line:?}"),
                    }
                };
                labels.insert(key.to_string(), value);
                r = &r[end + 1..];
                r = r.strip_prefix(',').unwrap_or(r);
            }
            rest = r;
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The value of the one series `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        found.len() <= 1,
        "several series match {name} {labels:?}: {found:?}"
    );
    found.first().map(|s| s.value)
}

fn must(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(samples, name, labels).unwrap_or_else(|| {
        let names: Vec<String> = samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| format!("{:?}", s.labels))
            .collect();
        panic!("no series {name} {labels:?}; present: {names:?}")
    })
}

async fn scrape_text(addr: SocketAddr) -> String {
    let (status, content_type, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.contains("openmetrics-text") || content_type.contains("text/plain"),
        "{content_type}"
    );
    body
}

async fn scrape(addr: SocketAddr) -> Vec<Sample> {
    parse_exposition(&scrape_text(addr).await)
}

/// Sample names each family can have, from the `# TYPE` lines.
fn families(body: &str) -> Vec<(String, Vec<String>)> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').expect("# TYPE name type");
            let names = match kind {
                "counter" => vec![format!("{name}_total")],
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{name}{s}"))
                    .collect(),
                _ => vec![name.to_string()],
            };
            (name.to_string(), names)
        })
        .collect()
}

/// Every family is documented in docs/observability.md, and every series
/// docs/grafana-dashboard.json plots exists.
fn check_docs(body: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let doc = std::fs::read_to_string(format!("{root}/docs/observability.md")).expect("doc");
    let fams = families(body);
    for (family, names) in &fams {
        let shown = if names[0].ends_with("_total") {
            &names[0]
        } else {
            family
        };
        assert!(
            doc.contains(&format!("| `{shown}` |")),
            "{shown} is not documented in docs/observability.md"
        );
    }
    let dashboard =
        std::fs::read_to_string(format!("{root}/docs/grafana-dashboard.json")).expect("dashboard");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&json, &mut exprs);
    assert!(exprs.len() >= 20, "{exprs:?}");
    for e in &exprs {
        for (i, _) in e.match_indices("tenantgate_") {
            let name: String = e[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                doc.contains(&format!("| `{base}` |")),
                "the dashboard plots {name}, which docs/observability.md does not document"
            );
        }
    }
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) if s.contains("tenantgate_") => {
                        out.push(s.clone())
                    }
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

async fn run_simple(client: &tokio_postgres::Client, sql: &str) {
    if let Err(e) = client.simple_query(sql).await {
        panic!("{sql}: {}", error_chain(&e));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_two_tenants() {
    let cluster = two_shard_cluster().await;
    let proxy = start(&config_text(&cluster, "")).await;

    let a = connect(proxy.port, "a", "a-secret", "app").await;
    for _ in 0..3 {
        run_simple(&a, "SELECT id FROM items").await;
    }
    let b = connect(proxy.port, "b", "b-secret", "app").await;
    for _ in 0..2 {
        run_simple(&b, "SELECT id FROM items").await;
    }
    let refused = b
        .simple_query("SELECT * FROM pg_stat_activity")
        .await
        .expect_err("isolation refuses pg_stat_activity");
    assert_eq!(sqlstate(&refused).as_deref(), Some("42501"));
    let failed = b
        .simple_query("SELECT 1/0")
        .await
        .expect_err("division by zero");
    assert_eq!(sqlstate(&failed).as_deref(), Some("22012"));
    let wrong = try_connect(proxy.port, "a", "wrong", "app").await;
    assert!(wrong.is_err());

    let body = scrape_text(proxy.metrics).await;
    check_docs(&body);
    let m = parse_exposition(&body);
    let a_s0 = [("tenant", "a"), ("shard", "s0")];
    let b_s1 = [("tenant", "b"), ("shard", "s1")];
    assert_eq!(must(&m, "tenantgate_queries_total", &a_s0), 3.0);
    assert_eq!(must(&m, "tenantgate_transactions_total", &a_s0), 3.0);
    // b: two SELECTs and the division by zero reached the server; the
    // refusal was answered by the proxy.
    assert_eq!(must(&m, "tenantgate_queries_total", &b_s1), 3.0);
    assert_eq!(
        value(
            &m,
            "tenantgate_queries_total",
            &[("tenant", "a"), ("shard", "s1")]
        ),
        None
    );
    assert_eq!(
        value(
            &m,
            "tenantgate_queries_total",
            &[("tenant", "b"), ("shard", "s0")]
        ),
        None
    );
    assert_eq!(
        must(
            &m,
            "tenantgate_errors_total",
            &[("tenant", "b"), ("class", "22")]
        ),
        1.0
    );
    assert_eq!(
        must(
            &m,
            "tenantgate_errors_total",
            &[("tenant", "b"), ("class", "42")]
        ),
        1.0
    );
    assert_eq!(
        value(&m, "tenantgate_errors_total", &[("tenant", "a")]),
        None
    );
    assert_eq!(
        must(
            &m,
            "tenantgate_isolation_refusals_total",
            &[("tenant", "b"), ("sqlstate", "42501")]
        ),
        1.0
    );
    // Histograms have observations, and their +Inf bucket is their count.
    for (name, labels, n) in [
        ("tenantgate_query_duration_seconds", a_s0, 3.0),
        ("tenantgate_query_duration_seconds", b_s1, 3.0),
    ] {
        assert_eq!(must(&m, &format!("{name}_count"), &labels), n);
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        assert_eq!(must(&m, &format!("{name}_bucket"), &inf), n);
        assert!(must(&m, &format!("{name}_sum"), &labels) > 0.0);
    }
    assert!(must(&m, "tenantgate_pool_wait_duration_seconds_count", &a_s0) >= 3.0);
    assert!(must(&m, "tenantgate_pool_wait_duration_seconds_count", &b_s1) >= 2.0);
    assert!(must(&m, "tenantgate_client_received_bytes_total", &a_s0) > 0.0);
    assert!(must(&m, "tenantgate_client_sent_bytes_total", &b_s1) > 0.0);
    // Connections.
    assert_eq!(must(&m, "tenantgate_clients_connected", &[]), 2.0);
    assert_eq!(must(&m, "tenantgate_client_sessions", &[]), 2.0);
    assert!(must(&m, "tenantgate_client_connections_total", &[]) >= 3.0);
    assert_eq!(
        must(
            &m,
            "tenantgate_client_connections_refused_total",
            &[("reason", "auth_failed")]
        ),
        1.0
    );
    // Pools, read at scrape time.
    for shard in ["s0", "s1"] {
        assert!(
            must(
                &m,
                "tenantgate_server_connections",
                &[("shard", shard), ("state", "idle")]
            ) >= 1.0
        );
        assert_eq!(
            must(
                &m,
                "tenantgate_server_connections",
                &[("shard", shard), ("state", "active")]
            ),
            0.0
        );
        assert_eq!(
            must(&m, "tenantgate_clients_waiting", &[("shard", shard)]),
            0.0
        );
        assert_eq!(must(&m, "tenantgate_pool_size", &[("shard", shard)]), 20.0);
    }
    assert!(must(&m, "tenantgate_rewrite_cache_misses_total", &[]) >= 1.0);
    assert!(must(&m, "tenantgate_rewrite_cache_hits_total", &[]) >= 1.0);
    assert!(must(&m, "tenantgate_rewrite_cache_bytes", &[]) > 0.0);
    assert_eq!(must(&m, "tenantgate_config_generation", &[]), 1.0);
    assert_eq!(
        must(
            &m,
            "tenantgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // Every series is prefixed.
    assert!(m.iter().all(|s| s.name.starts_with("tenantgate_")));

    // Health.
    let (status, _, body) = http_get(proxy.metrics, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // Connections that send nothing take slots up to the cap; one more
    // closes the one that has waited longest for its request and is
    // served, so silent clients cannot keep health probes out.
    let mut idle = Vec::new();
    for _ in 0..tenantgate::admin::http::MAX_CONNECTIONS {
        idle.push(
            tokio::net::TcpStream::connect(proxy.metrics)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for round in 0..3 {
        let (status, _, body) = http_get(proxy.metrics, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"), "round {round}");
        // Its place is taken again by another silent one.
        idle.push(
            tokio::net::TcpStream::connect(proxy.metrics)
                .await
                .expect("connect"),
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The silent connections that made room were closed.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let closed = idle
        .iter()
        .filter(|c| matches!(c.try_read(&mut [0u8; 16]), Ok(0)))
        .count();
    assert_eq!(closed, 3, "one silent connection closed per request served");
    drop(idle);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (status, _, _) = http_get(proxy.metrics, "/healthz").await;
    assert_eq!(status, 200, "slots come back when idle connections go");
    let (status, _, _) = http_get(proxy.metrics, "/nope").await;
    assert_eq!(status, 404);
    let (status, _, body) = http_get(proxy.metrics, "/readyz").await;
    assert_eq!(status, 200, "{body}");

    // A hung postmaster (stopped: the kernel still completes the TCP
    // handshake for it) is not ready either.
    let postmaster = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .expect("pid line")
        .trim()
        .to_string();
    struct Continue(String);
    impl Drop for Continue {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &self.0])
                .status();
        }
    }
    let stopped = Continue(postmaster.clone());
    let status = std::process::Command::new("kill")
        .args(["-STOP", &postmaster])
        .status()
        .expect("kill -STOP");
    assert!(status.success());
    let (status, _, body) = http_get(proxy.metrics, "/readyz").await;
    assert_eq!(status, 503, "stopped postmaster: {body}");
    assert!(body.contains("no answer within"), "{body}");
    drop(stopped);
    let (status, _, body) = http_get(proxy.metrics, "/readyz").await;
    assert_eq!(status, 200, "postmaster continued: {body}");

    drop((a, b));
    let mut cluster = cluster;
    cluster.stop_async().await.expect("stop the cluster");
    let (status, _, body) = http_get(proxy.metrics, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("shard s0") && body.contains("shard s1"),
        "{body}"
    );
    // The process is still up.
    let (status, _, _) = http_get(proxy.metrics, "/healthz").await;
    assert_eq!(status, 200);
}

/// An error the proxy raises when it ends a session (here 25P03, an idle
/// transaction timed out) is counted like the server's errors (FATALs the
/// proxy raised were not counted at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_that_end_a_session_are_counted() {
    let cluster = two_shard_cluster().await;
    let proxy = start(&config_text(
        &cluster,
        "idle_transaction_timeout = \"300ms\"",
    ))
    .await;
    let a = connect(proxy.port, "a", "a-secret", "app").await;
    run_simple(&a, "BEGIN").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // The FATAL came while the client was idle: tokio-postgres reports the
    // closed connection.
    a.simple_query("SELECT 1")
        .await
        .expect_err("the idle transaction was ended");
    let m = scrape(proxy.metrics).await;
    assert_eq!(
        must(
            &m,
            "tenantgate_errors_total",
            &[("tenant", "a"), ("class", "25")]
        ),
        1.0
    );
}

/// A pin refused for `max_pinned_per_tenant` (53300) is a pin refusal and
/// an error of class 53, not an isolation refusal (it was counted in
/// `tenantgate_isolation_refusals_total`, for statements the proxy could
/// not prove safe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pin_is_not_an_isolation_refusal() {
    let cluster = two_shard_cluster().await;
    let text = config_text(&cluster, "").replace(
        "[[shards]]\nname = \"s0\"\n",
        "[[shards]]\nname = \"s0\"\nmax_pinned_per_tenant = 1\n",
    );
    let proxy = start(&text).await;
    let first = connect(proxy.port, "a", "a-secret", "app").await;
    let second = connect(proxy.port, "a", "a-secret", "app").await;
    run_simple(&first, "SELECT pg_advisory_lock(1)").await;
    let e = second
        .simple_query("SELECT pg_advisory_lock(2)")
        .await
        .expect_err("a second pin for a");
    assert_eq!(sqlstate(&e).as_deref(), Some("53300"));
    let m = scrape(proxy.metrics).await;
    assert_eq!(
        must(&m, "tenantgate_pin_refusals_total", &[("shard", "s0")]),
        1.0
    );
    assert_eq!(
        must(
            &m,
            "tenantgate_errors_total",
            &[("tenant", "a"), ("class", "53")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "tenantgate_isolation_refusals_total",
            &[("tenant", "a")]
        ),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_labels_are_capped() {
    let cluster = two_shard_cluster().await;
    let proxy = start(&config_text(&cluster, "metrics_tenant_labels = 1")).await;
    let a = connect(proxy.port, "a", "a-secret", "app").await;
    run_simple(&a, "SELECT id FROM items").await;
    let b = connect(proxy.port, "b", "b-secret", "app").await;
    run_simple(&b, "SELECT id FROM items").await;
    run_simple(&b, "SELECT id FROM items").await;

    let m = scrape(proxy.metrics).await;
    assert_eq!(
        must(
            &m,
            "tenantgate_queries_total",
            &[("tenant", "a"), ("shard", "s0")]
        ),
        1.0
    );
    assert_eq!(
        must(
            &m,
            "tenantgate_queries_total",
            &[("tenant", "other"), ("shard", "s1")]
        ),
        2.0
    );
    assert!(
        !m.iter()
            .any(|s| s.labels.get("tenant").map(String::as_str) == Some("b")),
        "tenant b has no label of its own"
    );
    assert_eq!(must(&m, "tenantgate_tenant_labels", &[]), 1.0);
}

/// Statements that differ only in their numbers share one rewrite: the
/// first two are cache misses (the second builds the shape), the others are
/// answered from the shape (cache hits), and every one of them is still
/// scoped to the session's tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_differing_in_numbers_share_a_rewrite() {
    let cluster = two_shard_cluster().await;
    // Tenant b has rows on a's shard too, with the same ids.
    exec(
        &cluster,
        "app",
        "INSERT INTO items SELECT t, i, 'n' FROM unnest(ARRAY['a', 'b']) AS t, generate_series(101, 110) AS i;",
    )
    .await;
    let proxy = start(&config_text(&cluster, "")).await;
    let a = connect(proxy.port, "a", "a-secret", "app").await;
    let counts = |m: &[Sample]| {
        (
            must(m, "tenantgate_rewrite_cache_misses_total", &[]),
            must(m, "tenantgate_rewrite_cache_hits_total", &[]),
        )
    };
    let before = counts(&scrape(proxy.metrics).await);
    for id in 101..=110 {
        let sql = format!("SELECT tenant_id, id FROM items WHERE id = {id}");
        let rows: Vec<(String, String)> = a
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", error_chain(&e)))
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                    r.get(0).unwrap_or_default().to_string(),
                    r.get(1).unwrap_or_default().to_string(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(rows, vec![("a".to_string(), id.to_string())], "{sql}");
    }
    let after = counts(&scrape(proxy.metrics).await);
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (2.0, 8.0),
        "two rewrites (the second builds the shape), eight answers from the shape"
    );
}

#[test]
fn parser_rejects_malformed_lines() {
    let ok = "# HELP x_total a\n# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"\"} 3\ny 1.5\n# EOF\n";
    let s = parse_exposition(ok);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].labels["b"], "q\"");
    for bad in ["x_total{a=1} 3\n# EOF\n", "x_total\n# EOF\n", "x 1\n"] {
        assert!(
            std::panic::catch_unwind(|| parse_exposition(bad)).is_err(),
            "{bad:?}"
        );
    }
}

/// Clients that close during startup were not refused: psql without a
/// password closes at the password request (interactively, to ask its user
/// for one), and a port probe closes without a word. Neither counts in
/// `tenantgate_client_connections_refused_total`; a wrong password does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_close_during_startup_are_not_refusals() {
    let cluster = two_shard_cluster().await;
    let proxy = start(&config_text(&cluster, "")).await;
    let out = tokio::process::Command::new(pg_tool("psql"))
        .args(["-X", "-w", "-h", "127.0.0.1", "-p"])
        .arg(proxy.port.to_string())
        .args(["-U", "a", "-d", "app", "-c", "SELECT 1"])
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", "/nonexistent")
        .output()
        .await
        .expect("run psql");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no password supplied"),
        "psql without a password: {stderr}"
    );
    drop(
        TcpStream::connect(("127.0.0.1", proxy.port))
            .await
            .expect("probe"),
    );
    let bad = psql(proxy.port, "a", "wrong", "app", "SELECT 1").await;
    assert!(!bad.status.success());
    // The probe's close is seen by the proxy shortly after.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = scrape(proxy.metrics).await;
    let refused = |reason| {
        value(
            &m,
            "tenantgate_client_connections_refused_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(refused("auth_failed"), 1.0);
    assert_eq!(refused("protocol"), 0.0, "closes counted as refusals");
    assert_eq!(refused("shard_unavailable"), 0.0);
    proxy.token.cancel();
}
