//! Wiring: the listener, the connection cap, reload, and graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::ProxyError;
use crate::frontend::connection::{serve_connection, serve_when_full};
use crate::protocol::messages;
use crate::state::{ProxyState, StateError};

/// A bound, not yet running proxy.
pub struct Proxy {
    listener: TcpListener,
    state: Arc<ProxyState>,
    config_path: Option<PathBuf>,
    metrics_listener: Option<TcpListener>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address from the config.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config could not be turned into running state.
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<StartError> for std::io::Error {
    fn from(e: StartError) -> Self {
        std::io::Error::other(e.to_string())
    }
}

/// Connections read at once while `max_client_conn` clients are connected
/// (each may be a CancelRequest); more are refused without being read.
const OVER_LIMIT_OPENINGS: usize = 64;

impl Proxy {
    /// Binds `config.server.listen` (port 0 picks a free port).
    pub async fn bind(config: Config) -> std::io::Result<Proxy> {
        Ok(Self::bind_with_path(config, None).await?)
    }

    /// Like [`Proxy::bind`], remembering the file to re-read on SIGHUP.
    pub async fn bind_with_path(
        config: Config,
        path: Option<PathBuf>,
    ) -> Result<Proxy, StartError> {
        let addr = config.server.listen.clone();
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let metrics_listener = match config.server.metrics_listen.clone() {
            Some(addr) => Some(
                TcpListener::bind(&addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        let state = ProxyState::new(config)?;
        if let Some(p) = &path {
            let _ = state.config_path.set(p.clone());
        }
        Ok(Proxy {
            listener,
            state,
            config_path: path,
            metrics_listener,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the HTTP endpoint (`server.metrics_listen`), if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    /// Cancelling this token stops accepting, lets open transactions finish
    /// (bounded by `server.shutdown_timeout`) and makes [`Proxy::run`] return.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// The shared state (for the admin console and tests).
    pub fn state(&self) -> Arc<ProxyState> {
        self.state.clone()
    }

    /// Serves clients until the shutdown token is cancelled, then drains.
    pub async fn run(self) -> std::io::Result<()> {
        let state = self.state;
        let max = state.loaded().config.server.max_client_conn;
        let slots = Arc::new(Semaphore::new(max));
        let over_limit = Arc::new(Semaphore::new(OVER_LIMIT_OPENINGS));
        let tracker = TaskTracker::new();
        if let Some(path) = self.config_path {
            tokio::spawn(reload_on_sighup(state.clone(), path));
        }
        let http = self
            .metrics_listener
            .map(|l| tokio::spawn(crate::admin::http::serve(state.clone(), l)));
        loop {
            let accepted = tokio::select! {
                _ = state.shutdown.cancelled() => break,
                r = self.listener.accept() => r,
            };
            let (mut stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let state = state.clone();
                    tracker.spawn(async move {
                        serve_connection(state, stream, peer).await;
                        drop(permit);
                    });
                }
                // Full: the connection may still be a CancelRequest, read
                // by a bounded number of tasks; past those, refused unread.
                Err(_) => match over_limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let state = state.clone();
                        tokio::spawn(async move {
                            serve_when_full(state, stream, peer).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(client = %peer, "refusing client: max_client_conn reached");
                        let refusal = ProxyError::too_many_clients();
                        state.metrics.client_refused(&refusal);
                        tokio::spawn(async move {
                            let mut out = BytesMut::new();
                            messages::error_response(&mut out, &refusal);
                            let _ = stream.write_all(&out).await;
                        });
                    }
                },
            }
        }
        drop(self.listener);
        tracker.close();
        let timeout = state.loaded().config.server.shutdown_timeout;
        tracing::info!(sessions = tracker.len(), ?timeout, "draining");
        if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
            tracing::warn!(
                sessions = tracker.len(),
                "shutdown timeout: closing remaining sessions"
            );
            state.force_close.cancel();
            // Longer than a session takes to deliver a server cancel
            // (`send_cancel` is bounded at 10 s): a statement cut off must
            // not run on after the process has exited.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(11), tracker.wait()).await;
        }
        for pool in state.pools().values() {
            pool.close_idle();
        }
        if let Some(h) = http {
            h.abort();
        }
        Ok(())
    }
}

/// Re-reads the config file on every SIGHUP; a broken file changes nothing.
async fn reload_on_sighup(state: Arc<ProxyState>, path: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install SIGHUP handler; reload disabled");
        return;
    };
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            r = hup.recv() => if r.is_none() { return },
        }
        reload(&state, &path);
    }
}

/// Loads, validates and swaps in the config at `path`.
pub fn reload(state: &Arc<ProxyState>, path: &std::path::Path) -> bool {
    reload_report(state, path).is_ok()
}

/// [`reload`], returning the new generation or every error (as logged), and
/// counting the outcome in `tenantgate_config_reloads_total`.
pub fn reload_report(
    state: &Arc<ProxyState>,
    path: &std::path::Path,
) -> Result<Reloaded, Vec<String>> {
    let outcome = reload_inner(state, path);
    state.metrics.reloaded(outcome.is_ok());
    outcome
}

/// A reload that took effect.
#[derive(Debug)]
pub struct Reloaded {
    /// The configuration generation now in force.
    pub generation: u64,
    /// Changed keys that keep their running values until a restart.
    pub kept: Vec<&'static str>,
}

fn reload_inner(state: &Arc<ProxyState>, path: &std::path::Path) -> Result<Reloaded, Vec<String>> {
    let config = crate::config::load_file(path).map_err(|errors| {
        for e in &errors.errors {
            tracing::error!(file = %errors.origin, error = %e, "reload refused; keeping the running configuration");
        }
        let origin = &errors.origin;
        errors.errors.iter().map(|e| format!("{origin}: {e}")).collect::<Vec<_>>()
    })?;
    // One reload at a time (SIGHUP and admin RELOADs may overlap): each
    // builds on the state the previous one left.
    let _one = state
        .reload_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut config = config;
    let running = state.loaded();
    let restart = running.config.restart_required(&config);
    if !restart.is_empty() {
        tracing::warn!(keys = ?restart, "reload: these keys keep their running values until a restart");
        config.keep_restart_keys(&running.config);
    }
    let generation = state.reload(config).map_err(|e| {
        tracing::error!(error = %e, "reload refused; keeping the running configuration");
        vec![e.to_string()]
    })?;
    tracing::info!(generation, "configuration reloaded");
    // New tables and changed shards: read the catalogs again.
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let state = state.clone();
        handle.spawn(async move { state.refresh_catalogs().await });
    }
    Ok(Reloaded {
        generation,
        kept: restart,
    })
}
