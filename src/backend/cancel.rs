//! Sending a CancelRequest to a server on behalf of a client.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a new connection to `addr`, sends a CancelRequest for the server
/// process `(pid, secret)` and waits until the server closes the connection
/// (which it does once it has delivered the cancel signal).
pub async fn send_cancel(addr: SocketAddr, key: (i32, i32)) -> std::io::Result<()> {
    // Bounded: a session releasing its connection waits for cancels in flight.
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::cancel_request(key.0, key.1, &mut out);
    stream.write_all(&out).await?;
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut sink)).await;
    Ok(())
}
