//! The admin console: a simple-query session for users with `admin = true`
//! connected to `server.admin_database`. psql and any driver's simple query
//! work; the extended protocol is refused with 0A000 (and the rest of its
//! batch skipped up to Sync).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::clients::{ClientEntry, ClientState};
use super::command::{self, Command, Show};
use super::pause::Scope;
use super::table::Table;
use super::{show, show_config, show_traffic};
use crate::error::ProxyError;
use crate::protocol::framing::{peek_header, text_body};
use crate::protocol::messages::{self, ftag};
use crate::state::ProxyState;

/// Largest message the console accepts.
const MAX_MESSAGE: usize = 1 << 20;

/// What a command answers.
#[derive(Debug)]
pub enum Reply {
    /// Rows, then CommandComplete with the tag.
    Rows(Table, &'static str),
    /// CommandComplete only.
    Done(&'static str),
    /// A WARNING notice, then CommandComplete.
    DoneWithWarning(&'static str, ProxyError),
}

/// Runs one admin command.
pub async fn execute(state: &Arc<ProxyState>, cmd: Command) -> Result<Reply, ProxyError> {
    Ok(match cmd {
        Command::Show(what) => Reply::Rows(
            match what {
                Show::Pools => show::pools(state),
                Show::Clients => show::clients(state),
                Show::Servers => show::servers(state),
                Show::Shards => show::shards(state),
                Show::Tenants => show_traffic::tenants(state),
                Show::Stats => show_traffic::stats(state),
                Show::Config => show_config::config(&state.loaded()),
                Show::Version => show_config::version(),
                Show::Help => show_config::help(),
            },
            "SHOW",
        ),
        Command::Reload => {
            let path = state
                .config_path
                .get()
                .cloned()
                .ok_or_else(ProxyError::reload_unavailable)?;
            let st = state.clone();
            let outcome =
                tokio::task::spawn_blocking(move || crate::server::reload_report(&st, &path))
                    .await
                    .map_err(|_| ProxyError::internal())?;
            let reloaded = outcome.map_err(|errors| ProxyError::reload_failed(&errors))?;
            if reloaded.kept.is_empty() {
                Reply::Done("RELOAD")
            } else {
                Reply::DoneWithWarning("RELOAD", ProxyError::reload_kept_keys(&reloaded.kept))
            }
        }
        Command::Pause(scope) => {
            check_scope(state, &scope)?;
            state.pauses.pause(&scope);
            tracing::info!(?scope, "paused by the admin console");
            let limit = state.loaded().config.server.query_wait_timeout;
            wait_for_running(state, &scope, limit).await?;
            Reply::Done("PAUSE")
        }
        Command::Resume(scope) => {
            // A shard a reload removed while paused can still be resumed.
            let paused_shard = matches!(&scope,
                Scope::Shard(s) if state.pauses.current().shards.contains(s));
            if !paused_shard {
                check_scope(state, &scope)?;
            }
            state.pauses.resume(&scope);
            tracing::info!(?scope, "resumed by the admin console");
            Reply::Done("RESUME")
        }
        Command::KillClient(id) => {
            let entry = state
                .clients
                .get(id)
                .ok_or_else(|| ProxyError::admin_no_such("client", &id.to_string()))?;
            tracing::info!(client = id, "client killed by the admin console");
            entry.kill.cancel();
            Reply::Done("KILL")
        }
    })
}

/// Waits (up to `limit`) until no transaction under `scope` holds a server
/// connection, as PgBouncer's PAUSE waits for its servers: once `PAUSE`
/// returns, nothing in the scope runs (new transactions wait for RESUME).
async fn wait_for_running(
    state: &ProxyState,
    scope: &Scope,
    limit: Duration,
) -> Result<(), ProxyError> {
    let started = Instant::now();
    loop {
        if !state.pauses.holds(scope) {
            // A RESUME lifted it while this PAUSE waited: saying PAUSE now
            // would tell the operator a pause is in force that is not.
            return Err(ProxyError::pause_lifted(&scope.to_string()));
        }
        let running = state
            .clients
            .list()
            .iter()
            .filter(|c| !c.info.admin && c.state() == ClientState::Active)
            .filter(|c| {
                let p = c.placement();
                scope.covers(p.tenant.as_deref(), &p.shard)
            })
            .count();
        if running == 0 {
            return Ok(());
        }
        if started.elapsed() >= limit {
            return Err(ProxyError::pause_incomplete(
                &scope.to_string(),
                running,
                limit,
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn check_scope(state: &ProxyState, scope: &Scope) -> Result<(), ProxyError> {
    match scope {
        Scope::Shard(s) if state.pool(s).is_none() => Err(ProxyError::admin_no_such("shard", s)),
        _ => Ok(()),
    }
}

/// Most commands in one admin Query.
pub const MAX_COMMANDS: usize = 100;

/// Runs every statement of a simple Query, writing replies to `out`; stops
/// at the first error, as Postgres does.
pub async fn run_query(state: &Arc<ProxyState>, sql: &str, out: &mut BytesMut) {
    let statements = command::split(sql);
    if statements.is_empty() {
        messages::empty_query(out);
        return;
    }
    // Every reply of a Query is written out at its end: a bounded number
    // of commands keeps that bounded (and a Query from firing thousands of
    // reloads).
    if statements.len() > MAX_COMMANDS {
        let e = ProxyError::admin_too_many_commands(statements.len(), MAX_COMMANDS);
        messages::error_response(out, &e);
        return;
    }
    for stmt in statements {
        tracing::info!(command = stmt, "admin command");
        let reply = match command::parse(stmt) {
            Ok(cmd) => execute(state, cmd).await,
            Err(e) => Err(e),
        };
        match reply {
            Ok(Reply::Rows(table, tag)) => table.encode(out, tag),
            Ok(Reply::Done(tag)) => messages::command_complete(out, tag),
            Ok(Reply::DoneWithWarning(tag, warning)) => {
                messages::warning(out, &warning);
                messages::command_complete(out, tag);
            }
            Err(e) => {
                tracing::info!(code = %e.code, reason = %e.message, "admin command failed");
                messages::error_response(out, &e);
                return;
            }
        }
    }
}

/// Serves an authenticated admin session until it ends.
pub async fn serve(
    state: Arc<ProxyState>,
    entry: Arc<ClientEntry>,
    mut client: TcpStream,
    mut buf: BytesMut,
) {
    let mut out = BytesMut::with_capacity(4096);
    let version = format!("16.0 ({})", show_config::version_string());
    for (name, value) in [
        ("server_version", version.as_str()),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", entry.info.application_name.as_str()),
    ] {
        messages::parameter_status(&mut out, name, value);
    }
    messages::backend_key_data(&mut out, entry.info.id as i32, 0);
    messages::ready_for_query(&mut out, b'I');
    let mut skip_until_sync = false;
    loop {
        let end = loop {
            let h = match peek_header(&buf, MAX_MESSAGE) {
                Ok(Some(h)) if buf.len() >= h.total_len => h,
                Ok(_) => break None,
                Err(e) => break Some(Some(e)),
            };
            let msg = buf.split_to(h.total_len);
            match h.tag {
                ftag::TERMINATE => break Some(None),
                ftag::QUERY => {
                    let text = text_body(&msg);
                    match std::str::from_utf8(text) {
                        Ok(sql) => run_query(&state, sql, &mut out).await,
                        Err(_) => messages::error_response(&mut out, &ProxyError::invalid_utf8()),
                    }
                    messages::ready_for_query(&mut out, b'I');
                }
                ftag::SYNC => {
                    skip_until_sync = false;
                    messages::ready_for_query(&mut out, b'I');
                }
                // Outside COPY, Postgres ignores these (a client may still
                // be sending data for a COPY that failed).
                ftag::COPY_DATA | ftag::COPY_DONE | ftag::COPY_FAIL => {}
                _ if skip_until_sync => {}
                t if ftag::is_extended(t) || t == ftag::FUNCTION_CALL => {
                    messages::error_response(&mut out, &ProxyError::admin_extended_protocol());
                    if h.tag == ftag::FUNCTION_CALL {
                        messages::ready_for_query(&mut out, b'I');
                    } else {
                        skip_until_sync = true;
                    }
                }
                other => {
                    break Some(Some(ProxyError::protocol_violation(format!(
                        "invalid frontend message type '{}'",
                        other.escape_ascii()
                    ))));
                }
            }
        };
        if let Some(Some(e)) = &end {
            messages::error_response(&mut out, e);
        }
        if !out.is_empty() {
            if client.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if end.is_some() {
            let _ = client.shutdown().await;
            return;
        }
        let fatal = tokio::select! {
            _ = entry.kill.cancelled() => ProxyError::killed_by_admin(),
            _ = state.force_close.cancelled() => ProxyError::shutting_down(),
            _ = state.shutdown.cancelled() => ProxyError::shutting_down(),
            r = client.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
        };
        messages::error_response(&mut out, &fatal);
        let _ = client.write_all(&out).await;
        let _ = client.shutdown().await;
        return;
    }
}
