//! The query loop of one authenticated client. It frames what the client
//! sends, inspects only what pooling needs (Query, Parse, Bind, Describe,
//! Close, Sync, Terminate), forwards everything else byte for byte, and holds
//! a server connection from the first message of a transaction to the
//! ReadyForQuery (status `I`) that answers the client's last Sync.
//!
//! One task drives both sockets with non-blocking reads and writes, so a
//! client pipelining faster than it reads can never deadlock the proxy
//! against the server; each direction's buffer is bounded (back-pressure).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;

use super::cancel::CancelSlot;
use super::classify::{Effect, classify};
use super::prepared::{ClientStatements, NOOP_NAME, SERVER_NAME_PREFIX, Statement};
use super::settings::{Committed, Settings};
use crate::config::PoolMode;
use crate::error::ProxyError;
use crate::pool::{Checkout, Pool};
use crate::protocol::framing::{Header, peek_header, read_cstr};
use crate::protocol::messages::{self, ftag, tag};
use crate::state::ProxyState;

/// Stop reading a side while this much is waiting to be written to the other.
const HIGH_WATER: usize = 1 << 20;
/// Messages at least this large are streamed through instead of buffered whole.
const STREAM_THRESHOLD: usize = 64 * 1024;
/// Largest server message tenantgate buffers whole (it inspects these).
const MAX_SERVER_MESSAGE: usize = 1 << 30;
/// A server connection holding more prepared statements than this is cleared
/// (DEALLOCATE ALL) before its next use.
const MAX_PREPARED_PER_SERVER: usize = 5_000;

/// What a response the server will send for a Parse we forwarded should become.
#[derive(Debug, Clone)]
enum ParseAction {
    /// The client's own Parse: forward ParseComplete (the statement, if named).
    Forward(Option<Arc<Statement>>),
    /// A Parse tenantgate injected to re-prepare a statement: swallow it.
    Swallow(Arc<Statement>),
}

/// What the CloseComplete for a Close we forwarded should become.
#[derive(Debug, Clone, Copy)]
enum CloseAction {
    /// Forward it.
    Forward,
    /// It stands in for a Parse of a statement the server already had.
    AsParseComplete,
}

/// Why the loop ended.
enum End {
    /// Terminate or EOF from the client.
    ClientGone,
}

/// One event from the sockets.
enum Event {
    ClientReadable,
    ServerReadable,
    ClientWritable,
    ServerWritable,
    Shutdown,
}

/// Per-session protocol accounting.
#[derive(Debug, Default)]
struct Tracker {
    /// ReadyForQuery messages still owed by the server.
    pending: u32,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: bool,
    /// Z-producing messages sent so far (Sync, Query, FunctionCall).
    sent: u64,
    /// ReadyForQuery messages received so far.
    answered: u64,
    /// Transaction status from the last ReadyForQuery.
    tx_status: u8,
    parse_q: VecDeque<(u64, ParseAction)>,
    close_q: VecDeque<(u64, CloseAction)>,
}

/// An authenticated client session.
pub struct Session {
    /// Session id for logs and the admin console.
    pub id: u64,
    state: Arc<ProxyState>,
    pool: Arc<Pool>,
    mode: PoolMode,
    max_message: usize,
    wait_timeout: std::time::Duration,
    client: TcpStream,
    client_in: BytesMut,
    to_client: BytesMut,
    to_server: BytesMut,
    server: Option<Checkout>,
    t: Tracker,
    settings: Settings,
    statements: ClientStatements,
    pin: Option<&'static str>,
    cancel: Arc<CancelSlot>,
    /// After a proxy-generated error in the extended protocol: discard until Sync.
    skip_until_sync: bool,
    /// Bytes of a large client message still to stream to the server.
    client_streaming: usize,
    /// Bytes of a large server message still to stream to the client.
    server_streaming: usize,
}

/// Everything a session needs at birth.
pub struct SessionParts {
    /// Session id.
    pub id: u64,
    /// Shared state.
    pub state: Arc<ProxyState>,
    /// The shard pool this session uses.
    pub pool: Arc<Pool>,
    /// Client socket.
    pub client: TcpStream,
    /// Bytes already read past the handshake.
    pub client_in: BytesMut,
    /// Settings from startup.
    pub settings: Settings,
    /// Cancel slot registered for this session.
    pub cancel: Arc<CancelSlot>,
    /// Server connection kept from login (session pooling only).
    pub server: Option<Checkout>,
}

impl Session {
    /// Builds a session ready to run.
    pub fn new(p: SessionParts) -> Session {
        let loaded = p.state.loaded();
        let server_cfg = &loaded.config.server;
        Session {
            id: p.id,
            mode: server_cfg.pool_mode,
            max_message: server_cfg.max_message_size,
            wait_timeout: server_cfg.query_wait_timeout,
            state: p.state,
            pool: p.pool,
            client: p.client,
            client_in: p.client_in,
            to_client: BytesMut::with_capacity(16 * 1024),
            to_server: BytesMut::with_capacity(4 * 1024),
            server: p.server,
            t: Tracker {
                tx_status: b'I',
                ..Tracker::default()
            },
            settings: p.settings,
            statements: ClientStatements::default(),
            pin: None,
            cancel: p.cancel,
            skip_until_sync: false,
            client_streaming: 0,
            server_streaming: 0,
        }
    }

    /// Serves the client until it leaves, then returns or closes the server
    /// connection as its state allows.
    pub async fn run(mut self) {
        let end = self.serve().await;
        if let Err(e) = &end {
            messages::error_response(&mut self.to_client, e);
            let _ = self.flush_client_blocking().await;
        }
        let clean_exit = matches!(end, Ok(End::ClientGone));
        self.finish_server(clean_exit).await;
    }

    async fn serve(&mut self) -> Result<End, ProxyError> {
        loop {
            if let Some(end) = self.process_client().await? {
                self.flush_client_blocking().await.ok();
                return Ok(end);
            }
            self.process_server()?;
            self.try_flush();
            if self.can_release() {
                self.release().await;
            }
            match self.wait().await {
                Event::Shutdown => return Err(ProxyError::shutting_down()),
                Event::ClientReadable => match self.client.try_read_buf(&mut self.client_in) {
                    Ok(0) => return Ok(End::ClientGone),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return Ok(End::ClientGone),
                },
                Event::ServerReadable => {
                    let Some(s) = self.server.as_mut() else {
                        continue;
                    };
                    match s.conn.stream.try_read_buf(&mut s.conn.read_buf) {
                        Ok(0) => return Err(self.server_lost()),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(self.server_lost()),
                    }
                }
                Event::ClientWritable => {
                    if let Err(e) = write_some(&self.client, &mut self.to_client)
                        && e.kind() != std::io::ErrorKind::WouldBlock
                    {
                        return Ok(End::ClientGone);
                    }
                }
                Event::ServerWritable => {
                    if let Some(s) = self.server.as_ref()
                        && let Err(e) = write_some(&s.conn.stream, &mut self.to_server)
                        && e.kind() != std::io::ErrorKind::WouldBlock
                    {
                        return Err(self.server_lost());
                    }
                }
            }
        }
    }

    fn server_lost(&mut self) -> ProxyError {
        tracing::warn!(
            session = self.id,
            shard = self.pool.shard(),
            "server connection lost"
        );
        self.server = None;
        ProxyError::server_connection_lost(self.pool.shard())
    }

    /// Waits for the next socket event worth handling.
    async fn wait(&self) -> Event {
        let server = self.server.as_ref().map(|s| &s.conn.stream);
        let read_client = self.to_server.len() < HIGH_WATER && self.to_client.len() < HIGH_WATER;
        let read_server = server.is_some() && self.to_client.len() < HIGH_WATER;
        let idle = self.server.is_none();
        tokio::select! {
            biased;
            _ = self.state.force_close.cancelled() => Event::Shutdown,
            _ = self.state.shutdown.cancelled(), if idle => Event::Shutdown,
            r = self.client.writable(), if !self.to_client.is_empty() => { let _ = r; Event::ClientWritable }
            r = maybe_writable(server), if !self.to_server.is_empty() => { let _ = r; Event::ServerWritable }
            r = maybe_readable(server), if read_server => { let _ = r; Event::ServerReadable }
            r = self.client.readable(), if read_client => { let _ = r; Event::ClientReadable }
        }
    }

    /// Writes whatever the sockets take right now, without waiting.
    fn try_flush(&mut self) {
        if !self.to_server.is_empty()
            && let Some(s) = self.server.as_ref()
        {
            let _ = write_some(&s.conn.stream, &mut self.to_server);
        }
        if !self.to_client.is_empty() {
            let _ = write_some(&self.client, &mut self.to_client);
        }
    }

    async fn flush_client_blocking(&mut self) -> std::io::Result<()> {
        while !self.to_client.is_empty() {
            self.client.writable().await?;
            match write_some(&self.client, &mut self.to_client) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    // ---- client → server -------------------------------------------------------

    /// Handles every complete message from the client. Returns `Some` when the
    /// session should end.
    async fn process_client(&mut self) -> Result<Option<End>, ProxyError> {
        loop {
            if self.client_streaming > 0 {
                let n = self.client_streaming.min(self.client_in.len());
                if n == 0 {
                    return Ok(None);
                }
                let chunk = self.client_in.split_to(n);
                self.to_server.extend_from_slice(&chunk);
                self.client_streaming -= n;
                continue;
            }
            if self.to_server.len() >= HIGH_WATER {
                return Ok(None);
            }
            let Some(h) = peek_header(&self.client_in, self.max_message)? else {
                return Ok(None);
            };
            if self.client_in.len() < h.total_len {
                // Stream a large CopyData instead of buffering it whole.
                if h.tag == ftag::COPY_DATA
                    && h.total_len >= STREAM_THRESHOLD
                    && self.server.is_some()
                {
                    self.client_streaming = h.total_len;
                    continue;
                }
                self.client_in.reserve(h.total_len - self.client_in.len());
                return Ok(None);
            }
            if h.tag == ftag::TERMINATE {
                return Ok(Some(End::ClientGone));
            }
            if self.skip_until_sync {
                self.client_in.advance(h.total_len);
                if h.tag == ftag::SYNC {
                    self.skip_until_sync = false;
                    messages::ready_for_query(&mut self.to_client, self.t.tx_status);
                }
                continue;
            }
            if self.server.is_none() {
                match h.tag {
                    // Nothing to flush, nothing to sync: answer locally.
                    ftag::FLUSH | ftag::COPY_DATA | ftag::COPY_DONE | ftag::COPY_FAIL => {
                        self.client_in.advance(h.total_len);
                        continue;
                    }
                    ftag::SYNC => {
                        self.client_in.advance(h.total_len);
                        messages::ready_for_query(&mut self.to_client, self.t.tx_status);
                        continue;
                    }
                    ftag::PARSE | ftag::CLOSE => {
                        let msg = self.client_in.split_to(h.total_len).freeze();
                        if self.answer_locally(h.tag, &msg)? {
                            continue;
                        }
                        // Not answerable here: put it back and take a server.
                        let mut rest = BytesMut::with_capacity(msg.len() + self.client_in.len());
                        rest.extend_from_slice(&msg);
                        rest.extend_from_slice(&self.client_in);
                        self.client_in = rest;
                    }
                    _ => {}
                }
                if let Err(e) = self.acquire().await {
                    if e.is_fatal() {
                        return Err(e);
                    }
                    self.client_in.advance(h.total_len);
                    messages::error_response(&mut self.to_client, &e);
                    if h.tag == ftag::QUERY || h.tag == ftag::FUNCTION_CALL {
                        messages::ready_for_query(&mut self.to_client, self.t.tx_status);
                    } else {
                        self.skip_until_sync = true;
                    }
                    continue;
                }
            }
            let msg = self.client_in.split_to(h.total_len).freeze();
            self.handle_client_message(h, msg)?;
        }
    }

    fn handle_client_message(&mut self, h: Header, msg: Bytes) -> Result<(), ProxyError> {
        match h.tag {
            ftag::QUERY => {
                self.on_query_text(&msg[5..msg.len().saturating_sub(1)]);
                self.to_server.extend_from_slice(&msg);
                self.expect_ready();
            }
            ftag::FUNCTION_CALL => {
                self.to_server.extend_from_slice(&msg);
                self.expect_ready();
            }
            ftag::SYNC => {
                self.to_server.extend_from_slice(&msg);
                self.expect_ready();
                self.t.unsynced = false;
            }
            ftag::PARSE => self.on_parse(&msg)?,
            ftag::BIND => self.on_bind(&msg)?,
            ftag::DESCRIBE => self.on_describe(&msg)?,
            ftag::CLOSE => self.on_close(&msg)?,
            ftag::EXECUTE | ftag::FLUSH => {
                self.to_server.extend_from_slice(&msg);
                self.t.unsynced = true;
            }
            ftag::COPY_DATA | ftag::COPY_DONE | ftag::COPY_FAIL => {
                self.to_server.extend_from_slice(&msg)
            }
            other => {
                return Err(ProxyError::protocol_violation(format!(
                    "invalid frontend message type '{}'",
                    other.escape_ascii()
                )));
            }
        }
        Ok(())
    }

    /// Without a server connection and outside a transaction, a Parse of a
    /// statement some server already accepted, or a Close of a statement, can
    /// be answered by the proxy itself. This keeps clients that prepare
    /// synchronously (libpq's PQprepare, as pgbench -M prepared does) from
    /// waiting for a server connection just to be told "ParseComplete".
    fn answer_locally(&mut self, tag: u8, msg: &[u8]) -> Result<bool, ProxyError> {
        let mut pos = 6;
        match tag {
            ftag::PARSE => {
                let mut pos = 5;
                let name = read_cstr(msg, &mut pos)?;
                let query = read_cstr(msg, &mut pos)?;
                if name.is_empty() {
                    return Ok(false);
                }
                let stmt = self.state.statements.intern(query, &msg[pos..]);
                if !stmt.is_validated() || !classify_is_plain(query) {
                    return Ok(false);
                }
                self.statements.insert(&String::from_utf8_lossy(name), stmt);
                messages::parse_complete(&mut self.to_client);
                Ok(true)
            }
            ftag::CLOSE => {
                let kind = msg.get(5).copied();
                let name = read_cstr(msg, &mut pos)?;
                if kind != Some(b'S') || name.is_empty() {
                    return Ok(false);
                }
                self.statements.remove(&String::from_utf8_lossy(name));
                messages::close_complete(&mut self.to_client);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn expect_ready(&mut self) {
        self.t.pending += 1;
        self.t.sent += 1;
    }

    /// Notes the session effects of SQL text sent by Query or Parse.
    fn on_query_text(&mut self, sql: &[u8]) {
        let Ok(sql) = std::str::from_utf8(sql) else {
            return;
        };
        for effect in classify(sql) {
            match &effect {
                Effect::Pins(reason) => {
                    if self.mode == PoolMode::Transaction && self.pin.is_none() {
                        tracing::info!(
                            session = self.id,
                            reason,
                            "client pinned to its server connection"
                        );
                        self.pin = Some(reason);
                        self.pool
                            .stats
                            .pinned
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Effect::Setting { .. } | Effect::ResetAll => self.settings.note(&effect),
                Effect::DiscardAll | Effect::DeallocateAll => {}
            }
        }
    }

    fn server_mut(&mut self) -> Result<&mut Checkout, ProxyError> {
        self.server.as_mut().ok_or_else(ProxyError::internal)
    }

    fn on_parse(&mut self, msg: &[u8]) -> Result<(), ProxyError> {
        let mut pos = 5;
        let name = read_cstr(msg, &mut pos)?;
        let query = read_cstr(msg, &mut pos)?;
        let types = &msg[pos..];
        self.t.unsynced = true;
        self.on_query_text(query);
        if name.is_empty() {
            self.to_server.extend_from_slice(msg);
            self.t
                .parse_q
                .push_back((self.t.sent, ParseAction::Forward(None)));
            return Ok(());
        }
        let name = String::from_utf8_lossy(name);
        let stmt = self.state.statements.intern(query, types);
        self.statements.insert(&name, stmt.clone());
        let sent = self.t.sent;
        let server = self.server_mut()?;
        if server.conn.prepared.contains(&stmt.id) {
            messages::close(&mut self.to_server, b'S', NOOP_NAME);
            self.t
                .close_q
                .push_back((sent, CloseAction::AsParseComplete));
        } else {
            server.conn.prepared.insert(stmt.id);
            messages::parse(
                &mut self.to_server,
                &stmt.server_name,
                &stmt.query,
                &stmt.param_types,
            );
            self.t
                .parse_q
                .push_back((sent, ParseAction::Forward(Some(stmt))));
        }
        Ok(())
    }

    /// Makes sure the statement the client calls `name` exists on the server
    /// and returns the server-side name to use.
    fn server_statement_name(&mut self, name: &[u8]) -> Result<String, ProxyError> {
        let name = String::from_utf8_lossy(name);
        let Some(stmt) = self.statements.get(&name).cloned() else {
            // Unknown to us: let the server report it exactly as Postgres
            // would, unless the name could collide with ours.
            return Ok(if name.starts_with(SERVER_NAME_PREFIX) {
                NOOP_NAME.to_string()
            } else {
                name.into_owned()
            });
        };
        let sent = self.t.sent;
        let server = self.server_mut()?;
        if !server.conn.prepared.contains(&stmt.id) {
            server.conn.prepared.insert(stmt.id);
            messages::parse(
                &mut self.to_server,
                &stmt.server_name,
                &stmt.query,
                &stmt.param_types,
            );
            self.t
                .parse_q
                .push_back((sent, ParseAction::Swallow(stmt.clone())));
        }
        Ok(stmt.server_name.clone())
    }

    fn on_bind(&mut self, msg: &[u8]) -> Result<(), ProxyError> {
        self.t.unsynced = true;
        let mut pos = 5;
        let portal = read_cstr(msg, &mut pos)?;
        let stmt_start = pos;
        let stmt = read_cstr(msg, &mut pos)?;
        if stmt.is_empty() {
            self.to_server.extend_from_slice(msg);
            return Ok(());
        }
        let server_name = self.server_statement_name(stmt)?;
        let rest = &msg[pos..];
        let out = &mut self.to_server;
        out.put_u8(ftag::BIND);
        let len = 4 + portal.len() + 1 + server_name.len() + 1 + rest.len();
        out.put_i32(len as i32);
        out.extend_from_slice(&msg[5..stmt_start]);
        out.extend_from_slice(server_name.as_bytes());
        out.put_u8(0);
        out.extend_from_slice(rest);
        Ok(())
    }

    fn on_describe(&mut self, msg: &[u8]) -> Result<(), ProxyError> {
        self.t.unsynced = true;
        let kind = *msg
            .get(5)
            .ok_or_else(|| ProxyError::protocol_violation("short Describe"))?;
        let mut pos = 6;
        let name = read_cstr(msg, &mut pos)?;
        if kind != b'S' || name.is_empty() {
            self.to_server.extend_from_slice(msg);
            return Ok(());
        }
        let server_name = self.server_statement_name(name)?;
        let out = &mut self.to_server;
        out.put_u8(ftag::DESCRIBE);
        out.put_i32((4 + 1 + server_name.len() + 1) as i32);
        out.put_u8(b'S');
        out.extend_from_slice(server_name.as_bytes());
        out.put_u8(0);
        Ok(())
    }

    fn on_close(&mut self, msg: &[u8]) -> Result<(), ProxyError> {
        self.t.unsynced = true;
        let kind = *msg
            .get(5)
            .ok_or_else(|| ProxyError::protocol_violation("short Close"))?;
        let mut pos = 6;
        let name = read_cstr(msg, &mut pos)?;
        if kind == b'S' && !name.is_empty() {
            // The statement stays prepared on the server for others; the
            // client's name is forgotten. A Close of a name that does not
            // exist answers CloseComplete, as Postgres does.
            self.statements.remove(&String::from_utf8_lossy(name));
            messages::close(&mut self.to_server, b'S', NOOP_NAME);
        } else {
            self.to_server.extend_from_slice(msg);
        }
        self.t
            .close_q
            .push_back((self.t.sent, CloseAction::Forward));
        Ok(())
    }

    // ---- server → client -------------------------------------------------------

    fn process_server(&mut self) -> Result<(), ProxyError> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        loop {
            let buf = &mut server.conn.read_buf;
            if self.server_streaming > 0 {
                let n = self.server_streaming.min(buf.len());
                if n == 0 {
                    return Ok(());
                }
                self.to_client.extend_from_slice(&buf[..n]);
                buf.advance(n);
                self.server_streaming -= n;
                continue;
            }
            if self.to_client.len() >= HIGH_WATER {
                return Ok(());
            }
            let Some(h) = peek_header(buf, MAX_SERVER_MESSAGE)? else {
                return Ok(());
            };
            if buf.len() < h.total_len {
                if matches!(h.tag, b'D' | b'd') && h.total_len >= STREAM_THRESHOLD {
                    self.server_streaming = h.total_len;
                    continue;
                }
                buf.reserve(h.total_len - buf.len());
                return Ok(());
            }
            let msg = buf.split_to(h.total_len);
            match h.tag {
                tag::READY_FOR_QUERY => {
                    self.t.pending = self.t.pending.saturating_sub(1);
                    self.t.tx_status = msg.get(5).copied().unwrap_or(b'I');
                    let batch = self.t.answered;
                    self.t.answered += 1;
                    while self.t.parse_q.front().is_some_and(|(b, _)| *b <= batch) {
                        self.t.parse_q.pop_front();
                    }
                    while self.t.close_q.front().is_some_and(|(b, _)| *b <= batch) {
                        self.t.close_q.pop_front();
                    }
                    match self.settings.on_ready(self.t.tx_status) {
                        Committed::Nothing => {}
                        Committed::InSync => {
                            server.conn.settings_fingerprint = self.settings.fingerprint()
                        }
                        Committed::Unknown => server.conn.settings_fingerprint = u64::MAX,
                    }
                    self.to_client.extend_from_slice(&msg);
                }
                tag::PARSE_COMPLETE => match self.t.parse_q.pop_front() {
                    Some((_, ParseAction::Swallow(stmt))) => stmt.mark_validated(),
                    Some((_, ParseAction::Forward(stmt))) => {
                        if let Some(stmt) = stmt {
                            stmt.mark_validated();
                        }
                        self.to_client.extend_from_slice(&msg);
                    }
                    None => self.to_client.extend_from_slice(&msg),
                },
                tag::CLOSE_COMPLETE => match self.t.close_q.pop_front() {
                    Some((_, CloseAction::AsParseComplete)) => {
                        messages::parse_complete(&mut self.to_client)
                    }
                    _ => self.to_client.extend_from_slice(&msg),
                },
                tag::ERROR_RESPONSE => {
                    // The server skips the rest of this batch: statements it
                    // was asked to prepare in it do not exist.
                    let batch = self.t.answered;
                    for (b, action) in &self.t.parse_q {
                        if *b == batch
                            && let ParseAction::Forward(Some(id)) | ParseAction::Swallow(id) =
                                action
                        {
                            server.conn.prepared.remove(&id.id);
                        }
                    }
                    self.t.parse_q.retain(|(b, _)| *b != batch);
                    self.t.close_q.retain(|(b, _)| *b != batch);
                    self.settings.on_error();
                    self.to_client.extend_from_slice(&msg);
                }
                tag::PARAMETER_STATUS => {
                    server.conn.record_parameter(&msg);
                    self.to_client.extend_from_slice(&msg);
                }
                tag::COMMAND_COMPLETE => {
                    let text = &msg[5..msg.len().saturating_sub(1)];
                    match text {
                        b"COMMIT" => self.settings.on_transaction_end(true),
                        b"ROLLBACK" => self.settings.on_transaction_end(false),
                        b"DISCARD ALL" => {
                            server.conn.prepared.clear();
                            server.conn.settings_fingerprint = 0;
                            self.statements.clear();
                            self.settings.on_discard_all();
                            self.pin = None;
                        }
                        b"DEALLOCATE ALL" => {
                            server.conn.prepared.clear();
                            self.statements.clear();
                        }
                        _ => {}
                    }
                    self.to_client.extend_from_slice(&msg);
                }
                _ => self.to_client.extend_from_slice(&msg),
            }
        }
    }

    // ---- holding and releasing the server ------------------------------------

    /// Checks out a server connection and brings its settings in line.
    async fn acquire(&mut self) -> Result<(), ProxyError> {
        let mut checkout = tokio::select! {
            r = self.pool.checkout(self.wait_timeout) => r?,
            _ = self.state.shutdown.cancelled() => return Err(ProxyError::shutting_down()),
        };
        prepare_server(&mut checkout, &self.settings).await?;
        self.cancel
            .set(Some((checkout.conn.addr, checkout.conn.backend_key)))
            .await;
        self.server = Some(checkout);
        Ok(())
    }

    fn can_release(&self) -> bool {
        self.mode == PoolMode::Transaction
            && self.pin.is_none()
            && self.t.pending == 0
            && !self.t.unsynced
            && self.t.tx_status == b'I'
            && self.to_server.is_empty()
            && self.server_streaming == 0
            && self.client_streaming == 0
            && self
                .server
                .as_ref()
                .is_some_and(|s| s.conn.read_buf.is_empty())
    }

    async fn release(&mut self) {
        self.cancel.set(None).await;
        if let Some(s) = self.server.take() {
            s.release();
        }
    }

    /// At the end of the session: give the server connection back if it can
    /// be made clean, else close it.
    async fn finish_server(&mut self, clean_exit: bool) {
        self.cancel.set(None).await;
        let Some(mut s) = self.server.take() else {
            return;
        };
        let quiet = self.t.pending == 0
            && !self.t.unsynced
            && self.server_streaming == 0
            && self.client_streaming == 0
            && s.conn.read_buf.is_empty()
            && self.to_server.is_empty();
        if !quiet || !clean_exit && self.t.pending > 0 {
            // Mid-query or mid-message: closing is the only safe reset; the
            // server rolls the transaction back.
            return;
        }
        let mut reset: Vec<&str> = Vec::new();
        if self.t.tx_status != b'I' {
            reset.push("ROLLBACK");
        }
        if self.pin.is_some() || self.mode == PoolMode::Session {
            reset.push("DISCARD ALL");
        }
        if reset.is_empty() {
            s.release();
            return;
        }
        let discard = reset.contains(&"DISCARD ALL");
        tokio::spawn(async move {
            match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                s.conn.run_simple(&reset),
            )
            .await
            {
                Ok(Ok(None)) => {
                    if discard {
                        s.conn.prepared.clear();
                        s.conn.settings_fingerprint = 0;
                    }
                    s.release();
                }
                _ => drop(s),
            }
        });
    }
}

/// Brings a freshly checked-out connection to the client's settings and
/// bounds its prepared statements.
pub async fn prepare_server(
    checkout: &mut Checkout,
    settings: &Settings,
) -> Result<(), ProxyError> {
    let shard = checkout.pool().shard().to_string();
    let conn = &mut checkout.conn;
    if conn.prepared.len() > MAX_PREPARED_PER_SERVER {
        conn.run_simple(&["DEALLOCATE ALL"])
            .await
            .map_err(|_| ProxyError::shard_unavailable(&shard))?;
        conn.prepared.clear();
    }
    if conn.settings_fingerprint != settings.fingerprint() {
        let statements = settings.replay(conn.settings_fingerprint);
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        let result = conn
            .run_simple(&refs)
            .await
            .map_err(|_| ProxyError::shard_unavailable(&shard))?;
        if let Some((code, message)) = result {
            tracing::debug!(
                code,
                message,
                "a session setting failed to apply on a server connection"
            );
            conn.settings_fingerprint = u64::MAX;
            return Err(ProxyError::setting_rejected(&code, &message));
        }
        conn.settings_fingerprint = settings.fingerprint();
    }
    Ok(())
}

/// Whether SQL text has no session effect (so answering its Parse locally
/// skips nothing the proxy must see on a server).
fn classify_is_plain(sql: &[u8]) -> bool {
    std::str::from_utf8(sql).is_ok_and(|s| classify(s).is_empty())
}

fn write_some(stream: &TcpStream, buf: &mut BytesMut) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = stream.try_write(buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf.advance(n);
    }
    Ok(())
}

async fn maybe_readable(s: Option<&TcpStream>) -> std::io::Result<()> {
    match s {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

async fn maybe_writable(s: Option<&TcpStream>) -> std::io::Result<()> {
    match s {
        Some(s) => s.writable().await,
        None => std::future::pending().await,
    }
}
