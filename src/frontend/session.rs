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
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

use super::buffers::{self, rewind};
use super::cancel::{CancelSlot, Registered};
use super::classify::Effect;
use super::error_position::BatchStatements;
use super::isolation::{Isolation, TenantBinding};
use super::portals::Portals;
use super::prepared::{ClientStatements, Statement};
use super::rls::RlsState;
pub(super) use super::settings::Committed;
use super::settings::{Settings, Untracked};
use super::stops::{Stop, Stops};
use crate::config::PoolMode;
use crate::error::ProxyError;
use crate::metrics::SessionObs;
use crate::pool::{Checkout, PinLease, Pool};
use crate::protocol::framing::holds_a_message;
use crate::protocol::messages;
use crate::state::ProxyState;
use crate::tenant::TenantSet;

/// Stop reading a side while this much is waiting to be written to the other.
pub(super) const HIGH_WATER: usize = 1 << 20;
/// Messages at least this large are streamed through instead of buffered whole.
pub(super) const STREAM_THRESHOLD: usize = 64 * 1024;
/// Largest server message tenantgate buffers whole (it inspects these).
pub(super) const MAX_SERVER_MESSAGE: usize = 1 << 30;
/// A server connection holding more prepared statements than this is cleared
/// (DEALLOCATE ALL) before its next use.
const MAX_PREPARED_PER_SERVER: usize = 5_000;
/// How long the last words to a departing client (its error, the rest of
/// its output) may take to be written before the socket is closed anyway.
pub(super) const LAST_WRITE: std::time::Duration = std::time::Duration::from_secs(2);

/// What the ParseComplete for a Parse we forwarded should become.
#[derive(Debug, Clone)]
pub(super) enum ParseAction {
    /// The client's own Parse: forward it (the statement and the client's
    /// name for it, if named).
    Forward(Option<(Arc<Statement>, Box<[u8]>)>),
    /// A Parse tenantgate injected (re-preparing a statement, or raising a
    /// refusal): swallow it.
    Swallow(Option<Arc<Statement>>),
}

/// What the CloseComplete for a Close we forwarded should become.
#[derive(Debug, Clone)]
pub(super) enum CloseAction {
    /// Forward it.
    Forward,
    /// It stands in for the client's Parse (of this name) of a statement the
    /// server already had.
    AsParseComplete(Box<[u8]>),
    /// It answers a Close tenantgate injected: swallow it.
    Swallow,
}

/// What the BindComplete for a Bind we forwarded should become.
#[derive(Debug, Clone, Copy)]
pub(super) enum BindAction {
    /// Forward it.
    Forward,
    /// It answers a Bind tenantgate injected: swallow it.
    Swallow,
}

/// What the ParameterDescription for a Describe we forwarded should become.
#[derive(Debug, Clone, Copy)]
pub(super) enum DescribeAction {
    /// Forward it.
    Forward,
    /// Drop the last parameter: it is the tenant, added by the proxy.
    HideLastParam,
}

/// A client's unnamed prepared statement, as sent to the server.
#[derive(Debug)]
pub(super) struct UnnamedStatement {
    /// SQL as prepared on servers (rewritten when isolation applies).
    pub(super) sql: Vec<u8>,
    /// Raw parameter type section.
    pub(super) types: Vec<u8>,
    /// How the tenant is bound, if isolation rewrote it.
    pub(super) binding: Option<Arc<TenantBinding>>,
    /// The session's Parse number for it.
    pub(super) seq: u64,
    /// It sets the tenant variable: this, when bound.
    pub(super) tenant_set: Option<TenantSet>,
    /// What running it does to the session, if anything.
    pub(super) effects: Option<Arc<[Effect]>>,
    /// The kind of home it was planned for (isolated sessions).
    pub(super) route: Option<crate::router::RouteKey>,
}

/// Why the loop ended.
pub(super) enum End {
    /// Terminate or EOF from the client.
    ClientGone,
}

/// One event from the sockets. Reads have already happened: their result
/// is in the event, the bytes in the session's buffers.
enum Event {
    ClientRead(std::io::Result<usize>),
    ServerRead(std::io::Result<usize>),
    ClientWritable,
    ServerWritable,
    Stopped(Stop),
    /// `server.idle_transaction_timeout` ran out.
    IdleInTransaction,
}

/// Per-session protocol accounting. Each queue holds, in reply order, what
/// to do with the replies to messages sent, tagged with the batch (number of
/// Syncs/Queries sent before them) so replies skipped after an error can be
/// dropped at the batch's ReadyForQuery.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    /// ReadyForQuery messages still owed by the server.
    pub(super) pending: u32,
    /// Extended-protocol messages sent since the last Sync.
    pub(super) unsynced: bool,
    /// Z-producing messages sent so far (Sync, Query, FunctionCall).
    pub(super) sent: u64,
    /// ReadyForQuery messages received so far.
    pub(super) answered: u64,
    /// Transaction status from the last ReadyForQuery.
    pub(super) tx_status: u8,
    pub(super) parse_q: VecDeque<(u64, ParseAction)>,
    pub(super) close_q: VecDeque<(u64, CloseAction)>,
    pub(super) bind_q: VecDeque<(u64, BindAction)>,
    /// Every Describe sent, answered by RowDescription or NoData (a
    /// statement's after its ParameterDescription).
    pub(super) describe_q: VecDeque<(u64, DescribeAction)>,
    /// Results of statements tenantgate ran among the client's: the batch,
    /// and how many of the client's results in that batch come first.
    pub(super) results_q: VecDeque<(u64, u32)>,
    /// The client's results received so far in the batch being answered
    /// (counted whatever the timing of Flush and writes, see `results_q`).
    pub(super) batch_results: u32,
    /// Statements sent that end a transaction or roll back to a savepoint,
    /// in order: a `ROLLBACK` tag alone does not tell which one it answers.
    pub(super) tx_control_q: VecDeque<(u64, TxControl)>,
    /// Batches in which the proxy raised a refusal through the server, with
    /// the ROUTINE its ErrorResponse is to name (see `ProxyError::routine`).
    pub(super) raised_q: VecDeque<(u64, Option<&'static str>)>,
    /// `DEALLOCATE ALL` / `DISCARD ALL` sent to run, in order, each with the
    /// client's names it took (given back if it fails).
    pub(super) drops_q: VecDeque<(u64, ClientStatements)>,
    /// Results of the client's to complete under another tag than the
    /// server's, in the order they come.
    pub(super) retags_q: VecDeque<Retag>,
    /// Extended-protocol messages were sent since the last Sync.
    pub(super) extended_since_sync: bool,
    /// The batches ended by a Query or FunctionCall sent while
    /// `extended_since_sync`, each with the Executes sent before it in its
    /// batch: if those extended messages fail, the server skips the Query
    /// (and any after it) up to the next Sync, and never answers them.
    pub(super) queries_after_extended: VecDeque<(u64, u32)>,
    /// Batches the server will not answer (skipped Queries): the next
    /// ReadyForQuery answers them too.
    pub(super) skipped: u64,
    /// An error came back for the extended-protocol batch still being sent:
    /// the server skips everything up to the next Sync.
    pub(super) skipping: bool,
    /// Executes the client sent since its last Sync.
    pub(super) batch_executes: u32,
    /// A statement sent since the last Sync drops every prepared statement.
    pub(super) batch_drops_statements: bool,
    /// A prepared tenant SET changed the tenant since the last Sync, on a
    /// server connection routed for the old one: nothing else may run on
    /// it before the Sync.
    pub(super) tenant_changed: bool,
    /// The tenant of what follows is known only from the replies in
    /// flight: a prepared tenant SET moved the tenant to another home while
    /// the server connection routed for the old one is held (the
    /// connection must go back and the next transaction be routed to the
    /// new home), or a `RESET ALL` / `DISCARD ALL` returned it to the
    /// startup tenant once its transaction commits. Messages after that
    /// batch wait for its replies.
    pub(super) tenant_unsettled: bool,
    /// A schema tenant's `RESET ALL` / `DISCARD ALL` was sent: later
    /// messages wait for its reply, and the server connection, its
    /// search_path reset, is not used again before it is pinned anew.
    pub(super) path_reset: bool,
}

impl Tracker {
    /// Keeps the expected replies of the batches `keep` accepts.
    pub(super) fn retain_replies(&mut self, keep: impl Fn(u64) -> bool) {
        if !self.parse_q.is_empty() {
            self.parse_q.retain(|(b, _)| keep(*b));
        }
        if !self.close_q.is_empty() {
            self.close_q.retain(|(b, _)| keep(*b));
        }
        if !self.bind_q.is_empty() {
            self.bind_q.retain(|(b, _)| keep(*b));
        }
        if !self.describe_q.is_empty() {
            self.describe_q.retain(|(b, _)| keep(*b));
        }
        if !self.results_q.is_empty() {
            self.results_q.retain(|(b, _)| keep(*b));
        }
        if !self.tx_control_q.is_empty() {
            self.tx_control_q.retain(|(b, _)| keep(*b));
        }
        if !self.raised_q.is_empty() {
            self.raised_q.retain(|b| keep(b.0));
        }
        if !self.drops_q.is_empty() {
            self.drops_q.retain(|(b, _)| keep(*b));
        }
    }
}

/// A result of the client's that completes under another tag than the
/// server's: which one it is, and what it stands for.
#[derive(Debug)]
pub(super) struct Retag {
    /// The batch it runs in.
    pub(super) batch: u64,
    /// How many of the client's results in that batch come before it.
    pub(super) results_before: u32,
    /// What the client sent.
    pub(super) sent: Retagged,
}

/// What a retagged result stands for.
#[derive(Debug)]
pub(super) enum Retagged {
    /// `DEALLOCATE name` of one of the client's statements, sent as the
    /// stand-in (see `super::deallocate`), with the name it took: given
    /// back if it does not complete.
    Deallocate(ClientStatements),
    /// A `SHOW` of the tenant variable, sent as a `SELECT` (see
    /// `Isolation::take_show`).
    Show,
}

impl Retagged {
    /// The tag the client is to see.
    pub(super) fn tag(&self) -> &'static str {
        match self {
            Retagged::Deallocate(_) => "DEALLOCATE",
            Retagged::Show => "SHOW",
        }
    }
}

/// A client statement whose reply is the tag `COMMIT` or `ROLLBACK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxControl {
    /// `COMMIT`/`END`: the transaction ends (rolled back if it had failed).
    Commit,
    /// `ROLLBACK`/`ABORT`: the transaction ends.
    Rollback,
    /// `ROLLBACK TO SAVEPOINT`: the transaction goes on.
    RollbackTo,
}

/// An authenticated client session.
pub struct Session {
    /// Session id for logs and the admin console.
    pub id: u64,
    pub(super) state: Arc<ProxyState>,
    pub(super) pool: Arc<Pool>,
    pub(super) mode: PoolMode,
    pub(super) max_message: usize,
    pub(super) wait_timeout: std::time::Duration,
    /// `server.idle_transaction_timeout`.
    pub(super) idle_transaction_timeout: Option<std::time::Duration>,
    /// Its timer, made the first time a transaction waits on the client.
    pub(super) idle_timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    pub(super) client: TcpStream,
    pub(super) client_in: BytesMut,
    pub(super) to_client: BytesMut,
    pub(super) to_server: BytesMut,
    pub(super) server: Option<Checkout>,
    pub(super) t: Tracker,
    pub(super) settings: Settings,
    pub(super) statements: ClientStatements,
    /// An SQL `PREPARE` was sent: the server connection (pinned to the
    /// client, or held for the session) may hold statements under the
    /// client's own names, which a Parse of the same name must meet.
    pub(super) sql_prepared: bool,
    pub(super) pin: Option<&'static str>,
    /// The pin counted against its tenant's share of the pool (see
    /// [`crate::pool::PinQuota`]).
    pub(super) pin_lease: Option<PinLease>,
    pub(super) cancel: Arc<CancelSlot>,
    /// Removes the session's cancel key when the session ends.
    _cancel_key: Registered,
    /// After a proxy-generated error in the extended protocol: discard until Sync.
    pub(super) skip_until_sync: bool,
    /// Bytes of a large client message still to stream to the server.
    pub(super) client_streaming: usize,
    /// Bytes of a large server message still to stream to the client.
    pub(super) server_streaming: usize,
    /// Tenant isolation, on shared shards when `[tenancy]` is configured.
    pub(super) iso: Option<Isolation>,
    /// Without isolation: the bound tenant whose home the session follows.
    pub(super) routed_tenant: Option<String>,
    /// The client's unnamed statement (Postgres keeps it until the next
    /// unnamed Parse or simple Query); re-prepared on whichever server
    /// connection the client's Bind or Describe of it reaches.
    pub(super) unnamed: Option<Arc<UnnamedStatement>>,
    /// Unnamed Parses sent so far (identifies `unnamed`).
    pub(super) unnamed_seq: u64,
    /// Portals whose Execute means something to the proxy (session
    /// effects; a `SHOW` of the tenant variable). Emptied when no
    /// transaction can hold a portal any more.
    pub(super) portals: Portals,
    /// The `DEALLOCATE`s of the Query at hand replaced by the stand-in:
    /// how many of its statements come first, and the name (see
    /// [`super::deallocate`]).
    pub(super) stood_in: Vec<(u32, Box<[u8]>)>,
    /// Settings to read back from the server connection before it is given
    /// back, and whether it held the client's other settings.
    read_back: Option<(Vec<String>, bool)>,
    /// The server ran a SET of the tenant variable that the proxy does not
    /// replay: its settings no longer match any fingerprint.
    pub(super) server_dirty: bool,
    /// Metric handles and the admin console's view of this session.
    pub(super) obs: SessionObs,
    /// `tenancy.rls` bookkeeping.
    pub(super) rls: RlsState,
    /// The next client message waits until the server has answered
    /// everything sent before it (`rls`, and a tenant change: see
    /// `must_wait_for_replies`).
    pub(super) held: bool,
    /// The text of a `BEGIN` (a simple Query of its own, sent while the
    /// session was idle) when it was the last message handled: a first
    /// choice of a tenant served elsewhere right after it moves the
    /// transaction (see [`Session::move_transaction`]).
    pub(super) fresh_begin: Option<String>,
    /// Which statements of the batches in flight were sent rewritten (for
    /// the positions of their errors).
    pub(super) sent_statements: BatchStatements,
    /// Drain, forced close and admin kill.
    pub(super) stops: Stops,
    /// The reported parameters as the client was last told them (at login,
    /// then by every ParameterStatus passed on).
    pub(super) told: Arc<Vec<(String, String)>>,
    /// A ParameterStatus was passed on since the last check: the next
    /// server connection's values are compared with `told` (after a RESET
    /// the server reported its own default, where the client's is its
    /// startup value, which the proxy puts back).
    pub(super) told_stale: bool,
    /// The server sent the client a FATAL (or PANIC) error: the connection
    /// it then closes needs no second one from the proxy.
    pub(super) server_fatal: bool,
    /// The client sent Terminate (`Some(None)`), or a message the session
    /// cannot go on after (`Some(Some(error))`), behind batches still
    /// running: nothing more is read from it, and the session ends (with
    /// the error) once they are answered.
    pub(super) terminating: Option<Option<ProxyError>>,
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
    /// Keeps the session's cancel key registered while it lives.
    pub cancel_key: Registered,
    /// Server connection kept from login (session pooling only).
    pub server: Option<Checkout>,
    /// Tenant isolation for this session, if any.
    pub isolation: Option<Isolation>,
    /// The bound tenant to route by when there is no isolation.
    pub routed_tenant: Option<String>,
    /// Metric handles and registry entry.
    pub obs: SessionObs,
    /// The reported parameters sent to the client at login.
    pub told: Arc<Vec<(String, String)>>,
}

impl Session {
    /// Builds a session ready to run.
    pub fn new(p: SessionParts) -> Session {
        let loaded = p.state.loaded();
        let server_cfg = &loaded.config.server;
        let rls = RlsState {
            armed: p.server.is_some(),
            dedicated: p
                .isolation
                .as_ref()
                .and_then(|i| i.route().ok())
                .is_some_and(|r| r.dedicated),
            ..RlsState::default()
        };
        let stops = Stops::new(&p.state.force_close, &p.obs.entry.kill, &p.state.shutdown);
        // A connection from login (kept for good in session pooling) binds
        // the rewrite to the route it was checked out for.
        let mut isolation = p.isolation;
        if p.server.is_some()
            && let Some(iso) = isolation.as_mut()
            && let Ok(route) = iso.route()
        {
            iso.hold_route(Some(route));
        }
        Session {
            id: p.id,
            mode: server_cfg.pool_mode,
            max_message: server_cfg.max_message_size,
            wait_timeout: server_cfg.query_wait_timeout,
            idle_transaction_timeout: server_cfg.idle_transaction_timeout,
            idle_timer: None,
            state: p.state,
            pool: p.pool,
            client: p.client,
            client_in: p.client_in,
            to_client: buffers::take(),
            to_server: buffers::take(),
            server: p.server,
            t: Tracker {
                tx_status: b'I',
                ..Tracker::default()
            },
            settings: p.settings,
            statements: ClientStatements::default(),
            sql_prepared: false,
            pin: None,
            pin_lease: None,
            cancel: p.cancel,
            _cancel_key: p.cancel_key,
            skip_until_sync: false,
            client_streaming: 0,
            server_streaming: 0,
            iso: isolation,
            server_dirty: false,
            unnamed: None,
            unnamed_seq: 0,
            portals: Portals::default(),
            stood_in: Vec::new(),
            read_back: None,
            routed_tenant: p.routed_tenant,
            obs: p.obs,
            rls,
            held: false,
            fresh_begin: None,
            stops,
            sent_statements: BatchStatements::default(),
            told: p.told,
            told_stale: false,
            server_fatal: false,
            terminating: None,
        }
    }

    /// Serves the client until it leaves, then returns or closes the server
    /// connection as its state allows.
    pub async fn run(mut self) {
        let end = self.serve().await;
        let clean_exit = matches!(end, Ok(End::ClientGone));
        // The server connection first: a client that does not read must not
        // keep it (and its pool slot) while the last words wait for it.
        self.finish_server(clean_exit).await;
        match &end {
            // The server's own FATAL reached the client already (and was
            // counted); Postgres sends one error when it ends a session.
            Err(e)
                if self.server_fatal
                    && e.code == crate::protocol::sqlstate::SqlState::CONNECTION_FAILURE =>
            {
                let _ = self.flush_client_blocking().await;
            }
            Err(e) => {
                if e.origin != crate::error::Source::ClientGone {
                    self.obs.session_ended_with(e);
                }
                messages::error_response(&mut self.to_client, e);
                let _ = self.flush_client_blocking().await;
            }
            Ok(_) => {}
        }
    }

    async fn serve(&mut self) -> Result<End, ProxyError> {
        loop {
            if let Some(end) = self.process_client().await? {
                self.flush_client_blocking().await.ok();
                return Ok(end);
            }
            self.process_server()?;
            if self.t.pending == 0
                && let Some(end) = self.terminating.take()
            {
                // What came before the Terminate (or the bad message) is
                // answered.
                self.try_flush();
                return match end {
                    Some(e) => Err(e),
                    None => Ok(End::ClientGone),
                };
            }
            if let Some(lost) = self.settings.take_untrackable() {
                self.on_untrackable(lost);
            }
            self.try_flush();
            if self.can_release() {
                if self.read_back.is_some() {
                    self.read_back_settings().await;
                }
                if self.can_release() {
                    self.release().await;
                }
            }
            if self.t.tenant_unsettled && self.t.pending == 0 {
                self.t.tenant_unsettled = false;
            }
            if self.t.path_reset && self.t.pending == 0 {
                self.t.path_reset = false;
                if self.server.is_some() {
                    // Not given back (more came from the server after its
                    // ReadyForQuery): closed rather than used unconfined; the
                    // next statement gets a connection pinned again.
                    self.let_go(false).await;
                }
            }
            if self.held && self.t.pending == 0 {
                // The answer a held message waited for is in.
                self.held = false;
                continue;
            }
            if self.buffered_work() {
                continue;
            }
            let idle_limit = self
                .idle_transaction_timeout
                .and_then(|l| self.arm_idle_timer(l));
            match self.wait(idle_limit.is_some()).await {
                Event::Stopped(stop) => return Err(stop_error(stop)),
                Event::IdleInTransaction => {
                    let limit = idle_limit.unwrap_or_default();
                    tracing::info!(
                        parent: self.obs.span(),
                        session = self.id,
                        limit_ms = limit.as_millis() as u64,
                        "client idle in transaction too long: disconnected"
                    );
                    return Err(ProxyError::idle_transaction_timeout(limit));
                }
                Event::ClientRead(Ok(0) | Err(_)) => return Ok(End::ClientGone),
                Event::ClientRead(Ok(n)) => self.obs.bytes_in(n),
                Event::ServerRead(Ok(0) | Err(_)) => return Err(self.server_lost()),
                Event::ServerRead(Ok(_)) => {}
                Event::ClientWritable => {
                    if let Err(e) = self.write_client()
                        && e.kind() != std::io::ErrorKind::WouldBlock
                    {
                        if self.terminating.is_some() {
                            // A client that left after its Terminate reads
                            // nothing more; its statements still finish.
                            self.to_client.clear();
                            continue;
                        }
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

    /// Only the server connection knows some of the client's settings now
    /// (which SETs of a transaction survived a ROLLBACK TO SAVEPOINT, or
    /// committed in a query string of several transactions). In
    /// transaction pooling their values are read back from it before it is
    /// given back; where they cannot be named (a RESET ALL among them) the
    /// client is pinned to it.
    fn on_untrackable(&mut self, lost: Untracked) {
        if self.pin.is_some() {
            return;
        }
        match (lost.names, self.mode, self.server.as_mut()) {
            (Some(names), PoolMode::Transaction, Some(server)) => {
                let in_sync = server.conn.settings_fingerprint == self.settings.fingerprint();
                // Until they are read back, no fingerprint describes it.
                server.conn.settings_fingerprint = u64::MAX;
                let (pending, was_in_sync) = self.read_back.get_or_insert((Vec::new(), in_sync));
                *was_in_sync &= in_sync;
                for n in names {
                    if !pending.contains(&n) {
                        pending.push(n);
                    }
                }
            }
            _ => self.pin_server(lost.reason),
        }
    }

    /// Reads back the settings [`Session::on_untrackable`] noted, from the
    /// server connection between transactions; pins the client to it if
    /// that fails.
    #[cold]
    async fn read_back_settings(&mut self) {
        let Some((names, in_sync)) = self.read_back.take() else {
            return;
        };
        let Some(server) = self.server.as_mut() else {
            return;
        };
        let sql = Settings::read_back_query(&names);
        let read = tokio::time::timeout(self.wait_timeout, server.conn.query_row(&sql)).await;
        match read {
            // A search path that names `pg_temp` makes the tables created
            // after it temporary (shadowing shared ones for the
            // connection's next clients): the client keeps its connection.
            Ok(Ok(Ok(values)))
                if names.iter().zip(&values).any(|(n, v)| {
                    n == "search_path"
                        && v.as_deref()
                            .is_some_and(|v| v.to_ascii_lowercase().contains("pg_temp"))
                }) =>
            {
                self.pin_server("a search_path naming pg_temp")
            }
            Ok(Ok(Ok(values))) if values.len() == names.len() => {
                let pairs: Vec<(String, Option<String>)> = names.into_iter().zip(values).collect();
                self.settings.read_back(&pairs);
                if in_sync {
                    server.conn.settings_fingerprint = self.settings.fingerprint();
                }
            }
            _ => self.pin_server("SET whose outcome only the server knows"),
        }
    }

    /// Tells the client, by ParameterStatus, every reported parameter whose
    /// value on the server connection it now has (`params`, in line with
    /// the client's settings) differs from what it was last told.
    #[cold]
    fn tell_parameters(&mut self, params: &[(String, String)]) {
        for (name, value) in params {
            let told = self.told.iter().find(|(n, _)| n == name);
            if told.is_some_and(|(_, v)| v == value) {
                continue;
            }
            messages::parameter_status(&mut self.to_client, name, value);
            messages::set_parameter(Arc::make_mut(&mut self.told), name, value);
        }
    }

    /// Pins the client to its server connection (`reason` for the logs):
    /// counted for the pool and, when the session has a tenant, against
    /// the tenant's share of it (the lease `check_pin_quota` took, or one
    /// taken now, beyond the limit, for a pin that cannot be declined).
    pub(super) fn pin_server(&mut self, reason: &'static str) {
        tracing::info!(
            parent: self.obs.span(),
            session = self.id,
            reason,
            "client pinned to its server connection"
        );
        self.pin = Some(reason);
        self.pool
            .stats
            .pinned
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.pin_lease.is_none()
            && let (Some(tenant), Some(server)) = (
                self.iso.as_ref().and_then(|i| i.tenant.current()),
                self.server.as_ref(),
            )
        {
            self.pin_lease = server.pool().pins.take(tenant, true).ok();
        }
    }

    /// Sets the idle-in-transaction timer to run out `limit` from now when
    /// it applies: a transaction is open on the server connection and waits
    /// on the client (nothing in flight, nothing to write, no message read
    /// but not handled). Returns the limit if it does.
    #[cold]
    fn arm_idle_timer(&mut self, limit: std::time::Duration) -> Option<std::time::Duration> {
        // In a transaction, or with the server skipping up to a Sync that
        // has not come (the connection is held until it does). (Unsynced
        // messages may still be running.)
        let waits_on_client = self.server.is_some()
            && (self.t.tx_status != b'I' || self.t.skipping)
            && self.t.pending == 0
            && !self.t.unsynced
            && self.to_server.is_empty()
            && self.to_client.is_empty()
            && self.client_in.is_empty();
        if !waits_on_client {
            return None;
        }
        let deadline = tokio::time::Instant::now() + limit;
        match self.idle_timer.as_mut() {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.idle_timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        Some(limit)
    }

    /// Whether input already read can be handled now: messages left in a
    /// buffer while the other side's output was full, which the flush just
    /// emptied. The loop then goes round again instead of waiting on sockets
    /// that may have nothing more to say (a client that sent Bind, Execute
    /// and Sync together waits for the answer).
    fn buffered_work(&self) -> bool {
        let client = self.to_server.len() < HIGH_WATER
            && !self.held
            && if self.client_streaming > 0 {
                !self.client_in.is_empty()
            } else {
                holds_a_message(&self.client_in, self.max_message)
            };
        let server = self.to_client.len() < HIGH_WATER
            && self.server.as_ref().is_some_and(|s| {
                if self.server_streaming > 0 {
                    !s.conn.read_buf.is_empty()
                } else {
                    holds_a_message(&s.conn.read_buf, MAX_SERVER_MESSAGE)
                }
            });
        client || server
    }

    fn server_lost(&mut self) -> ProxyError {
        tracing::warn!(
            parent: self.obs.span(),
            session = self.id,
            shard = self.pool.shard(),
            "server connection lost"
        );
        self.server = None;
        ProxyError::server_connection_lost(self.pool.shard())
    }

    /// Waits for the next socket event worth handling; a socket that is
    /// readable is read at once.
    ///
    /// Reads go through tokio's `poll_read`, which treats a read that does
    /// not fill the buffer as having drained the socket (edge-triggered
    /// epoll): the next wait parks at once instead of first trying another
    /// read that would only return EAGAIN. That is one system call less per
    /// message in each direction.
    async fn wait(&mut self, idle_timer: bool) -> Event {
        let read_client = self.terminating.is_none()
            && self.to_server.len() < HIGH_WATER
            && self.to_client.len() < HIGH_WATER
            && (!self.held || self.client_in.len() < HIGH_WATER);
        let read_server = self.server.is_some() && self.to_client.len() < HIGH_WATER;
        // Between transactions (also when pinned or in session pooling): a
        // draining proxy may close the session now.
        let idle = self.server.is_none()
            || (self.t.pending == 0
                && !self.t.unsynced
                && self.t.tx_status == b'I'
                && self.to_server.is_empty());
        let write_client = !self.to_client.is_empty();
        let write_server = !self.to_server.is_empty();
        // Nothing held for either side: the buffers wait elsewhere until
        // the client speaks (see `super::buffers`).
        let parked = self.server.is_none()
            && !write_client
            && !write_server
            && self.client_in.is_empty()
            && self.client_streaming == 0
            && !self.held;
        if parked {
            buffers::give_back([
                &mut self.client_in,
                &mut self.to_client,
                &mut self.to_server,
            ]);
        }
        // Room to read into is made once per wait, not at every poll.
        if read_client && !parked {
            reserve_for_read(&mut self.client_in);
        }
        if read_server && let Some(s) = self.server.as_mut() {
            reserve_for_read(&mut s.conn.read_buf);
        }
        let stops = &mut self.stops;
        let mut timer = self.idle_timer.as_mut().filter(|_| idle_timer);
        let client = &mut self.client;
        let client_in = &mut self.client_in;
        let outputs = (&mut self.to_client, &mut self.to_server);
        let mut server = self.server.as_mut().map(|s| &mut s.conn);
        std::future::poll_fn(|cx| {
            use std::task::Poll;
            if let Poll::Ready(stop) = stops.poll(cx, idle) {
                return Poll::Ready(Event::Stopped(stop));
            }
            if write_client && client.poll_write_ready(cx).is_ready() {
                return Poll::Ready(Event::ClientWritable);
            }
            if let Some(conn) = server.as_deref_mut() {
                if write_server && conn.stream.poll_write_ready(cx).is_ready() {
                    return Poll::Ready(Event::ServerWritable);
                }
                if read_server {
                    let stream = std::pin::Pin::new(&mut conn.stream);
                    if let Poll::Ready(r) = poll_read_buf(stream, cx, &mut conn.read_buf) {
                        return Poll::Ready(Event::ServerRead(r));
                    }
                }
            }
            // Parked, buffers are taken once there is something to read.
            let unbuffered = parked && client_in.capacity() == 0;
            if read_client && (!unbuffered || client.poll_read_ready(cx).is_ready()) {
                if unbuffered {
                    buffers::take_into([&mut *client_in, &mut *outputs.0, &mut *outputs.1]);
                }
                let stream = std::pin::Pin::new(&mut *client);
                if let Poll::Ready(r) = poll_read_buf(stream, cx, client_in) {
                    return Poll::Ready(Event::ClientRead(r));
                }
            }
            // Last: a client that spoke just in time is not idle.
            if let Some(t) = timer.as_mut()
                && t.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Event::IdleInTransaction);
            }
            Poll::Pending
        })
        .await
    }

    /// Writes whatever the sockets take right now, without waiting.
    fn try_flush(&mut self) {
        if !self.to_server.is_empty()
            && let Some(s) = self.server.as_ref()
        {
            let _ = write_some(&s.conn.stream, &mut self.to_server);
        }
        if !self.to_client.is_empty() {
            let _ = self.write_client();
        }
    }

    /// Writes what the client socket takes now, counting the bytes.
    fn write_client(&mut self) -> std::io::Result<()> {
        let before = self.to_client.len();
        let r = write_some(&self.client, &mut self.to_client);
        self.obs.bytes_out(before - self.to_client.len());
        r
    }

    /// At the end of a session: waits (at most [`LAST_WRITE`]) until the
    /// client has taken what is left for it. A client that stops reading
    /// loses the rest; it cannot hold the session open.
    async fn flush_client_blocking(&mut self) -> std::io::Result<()> {
        let flush = async {
            while !self.to_client.is_empty() {
                self.client.writable().await?;
                match self.write_client() {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        tokio::time::timeout(LAST_WRITE, flush)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }

    // ---- holding and releasing the server ------------------------------------

    /// Points the session at the pool of the shard its next transaction
    /// goes to: the current home of its tenant (or the default shard), as
    /// the routing table says now.
    #[inline]
    fn route_transaction(&mut self) -> Result<(), ProxyError> {
        if let Some(iso) = &mut self.iso {
            // Routed anew: the last connection's route no longer binds.
            iso.hold_route(None);
            let route = iso.route()?;
            if !self.pool.serves(&route.shard) {
                self.pool = self
                    .state
                    .pool(&route.shard)
                    .ok_or_else(ProxyError::internal)?;
            }
            self.settings.pin_schema(route.schema.as_deref());
            self.rls.dedicated = route.dedicated;
            // Statements are rewritten for this route while the connection
            // checked out for it is held.
            iso.hold_route(Some(route));
        } else {
            let loaded = self.state.loaded();
            let route = match &self.routed_tenant {
                Some(t) => loaded.router.route(t).ok(),
                None => loaded.router.default_route().ok(),
            };
            if let Some(route) = route
                && !self.pool.serves(&route.shard)
                && let Some(pool) = self.state.pool(&route.shard)
            {
                self.pool = pool;
            }
        }
        Ok(())
    }

    /// Settings the session made while it was not a tenant's on a shared
    /// shard (see `settings::guarded`) are not replayed where its tenant's
    /// rows are scoped: a `search_path` would make unqualified names reach
    /// another schema's tables unscoped, `standard_conforming_strings = off`
    /// would have the server read the text otherwise than the rewriter did.
    fn guard_settings(&mut self) {
        if !self.settings.has_guarded() {
            return;
        }
        let scoped = self.iso.as_ref().is_some_and(|iso| {
            iso.tenant.current().is_some() && iso.route().is_ok_and(|r| !r.dedicated)
        });
        self.settings.set_guarded(scoped);
    }

    /// Checks out a server connection and brings its settings in line.
    ///
    /// A paused transaction waits before it is routed for good: once the
    /// pause ends it is routed again (a tenant is moved under a pause), and
    /// one that was queued for a connection when a pause began gives the
    /// connection back and waits too, so nothing in a paused scope starts
    /// after `PAUSE` has returned.
    pub(super) async fn acquire(&mut self) -> Result<(), ProxyError> {
        let now = Instant::now();
        let checkout = loop {
            self.route_transaction()?;
            self.guard_settings();
            let tenant = self.iso.as_ref().map(|i| i.tenant.current());
            self.obs.begin(tenant, self.pool.shard(), now);
            if self.state.pauses.is_active() {
                let left = self.wait_timeout.saturating_sub(now.elapsed());
                let paused = self
                    .state
                    .pauses
                    .wait(self.obs.tenant(), self.pool.shard(), left);
                let waited = tokio::select! {
                    biased;
                    r = paused => r?,
                    stop = self.stops.any() => return Err(stop_error(stop)),
                    () = self.cancel.wait_cancelled() => {
                        return Err(ProxyError::canceled_while_waiting());
                    }
                    () = client_left(&self.client, &mut self.client_in, &self.obs) => {
                        return Err(ProxyError::client_gone("a wait under PAUSE"));
                    }
                };
                if waited {
                    continue;
                }
            }
            // An idle connection at hand needs no queue, no timer and no clock.
            let (checkout, waited) = match self.pool.try_checkout() {
                Some(c) => (c, std::time::Duration::ZERO),
                None => {
                    let waiting = Instant::now();
                    let c = tokio::select! {
                        biased;
                        r = self.pool.checkout(self.wait_timeout) => r?,
                        stop = self.stops.any() => return Err(stop_error(stop)),
                        () = self.cancel.wait_cancelled() => {
                            return Err(ProxyError::canceled_while_waiting());
                        }
                        () = client_left(&self.client, &mut self.client_in, &self.obs) => {
                            return Err(ProxyError::client_gone("a wait for a server connection"));
                        }
                    };
                    (c, waiting.elapsed())
                }
            };
            // Counted as running before the pause is looked at again: a
            // `PAUSE` that finds no transaction running cannot miss this one.
            self.obs.acquired(waited, &checkout.conn);
            if self
                .state
                .pauses
                .blocks(self.obs.tenant(), self.pool.shard())
            {
                self.obs.released();
                checkout.release();
                continue;
            }
            break checkout;
        };
        let checkout = prepare_server(checkout, &self.settings).await?;
        if std::mem::take(&mut self.told_stale) {
            self.tell_parameters(&checkout.conn.params);
        }
        self.cancel
            .set(Some((checkout.conn.addr, checkout.conn.backend_key)))
            .await;
        self.server = Some(checkout);
        self.rls.armed = true;
        Ok(())
    }

    /// Moves a transaction that has run nothing but its `BEGIN` to the
    /// home of the tenant the session has just chosen for the first time
    /// (drivers in their default mode, such as psycopg with autocommit off,
    /// send `BEGIN` before the application's first statement, which may be
    /// the choice of tenant): it is rolled back on the connection held,
    /// which goes back to its pool, and begun again, with the client's own
    /// `BEGIN` text, on a connection of the new home. The client sees
    /// nothing of it. Should any step fail, the client's transaction is
    /// gone: the session ends with the error, as PgBouncer ends a client
    /// whose wait for a server timed out.
    pub(super) async fn move_transaction(&mut self, begin: &str) -> Result<(), ProxyError> {
        let shard = self.pool.shard().to_string();
        let rolled_back = match self.server.as_mut() {
            Some(s) => {
                tokio::time::timeout(self.wait_timeout, s.conn.run_simple(&["ROLLBACK"])).await
            }
            None => return Err(ProxyError::internal().fatal()),
        };
        let clean = matches!(rolled_back, Ok(Ok(None)));
        self.t.tx_status = b'I';
        self.let_go(clean).await;
        if !clean {
            return Err(ProxyError::server_connection_lost(&shard).fatal());
        }
        self.acquire().await.map_err(ProxyError::fatal)?;
        let begun = match self.server.as_mut() {
            Some(s) => tokio::time::timeout(self.wait_timeout, s.conn.run_simple(&[begin])).await,
            None => return Err(ProxyError::internal().fatal()),
        };
        if !matches!(begun, Ok(Ok(None))) {
            let shard = self.pool.shard().to_string();
            self.let_go(false).await;
            return Err(ProxyError::server_connection_lost(&shard).fatal());
        }
        self.t.tx_status = b'T';
        tracing::debug!(
            parent: self.obs.span(),
            session = self.id,
            from = %shard,
            to = self.pool.shard(),
            "transaction moved to the home of the tenant chosen after its BEGIN"
        );
        Ok(())
    }

    fn can_release(&self) -> bool {
        self.mode == PoolMode::Transaction
            && self.pin.is_none()
            && self.t.pending == 0
            && !self.t.unsynced
            // A Query behind failing extended messages was skipped and no
            // Sync has gone out since: the server skips up to that Sync.
            && !self.t.skipping
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
        self.let_go(true).await;
    }

    /// Ends the session's hold on its server connection between
    /// transactions: gives it back to the pool (`keep`) or closes it.
    async fn let_go(&mut self, keep: bool) {
        self.cancel.set(None).await;
        self.obs.released();
        if let Some(iso) = &mut self.iso {
            iso.hold_route(None);
        }
        if let Some(mut s) = self.server.take() {
            if std::mem::take(&mut self.server_dirty) {
                s.conn.settings_fingerprint = u64::MAX;
            }
            if keep {
                s.release_at(self.obs.last_ready());
            }
        }
    }

    /// At the end of the session: give the server connection back if it can
    /// be made clean, else close it.
    async fn finish_server(&mut self, clean_exit: bool) {
        self.cancel.set(None).await;
        self.obs.released();
        let Some(mut s) = self.server.take() else {
            return;
        };
        let quiet = self.t.pending == 0
            && !self.t.unsynced
            // The server skips up to a Sync that never came.
            && !self.t.skipping
            && self.server_streaming == 0
            && self.client_streaming == 0
            && s.conn.read_buf.is_empty()
            && self.to_server.is_empty();
        if !quiet || !clean_exit && self.t.pending > 0 {
            // Mid-query or mid-message: closing is the only safe reset. A
            // backend busy with a query would not notice the closed socket
            // until it finished (holding its locks), so cancel it first; then
            // the server rolls the transaction back. Awaited here, not in a
            // task of its own: a proxy shutting down waits for sessions to
            // end, and must not exit before the cancel is delivered (the
            // statement would run on and commit after the client was told
            // its connection was terminated). `send_cancel` is bounded.
            if self.t.pending > 0 {
                let _ = crate::backend::send_cancel(s.conn.addr, s.conn.backend_key).await;
            }
            drop(s);
            return;
        }
        let mut reset: Vec<&str> = Vec::new();
        if self.t.tx_status != b'I' {
            reset.push("ROLLBACK");
        }
        if self.pin.is_some() || self.mode == PoolMode::Session {
            reset.push("DISCARD ALL");
        }
        if std::mem::take(&mut self.server_dirty) {
            s.conn.settings_fingerprint = u64::MAX;
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
                        s.conn.doubtful.clear();
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
/// bounds its prepared statements. When the server refuses one of the
/// settings, the connection itself is fine: it goes back to the pool (to be
/// reset by its next user) rather than being closed, so a client with a bad
/// setting cannot cost a server connection per attempt.
pub async fn prepare_server(
    mut checkout: Checkout,
    settings: &Settings,
) -> Result<Checkout, ProxyError> {
    // The common case: a connection already in line, nothing to send.
    if checkout.conn.settings_fingerprint == settings.fingerprint()
        && checkout.conn.prepared.len() <= MAX_PREPARED_PER_SERVER
    {
        return Ok(checkout);
    }
    match bring_in_line(&mut checkout, settings).await {
        Ok(()) => Ok(checkout),
        Err(NotReady::Refused(e)) => {
            checkout.release();
            Err(e)
        }
        // Dropped mid-exchange: closed.
        Err(NotReady::Broken(e)) => Err(e),
    }
}

/// Why a connection could not be brought in line with a client.
enum NotReady {
    /// The server refused a setting; the connection is idle and usable.
    Refused(ProxyError),
    /// The connection failed or stopped answering.
    Broken(ProxyError),
}

async fn bring_in_line(checkout: &mut Checkout, settings: &Settings) -> Result<(), NotReady> {
    let (conn, pool) = checkout.conn_and_pool();
    let shard = pool.shard();
    // A server that stops answering must not hold the session (or, at
    // login, a client that already got AuthenticationOk): the statements
    // that make a connection usable get as long as opening one does. A
    // broken connection is dropped by the caller, which closes it.
    let limit = pool.connect_timeout();
    let broken = || NotReady::Broken(ProxyError::shard_unavailable(shard));
    if conn.prepared.len() > MAX_PREPARED_PER_SERVER {
        tokio::time::timeout(limit, conn.run_simple(&["DEALLOCATE ALL"]))
            .await
            .map_err(|_| broken())?
            .map_err(|_| broken())?;
        conn.prepared.clear();
        conn.doubtful.clear();
    }
    if conn.settings_fingerprint != settings.fingerprint() {
        let statements = settings.replay(conn.settings_fingerprint);
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        let result = tokio::time::timeout(limit, conn.run_simple(&refs))
            .await
            .map_err(|_| broken())?
            .map_err(|_| broken())?;
        if let Some((code, message)) = result {
            tracing::debug!(
                code,
                message,
                "a session setting failed to apply on a server connection"
            );
            conn.settings_fingerprint = u64::MAX;
            return Err(NotReady::Refused(ProxyError::setting_rejected(
                &code, &message,
            )));
        }
        conn.settings_fingerprint = settings.fingerprint();
    }
    Ok(())
}

/// Writes what `stream` takes of `buf` now, without waiting (`WouldBlock`
/// when it takes nothing more); an emptied buffer starts again at the
/// beginning of its memory ([`rewind`]).
fn write_some(stream: &TcpStream, buf: &mut BytesMut) -> std::io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    while !buf.is_empty() {
        let n = stream.try_write(buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf.advance(n);
    }
    rewind(buf);
    Ok(())
}

/// Resolves when the client closes its connection (or it fails) while its
/// session waits for a server connection: a client that gave up must not
/// keep its place in the queue and then have its statement run for nobody.
/// What it sends meanwhile is kept in `buf` for later (up to
/// [`HIGH_WATER`]; beyond that, nothing more is read until the wait ends).
async fn client_left(client: &TcpStream, buf: &mut BytesMut, obs: &SessionObs) {
    while buf.len() < HIGH_WATER {
        if client.readable().await.is_err() {
            return;
        }
        reserve_for_read(buf);
        match client.try_read_buf(buf) {
            Ok(0) => return,
            Ok(n) => obs.bytes_in(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
    std::future::pending().await
}

/// The error a session ends with when it is stopped while waiting.
fn stop_error(stop: Stop) -> ProxyError {
    match stop {
        Stop::Killed => ProxyError::killed_by_admin(),
        Stop::ForceClose | Stop::Shutdown => ProxyError::shutting_down(),
    }
}

/// Most room reserved ahead of bytes that have not arrived yet.
const READ_AHEAD: usize = 1 << 20;

/// Room for a message of `total` bytes of which `buf` holds the start, but
/// at most [`READ_AHEAD`] beyond what is there: a peer's length header alone
/// must not make the proxy reserve (and, with strict overcommit, commit)
/// the whole announced size; the buffer grows as the bytes come.
pub(super) fn reserve_ahead(buf: &mut BytesMut, total: usize) {
    buf.reserve(total.saturating_sub(buf.len()).min(READ_AHEAD));
}

/// Free space a read may fill: a read that fills all of it does not prove
/// the socket drained, so keep enough room for a typical burst.
fn reserve_for_read(buf: &mut BytesMut) {
    const MIN_SPARE: usize = 8 * 1024;
    rewind(buf);
    if buf.capacity() - buf.len() < MIN_SPARE {
        buf.reserve(2 * MIN_SPARE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn reads_reuse_the_same_memory_once_messages_are_dropped() {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000u32 {
            reserve_for_read(&mut buf);
            seen.insert(buf.as_ptr() as usize);
            buf.put_slice(&i.to_be_bytes().repeat(20));
            let msg = buf.split_to(80).freeze();
            assert_eq!(&msg[..4], &i.to_be_bytes());
        }
        // A buffer that never rewound would start 1000 reads at 1000 places
        // (80 KB of memory); this one stays within its first kilobyte or so.
        assert!(seen.len() <= 16, "{} places", seen.len());
        assert!(buf.capacity() >= 8 * 1024);
    }
}
