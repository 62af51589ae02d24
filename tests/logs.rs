//! Structured logs of the real binary: with `--log-format json` every line is
//! a JSON object, and session lines carry the tenant (connection open and
//! close, refusals, the slow-query log, authentication failures).

mod raw_client;
mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// The tenant a log line is about: an event field, or a field of its span.
fn tenant_of(v: &Value) -> Option<&str> {
    if let Some(t) = v.get("tenant").and_then(Value::as_str) {
        return Some(t);
    }
    if let Some(t) = v.pointer("/span/tenant").and_then(Value::as_str) {
        return Some(t);
    }
    v.get("spans")?
        .as_array()?
        .iter()
        .find_map(|s| s.get("tenant").and_then(Value::as_str))
}

fn message(v: &Value) -> &str {
    v.get("message")
        .or_else(|| v.pointer("/fields/message"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Collects stderr lines until one has `message` (or the time is up).
async fn wait_for(
    rx: &mut mpsc::UnboundedReceiver<String>,
    lines: &mut Vec<String>,
    wanted: &str,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let line = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(l)) => l,
            Ok(None) => panic!(
                "tenantgate exited before logging {wanted:?}:\n{}",
                lines.join("\n")
            ),
            Err(_) => panic!("no {wanted:?} log line within 60 s:\n{}", lines.join("\n")),
        };
        lines.push(line.clone());
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        if message(&v) == wanted {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_tenant() {
    let cluster = start_cluster().await;
    create_database(&cluster, "app").await;
    exec(
        &cluster,
        "app",
        "CREATE TABLE items (tenant_id text NOT NULL, id int NOT NULL, v text);
         INSERT INTO items VALUES ('acme', 1, 'x'), ('globex', 2, 'y');",
    )
    .await;
    let dir = std::env::temp_dir().join(format!(
        "tenantgate-logs-{}-{}",
        std::process::id(),
        tenantgate::localpg::free_port().expect("free port")
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _cleanup = RemoveOnDrop(dir.clone());
    let path = dir.join("routing.toml");
    let text = format!(
        // workers = 1: the binary then runs on a current-thread runtime.
        "[server]\nlisten = \"127.0.0.1:0\"\nslow_query_threshold = \"30ms\"\nworkers = 1\n\
         [tenancy]\n\
         [[users]]\nname = \"acme\"\npassword = \"acme-secret\"\ntenant = \"acme\"\n\
         [[shards]]\nname = \"s0\"\nurl = {}\n\
         [[tenants]]\nid = \"acme\"\nshard = \"s0\"\n",
        toml_str(&cluster.url("app"))
    );
    std::fs::write(&path, text).expect("write config");

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantgate"))
        .arg("--config")
        .arg(&path)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start tenantgate");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();

    let listening = wait_for(&mut rx, &mut lines, "tenantgate listening").await;
    let addr: std::net::SocketAddr = listening
        .get("addr")
        .or_else(|| listening.pointer("/fields/addr"))
        .and_then(Value::as_str)
        .expect("addr field")
        .parse()
        .expect("socket address");
    let port = addr.port();

    let client = connect(port, "acme", "acme-secret", "app").await;
    let opened = wait_for(&mut rx, &mut lines, "session opened").await;
    assert_eq!(tenant_of(&opened), Some("acme"), "{opened}");
    assert_eq!(opened["level"], "INFO");

    client
        .simple_query("SELECT id FROM items")
        .await
        .expect("query");
    client
        .simple_query("SELECT pg_sleep(0.1)")
        .await
        .expect("slow query");
    let slow = wait_for(&mut rx, &mut lines, "slow query").await;
    assert_eq!(tenant_of(&slow), Some("acme"), "{slow}");
    let field = |v: &Value, k: &str| {
        v.get(k)
            .or_else(|| v.pointer(&format!("/fields/{k}")))
            .cloned()
    };
    assert_eq!(field(&slow, "shard"), Some(Value::from("s0")), "{slow}");
    let ms = field(&slow, "duration_ms")
        .and_then(|d| d.as_f64())
        .expect("duration_ms");
    assert!(ms >= 100.0, "{slow}");
    let sql = field(&slow, "sql").expect("sql");
    assert!(
        sql.as_str().is_some_and(|s| s.contains("pg_sleep")),
        "{slow}"
    );
    // A DEALLOCATE of a protocol-level statement runs as a stand-in on the
    // server; the log shows the client's text.
    let mut raw = raw_client::RawClient::login(port, "acme", "acme-secret", "app").await;
    raw.send(&raw_client::batch(&[
        raw_client::parse("p1", "SELECT 1"),
        raw_client::sync(),
    ]))
    .await;
    let parsed = raw.until_ready().await;
    assert!(parsed.iter().all(|m| !m.is_error()), "{parsed:?}");
    let text = "DEALLOCATE p1; SELECT pg_sleep(0.1)";
    let ran = raw.query(text).await;
    let tags: Vec<_> = ran.iter().filter_map(|m| m.command_tag()).collect();
    assert_eq!(tags, ["DEALLOCATE", "SELECT 1"], "{ran:?}");
    let slow = wait_for(&mut rx, &mut lines, "slow query").await;
    let sql = field(&slow, "sql").expect("sql");
    assert_eq!(sql.as_str(), Some(text), "{slow}");

    let e = client
        .simple_query("SELECT * FROM pg_stat_activity")
        .await
        .expect_err("refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    let refused = wait_for(&mut rx, &mut lines, "statement refused").await;
    assert_eq!(tenant_of(&refused), Some("acme"), "{refused}");
    assert_eq!(
        field(&refused, "code"),
        Some(Value::from("42501")),
        "{refused}"
    );
    let reason = field(&refused, "reason").expect("reason");
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.contains("pg_stat_activity")),
        "{refused}"
    );

    assert!(try_connect(port, "acme", "wrong", "app").await.is_err());
    let auth = wait_for(&mut rx, &mut lines, "authentication failed").await;
    assert_eq!(auth["level"], "WARN");

    drop(client);
    let closed = wait_for(&mut rx, &mut lines, "session closed").await;
    assert_eq!(tenant_of(&closed), Some("acme"), "{closed}");

    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}");
    while let Some(l) = rx.recv().await {
        lines.push(l);
    }
    for l in &lines {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
        assert!(v.is_object(), "{l}");
        // One "message" key: a field named `message` would shadow the event's.
        assert_eq!(l.matches("\"message\":").count(), 1, "{l}");
        assert!(
            v.get("timestamp").is_some() && v.get("level").is_some(),
            "{l}"
        );
    }
    // Nothing about the tenant's password reaches the log.
    assert!(lines.iter().all(|l| !l.contains("acme-secret")));
}

/// Removes the test's directory, also when the test fails.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
