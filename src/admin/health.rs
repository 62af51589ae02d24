//! Readiness: the config is loaded, the proxy is not draining, and every
//! shard's server answers within a short timeout: a TCP connection and the
//! reply to an SSLRequest, which a stopped or hung postmaster does not give
//! (the kernel completes the TCP handshake on its behalf).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::state::ProxyState;

/// Longest time a readiness probe waits for one shard.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `Ok` when ready; otherwise one line per problem (shards by name only).
pub async fn readiness(state: &ProxyState) -> Result<(), Vec<String>> {
    if state.shutdown.is_cancelled() {
        return Err(vec!["draining: tenantgate is shutting down".into()]);
    }
    let mut probes = JoinSet::new();
    for (name, pool) in state.pools().iter() {
        let target = pool.target();
        let timeout = pool.connect_timeout().min(PROBE_TIMEOUT);
        let name = name.clone();
        probes.spawn(async move {
            let addr = (target.host.as_str(), target.port);
            match tokio::time::timeout(timeout, probe(addr)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("shard {name}: {e}")),
                Err(_) => Err(format!(
                    "shard {name}: unreachable (no answer within {} ms)",
                    timeout.as_millis()
                )),
            }
        });
    }
    let mut problems = Vec::new();
    while let Some(done) = probes.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(p)) => problems.push(p),
            Err(_) => problems.push("a shard probe failed".into()),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.sort();
        Err(problems)
    }
}

/// The SSLRequest code (protocol 1234.5679).
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Connects to a server and asks it whether it speaks TLS: any Postgres
/// answers one byte (`S` or `N`) before the client says anything more.
/// Closing then is not logged by Postgres (no startup packet at all).
async fn probe(addr: (&str, u16)) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("unreachable ({})", e.kind()))?;
    stream
        .write_all(&SSL_REQUEST)
        .await
        .map_err(|e| format!("unreachable ({})", e.kind()))?;
    let mut answer = [0u8; 1];
    match stream.read(&mut answer).await {
        Ok(1) if matches!(answer[0], b'S' | b'N') => Ok(()),
        Ok(0) => Err("the server closed the connection unanswered".into()),
        Ok(_) => Err(format!(
            "not a Postgres server (answered '{}')",
            answer[0].escape_ascii()
        )),
        Err(e) => Err(format!("unreachable ({})", e.kind())),
    }
}
