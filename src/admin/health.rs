//! Readiness: the config is loaded, the proxy is not draining, and every
//! shard accepts a TCP connection within a short timeout.

use std::time::Duration;

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
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("shard {name}: unreachable ({})", e.kind())),
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
