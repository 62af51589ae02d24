//! The HTTP endpoint on `server.metrics_listen`: `GET /metrics` (Prometheus
//! / OpenMetrics text), `GET /healthz` (the process is up) and `GET /readyz`
//! (config loaded and every shard reachable). A minimal HTTP/1.1 server:
//! read the request head, answer, close.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::health::readiness;
use crate::metrics::scrape;
use crate::state::ProxyState;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once, so idle or unread connections cannot pile
/// up file descriptors and rendered bodies. When all are taken, the one
/// that has waited longest for its request is closed to make room (a
/// client that connects and says nothing cannot keep health probes out);
/// if none is waiting for its request, the new connection is closed (a
/// scraper retries).
pub const MAX_CONNECTIONS: usize = 64;

/// How long a new connection waits for the slot of an evicted one.
const EVICT_WAIT: Duration = Duration::from_millis(200);

/// Connections still waiting for their request, oldest first.
#[derive(Debug, Default)]
struct Waiting {
    next: u64,
    queue: VecDeque<(u64, CancellationToken)>,
}

impl Waiting {
    fn lock(this: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
        this.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection that waits for its request.
    fn enter(this: &Mutex<Waiting>) -> (u64, CancellationToken) {
        let mut w = Waiting::lock(this);
        let id = w.next;
        w.next += 1;
        let token = CancellationToken::new();
        w.queue.push_back((id, token.clone()));
        (id, token)
    }

    /// The connection has its request (or is gone).
    fn leave(this: &Mutex<Waiting>, id: u64) {
        let mut w = Waiting::lock(this);
        if let Some(i) = w.queue.iter().position(|(x, _)| *x == id) {
            w.queue.remove(i);
        }
    }

    /// Closes the connection that has waited longest; whether there was one.
    fn evict_oldest(this: &Mutex<Waiting>) -> bool {
        match Waiting::lock(this).queue.pop_front() {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            503 => "Service Unavailable",
            _ => "Unknown",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// Serves the endpoint until the task is aborted.
pub async fn serve(state: Arc<ProxyState>, listener: TcpListener) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) if Waiting::evict_oldest(&waiting) => {
                match tokio::time::timeout(EVICT_WAIT, slots.clone().acquire_owned()).await {
                    Ok(Ok(slot)) => slot,
                    _ => continue,
                }
            }
            Err(_) => {
                tracing::debug!("metrics endpoint: too many connections; closing a new one");
                continue;
            }
        };
        let state = state.clone();
        let waiting = waiting.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = handle(&state, &waiting, stream).await {
                tracing::debug!(error = %e, "metrics endpoint: request failed");
            }
        });
    }
}

async fn handle(
    state: &ProxyState,
    waiting: &Mutex<Waiting>,
    mut stream: TcpStream,
) -> std::io::Result<()> {
    let (id, evicted) = Waiting::enter(waiting);
    let mut head = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    let read = tokio::select! {
        r = tokio::time::timeout(READ_TIMEOUT, read) => r.is_ok(),
        () = evicted.cancelled() => false,
    };
    Waiting::leave(waiting, id);
    if !read {
        return Ok(());
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let response = match method {
        "GET" | "HEAD" => route(state, target).await,
        "" => Response::text(400, "bad request\n"),
        _ => Response::text(405, "method not allowed\n"),
    };
    let answer = response.encode(method == "HEAD");
    let write = async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// The answer to `GET target`.
pub async fn route(state: &ProxyState, target: &str) -> Response {
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => Response {
            status: 200,
            content_type: scrape::CONTENT_TYPE,
            body: scrape::render(state),
        },
        "/healthz" => Response::text(200, "ok\n"),
        "/readyz" => match readiness(state).await {
            Ok(()) => Response::text(200, "ready\n"),
            Err(problems) => Response::text(503, format!("not ready\n{}\n", problems.join("\n"))),
        },
        _ => Response::text(404, "not found: try /metrics, /healthz or /readyz\n"),
    }
}
