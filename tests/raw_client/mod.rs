//! A tiny raw Postgres wire-protocol client for tests: it sends whatever bytes
//! a test builds (well-formed or not) and reads back framed backend messages.
//!
//! Use with `mod raw_client;` from a file in `tests/`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a read waits before the test fails (or the read reports a timeout).
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Protocol 3.0 as a startup version code.
pub const PROTOCOL_3_0: (u16, u16) = (3, 0);

/// One backend message: its tag and its body (length word stripped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Message type byte.
    pub tag: u8,
    /// Everything after the length word.
    pub body: Vec<u8>,
}

impl Msg {
    /// The tag as a char, for readable assertions.
    pub fn tag_char(&self) -> char {
        self.tag as char
    }

    /// Whether this is an ErrorResponse.
    pub fn is_error(&self) -> bool {
        self.tag == b'E'
    }

    /// The fields of an ErrorResponse / NoticeResponse by their code byte.
    pub fn fields(&self) -> Vec<(u8, String)> {
        let mut out = Vec::new();
        let mut rest = &self.body[..];
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            out.push((code, String::from_utf8_lossy(&tail[..end]).into_owned()));
            rest = tail.get(end + 1..).unwrap_or(&[]);
        }
        out
    }

    /// One field of an ErrorResponse (`b'C'` SQLSTATE, `b'M'` message, `b'S'` severity).
    pub fn field(&self, code: u8) -> Option<String> {
        self.fields()
            .into_iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v)
    }

    /// SQLSTATE of an ErrorResponse.
    pub fn code(&self) -> Option<String> {
        if self.is_error() {
            self.field(b'C')
        } else {
            None
        }
    }

    /// Severity (non-localised `V`, else `S`) of an ErrorResponse.
    pub fn severity(&self) -> Option<String> {
        self.field(b'V').or_else(|| self.field(b'S'))
    }

    /// Message text of an ErrorResponse.
    pub fn message(&self) -> String {
        self.field(b'M').unwrap_or_default()
    }

    /// ParameterStatus name and value.
    pub fn parameter(&self) -> Option<(String, String)> {
        if self.tag != b'S' {
            return None;
        }
        let mut parts = self.body.split(|&b| b == 0);
        let name = String::from_utf8_lossy(parts.next()?).into_owned();
        let value = String::from_utf8_lossy(parts.next()?).into_owned();
        Some((name, value))
    }

    /// ReadyForQuery transaction status.
    pub fn ready_status(&self) -> Option<u8> {
        (self.tag == b'Z')
            .then(|| self.body.first().copied())
            .flatten()
    }

    /// CommandComplete tag text.
    pub fn command_tag(&self) -> Option<String> {
        (self.tag == b'C').then(|| cstr_lossy(&self.body))
    }

    /// The columns of a DataRow as text (`None` for NULL).
    pub fn data_row(&self) -> Option<Vec<Option<String>>> {
        if self.tag != b'D' {
            return None;
        }
        let mut b = &self.body[..];
        let n = b.get_i16();
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let len = b.get_i32();
            if len < 0 {
                out.push(None);
            } else {
                let (v, rest) = b.split_at(len as usize);
                out.push(Some(String::from_utf8_lossy(v).into_owned()));
                b = rest;
            }
        }
        Some(out)
    }
}

fn cstr_lossy(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// What a read saw instead of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEnd {
    /// The peer closed the connection (or reset it).
    Closed,
    /// Nothing arrived within the timeout.
    TimedOut,
}

/// A raw client connection.
pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    /// BackendKeyData (pid, secret) once logged in.
    pub key: Option<(i32, i32)>,
    /// ParameterStatus values seen during login.
    pub params: Vec<(String, String)>,
}

impl RawClient {
    /// Opens a TCP connection; nothing is sent.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        RawClient {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            key: None,
            params: Vec::new(),
        }
    }

    /// Connects to 127.0.0.1:`port`.
    pub async fn connect_port(port: u16) -> RawClient {
        Self::connect(SocketAddr::from(([127, 0, 0, 1], port))).await
    }

    /// Connects, sends a protocol-3.0 StartupMessage for `user`/`db` and
    /// authenticates; panics unless the login ends in ReadyForQuery.
    pub async fn login(port: u16, user: &str, password: &str, db: &str) -> RawClient {
        let mut c = Self::connect_port(port).await;
        c.send(&startup_message(3, 0, &[("user", user), ("database", db)]))
            .await;
        if let Err(e) = c.authenticate(user, password).await {
            panic!("raw login as {user} to port {port}/{db} failed: {e:?}");
        }
        c
    }

    /// Writes raw bytes; errors (peer gone) are returned, not panicked on.
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Writes raw bytes, panicking when the peer is gone.
    pub async fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_send(bytes).await {
            panic!("raw client write failed: {e}");
        }
    }

    /// Reads one byte that is not framed (the answer to SSLRequest / GSSENCRequest).
    pub async fn read_byte(&mut self) -> Result<u8, ReadEnd> {
        if !self.buf.is_empty() {
            return Ok(self.buf.get_u8());
        }
        let mut b = [0u8; 1];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut b)).await {
            Err(_) => Err(ReadEnd::TimedOut),
            Ok(Ok(0)) | Ok(Err(_)) => Err(ReadEnd::Closed),
            Ok(Ok(_)) => Ok(b[0]),
        }
    }

    /// Bytes received but not yet framed into messages.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Reads the next message within `timeout`.
    pub async fn read_msg_within(&mut self, timeout: Duration) -> Result<Msg, ReadEnd> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                assert!(len >= 4, "backend sent a message with length {len}");
                let total = len as usize + 1;
                if self.buf.len() >= total {
                    let mut m = self.buf.split_to(total);
                    let tag = m.get_u8();
                    m.advance(4);
                    return Ok(Msg {
                        tag,
                        body: m.to_vec(),
                    });
                }
                self.buf.reserve(total - self.buf.len());
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(ReadEnd::TimedOut),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(ReadEnd::Closed),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Reads the next message (default timeout).
    pub async fn read_msg(&mut self) -> Result<Msg, ReadEnd> {
        self.read_msg_within(READ_TIMEOUT).await
    }

    /// Reads the next message, panicking on close or timeout.
    pub async fn expect_msg(&mut self) -> Msg {
        match self.read_msg().await {
            Ok(m) => m,
            Err(e) => panic!("expected a backend message, got {e:?}"),
        }
    }

    /// Runs the authentication exchange after a StartupMessage was sent, then
    /// reads ParameterStatus / BackendKeyData up to ReadyForQuery. Returns the
    /// messages after AuthenticationOk, or the ErrorResponse (or end) that
    /// stopped the login. NegotiateProtocolVersion is returned too (first).
    pub async fn authenticate(&mut self, user: &str, password: &str) -> Result<Vec<Msg>, LoginEnd> {
        let mut seen = Vec::new();
        let mut scram: Option<ScramSha256> = None;
        loop {
            let m = self.read_msg().await.map_err(LoginEnd::Read)?;
            match m.tag {
                b'E' => return Err(LoginEnd::Error(m)),
                b'v' => seen.push(m),
                b'R' => {
                    let mut b = &m.body[..];
                    match b.get_i32() {
                        0 => break,
                        3 => self.send(&password_message(password.as_bytes())).await,
                        5 => {
                            let salt = [b[0], b[1], b[2], b[3]];
                            let hash = md5_hash(user.as_bytes(), password.as_bytes(), salt);
                            self.send(&password_message(hash.as_bytes())).await;
                        }
                        10 => {
                            let mechs: Vec<&[u8]> =
                                b.split(|&c| c == 0).filter(|s| !s.is_empty()).collect();
                            assert!(
                                mechs.contains(&&b"SCRAM-SHA-256"[..]),
                                "SCRAM-SHA-256 not offered: {mechs:?}"
                            );
                            let s = ScramSha256::new(
                                password.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            self.send(&sasl_initial_response("SCRAM-SHA-256", s.message()))
                                .await;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().expect("SASLContinue before SASL");
                            s.update(b).map_err(|e| LoginEnd::Scram(e.to_string()))?;
                            let msg = s.message().to_vec();
                            self.send(&sasl_response(&msg)).await;
                        }
                        12 => {
                            let s = scram.as_mut().expect("SASLFinal before SASL");
                            s.finish(b).map_err(|e| LoginEnd::Scram(e.to_string()))?;
                        }
                        other => panic!("unexpected authentication request {other}"),
                    }
                }
                other => panic!(
                    "unexpected message '{}' during authentication",
                    other as char
                ),
            }
        }
        loop {
            let m = self.read_msg().await.map_err(LoginEnd::Read)?;
            match m.tag {
                b'S' => {
                    if let Some(p) = m.parameter() {
                        self.params.push(p);
                    }
                }
                b'K' => {
                    let mut b = &m.body[..];
                    self.key = Some((b.get_i32(), b.get_i32()));
                }
                b'E' => return Err(LoginEnd::Error(m)),
                _ => {}
            }
            let done = m.tag == b'Z';
            seen.push(m);
            if done {
                return Ok(seen);
            }
        }
    }

    /// The data rows among the messages up to ReadyForQuery.
    pub async fn rows_until_ready(&mut self) -> Vec<Vec<Option<String>>> {
        self.until_ready()
            .await
            .iter()
            .filter_map(Msg::data_row)
            .collect()
    }

    /// Reads messages until ReadyForQuery (included).
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.expect_msg().await;
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Sends a simple Query and collects the answer up to ReadyForQuery.
    pub async fn query(&mut self, sql: &str) -> Vec<Msg> {
        self.send(&query_msg(sql)).await;
        self.until_ready().await
    }

    /// Sends a simple Query and returns the first column of every row;
    /// panics on an error.
    pub async fn query_values(&mut self, sql: &str) -> Vec<Option<String>> {
        let msgs = self.query(sql).await;
        if let Some(e) = msgs.iter().find(|m| m.is_error()) {
            panic!("query {sql:?} failed: {:?}", e.fields());
        }
        msgs.iter()
            .filter_map(Msg::data_row)
            .map(|r| r.into_iter().next().flatten())
            .collect()
    }

    /// Reads until an ErrorResponse and returns its SQLSTATE; panics if the
    /// connection ends or times out first.
    pub async fn expect_error_code(&mut self) -> String {
        self.expect_error().await.code().unwrap_or_default()
    }

    /// Reads until an ErrorResponse and returns it.
    pub async fn expect_error(&mut self) -> Msg {
        loop {
            match self.read_msg().await {
                Ok(m) if m.is_error() => return m,
                Ok(_) => {}
                Err(e) => panic!("expected an ErrorResponse, got {e:?}"),
            }
        }
    }

    /// Reads until the connection closes (within `timeout`), returning the
    /// messages seen; panics if it stays open.
    pub async fn expect_closed_within(&mut self, timeout: Duration) -> Vec<Msg> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_msg_within(left).await {
                Ok(m) => seen.push(m),
                Err(ReadEnd::Closed) => return seen,
                Err(ReadEnd::TimedOut) => {
                    panic!("connection still open after {timeout:?}; saw {seen:?}")
                }
            }
        }
    }

    /// [`RawClient::expect_closed_within`] with the default timeout.
    pub async fn expect_closed(&mut self) -> Vec<Msg> {
        self.expect_closed_within(READ_TIMEOUT).await
    }

    /// Sends Terminate and waits for the close.
    pub async fn terminate(mut self) {
        self.send(&terminate()).await;
        self.expect_closed().await;
    }

    /// The underlying socket (e.g. to drop it abruptly).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

/// Why a login did not complete.
#[derive(Debug)]
pub enum LoginEnd {
    /// The server answered with an ErrorResponse.
    Error(Msg),
    /// The connection closed or timed out.
    Read(ReadEnd),
    /// The SCRAM exchange failed on the client side.
    Scram(String),
}

impl LoginEnd {
    /// The ErrorResponse, panicking for any other end.
    pub fn error(self) -> Msg {
        match self {
            LoginEnd::Error(m) => m,
            other => panic!("expected an ErrorResponse, login ended with {other:?}"),
        }
    }
}

/// `Result::expect_err` for values that are not `Debug` (tokio-postgres's
/// `Client`).
pub trait MustFail<E> {
    /// The error, or a panic saying `why`.
    fn must_fail(self, why: &str) -> E;
}

impl<T, E> MustFail<E> for Result<T, E> {
    fn must_fail(self, why: &str) -> E {
        match self {
            Ok(_) => panic!("{why}"),
            Err(e) => e,
        }
    }
}

// -------------------------------------------------------------- encoders

/// A tagged message: tag, length, body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// An untagged startup-phase packet with `code`.
pub fn startup_packet(code: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&((body.len() + 8) as i32).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A StartupMessage for protocol `major.minor` with `params`.
pub fn startup_message(major: u16, minor: u16, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    startup_packet((i32::from(major) << 16) | i32::from(minor), &body)
}

/// SSLRequest.
pub fn ssl_request() -> Vec<u8> {
    startup_packet(80_877_103, &[])
}

/// GSSENCRequest.
pub fn gssenc_request() -> Vec<u8> {
    startup_packet(80_877_104, &[])
}

/// CancelRequest for BackendKeyData (`pid`, `secret`).
pub fn cancel_request(pid: i32, secret: i32) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend_from_slice(&secret.to_be_bytes());
    startup_packet(80_877_102, &body)
}

/// PasswordMessage (a C string: clear text or md5 hash).
pub fn password_message(password: &[u8]) -> Vec<u8> {
    let mut body = password.to_vec();
    body.push(0);
    message(b'p', &body)
}

/// SASLResponse (raw mechanism data, no terminator).
pub fn sasl_response(data: &[u8]) -> Vec<u8> {
    message(b'p', data)
}

/// SASLInitialResponse.
pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Vec<u8> {
    let mut body = mechanism.as_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(&(data.len() as i32).to_be_bytes());
    body.extend_from_slice(data);
    message(b'p', &body)
}

fn cstr(body: &mut Vec<u8>, s: &str) {
    body.extend_from_slice(s.as_bytes());
    body.push(0);
}

/// Query.
pub fn query_msg(sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, sql);
    message(b'Q', &body)
}

/// Parse with no parameter types.
pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, name);
    cstr(&mut body, sql);
    body.put_i16(0);
    message(b'P', &body)
}

/// Bind with text parameters (`None` = NULL) and text results.
pub fn bind(portal: &str, statement: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    cstr(&mut body, statement);
    body.put_i16(0);
    body.put_i16(params.len() as i16);
    for p in params {
        match p {
            Some(v) => {
                body.put_i32(v.len() as i32);
                body.extend_from_slice(v.as_bytes());
            }
            None => body.put_i32(-1),
        }
    }
    body.put_i16(0);
    message(b'B', &body)
}

/// Describe of a statement (`b'S'`) or portal (`b'P'`).
pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    cstr(&mut body, name);
    message(b'D', &body)
}

/// Execute of `portal` with no row limit.
pub fn execute(portal: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    body.put_i32(0);
    message(b'E', &body)
}

/// Close of a statement (`b'S'`) or portal (`b'P'`).
pub fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    cstr(&mut body, name);
    message(b'C', &body)
}

/// Sync.
pub fn sync() -> Vec<u8> {
    message(b'S', &[])
}

/// Flush.
pub fn flush() -> Vec<u8> {
    message(b'H', &[])
}

/// Terminate.
pub fn terminate() -> Vec<u8> {
    message(b'X', &[])
}

/// CopyData.
pub fn copy_data(data: &[u8]) -> Vec<u8> {
    message(b'd', data)
}

/// CopyDone.
pub fn copy_done() -> Vec<u8> {
    message(b'c', &[])
}

/// Concatenates messages into one write.
pub fn batch(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// The tags of `msgs` as a string, e.g. `"12DC"`.
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(Msg::tag_char).collect()
}
