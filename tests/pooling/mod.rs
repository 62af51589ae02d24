//! Helpers shared by the pooling tests: which server connection a client is
//! on, and forcing the next transaction onto a different one.
#![allow(dead_code)]

use std::collections::BTreeSet;

use tokio_postgres::{AsyncMessage, Client};

use super::support;

/// The standard trusted user of the pooling tests' configs.
pub const USER: &str = "app";
/// Its password.
pub const PASSWORD: &str = "app-secret";
/// The database the tests use.
pub const DB: &str = "app";

/// Who a test logs in as on `port`: the standard user through the proxy
/// (`proxy_port`), the cluster's superuser (trust) on Postgres directly.
pub fn login_for(port: u16, proxy_port: u16) -> (&'static str, &'static str) {
    if port == proxy_port {
        (USER, PASSWORD)
    } else {
        ("postgres", "")
    }
}

/// A client as the standard user.
pub async fn connect(port: u16) -> Client {
    support::connect(port, USER, PASSWORD, DB).await
}

pub async fn backend_pid(c: &Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pg_backend_pid()")
        .get(0)
}

/// Holds every one of the pool's `pool_size` server connections in an open
/// transaction, then lets go of all but the one whose backend pid is
/// `avoid`. The next transaction of any other (idle) client therefore runs on
/// a different server connection. Commit the returned client afterwards.
pub async fn occupy(port: u16, pool_size: usize, avoid: i32) -> Client {
    let mut blockers = Vec::new();
    for _ in 0..pool_size {
        let b = connect(port).await;
        b.batch_execute("BEGIN").await.expect("blocker BEGIN");
        let pid = backend_pid(&b).await;
        blockers.push((pid, b));
    }
    let pids: BTreeSet<i32> = blockers.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        pids.len(),
        pool_size,
        "{pool_size} open transactions must hold {pool_size} distinct server connections"
    );
    let mut keep = None;
    for (pid, b) in blockers {
        if pid == avoid {
            keep = Some(b);
        } else {
            b.batch_execute("COMMIT").await.expect("blocker COMMIT");
        }
    }
    keep.unwrap_or_else(|| panic!("no server connection has pid {avoid} (pids: {pids:?})"))
}

/// Connects and forwards every asynchronous message (notices,
/// notifications) to the returned channel.
pub async fn connect_with_messages(
    port: u16,
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<AsyncMessage>) {
    let cfg = support::client_config(port, USER, PASSWORD, DB);
    let (client, mut conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect: {}", support::error_chain(&e)));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            let _ = tx.send(m);
        }
    });
    (client, rx)
}

pub async fn stop_noise(
    (stop, mut set): (
        tokio_util::sync::CancellationToken,
        tokio::task::JoinSet<()>,
    ),
) {
    stop.cancel();
    while let Some(r) = set.join_next().await {
        r.expect("noise client");
    }
}
