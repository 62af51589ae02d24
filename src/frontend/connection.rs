//! The life of one client connection: handshake, cancel requests, login
//! (route, first server contact, ParameterStatus, BackendKeyData), then the
//! session loop.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::Instrument;

use super::handshake::{self, Login, Opening};
use super::isolation::Isolation;
use super::session::{Session, SessionParts, prepare_server};
use super::settings::Settings;
use crate::admin::{ClientEntry, ClientGuard, ClientInfo};
use crate::config::PoolMode;
use crate::error::ProxyError;
use crate::metrics::SessionObs;
use crate::protocol::messages;
use crate::protocol::startup::parse_options;
use crate::state::ProxyState;
use crate::tenant::{TenantContext, validate_tenant_id};

/// Serves one accepted client connection to the end.
pub async fn serve_connection(
    state: Arc<ProxyState>,
    client: TcpStream,
    peer: std::net::SocketAddr,
) {
    let _ = client.set_nodelay(true);
    let accepted = std::time::Instant::now();
    let _open = state.metrics.client_connected();
    let id = state.next_session_id();
    let span = tracing::info_span!("session", id, client = %peer, user = tracing::field::Empty, tenant = tracing::field::Empty);
    let opened = open_session(state, client, peer, id, accepted)
        .instrument(span.clone())
        .await;
    let Some((session, _registered)) = opened else {
        return;
    };
    // The session loop runs outside the span: entering a span at every
    // poll costs more than forwarding a query does. Its log lines name the
    // span as their parent instead.
    session.run().await;
    let duration_ms = accepted.elapsed().as_millis() as u64;
    tracing::info!(parent: &span, duration_ms, "session closed");
}

/// A connection accepted while `max_client_conn` clients are connected: a
/// CancelRequest is carried out (a query must stay cancellable when the
/// proxy is full, as in Postgres); a login is refused with 53300 once its
/// startup packet is read.
pub async fn serve_when_full(
    state: Arc<ProxyState>,
    mut client: TcpStream,
    peer: std::net::SocketAddr,
) {
    let mut buf = BytesMut::with_capacity(512);
    // Short: a cancel is sent at once, and a connection that sends nothing
    // must not keep one of the few places for long.
    let opened = tokio::time::timeout(
        WHEN_FULL_TIMEOUT,
        handshake::open_when_full(&mut client, &mut buf),
    )
    .await;
    match opened {
        Ok(Ok(Opening::Cancel { pid, secret })) => carry_out_cancel(&state, pid, secret).await,
        Ok(Ok(_)) | Err(_) => {}
        Ok(Err(e)) if e.origin == crate::error::Source::ClientGone => {}
        Ok(Err(e)) => {
            if e.code == crate::protocol::sqlstate::SqlState::TOO_MANY_CONNECTIONS {
                tracing::warn!(client = %peer, "refusing client: max_client_conn reached");
            }
            state.metrics.client_refused(&e);
            send_fatal(&mut client, &e).await;
        }
    }
}

/// How long a connection accepted while the proxy is full may take to send
/// its first packet.
const WHEN_FULL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Cancels the query of the session `(pid, secret)` names, if it exists.
async fn carry_out_cancel(state: &ProxyState, pid: i32, secret: i32) {
    if let Some(slot) = state.cancels.lookup(pid, secret) {
        slot.cancel().await;
    }
}

/// Handshake, cancel request or login, up to a session ready to run (with
/// the guard that keeps it in the admin console's client list), or `None`
/// when the connection is done.
async fn open_session(
    state: Arc<ProxyState>,
    mut client: TcpStream,
    peer: std::net::SocketAddr,
    id: u64,
    accepted: std::time::Instant,
) -> Option<(Session, ClientGuard)> {
    let mut buf = super::buffers::take();
    let loaded = state.loaded();
    let opened = tokio::time::timeout(
        handshake::AUTH_TIMEOUT,
        handshake::open(&mut client, &mut buf, &loaded),
    )
    .await;
    let login = match opened {
        Ok(Ok(Opening::Session(login))) => login,
        Ok(Ok(Opening::Cancel { pid, secret })) => {
            carry_out_cancel(&state, pid, secret).await;
            return None;
        }
        Ok(Ok(Opening::Dropped)) => {
            tracing::debug!("malformed cancel request; closed without an answer");
            return None;
        }
        // Not a refusal: psql closes after the password request to ask
        // for one, and port probes close without a word.
        Ok(Err(e)) if e.origin == crate::error::Source::ClientGone => {
            tracing::debug!(error = %e, "startup ended by the client");
            return None;
        }
        Ok(Err(e)) => {
            if e.code == crate::protocol::sqlstate::SqlState::INVALID_PASSWORD {
                tracing::warn!(error = %e, "authentication failed");
            } else {
                tracing::debug!(error = %e, "startup failed");
            }
            state.metrics.client_refused(&e);
            send_fatal(&mut client, &e).await;
            return None;
        }
        Err(_) => {
            let e = ProxyError::protocol_violation("authentication timed out");
            state.metrics.client_refused(&e);
            send_fatal(&mut client, &e).await;
            return None;
        }
    };
    tracing::Span::current().record("user", login.user.as_str());
    let admin = login.database == loaded.config.server.admin_database;
    let registered = state.clients.register(ClientInfo {
        id,
        user: login.user.clone(),
        database: login.database.clone(),
        addr: peer,
        application_name: login
            .params
            .iter()
            .find(|(k, _)| k == "application_name")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        admin,
        connected: accepted,
    });
    if admin {
        tracing::info!("admin session opened");
        crate::admin::console::serve(state, registered.entry.clone(), client, buf).await;
        let duration_ms = accepted.elapsed().as_millis() as u64;
        tracing::info!(duration_ms, "admin session closed");
        return None;
    }
    let entry = registered.entry.clone();
    match start_session(state.clone(), id, client, buf, login, entry).await {
        Ok(session) => session.map(|s| (s, registered)),
        Err(e) => {
            state.metrics.client_refused(&e);
            tracing::info!(code = %e.code, reason = %e.message, "login refused");
            None
        }
    }
}

async fn start_session(
    state: Arc<ProxyState>,
    id: u64,
    mut client: TcpStream,
    buf: BytesMut,
    login: Login,
    entry: Arc<ClientEntry>,
) -> Result<Option<Session>, ProxyError> {
    let loaded = state.loaded();
    // Removed by a reload since the handshake checked the password.
    let Some(user) = loaded.config.user(&login.user) else {
        let e = ProxyError::auth_failed(&login.user);
        send_fatal(&mut client, &e).await;
        return Err(e);
    };
    let mut startup = startup_settings(&login.params);
    // Tenant isolation: who the session is, and where it goes first.
    let isolation = match &loaded.isolation {
        Some(_) if let Err(e) = check_isolated_startup(&mut startup) => {
            send_fatal(&mut client, &e).await;
            return Err(e);
        }
        Some(rules) => {
            let from_options = startup
                .iter()
                .rev()
                .find(|(k, _)| k.to_lowercase() == rules.variable)
                .map(|(_, v)| v.clone());
            let tenant = match TenantContext::new(&login.user, user.tenant.clone(), from_options) {
                Ok(t) => t,
                Err(mut e) => {
                    e.severity = crate::error::Severity::Fatal;
                    send_fatal(&mut client, &e).await;
                    return Err(e);
                }
            };
            if let Some(t) = tenant.current() {
                tracing::Span::current().record("tenant", t);
                if validate_tenant_id(t, []).is_err() {
                    let e = ProxyError::invalid_tenant_id(t, "not a valid tenant id").fatal();
                    send_fatal(&mut client, &e).await;
                    return Err(e);
                }
            }
            // The variable is the proxy's: servers never get it at session
            // level (with `rls`, each transaction sets it; see frontend::rls).
            startup.retain(|(k, _)| k.to_lowercase() != rules.variable);
            Some(Isolation::new(state.clone(), rules.clone(), tenant))
        }
        None => None,
    };
    let route = match &isolation {
        Some(iso) => iso.route().map_err(ProxyError::fatal),
        None => match &user.tenant {
            Some(t) => {
                tracing::Span::current().record("tenant", t.as_str());
                loaded
                    .router
                    .route(t)
                    .map_err(|_| ProxyError::tenant_unroutable(t))
            }
            None => loaded
                .router
                .default_route()
                .map_err(|_| ProxyError::no_shard_for_session().fatal()),
        },
    };
    let route = match route {
        Ok(r) => r,
        Err(e) => {
            send_fatal(&mut client, &e).await;
            return Err(e);
        }
    };
    let Some(pool) = state.pool(&route.shard) else {
        let e = ProxyError::internal();
        send_fatal(&mut client, &e).await;
        return Err(e);
    };
    let mut settings = Settings::new(startup);
    if isolation.is_some() {
        settings.pin_schema(route.schema.as_deref());
    }

    // The ParameterStatus values to report come from a server that applied
    // these exact settings: remembered per pool, or learnt now (which also
    // proves the shard reachable and the client's settings valid).
    let session_mode = loaded.config.server.pool_mode == PoolMode::Session;
    let cached = if session_mode {
        None
    } else {
        pool.reported_params(settings.fingerprint())
    };
    let (params, checkout) = match cached {
        Some(params) => (params, None),
        None => {
            let first = async {
                let checkout = pool
                    .checkout(loaded.config.server.query_wait_timeout)
                    .await?;
                prepare_server(checkout, &settings).await
            };
            match first.await {
                Ok(c) => {
                    pool.remember_params(settings.fingerprint(), &c.conn.params);
                    (Arc::new(c.conn.params.clone()), Some(c))
                }
                Err(mut e) => {
                    e.severity = crate::error::Severity::Fatal;
                    send_fatal(&mut client, &e).await;
                    return Err(e);
                }
            }
        }
    };
    let tenant_now = match &isolation {
        Some(iso) => iso.tenant.current(),
        None => user.tenant.as_deref(),
    };
    let obs = SessionObs::new(
        state.metrics.clone(),
        entry,
        tenant_now,
        &route.shard,
        loaded.config.server.slow_query_threshold,
    );
    let ((pid, secret), cancel) = state.cancels.register();
    // Unregistered however the session ends, a panic included.
    let cancel_key = state.cancels.hold(pid);
    let mut out = BytesMut::with_capacity(512);
    for (name, value) in params.iter() {
        messages::parameter_status(&mut out, name, value);
    }
    messages::backend_key_data(&mut out, pid, secret);
    messages::ready_for_query(&mut out, b'I');
    let server = match checkout {
        Some(c) if session_mode => {
            cancel.set(Some((c.conn.addr, c.conn.backend_key))).await;
            obs.attached(&c.conn);
            Some(c)
        }
        Some(c) => {
            c.release();
            None
        }
        None => None,
    };
    if client.write_all(&out).await.is_err() {
        return Ok(None);
    }
    tracing::info!(shard = %route.shard, database = %login.database, "session opened");
    Ok(Some(Session::new(SessionParts {
        id,
        state: state.clone(),
        pool,
        client,
        client_in: buf,
        settings,
        cancel,
        server,
        routed_tenant: if isolation.is_none() {
            user.tenant.clone()
        } else {
            None
        },
        isolation,
        obs,
        told: params,
        cancel_key,
    })))
}

/// Isolated sessions may not change how names resolve or who they are:
/// `search_path` (unless it is the default, which is dropped), `role` and
/// `session_authorization` are refused, and so is a client encoding whose
/// characters can hide quote or backslash bytes.
fn check_isolated_startup(startup: &mut Vec<(String, String)>) -> Result<(), ProxyError> {
    for (_, v) in startup
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("client_encoding"))
    {
        crate::tenant::check_client_encoding(v).map_err(|mut e| {
            e.severity = crate::error::Severity::Fatal;
            e
        })?;
    }
    let mut refused = None;
    startup.retain(|(k, v)| match k.to_lowercase().as_str() {
        "search_path" => {
            let normal: String = v
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '"')
                .collect();
            if normal == "public" || normal == "$user,public" {
                false
            } else {
                refused = Some(k.clone());
                true
            }
        }
        "standard_conforming_strings" if v.eq_ignore_ascii_case("on") => true,
        "role" | "session_authorization" | "standard_conforming_strings" => {
            refused = Some(k.clone());
            true
        }
        _ => true,
    });
    match refused {
        Some(k) => Err(ProxyError::startup_parameter_refused(&k)),
        None => Ok(()),
    }
}

/// Startup parameters to apply on server connections: everything but the
/// protocol's own keys, with `options` expanded.
fn startup_settings(params: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "options" => out.extend(parse_options(v)),
            "replication" => {}
            _ => out.push((k.clone(), v.clone())),
        }
    }
    out
}

async fn send_fatal(client: &mut TcpStream, e: &ProxyError) {
    let mut out = BytesMut::new();
    messages::error_response(&mut out, e);
    // A client that does not read cannot keep the connection (and its slot).
    let _ = tokio::time::timeout(super::session::LAST_WRITE, async {
        let _ = client.write_all(&out).await;
        let _ = client.shutdown().await;
    })
    .await;
}
