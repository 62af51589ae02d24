//! The startup phase of a client connection: SSL/GSS negotiation (declined:
//! TLS is not configured), the StartupMessage, protocol version negotiation,
//! and password authentication (SCRAM-SHA-256 or md5) against `[[users]]`.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::AuthMethod;
use crate::error::ProxyError;
use crate::protocol::auth::{
    AuthError, SCRAM_SHA_256, ScramServer, ScramVerifier, md5_salt, md5_verify, parse_sasl_initial,
};
use crate::protocol::framing::peek_header;
use crate::protocol::messages::{self, ftag};
use crate::protocol::startup::{Startup, StartupPacket, parse_startup, peek_startup_len};
use crate::state::Loaded;

/// How long a client may take from connecting to being authenticated.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest password / SASL message accepted.
const MAX_AUTH_MESSAGE: usize = 16 * 1024;

/// An authenticated client.
#[derive(Debug, Clone)]
pub struct Login {
    /// User name from `[[users]]`.
    pub user: String,
    /// Database asked for.
    pub database: String,
    /// Startup parameters other than user and database, in order.
    pub params: Vec<(String, String)>,
}

/// What a new connection turned out to be.
#[derive(Debug)]
pub enum Opening {
    /// An authenticated session.
    Session(Login),
    /// A CancelRequest for another session.
    Cancel {
        /// BackendKeyData pid.
        pid: i32,
        /// BackendKeyData secret.
        secret: i32,
    },
    /// A connection closed without an answer, as Postgres closes it (a
    /// CancelRequest of the wrong length).
    Dropped,
}

/// The opening of a connection while `max_client_conn` clients are
/// connected: a CancelRequest is still carried out (Postgres reads one
/// before it counts connections); a startup packet gets 53300.
pub async fn open_when_full(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Opening, ProxyError> {
    match startup_packet(stream, buf).await? {
        Ok(_) => Err(ProxyError::too_many_clients()),
        Err(done) => Ok(done),
    }
}

/// The packets before the startup packet (encryption requests, declined),
/// then the startup packet, or what ends the connection without a session.
async fn startup_packet(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Result<Startup, Opening>, ProxyError> {
    // Each encryption request is answered once; a second one of a kind is
    // read as the unknown protocol version it encodes, as Postgres does (a
    // client cannot keep the handshake going by asking again and again).
    let (mut ssl_asked, mut gss_asked) = (false, false);
    loop {
        let packet = read_startup_packet(stream, buf).await?;
        match parse_startup(&packet)? {
            request @ (StartupPacket::SslRequest | StartupPacket::GssEncRequest) => {
                let (asked, minor) = match request {
                    StartupPacket::SslRequest => (&mut ssl_asked, 5679),
                    _ => (&mut gss_asked, 5680),
                };
                if std::mem::replace(asked, true) {
                    return Err(ProxyError::unsupported_protocol(1234, minor));
                }
                // Data sent before our answer would be read as plaintext after
                // it: refuse it, as Postgres does.
                if !buf.is_empty() {
                    return Err(ProxyError::protocol_violation(
                        "received unencrypted data after SSL request",
                    ));
                }
                write(stream, b"N").await?;
            }
            StartupPacket::Cancel { pid, secret } => {
                return Ok(Err(Opening::Cancel { pid, secret }));
            }
            StartupPacket::MalformedCancel => return Ok(Err(Opening::Dropped)),
            StartupPacket::Startup(s) => return Ok(Ok(s)),
        }
    }
}

/// Runs the startup phase. `buf` keeps any bytes read past the handshake.
pub async fn open(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    loaded: &Loaded,
) -> Result<Opening, ProxyError> {
    let startup = match startup_packet(stream, buf).await? {
        Ok(startup) => startup,
        Err(done) => return Ok(done),
    };
    let mut out = BytesMut::new();
    let unknown = startup.unknown_protocol_options();
    if startup.minor > 0 || !unknown.is_empty() {
        messages::negotiate_protocol_version(&mut out, 0, &unknown);
    }
    let user = startup
        .get("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(ProxyError::no_user_in_startup)?
        .to_string();
    // No database (or an empty name) means the user's name, as in Postgres.
    let database = startup
        .get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_string();
    if let Some(value) = startup.get("replication") {
        check_replication(value)?;
    }
    let params = startup
        .params
        .iter()
        .filter(|(k, _)| k != "user" && k != "database" && !k.starts_with("_pq_."))
        .cloned()
        .collect();

    let user_config = loaded.config.user(&user);
    let stored = loaded.passwords.get(&user);
    let method = user_config.map(|u| u.auth).unwrap_or_default();
    let verified = match method {
        AuthMethod::ScramSha256 => {
            let verifier = stored
                .and_then(|p| p.scram_verifier())
                .cloned()
                .unwrap_or_else(|| ScramVerifier::unknown_user(&user));
            scram_exchange(stream, buf, &mut out, &verifier).await?
        }
        AuthMethod::Md5 => {
            let salt = md5_salt();
            messages::auth_md5(&mut out, salt);
            write(stream, &out).await?;
            out.clear();
            let response = read_password_message(stream, buf).await?;
            // One C string filling the message, as Postgres requires.
            if response.iter().position(|&b| b == 0) != Some(response.len().wrapping_sub(1)) {
                return Err(ProxyError::protocol_violation(
                    "invalid password packet size",
                ));
            }
            match stored {
                Some(p) => md5_verify(&user, p, salt, &response).is_ok(),
                None => false,
            }
        }
    };
    if !verified || user_config.is_none() {
        return Err(ProxyError::auth_failed(&user));
    }
    let admin_db = &loaded.config.server.admin_database;
    if database == *admin_db {
        if !user_config.is_some_and(|u| u.admin) {
            return Err(ProxyError::admin_not_allowed(&user));
        }
    } else if database != loaded.config.server.database {
        return Err(ProxyError::unknown_database(&database));
    }
    messages::auth_ok(&mut out);
    write(stream, &out).await?;
    Ok(Opening::Session(Login {
        user,
        database,
        params,
    }))
}

/// SCRAM-SHA-256; returns whether the proof was right.
async fn scram_exchange(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    verifier: &ScramVerifier,
) -> Result<bool, ProxyError> {
    messages::auth_sasl(out, &[SCRAM_SHA_256]);
    write(stream, out).await?;
    out.clear();
    let mut server = ScramServer::new(verifier);
    let first = read_password_message(stream, buf).await?;
    let (mechanism, data) = parse_sasl_initial(&first).map_err(auth_protocol)?;
    let later;
    let data = match data {
        Some(data) => data,
        // No initial response (length -1): as Postgres does, an empty
        // challenge, answered by the client-first-message. (A mechanism
        // that is not offered is refused at once, below.)
        None if mechanism == SCRAM_SHA_256 => {
            messages::auth_sasl_continue(out, &[]);
            write(stream, out).await?;
            out.clear();
            later = read_password_message(stream, buf).await?;
            &later[..]
        }
        None => &[],
    };
    let server_first = server
        .client_first(mechanism, data)
        .map_err(auth_protocol)?;
    messages::auth_sasl_continue(out, &server_first);
    write(stream, out).await?;
    out.clear();
    let fin = read_password_message(stream, buf).await?;
    match server.client_final(&fin) {
        Ok(server_final) => {
            messages::auth_sasl_final(out, &server_final);
            Ok(true)
        }
        Err(AuthError::WrongPassword) => Ok(false),
        Err(e) => Err(auth_protocol(e)),
    }
}

fn auth_protocol(e: AuthError) -> ProxyError {
    ProxyError::auth_protocol(e.to_string())
}

async fn write(stream: &mut TcpStream, data: &[u8]) -> Result<(), ProxyError> {
    stream
        .write_all(data)
        .await
        .map_err(|_| ProxyError::client_gone("startup"))
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), ProxyError> {
    match stream.read_buf(buf).await {
        Ok(0) | Err(_) => Err(ProxyError::client_gone("startup")),
        Ok(_) => Ok(()),
    }
}

async fn read_startup_packet(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<BytesMut, ProxyError> {
    loop {
        if let Some(len) = peek_startup_len(buf)?
            && buf.len() >= len
        {
            return Ok(buf.split_to(len));
        }
        read_more(stream, buf).await?;
    }
}

/// Reads a PasswordMessage / SASL response and returns its body.
async fn read_password_message(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<BytesMut, ProxyError> {
    loop {
        // Too long a message is a protocol violation here, as in Postgres.
        let header = peek_header(buf, MAX_AUTH_MESSAGE)
            .map_err(|_| ProxyError::protocol_violation("invalid message length"))?;
        if let Some(h) = header {
            if h.tag != ftag::PASSWORD {
                return Err(ProxyError::auth_protocol(format!(
                    "expected password response, got message type '{}'",
                    h.tag.escape_ascii()
                )));
            }
            if buf.len() >= h.total_len {
                let mut msg = buf.split_to(h.total_len);
                msg.advance(5);
                return Ok(msg);
            }
        }
        read_more(stream, buf).await?;
    }
}

/// The `replication` startup parameter: off is served as a normal session;
/// on (or `database`) asks for a WAL sender, which tenantgate is not (0A000);
/// anything else is refused as Postgres refuses it (22023).
fn check_replication(value: &str) -> Result<(), ProxyError> {
    let v = value.to_ascii_lowercase();
    // Postgres's boolean spellings, unique prefixes included.
    let prefix_of = |word: &str| !v.is_empty() && word.starts_with(v.as_str());
    if v == "0" || v == "off" || v == "of" || prefix_of("false") || prefix_of("no") {
        Ok(())
    } else if v == "1" || v == "on" || v == "database" || prefix_of("true") || prefix_of("yes") {
        Err(ProxyError::replication_unsupported(value))
    } else {
        Err(ProxyError::invalid_startup_value("replication", value))
    }
}
