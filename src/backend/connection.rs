//! Opening and authenticating a connection to a Postgres server, and the state
//! tenantgate keeps about it while it lives in a pool.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use rustc_hash::FxHashSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::framing::peek_header;
use crate::protocol::messages::{parse_error_fields, tag};

/// Largest message accepted from a server during startup.
const MAX_STARTUP_MESSAGE: usize = 1 << 20;

/// Where and as whom to log in to a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTarget {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login role.
    pub user: String,
    /// Password, when the server asks for one.
    pub password: Option<String>,
    /// Database name.
    pub dbname: String,
}

/// Why a server connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// TCP connect or I/O failed.
    #[error("i/o error talking to {addr}: {source}")]
    Io {
        /// host:port.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Connecting and authenticating took too long.
    #[error("timed out connecting to {0}")]
    Timeout(String),
    /// The server refused us with an ErrorResponse.
    #[error("server {addr} refused the connection: {code} {message}")]
    Rejected {
        /// host:port.
        addr: String,
        /// SQLSTATE.
        code: String,
        /// Server message.
        message: String,
    },
    /// The server asked for something we cannot do or sent garbage.
    #[error("server {addr}: {what}")]
    Protocol {
        /// host:port.
        addr: String,
        /// What went wrong.
        what: String,
    },
}

/// An authenticated server connection, idle between transactions or checked
/// out by one client session.
#[derive(Debug)]
pub struct ServerConn {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read from the server and not yet handled.
    pub read_buf: BytesMut,
    /// ParameterStatus values as last reported by the server.
    pub params: Vec<(String, String)>,
    /// The server's own cancel key (pid, secret).
    pub backend_key: (i32, i32),
    /// Address the cancel request for this connection must go to.
    pub addr: SocketAddr,
    /// Proxy-side prepared statement ids known to exist on this server
    /// (ids are the proxy's own counter, so a plain multiplicative hash
    /// does; one lookup per Bind).
    pub prepared: FxHashSet<u64>,
    /// Statement ids that may or may not exist on this server: prepared
    /// before a `DEALLOCATE ALL` / `DISCARD ALL` whose outcome is not known
    /// yet, or whose Parse failed. Prepared again after a Close of the name
    /// (closing a name that does not exist is no error).
    pub doubtful: FxHashSet<u64>,
    /// Fingerprint of the session settings applied on this connection
    /// (0: as the server started it).
    pub settings_fingerprint: u64,
    /// Which session's unnamed statement this connection holds, as
    /// (session id, that session's Parse number); `None` when unknown.
    pub unnamed_owner: Option<(u64, u64)>,
    /// When the connection was opened.
    pub created: Instant,
    /// The same on the wall clock, in microseconds since the Unix epoch (as
    /// the admin console shows it; kept so that a checkout reads no clock).
    pub created_unix_us: i64,
    /// When the connection was last returned to its pool.
    pub last_used: Instant,
    /// Unique id for logs and the admin console.
    pub id: u64,
}

/// `t` in microseconds since the Unix epoch (0 before it), as server
/// connections record when they were opened.
pub fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The time `us` microseconds after the Unix epoch (see [`unix_micros`]).
pub fn from_unix_micros(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)
}

impl ServerConn {
    /// Connects to `target` and authenticates, within `timeout`.
    pub async fn connect(
        target: &BackendTarget,
        id: u64,
        timeout: Duration,
    ) -> Result<ServerConn, BackendError> {
        let addr_text = format!("{}:{}", target.host, target.port);
        match tokio::time::timeout(timeout, Self::connect_inner(target, id, &addr_text)).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout(addr_text)),
        }
    }

    async fn connect_inner(
        target: &BackendTarget,
        id: u64,
        addr_text: &str,
    ) -> Result<ServerConn, BackendError> {
        let io = |source| BackendError::Io {
            addr: addr_text.to_string(),
            source,
        };
        let proto = |what: &str| BackendError::Protocol {
            addr: addr_text.to_string(),
            what: what.to_string(),
        };
        let stream = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let addr = stream.peer_addr().map_err(io)?;
        let mut conn = ServerConn {
            stream,
            read_buf: BytesMut::with_capacity(16 * 1024),
            params: Vec::new(),
            backend_key: (0, 0),
            addr,
            prepared: FxHashSet::default(),
            doubtful: FxHashSet::default(),
            settings_fingerprint: 0,
            unnamed_owner: None,
            created: Instant::now(),
            created_unix_us: unix_micros(SystemTime::now()),
            last_used: Instant::now(),
            id,
        };
        let mut out = BytesMut::new();
        frontend::startup_message(
            [
                ("user", target.user.as_str()),
                ("database", target.dbname.as_str()),
                // The rewriter reads strings as standard strings. Sent at
                // startup, this outranks any default the server, database
                // or role has (`ALTER ROLE … IN DATABASE … SET`, which a
                // dedicated tenant on the same cluster and role could
                // run), and is what `RESET` and `DISCARD ALL` return to.
                ("standard_conforming_strings", "on"),
            ],
            &mut out,
        )
        .map_err(io)?;
        conn.stream.write_all(&out).await.map_err(io)?;
        out.clear();

        let mut scram: Option<ScramSha256> = None;
        loop {
            let (t, msg) = conn.read_message().await.map_err(io)?;
            let body = &msg[5..];
            match t {
                tag::AUTHENTICATION => {
                    if body.len() < 4 {
                        return Err(proto("short authentication message"));
                    }
                    let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    let data = &body[4..];
                    let password = || {
                        target.password.as_deref().ok_or_else(|| {
                            proto("server asked for a password but the shard url has none")
                        })
                    };
                    match code {
                        0 => {}
                        3 => {
                            frontend::password_message(password()?.as_bytes(), &mut out)
                                .map_err(io)?;
                        }
                        5 => {
                            if data.len() < 4 {
                                return Err(proto("short md5 salt"));
                            }
                            let salt = [data[0], data[1], data[2], data[3]];
                            let hashed = postgres_protocol::authentication::md5_hash(
                                target.user.as_bytes(),
                                password()?.as_bytes(),
                                salt,
                            );
                            frontend::password_message(hashed.as_bytes(), &mut out).map_err(io)?;
                        }
                        10 => {
                            let offers_scram =
                                data.split(|&b| b == 0).any(|m| m == b"SCRAM-SHA-256");
                            if !offers_scram {
                                return Err(proto("server offers no supported SASL mechanism"));
                            }
                            let s = ScramSha256::new(
                                password()?.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut out)
                                .map_err(io)?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| proto("unexpected SASL continue"))?;
                            s.update(data).map_err(|e| proto(&format!("SCRAM: {e}")))?;
                            frontend::sasl_response(s.message(), &mut out).map_err(io)?;
                        }
                        12 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| proto("unexpected SASL final"))?;
                            s.finish(data).map_err(|e| proto(&format!("SCRAM: {e}")))?;
                        }
                        other => {
                            return Err(proto(&format!(
                                "unsupported authentication method {other}"
                            )));
                        }
                    }
                    if !out.is_empty() {
                        conn.stream.write_all(&out).await.map_err(io)?;
                        out.clear();
                    }
                }
                tag::PARAMETER_STATUS => conn.record_parameter(&msg),
                tag::BACKEND_KEY_DATA if body.len() >= 8 => {
                    conn.backend_key = (
                        i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                        i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                    );
                }
                tag::READY_FOR_QUERY => return Ok(conn),
                tag::ERROR_RESPONSE => {
                    let (code, message) = parse_error_fields(&msg);
                    return Err(BackendError::Rejected {
                        addr: addr_text.to_string(),
                        code,
                        message,
                    });
                }
                tag::NOTICE_RESPONSE | tag::NEGOTIATE_PROTOCOL_VERSION => {}
                _ => return Err(proto("unexpected message during startup")),
            }
        }
    }

    /// Reads one whole message (used only outside the forwarding loop).
    pub async fn read_message(&mut self) -> std::io::Result<(u8, BytesMut)> {
        loop {
            if let Some(h) = peek_header(&self.read_buf, MAX_STARTUP_MESSAGE)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.message))?
                && self.read_buf.len() >= h.total_len
            {
                let msg = self.read_buf.split_to(h.total_len);
                return Ok((h.tag, msg));
            }
            let n = self.stream.read_buf(&mut self.read_buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Records a ParameterStatus message (whole message bytes).
    pub fn record_parameter(&mut self, msg: &[u8]) {
        crate::protocol::messages::record_parameter(&mut self.params, msg);
    }

    /// Runs simple-protocol statements (each its own Query, pipelined) and
    /// waits for every ReadyForQuery. Errors from the statements are returned
    /// as the first SQLSTATE seen; ParameterStatus updates are recorded.
    pub async fn run_simple(
        &mut self,
        statements: &[&str],
    ) -> std::io::Result<Option<(String, String)>> {
        let mut out = BytesMut::new();
        for s in statements {
            crate::protocol::messages::query(&mut out, s);
        }
        // A simple Query replaces the unnamed statement.
        self.unnamed_owner = None;
        self.stream.write_all(&out).await?;
        let mut remaining = statements.len();
        let mut first_error = None;
        while remaining > 0 {
            let (t, msg) = self.read_message().await?;
            match t {
                tag::READY_FOR_QUERY => remaining -= 1,
                tag::PARAMETER_STATUS => self.record_parameter(&msg),
                tag::ERROR_RESPONSE if first_error.is_none() => {
                    first_error = Some(parse_error_fields(&msg));
                }
                _ => {}
            }
        }
        Ok(first_error)
    }

    /// Runs one simple-protocol query that returns one row and reads that
    /// row's text values (`None` for NULL), or the server's error (SQLSTATE
    /// and message). ParameterStatus updates are recorded.
    pub async fn query_row(
        &mut self,
        sql: &str,
    ) -> std::io::Result<Result<Vec<Option<String>>, (String, String)>> {
        let mut out = BytesMut::new();
        crate::protocol::messages::query(&mut out, sql);
        self.unnamed_owner = None;
        self.stream.write_all(&out).await?;
        let mut row = None;
        let mut error = None;
        loop {
            let (t, msg) = self.read_message().await?;
            match t {
                tag::READY_FOR_QUERY => break,
                tag::PARAMETER_STATUS => self.record_parameter(&msg),
                tag::DATA_ROW if row.is_none() => row = Some(data_row_values(&msg)),
                tag::ERROR_RESPONSE if error.is_none() => error = Some(parse_error_fields(&msg)),
                _ => {}
            }
        }
        Ok(match (error, row) {
            (Some(e), _) => Err(e),
            (None, Some(Some(values))) => Ok(values),
            (None, _) => Err(("XX000".into(), "no row or a malformed row".into())),
        })
    }

    /// Politely closes the connection.
    pub async fn terminate(mut self) {
        let mut out = BytesMut::new();
        crate::protocol::messages::terminate(&mut out);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.write_all(&out)).await;
    }

    /// Whether nothing unread is buffered (a clean connection to pool).
    pub fn is_drained(&self) -> bool {
        !self.read_buf.has_remaining()
    }
}

/// The values of a DataRow message (text format; `None` for NULL), or
/// `None` if it is malformed.
fn data_row_values(msg: &[u8]) -> Option<Vec<Option<String>>> {
    let mut b = msg.get(5..)?;
    let count = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
    b = &b[2..];
    let mut values = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = i32::from_be_bytes(b.get(..4)?.try_into().ok()?);
        b = &b[4..];
        if len < 0 {
            values.push(None);
            continue;
        }
        let len = usize::try_from(len).ok()?;
        values.push(Some(String::from_utf8_lossy(b.get(..len)?).into_owned()));
        b = &b[len..];
    }
    Some(values)
}
