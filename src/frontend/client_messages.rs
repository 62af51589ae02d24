//! Client → server: framing what the client sends, deciding what goes to the
//! server (rewritten for tenant isolation, statement names mapped to the
//! proxy's), answering what needs no server, and refusing in order.

use std::sync::Arc;

use bytes::{BufMut, Bytes};

use super::classify::{
    Effect, SQL_PREPARE, bare_transaction_end, classify, effects_of, listens_to_reserved_channel,
    lone_begin, mentions, names_with_prefix, plainly_without_effect,
};
use super::deallocate::{STAND_IN, STAND_IN_CHANNEL, runs_as_stand_in};
use super::isolation::{
    Isolation, ParsePlan, ServerHold, TenantBinding, bind_names, raise_statement, touches_nothing,
};
use super::portals::PortalMeaning;
use super::prepared::{NOOP_NAME, SERVER_NAME_PREFIX, Source, Statement};
use super::session::{
    BindAction, CloseAction, DescribeAction, End, HIGH_WATER, ParseAction, Retag, Retagged,
    STREAM_THRESHOLD, Session, TxControl, UnnamedStatement, reserve_ahead,
};
use crate::config::PoolMode;
use crate::error::ProxyError;
use crate::pool::Checkout;
use crate::protocol::framing::{peek_header, query_text, read_cstr, text_body};
use crate::protocol::messages::{self, ftag};
use crate::router::RouteKey;
use crate::tenant::TenantSet;

/// What isolation decided for one message.
enum Plan {
    /// Forward as sent.
    AsSent,
    /// Send this SQL instead (simple Query).
    Query(String),
    /// Prepare this instead (Parse).
    Parse(ParsePlan),
}

impl Plan {
    /// The rewritten text of a Parse plan, taken out of it.
    fn into_rewritten(self) -> Option<String> {
        match self {
            Plan::Parse(p) => Some(p.sql),
            _ => None,
        }
    }
}

impl Session {
    /// Handles every complete message from the client. Returns `Some` when the
    /// session should end.
    pub(super) async fn process_client(&mut self) -> Result<Option<End>, ProxyError> {
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
            let h = match peek_header(&self.client_in, self.max_message) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(None),
                Err(e) => return self.end_after_replies(e),
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
                reserve_ahead(&mut self.client_in, h.total_len);
                return Ok(None);
            }
            let tag = h.tag;
            if tag == ftag::TERMINATE {
                if self.t.pending > 0 && self.server.is_some() {
                    // Postgres runs what came before a Terminate to its end
                    // (a statement outside a transaction block commits):
                    // the session ends once those replies are in.
                    self.end_after_running(None);
                    return Ok(None);
                }
                return Ok(Some(End::ClientGone));
            }
            if !ftag::is_frontend(tag) {
                return self.end_after_replies(ProxyError::invalid_message_type(tag));
            }
            if self.must_wait_for_replies(tag, &self.client_in[..h.total_len]) {
                self.held = true;
                return Ok(None);
            }
            let msg = self.client_in.split_to(h.total_len).freeze();
            // Only the message right after it can move the transaction a
            // `BEGIN` opened (see `move_transaction`).
            let fresh = self.fresh_begin.take();
            let idle_before = self.t.tx_status == b'I' && self.t.pending == 0 && !self.t.unsynced;
            if tag == ftag::SYNC {
                // However it is answered, it ends what the server skips
                // after an error, and the extended-protocol batch.
                self.t.extended_since_sync = false;
                self.t.skipping = false;
            }
            if self.skip_until_sync {
                if tag == ftag::SYNC {
                    self.skip_until_sync = false;
                    self.answer_sync(&msg);
                }
                continue;
            }
            if self.t.skipping && matches!(tag, ftag::QUERY | ftag::FUNCTION_CALL) {
                // The server skips to the next Sync after an error in an
                // extended-protocol batch, ignoring this as Postgres does:
                // no reply comes for it.
                continue;
            }
            if tag == ftag::QUERY
                && let Err(e) = query_text(&msg)
            {
                // Postgres would not run a Query it cannot read whole; the
                // rest of the proxy reads its text as `text_body`.
                self.refuse(tag, e);
                continue;
            }
            if tag == ftag::QUERY
                && let Some(name) = self.deallocated_statement(text_body(&msg))
            {
                // Released here, as Postgres would: the statement lives on
                // servers under the proxy's name, which other sessions share.
                self.statements.remove(name.as_bytes());
                messages::command_complete(&mut self.to_client, "DEALLOCATE");
                messages::ready_for_query(&mut self.to_client, self.t.tx_status);
                continue;
            }
            // Other DEALLOCATEs of the client's statements run as a stand-in.
            let msg = if tag == ftag::QUERY && !self.statements.is_empty() {
                if let Some(e) = std::str::from_utf8(text_body(&msg))
                    .ok()
                    .and_then(|sql| self.statements.refused_in_sql(sql))
                {
                    self.refuse(tag, e);
                    continue;
                }
                match self.stand_in_deallocations(&msg) {
                    Ok(Some(replaced)) => replaced,
                    Ok(None) => msg,
                    Err(e) => {
                        self.refuse(tag, e);
                        continue;
                    }
                }
            } else {
                msg
            };
            // Only statements are planned: Bind, Execute, Sync and the rest
            // go as sent (pipelines carry several of them per statement).
            let carries_sql = matches!(tag, ftag::QUERY | ftag::PARSE | ftag::FUNCTION_CALL);
            // The quick test, once per statement: most skip every closer look.
            let plain = sql_of(tag, &msg).is_some_and(plainly_without_effect);
            let mut plan = if carries_sql {
                match self.plan(tag, &msg, fresh.is_some(), plain).await {
                    Ok(p) => p,
                    Err(e) if e.is_fatal() => return Err(e),
                    Err(e) => {
                        self.refuse(tag, e);
                        continue;
                    }
                }
            } else {
                if let Some(iso) = self.iso.as_mut() {
                    iso.clear_planned();
                }
                Plan::AsSent
            };
            if let Some(begin) = fresh.as_deref()
                && self.iso.as_mut().is_some_and(Isolation::take_move)
            {
                self.move_transaction(begin).await?;
            }
            if self.server.is_none() {
                match tag {
                    // Nothing to flush, nothing to sync: answer locally.
                    ftag::FLUSH | ftag::COPY_DATA | ftag::COPY_DONE | ftag::COPY_FAIL => continue,
                    ftag::SYNC => {
                        self.answer_sync(&msg);
                        continue;
                    }
                    ftag::PARSE | ftag::CLOSE => match self.answer_locally(tag, &msg, &plan) {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(e) => {
                            self.refuse(tag, e);
                            continue;
                        }
                    },
                    _ => {}
                }
                if let Err(e) = self.acquire().await {
                    if e.is_fatal() {
                        return Err(e);
                    }
                    self.refuse(tag, e);
                    continue;
                }
                // A reload moved the tenant while this message waited (for a
                // connection, or under PAUSE): plan it again for its new home.
                if carries_sql && self.iso.as_ref().is_some_and(Isolation::planned_elsewhere) {
                    plan = match self.plan(tag, &msg, false, plain).await {
                        Ok(p) => p,
                        Err(e) if e.is_fatal() => return Err(e),
                        Err(e) => {
                            self.refuse(tag, e);
                            continue;
                        }
                    };
                }
            }
            if matches!(tag, ftag::BIND | ftag::DESCRIBE)
                && self.iso.is_some()
                && let Err(e) = self.replan_if_elsewhere(tag, &msg).await
            {
                if e.is_fatal() {
                    return Err(e);
                }
                self.refuse(tag, e);
                continue;
            }
            let rewritten = !matches!(plan, Plan::AsSent);
            if matches!(tag, ftag::QUERY | ftag::BIND) {
                match self.rls_plan(tag, &msg, &mut plan) {
                    Ok(()) => {}
                    Err(e) if e.is_fatal() => return Err(e),
                    Err(e) => {
                        self.refuse(tag, e);
                        continue;
                    }
                }
            }
            if carries_sql
                && !plain
                && let Err(e) = self.check_pin_quota(tag, &msg)
            {
                self.refuse(tag, e);
                continue;
            }
            let handled = self.handle_client_message(tag, &msg, plan, rewritten, plain);
            if ftag::is_extended(tag) {
                self.t.extended_since_sync = true;
            }
            if self.pin.is_none() {
                // Taken for a pin that did not happen (the message was refused).
                self.pin_lease = None;
            }
            match handled {
                Ok(()) => {
                    if tag == ftag::QUERY
                        && idle_before
                        && self.iso.is_some()
                        && let Some(sql) = lone_begin(text_body(&msg))
                    {
                        self.fresh_begin = Some(sql.to_string());
                    }
                }
                Err(e) if e.is_fatal() => return self.end_after_replies(e),
                Err(e) => self.refuse(tag, e),
            }
        }
    }

    /// A client message the session cannot go on after (one it cannot
    /// frame, a type no client sends): Postgres has run the batches before
    /// it, and answered them, when it reads it. So the session ends with
    /// `e` once the batches in flight are answered (nothing more is read
    /// from the client); at once when none is, or for any other error.
    fn end_after_replies(&mut self, e: ProxyError) -> Result<Option<End>, ProxyError> {
        let protocol = e.origin == crate::error::Source::Client
            && (e.code == crate::protocol::sqlstate::SqlState::PROTOCOL_VIOLATION
                || e.code == crate::protocol::sqlstate::SqlState::PROGRAM_LIMIT_EXCEEDED);
        if !protocol || self.t.pending == 0 || self.server.is_none() {
            return Err(e);
        }
        self.end_after_running(Some(e));
        Ok(None)
    }

    /// Ends the session (with `e`, if any) once the batches in flight are
    /// answered; reads nothing more from the client. A `COPY … FROM STDIN`
    /// among them would wait for data forever: it is failed (the server
    /// ignores a CopyFail outside COPY), as it fails in Postgres when the
    /// session ends.
    fn end_after_running(&mut self, e: Option<ProxyError>) {
        self.client_in.clear();
        messages::copy_fail(&mut self.to_server, "the client ended the session");
        self.terminating = Some(e);
    }

    /// A Query or Parse that would pin the server connection counts against
    /// its tenant's share of the pool's pinned connections: refused (53300)
    /// when the tenant holds its share already, else counted (the lease is
    /// kept with the pin). Sessions without a tenant are not counted. Not
    /// called for statements that pass the quick test (they cannot pin).
    fn check_pin_quota(&mut self, tag: u8, msg: &[u8]) -> Result<(), ProxyError> {
        if self.pin.is_some() || self.mode != PoolMode::Transaction {
            return Ok(());
        }
        let (Some(tenant), Some(server), Some(raw)) = (
            self.iso.as_ref().and_then(|i| i.tenant.current()),
            self.server.as_ref(),
            sql_of(tag, msg),
        ) else {
            return Ok(());
        };
        let pins = std::str::from_utf8(raw)
            .map(|sql| classify(sql).iter().any(|e| matches!(e, Effect::Pins(_))))
            .unwrap_or(false);
        if !pins {
            return Ok(());
        }
        let pool = server.pool();
        match pool.pins.take(tenant, false) {
            Ok(lease) => {
                self.pin_lease = Some(lease);
                Ok(())
            }
            Err(limit) => {
                pool.stats
                    .pins_refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    parent: self.obs.span(),
                    session = self.id,
                    tenant,
                    shard = pool.shard(),
                    limit,
                    "statement refused: the tenant holds its share of pinned connections"
                );
                Err(ProxyError::pin_quota_reached(tenant, pool.shard(), limit))
            }
        }
    }

    /// Isolation's decision for a Query or Parse (others are sent as they are).
    ///
    /// `fresh`: the message came right after a `BEGIN` that opened the
    /// transaction (see [`Session::move_transaction`]). `plain`: its SQL
    /// passed [`plainly_without_effect`], which also rules out `_tg`.
    async fn plan(
        &mut self,
        tag: u8,
        msg: &[u8],
        fresh: bool,
        plain: bool,
    ) -> Result<Plan, ProxyError> {
        if let Some(iso) = self.iso.as_mut() {
            iso.clear_planned();
        }
        if self.t.tenant_changed && matches!(tag, ftag::QUERY | ftag::PARSE) {
            return Err(ProxyError::statement_after_tenant_change());
        }
        let in_transaction = self.t.tx_status != b'I';
        let hold = ServerHold {
            pinned: self.pin.is_some(),
            busy: self.server.is_some() && (self.t.pending > 0 || self.t.unsynced),
            kept: self.mode == PoolMode::Session,
            fresh: fresh
                && self.server.is_some()
                && self.t.tx_status == b'T'
                && self.t.pending == 0
                && !self.t.unsynced
                && self.to_server.is_empty(),
        };
        // (`_tg` starts the proxy's statement names too.)
        if !plain
            && let Some(raw) = sql_of(tag, msg)
            && mentions(raw, STAND_IN_CHANNEL)
            && let Ok(sql) = std::str::from_utf8(raw)
        {
            if let Some(name) = names_with_prefix(sql, SERVER_NAME_PREFIX) {
                // Other clients' statements live under these names on servers.
                return Err(ProxyError::unknown_prepared_statement(&name));
            }
            if listens_to_reserved_channel(sql, STAND_IN_CHANNEL) {
                return Err(ProxyError::reserved_channel(STAND_IN_CHANNEL));
            }
        }
        if !plain
            && let Some(raw) = sql_of(tag, msg)
            && let Some(what) = self.schema_path_reset(raw)?
        {
            self.check_path_reset(tag, raw, what)?;
        }
        let Some(iso) = self.iso.as_mut() else {
            return Ok(Plan::AsSent);
        };
        match tag {
            ftag::QUERY => {
                let sql = sql_text(text_body(msg))?;
                Ok(match iso.query(sql, in_transaction, hold).await? {
                    Some(s) => Plan::Query(s),
                    None => Plan::AsSent,
                })
            }
            ftag::PARSE => {
                let mut pos = 5;
                read_cstr(msg, &mut pos)?;
                let sql = sql_text(read_cstr(msg, &mut pos)?)?;
                Ok(match iso.parse(sql, &msg[pos..], in_transaction).await? {
                    Some(p) => Plan::Parse(p),
                    None => Plan::AsSent,
                })
            }
            ftag::FUNCTION_CALL if iso.tenant.current().is_some() => Err(
                ProxyError::construct_unsupported("the fast-path function call"),
            ),
            _ => Ok(Plan::AsSent),
        }
    }

    /// A Bind or Describe of a statement the client prepared while its
    /// tenant had another kind of home (a trusted session that changed
    /// between a shared and a dedicated tenant, or a reload that moved its
    /// tenant): its text as the client sent it is planned again for the
    /// current home, and that statement takes the name, as if the client
    /// had prepared it again. (Drivers keep their prepared statements per
    /// connection, and an error would not make them prepare one again.)
    async fn replan_if_elsewhere(&mut self, tag: u8, msg: &[u8]) -> Result<(), ProxyError> {
        let name = match tag {
            ftag::BIND => bind_names(msg)?.0,
            _ => match kind_and_name(msg)? {
                (b'S', name) => name,
                _ => return Ok(()),
            },
        };
        let (planned, old) = match self.statements.get(name) {
            Some(stmt) => match &stmt.route {
                Some(route) => (route.clone(), stmt.clone()),
                None => return Ok(()),
            },
            None => return Ok(()),
        };
        let Some(now) = self.route_key()? else {
            return Ok(());
        };
        if planned == now {
            return Ok(());
        }
        let Some(src) = self.statements.source(name) else {
            return Ok(());
        };
        // Planned as a Parse of the client's text (planning reads no name).
        let mut parse = bytes::BytesMut::new();
        messages::parse(&mut parse, "", &src.query, &src.param_types);
        let plain = plainly_without_effect(&src.query);
        let plan = self.plan(ftag::PARSE, &parse, false, plain).await?;
        let stmt = self.intern_planned(&plan, &src.query, &src.param_types)?;
        let reads_rows = stmt.query != old.query
            || std::str::from_utf8(&src.query).map_or(true, |sql| !touches_nothing(sql));
        if planned.schema.is_some() != now.schema.is_some() && reads_rows {
            // Between a tenant's own schema and other tables (shared, or a
            // dedicated database's), a statement that may name tables names
            // other ones, whose columns may differ: its result could change
            // shape under the client (Postgres refuses that, "cached plan
            // must not change result type"). Refused by the Bind or
            // Describe (`check_planned_route`); the client prepares it
            // again. Transaction control, SET, RESET, SHOW and DISCARD are
            // planned again.
            return Ok(());
        }
        self.statements.replan(name, stmt);
        Ok(())
    }

    /// The proxy-wide statement for a Parse of `query` with `types` as
    /// `plan` says to send it, for the session's current route.
    fn intern_planned(
        &self,
        plan: &Plan,
        query: &[u8],
        types: &[u8],
    ) -> Result<Arc<Statement>, ProxyError> {
        let route = self.route_key()?;
        Ok(match plan {
            Plan::Parse(p) => self.state.statements.intern(
                p.sql.as_bytes(),
                &p.param_types,
                p.binding.clone(),
                route,
            ),
            _ => self.state.statements.intern(query, types, None, route),
        })
    }

    /// Which statement of `sql` (`RESET ALL`, `DISCARD ALL`) would reset
    /// the search_path that confines the session's schema tenant, if any.
    fn schema_path_reset(&self, sql: &[u8]) -> Result<Option<&'static str>, ProxyError> {
        let Some(iso) = self.iso.as_ref() else {
            return Ok(None);
        };
        if plainly_without_effect(sql) {
            return Ok(None);
        }
        let Some(what) = std::str::from_utf8(sql)
            .ok()
            .and_then(crate::rewrite::path_reset_in)
        else {
            return Ok(None);
        };
        let key = iso.route_key()?;
        Ok((key.schema.is_some() && !key.dedicated).then_some(what))
    }

    /// A schema tenant's `RESET ALL` / `DISCARD ALL` (`what`) goes through
    /// only where nothing can run after it on the same server connection
    /// before that is pinned again: the last statement of a simple Query
    /// (the rewriter checks that), with no earlier reply outstanding, outside
    /// a transaction block, in transaction pooling, and not pinned (a
    /// `DISCARD ALL` ends a pin) nor pinning in the same query string. Then
    /// later messages wait for its reply, and the connection is given back
    /// (or closed) before anything else is sent.
    fn check_path_reset(&mut self, tag: u8, sql: &[u8], what: &str) -> Result<(), ProxyError> {
        let pins = std::str::from_utf8(sql)
            .map(|s| classify(s).iter().any(|e| matches!(e, Effect::Pins(_))))
            .unwrap_or(true);
        let alone = tag == ftag::QUERY
            && self.mode == PoolMode::Transaction
            && self.t.pending == 0
            && !self.t.unsynced
            && self.t.tx_status == b'I'
            && !pins
            && (what == "DISCARD ALL" || self.pin.is_none());
        if !alone {
            return Err(ProxyError::search_path_reset_refused(what));
        }
        self.t.path_reset = true;
        Ok(())
    }

    /// `rls`: the variable set in front of a message that starts a
    /// transaction (see [`super::rls`]).
    fn rls_plan(&mut self, tag: u8, msg: &[u8], plan: &mut Plan) -> Result<(), ProxyError> {
        let planned = match &*plan {
            Plan::Query(s) => Some(s.as_str()),
            _ => None,
        };
        if let Some(sql) = self.rls_before(tag, msg, planned)? {
            *plan = Plan::Query(sql);
        }
        Ok(())
    }

    /// Reports `e` for the message `tag` exactly where Postgres would: with no
    /// server in hand, locally; otherwise through the server (which raises
    /// it), so it stays in order with earlier pipelined replies and aborts a
    /// transaction just as a failing statement does.
    pub(super) fn refuse(&mut self, tag: u8, e: ProxyError) {
        // What a refused Query would have deallocated stays the client's.
        self.stood_in.clear();
        if e.origin == crate::error::Source::Client {
            tracing::info!(parent: self.obs.span(), session = self.id, code = %e.code, reason = %e.message, "statement refused");
        } else {
            // Pool and shard failures are logged (warn) where they happen.
            tracing::debug!(parent: self.obs.span(), session = self.id, code = %e.code, reason = %e.message, "statement failed");
        }
        // In a failed transaction with nothing in flight, the server would
        // only refuse the statement that raises `e` (25P02): an error
        // Postgres raises before that check is answered here, in order.
        let failed_idle = self.t.tx_status == b'E' && self.t.pending == 0 && !self.t.unsynced;
        let locally = self.server.is_none() || (e.before_abort_check && failed_idle);
        self.obs.refused(&e, locally, self.server.is_some());
        let ends_batch = matches!(tag, ftag::QUERY | ftag::FUNCTION_CALL | ftag::SYNC);
        if locally {
            messages::error_response(&mut self.to_client, &e);
            if ends_batch {
                messages::ready_for_query(&mut self.to_client, self.t.tx_status);
            } else {
                self.skip_until_sync = true;
            }
            return;
        }
        let sql = raise_statement(&e);
        self.t.raised_q.push_back((self.t.sent, e.routine));
        if ends_batch {
            messages::query(&mut self.to_server, &sql);
            self.expect_ready();
            self.unnamed = None;
        } else {
            let sent = self.t.sent;
            messages::parse(&mut self.to_server, "", sql.as_bytes(), &[0, 0]);
            self.t.parse_q.push_back((sent, ParseAction::Swallow(None)));
            messages::bind_unnamed(&mut self.to_server);
            self.t.bind_q.push_back((sent, BindAction::Swallow));
            messages::execute_unnamed(&mut self.to_server);
            // An Execute of the batch whose result never comes (it raises):
            // a Query behind it is then known to be skipped.
            self.t.batch_executes += 1;
            self.t.unsynced = true;
            // Extended-protocol messages went out (for a refused message
            // that never reaches the marking in `process_client`): a Query
            // sent behind them before a Sync is skipped by the server.
            self.t.extended_since_sync = true;
        }
        if let Some(s) = self.server.as_mut() {
            // The raising statement took the unnamed statement's place.
            s.conn.unnamed_owner = None;
        }
    }

    /// Whether the client message `msg` must wait until the server has
    /// answered what came before it: with `rls` (see [`super::rls`]), and a
    /// change of tenant. Earlier batches hold the server connection routed
    /// for the old tenant; Postgres would run the SET after them anyway, so
    /// waiting for their replies (which come without the client's help)
    /// changes nothing the client can see, where refusing broke clients that
    /// send their next query before reading the last ReadyForQuery
    /// (tokio-postgres after an error does). A change after statements of
    /// its own batch that were executed cannot wait (their replies may only
    /// come at the Sync behind it) and is refused as before.
    fn must_wait_for_replies(&self, tag: u8, msg: &[u8]) -> bool {
        if self.t.pending == 0 || self.server.is_none() {
            return false;
        }
        if tag == ftag::SYNC && self.t.extended_since_sync {
            // It ends extended-protocol messages already sent: the server
            // may answer what is in flight only once it has it (a Query
            // behind them that an error made it skip).
            return false;
        }
        if self.rls_must_wait(tag) || self.t.path_reset || self.statements_in_doubt(tag, msg) {
            return true;
        }
        if self.missing_statement_answered_here(tag, msg) {
            // Whether a transaction has failed meanwhile decides who
            // answers (see `refuse`): known once the replies are in.
            return true;
        }
        if self.t.tenant_unsettled && !self.t.unsynced {
            // The next batch belongs to the tenant's new home.
            return true;
        }
        // Answered here, after the replies to everything sent before it.
        if tag == ftag::QUERY
            && !self.t.unsynced
            && self.releases_statement(text_body(msg)).is_some()
        {
            return true;
        }
        let Some(iso) = self.iso.as_ref() else {
            return false;
        };
        if iso.tenant.awaits_transaction_end() && !self.t.unsynced {
            // Whether the tenant chosen in that transaction stays is in
            // the reply to its end.
            return true;
        }
        // A change of tenant (a SET, or a reset of a chosen one) counts
        // once what was sent before it is answered: an error there must not
        // be taken for its own.
        match tag {
            ftag::QUERY => {
                let sql = text_body(msg);
                !self.t.unsynced
                    && (iso.tenant_set_of(sql).is_some()
                        || self.schema_path_reset(sql).ok().flatten().is_some()
                        || (iso.tenant.reset_would_change() && resets_all(sql)))
            }
            ftag::BIND if self.t.batch_executes == 0 => bind_names(msg).is_ok_and(|(name, _)| {
                self.client_statement(name).is_ok_and(|t| {
                    self.bound_tenant_set(iso, &t).is_some()
                        || (iso.tenant.reset_would_change()
                            && t.effects().is_some_and(|e| {
                                e.iter()
                                    .any(|e| matches!(e, Effect::ResetAll | Effect::DiscardAll))
                            }))
                })
            }),
            _ => false,
        }
    }

    /// Whether `msg`, sent after the end of an earlier batch that is still
    /// unanswered, depends on which prepared statements the client has
    /// while that batch may change them: a drop in it (`DEALLOCATE`,
    /// `DISCARD ALL`) may fail, a Parse in it of the name `msg` uses may
    /// fail or be skipped. Postgres goes by their outcome; the proxy too,
    /// once it is in. (Messages of the drop's or the Parse's own batch do
    /// not wait: an error there makes the server skip them as well.)
    fn statements_in_doubt(&self, tag: u8, msg: &[u8]) -> bool {
        let t = &self.t;
        if t.drops_q.iter().any(|(b, _)| *b < t.sent)
            || t.retags_q
                .iter()
                .any(|r| r.batch < t.sent && matches!(r.sent, Retagged::Deallocate(_)))
        {
            return match tag {
                ftag::PARSE | ftag::BIND | ftag::DESCRIBE | ftag::CLOSE => true,
                ftag::QUERY => {
                    let sql = text_body(msg);
                    mentions(sql, "deallocate") || mentions(sql, "discard")
                }
                _ => false,
            };
        }
        if t.parse_q.is_empty() && t.close_q.is_empty() {
            return false;
        }
        // A Parse of an earlier batch, of `name` (any, if `None`), not
        // answered yet (a Parse the proxy answers itself is a Close).
        let parse_in_flight = |name: Option<&[u8]>| {
            let named = |n: &[u8]| name.is_none_or(|m| m == n);
            t.parse_q.iter().any(|(b, a)| {
                *b < t.sent && matches!(a, ParseAction::Forward(Some((_, n))) if named(n))
            }) || t.close_q.iter().any(|(b, a)| {
                *b < t.sent && matches!(a, CloseAction::AsParseComplete(n) if named(n))
            })
        };
        let name = match tag {
            // A DEALLOCATE of a name such a Parse may not define.
            ftag::QUERY => return mentions(text_body(msg), "deallocate") && parse_in_flight(None),
            ftag::PARSE => read_cstr(msg, &mut 5),
            ftag::BIND => bind_names(msg).map(|(name, _)| name),
            ftag::DESCRIBE | ftag::CLOSE => match kind_and_name(msg) {
                Ok((b'S', name)) => Ok(name),
                _ => return false,
            },
            _ => return false,
        };
        name.is_ok_and(|name| {
            if name.is_empty() {
                // The unnamed statement, last Parsed in an earlier batch
                // not answered yet: the server may have skipped that Parse
                // (after an error), and then has none (or another).
                tag != ftag::PARSE
                    && t.parse_q
                        .iter()
                        .rev()
                        .find(|(_, a)| matches!(a, ParseAction::Forward(None)))
                        .is_some_and(|(b, _)| *b < t.sent)
            } else {
                parse_in_flight(Some(name))
            }
        })
    }

    /// Whether `msg` is a Bind or a Describe of a statement that does not
    /// exist and that the proxy answers for (the unnamed statement never
    /// prepared, a name of the proxy's): Postgres looks it up before it
    /// checks for a failed transaction.
    fn missing_statement_answered_here(&self, tag: u8, msg: &[u8]) -> bool {
        let name = match tag {
            ftag::BIND => bind_names(msg).map(|(name, _)| name),
            ftag::DESCRIBE => match kind_and_name(msg) {
                Ok((b'S', name)) => Ok(name),
                _ => return false,
            },
            _ => return false,
        };
        name.is_ok_and(|name| self.missing_statement(name))
    }

    /// Whether `name` is a statement [`Session::client_statement`] reports
    /// missing itself: the unnamed one never prepared, or one of the
    /// proxy's names the client does not hold.
    fn missing_statement(&self, name: &[u8]) -> bool {
        if name.is_empty() {
            self.unnamed.is_none()
        } else {
            name.starts_with(SERVER_NAME_PREFIX.as_bytes()) && !self.statements.contains(name)
        }
    }

    /// The client's protocol-level statement that a simple Query of one
    /// `DEALLOCATE name` releases, if it names one (drivers such as
    /// ActiveRecord's release statements they prepared with Parse that way).
    fn releases_statement(&self, sql: &[u8]) -> Option<String> {
        // The first word is DEALLOCATE (or a comment comes first): a look
        // at one byte settles nearly every Query.
        let first = sql.iter().find(|c| !c.is_ascii_whitespace())?;
        if !matches!(first, b'd' | b'D' | b'-' | b'/') || plainly_without_effect(sql) {
            return None;
        }
        let name = super::classify::deallocated_name(std::str::from_utf8(sql).ok()?)?;
        self.statements.contains(name.as_bytes()).then_some(name)
    }

    /// [`Session::releases_statement`] when it can be answered now: nothing
    /// in flight before it, and not in a failed transaction (where the
    /// server's own error, 25P02, is the answer).
    fn deallocated_statement(&self, sql: &[u8]) -> Option<String> {
        if self.t.pending > 0 || self.t.unsynced || self.t.tx_status == b'E' {
            return None;
        }
        self.releases_statement(sql)
    }

    /// Sends `msg` on as `plan` says; `rewritten`: the plan is isolation's
    /// rewrite (not only the `rls` step's); `plain`: its SQL passed
    /// [`plainly_without_effect`] (no session effect to note).
    fn handle_client_message(
        &mut self,
        tag: u8,
        msg: &Bytes,
        plan: Plan,
        rewritten: bool,
        plain: bool,
    ) -> Result<(), ProxyError> {
        match tag {
            ftag::QUERY => {
                if self.stood_in.is_empty() {
                    self.obs.note_sql(|| msg.slice_ref(text_body(msg)));
                } else {
                    // Its text was noted before the stand-ins replaced it.
                    self.deallocating_in_query();
                }
                self.on_query_text(text_body(msg), plain);
                // A simple Query replaces the unnamed statement, here as in Postgres.
                self.unnamed = None;
                self.server_mut()?.conn.unnamed_owner = None;
                let sent = self.t.sent;
                let sent_as = match plan {
                    Plan::Query(sql) => {
                        messages::query(&mut self.to_server, &sql);
                        rewritten.then_some(sql)
                    }
                    _ => {
                        self.to_server.extend_from_slice(msg);
                        None
                    }
                };
                if let Some(iso) = self.iso.as_mut() {
                    if iso.take_show() {
                        // Executes in front of it with no Sync between are
                        // of its batch, and answered first.
                        self.t.retags_q.push_back(Retag {
                            batch: sent,
                            results_before: self.t.batch_executes,
                            sent: Retagged::Show,
                        });
                    }
                    let answered = self.t.answered;
                    self.sent_statements.note(sent, sent_as, answered);
                }
                self.expect_ready();
            }
            ftag::FUNCTION_CALL => {
                // It can call anything (set_config, advisory locks) with no
                // SQL text to read: only its server connection knows what
                // it left behind. (Tenant sessions are refused it.)
                if self.mode == PoolMode::Transaction && self.pin.is_none() {
                    self.pin_server("fast-path function call");
                }
                self.to_server.extend_from_slice(msg);
                self.expect_ready();
            }
            ftag::SYNC => {
                self.to_server.extend_from_slice(msg);
                self.expect_ready();
                self.t.unsynced = false;
            }
            ftag::EXECUTE => {
                if !self.portals.is_empty() {
                    self.on_execute(msg)?;
                }
                self.to_server.extend_from_slice(msg);
                self.t.unsynced = true;
                self.t.batch_executes += 1;
            }
            ftag::PARSE => {
                self.obs.note_parse(msg);
                let (sent, answered) = (self.t.sent, self.t.answered);
                let sent_as = self.on_parse(msg, plan, plain)?;
                // Only a Parse that went out counts in its batch.
                if self.iso.is_some() {
                    self.sent_statements.note(sent, sent_as, answered);
                }
            }
            ftag::BIND => self.on_bind(msg)?,
            ftag::DESCRIBE => self.on_describe(msg)?,
            ftag::CLOSE => self.on_close(msg)?,
            ftag::FLUSH => {
                self.to_server.extend_from_slice(msg);
                self.t.unsynced = true;
            }
            ftag::COPY_DATA | ftag::COPY_DONE | ftag::COPY_FAIL => {
                self.to_server.extend_from_slice(msg)
            }
            other => return Err(ProxyError::invalid_message_type(other)),
        }
        Ok(())
    }

    /// Without a server connection and outside a transaction, a Parse of a
    /// statement some server already accepted, or a Close of a statement, can
    /// be answered by the proxy itself. This keeps clients that prepare
    /// synchronously (libpq's PQprepare, as pgbench -M prepared does) from
    /// waiting for a server connection just to be told "ParseComplete".
    fn answer_locally(&mut self, tag: u8, msg: &[u8], plan: &Plan) -> Result<bool, ProxyError> {
        match tag {
            ftag::PARSE => {
                let mut pos = 5;
                let name = read_cstr(msg, &mut pos)?;
                if name.is_empty() {
                    return Ok(false);
                }
                self.check_name_encoding(name)?;
                let query = read_cstr(msg, &mut pos)?;
                self.check_parse_rest(query, &msg[pos..])?;
                if self.statements.contains(name) {
                    return Err(ProxyError::duplicate_prepared_statement(
                        &String::from_utf8_lossy(name),
                    ));
                }
                let stmt = self.intern_planned(plan, query, &msg[pos..])?;
                if !stmt.is_validated() || !classify_is_plain(query) {
                    return Ok(false);
                }
                let source = matches!(plan, Plan::Parse(_)).then(|| Source {
                    query: Bytes::copy_from_slice(query),
                    param_types: Bytes::copy_from_slice(&msg[pos..]),
                });
                self.statements.insert(name, stmt, source);
                messages::parse_complete(&mut self.to_client);
                Ok(true)
            }
            ftag::CLOSE => {
                let (kind, name) = kind_and_name(msg)?;
                if kind != b'S' || name.is_empty() {
                    return Ok(false);
                }
                self.check_name_encoding(name)?;
                self.statements.remove(name);
                messages::close_complete(&mut self.to_client);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// A Sync answered without a server connection: ReadyForQuery, after
    /// Postgres's 08P01 for a Sync with a body (it reads a Sync to its end;
    /// the Sync still ends the batch).
    fn answer_sync(&mut self, msg: &[u8]) {
        if msg.len() > 5 {
            self.refuse(
                ftag::SYNC,
                ProxyError::malformed_message("invalid message format"),
            );
        } else {
            messages::ready_for_query(&mut self.to_client, self.t.tx_status);
        }
    }

    /// A message that ends the client's batch (Sync, Query, FunctionCall:
    /// each is answered with ReadyForQuery) was sent.
    pub(super) fn expect_ready(&mut self) {
        if self.t.extended_since_sync {
            // A Query or FunctionCall behind extended-protocol messages with
            // no Sync between: an error among them makes the server skip it.
            self.t
                .queries_after_extended
                .push_back((self.t.sent, self.t.batch_executes));
        }
        self.t.unsynced = false;
        self.t.pending += 1;
        self.t.sent += 1;
        self.t.batch_executes = 0;
        self.t.batch_drops_statements = false;
        self.t.tenant_changed = false;
        self.obs.request();
    }

    /// Notes the session effects of SQL text sent by Query: it runs now.
    /// `plain`: it passed [`plainly_without_effect`] (it has none).
    fn on_query_text(&mut self, sql: &[u8], plain: bool) {
        self.portals.drop_unnamed();
        if plain {
            return;
        }
        // The commonest statement with an effect, without the classifier.
        if let Some(end) = bare_transaction_end(sql) {
            let control = match end {
                Effect::Commit => TxControl::Commit,
                _ => TxControl::Rollback,
            };
            self.settings
                .note_end(control == TxControl::Commit, self.t.sent);
            self.t.tx_control_q.push_back((self.t.sent, control));
            return;
        }
        if let Some(effects) = effects_of(sql) {
            self.apply_effects(&effects, true);
        }
    }

    /// What statements with `effects` do to the session: when they are
    /// sent to be prepared (`run` false: they pin, and may drop prepared
    /// statements or change the tenant variable, so the conservative
    /// reading counts at once), or when they run (`run`: everything, in
    /// the batch they run in; a `SET` counts each time it is executed).
    fn apply_effects(&mut self, effects: &[Effect], run: bool) {
        for effect in effects {
            match effect {
                Effect::Pins(reason) => {
                    self.sql_prepared |= *reason == SQL_PREPARE;
                    if self.mode == PoolMode::Transaction && self.pin.is_none() {
                        self.pin_server(reason);
                    }
                }
                Effect::Setting { name, .. }
                    if self.iso.as_ref().is_some_and(|i| name == i.variable()) =>
                {
                    // The tenant variable is the proxy's; the server's copy is
                    // stale after this and is reset before the next client.
                    self.server_dirty = true;
                }
                // Taken where it runs (see `super::deallocate`).
                Effect::Deallocate(_) => {}
                Effect::DiscardAll | Effect::DeallocateAll => {
                    self.t.batch_drops_statements = true;
                    if run {
                        self.dropping_statements();
                    }
                }
                _ if !run => {}
                Effect::Setting { .. } | Effect::ResetAll => {
                    self.settings.note(effect, self.t.sent)
                }
                Effect::RollbackToSavepoint => {
                    self.settings.on_savepoint_rollback();
                    self.t
                        .tx_control_q
                        .push_back((self.t.sent, TxControl::RollbackTo));
                }
                Effect::Commit => {
                    self.settings.note_end(true, self.t.sent);
                    self.t
                        .tx_control_q
                        .push_back((self.t.sent, TxControl::Commit));
                }
                Effect::Rollback => {
                    self.settings.note_end(false, self.t.sent);
                    self.t
                        .tx_control_q
                        .push_back((self.t.sent, TxControl::Rollback));
                }
                Effect::ConfigCall(names) => self.settings.read_back_later(names),
            }
            if run
                && matches!(effect, Effect::ResetAll | Effect::DiscardAll)
                && let Some(iso) = self.iso.as_mut()
                && iso.tenant.on_reset_all()
                && self.server.is_some()
            {
                self.t.tenant_unsettled = true;
            }
        }
    }

    /// A Bind to `portal` of a statement meaning `meaning` when executed.
    fn track_portal(&mut self, portal: &[u8], meaning: PortalMeaning) {
        if self.portals.bind(portal, meaning).is_err()
            && self.mode == PoolMode::Transaction
            && self.pin.is_none()
        {
            // Beyond what is worth following: the server connection alone
            // knows the session's state, and nobody else gets it.
            self.pin_server("portals with session effects beyond the limit");
        }
    }

    /// An Execute of a portal, with some portals followed: what it means
    /// (session effects; the `SHOW` tag) counts now.
    fn on_execute(&mut self, msg: &[u8]) -> Result<(), ProxyError> {
        let mut pos = 5;
        let portal = read_cstr(msg, &mut pos)?;
        let Some(meaning) = self.portals.get(portal).cloned() else {
            return Ok(());
        };
        if meaning.shows {
            // Results of Executes in front of it in the batch come first.
            self.t.retags_q.push_back(Retag {
                batch: self.t.sent,
                results_before: self.t.batch_executes,
                sent: Retagged::Show,
            });
        }
        if let Some(effects) = meaning.effects {
            if let [Effect::Deallocate(name)] = &effects[..] {
                self.deallocating_at_execute(name)?;
                // Run once: a portal of it executed again fails on the
                // server as Postgres's does (55000).
                self.portals.remove(portal);
            }
            self.apply_effects(&effects, true);
        }
        Ok(())
    }

    pub(super) fn server_mut(&mut self) -> Result<&mut Checkout, ProxyError> {
        self.server.as_mut().ok_or_else(ProxyError::internal)
    }

    /// Sends a Parse on (as `plan` says); returns the text it was sent as
    /// when isolation rewrote it.
    fn on_parse(
        &mut self,
        msg: &[u8],
        plan: Plan,
        plain: bool,
    ) -> Result<Option<String>, ProxyError> {
        let mut pos = 5;
        let name = read_cstr(msg, &mut pos)?;
        self.check_name_encoding(name)?;
        let query = read_cstr(msg, &mut pos)?;
        let types = &msg[pos..];
        // Read whole before anything changes: a Parse Postgres cannot read
        // leaves the statements as they were (the unnamed one too).
        self.check_parse_rest(query, types)?;
        let client_types = types;
        self.t.unsynced = true;
        let effects = if plain { None } else { effects_of(query) };
        if let Some(e) = &effects {
            self.apply_effects(e, false);
        }
        let (sql, types, binding): (&[u8], &[u8], Option<Arc<TenantBinding>>) = match &plan {
            Plan::Parse(p) => (p.sql.as_bytes(), &p.param_types, p.binding.clone()),
            _ => (query, types, None),
        };
        let stand_in = name.is_empty() && runs_as_stand_in(effects.as_deref(), sql);
        let sql = if stand_in { STAND_IN.as_bytes() } else { sql };
        let sent = self.t.sent;
        if name.is_empty() {
            let tenant_set = self.iso.as_mut().and_then(Isolation::take_parsed_set);
            let route = self.route_key()?;
            self.unnamed_seq += 1;
            let seq = self.unnamed_seq;
            // Clients re-parse the unnamed statement for every query: reuse
            // the last one's buffers when nothing else holds it.
            match self.unnamed.as_mut().and_then(Arc::get_mut) {
                Some(u) => {
                    u.sql.clear();
                    u.sql.extend_from_slice(sql);
                    u.types.clear();
                    u.types.extend_from_slice(types);
                    u.binding = binding;
                    u.seq = seq;
                    u.tenant_set = tenant_set;
                    u.route = route;
                    u.effects = effects;
                }
                None => {
                    self.unnamed = Some(Arc::new(UnnamedStatement {
                        sql: sql.to_vec(),
                        types: types.to_vec(),
                        binding,
                        seq,
                        tenant_set,
                        route,
                        effects,
                    }))
                }
            }
            let id = self.id;
            self.server_mut()?.conn.unnamed_owner = Some((id, seq));
            if stand_in || matches!(plan, Plan::Parse(_)) {
                messages::parse(&mut self.to_server, "", sql, types);
            } else {
                self.to_server.extend_from_slice(msg);
            }
            self.t.parse_q.push_back((sent, ParseAction::Forward(None)));
            return Ok(plan.into_rewritten());
        }
        if self.statements.contains(name) {
            return Err(ProxyError::duplicate_prepared_statement(
                &String::from_utf8_lossy(name),
            ));
        }
        if self.sql_prepared {
            // An SQL PREPARE may have defined the name on this server
            // connection (Postgres keeps one set of names for both): the
            // server tries the Parse under the client's name first, and
            // answers it as Postgres would (42P05, or whatever else the
            // Parse meets first); what it prepared is closed again.
            messages::parse(&mut self.to_server, name, sql, types);
            self.t.parse_q.push_back((sent, ParseAction::Swallow(None)));
            messages::close(&mut self.to_server, b'S', name);
            self.t.close_q.push_back((sent, CloseAction::Swallow));
        }
        let name: Box<[u8]> = name.into();
        let route = self.route_key()?;
        let stmt = self.state.statements.intern(sql, types, binding, route);
        let source = matches!(plan, Plan::Parse(_)).then(|| Source {
            query: Bytes::copy_from_slice(query),
            param_types: Bytes::copy_from_slice(client_types),
        });
        // The name counts from now on for messages pipelined behind it, and
        // is forgotten again if the batch fails before the server accepts it.
        self.statements.insert(&name, stmt.clone(), source);
        let server = self.server_mut()?;
        if server.conn.prepared.contains(&stmt.id) {
            messages::close(&mut self.to_server, b'S', NOOP_NAME);
            self.t
                .close_q
                .push_back((sent, CloseAction::AsParseComplete(name)));
        } else {
            self.close_doubtful(&stmt)?;
            self.server_mut()?.conn.prepared.insert(stmt.id);
            messages::parse(
                &mut self.to_server,
                &stmt.server_name,
                stmt.server_query(),
                &stmt.param_types,
            );
            self.t
                .parse_q
                .push_back((sent, ParseAction::Forward(Some((stmt, name)))));
        }
        Ok(plan.into_rewritten())
    }

    /// A Parse's query text and parameter types (`types`, the rest of the
    /// message) read as Postgres reads them before it does anything with
    /// the message: a malformed Parse gets the error of its format (the
    /// text's encoding first, as Postgres reads in order), not of its name
    /// or of a statement made of it. The text's encoding is looked at only
    /// when the types are malformed; otherwise the server checks it.
    fn check_parse_rest(&self, query: &[u8], types: &[u8]) -> Result<(), ProxyError> {
        if let Err(e) = check_parameter_types(types) {
            self.check_name_encoding(query)?;
            return Err(e);
        }
        Ok(())
    }

    /// Postgres reads a statement name in the client encoding and refuses
    /// one that is not valid in it (22021). Names the proxy renames never
    /// reach a server, so the check is made here, under a UTF8 client
    /// encoding (other encodings are left alone: their bytes are valid).
    fn check_name_encoding(&self, name: &[u8]) -> Result<(), ProxyError> {
        if name.is_ascii() {
            return Ok(());
        }
        let Err(e) = std::str::from_utf8(name) else {
            return Ok(());
        };
        let utf8_client = self
            .told
            .iter()
            .any(|(n, v)| n == "client_encoding" && v.eq_ignore_ascii_case("UTF8"));
        if !utf8_client {
            return Ok(());
        }
        Err(ProxyError::invalid_byte_sequence(&name[e.valid_up_to()..]))
    }

    /// The statement a Bind or Describe names (empty: the unnamed one),
    /// looked up once per message. The client's missing unnamed statement
    /// is reported as Postgres reports it; a name the client never prepared
    /// goes to the server as it is, which reports it exactly as Postgres
    /// would, unless it could collide with the proxy's names (then the
    /// proxy reports it, in the same words).
    pub(super) fn client_statement(&self, name: &[u8]) -> Result<Target, ProxyError> {
        if name.is_empty() {
            return match &self.unnamed {
                Some(u) => Ok(Target::Unnamed(u.clone())),
                None => Err(ProxyError::unknown_unnamed_statement()),
            };
        }
        match self.statements.get(name) {
            Some(stmt) => Ok(Target::Named(stmt.clone())),
            None if name.starts_with(SERVER_NAME_PREFIX.as_bytes()) => Err(
                ProxyError::unknown_prepared_statement(&String::from_utf8_lossy(name))
                    .before_abort_check(),
            ),
            None => Ok(Target::Unknown),
        }
    }

    /// Makes sure the server in hand holds `target` (the client's own
    /// unnamed statement, never another client's); the Parse it may take is
    /// swallowed.
    fn make_present(&mut self, target: &Target) -> Result<(), ProxyError> {
        match target {
            Target::Named(stmt) => self.ensure_prepared(stmt),
            Target::Unnamed(u) => {
                let (id, sent) = (self.id, self.t.sent);
                let server = self.server_mut()?;
                if server.conn.unnamed_owner != Some((id, u.seq)) {
                    server.conn.unnamed_owner = Some((id, u.seq));
                    messages::parse(&mut self.to_server, "", &u.sql, &u.types);
                    self.t.parse_q.push_back((sent, ParseAction::Swallow(None)));
                }
                Ok(())
            }
            Target::Unknown => Ok(()),
        }
    }

    /// Prepares `stmt` on the server in hand unless it already has it (the
    /// ParseComplete is swallowed).
    pub(super) fn ensure_prepared(&mut self, stmt: &Arc<Statement>) -> Result<(), ProxyError> {
        let sent = self.t.sent;
        if !self.server_mut()?.conn.prepared.contains(&stmt.id) {
            self.close_doubtful(stmt)?;
            self.server_mut()?.conn.prepared.insert(stmt.id);
            messages::parse(
                &mut self.to_server,
                &stmt.server_name,
                stmt.server_query(),
                &stmt.param_types,
            );
            self.t
                .parse_q
                .push_back((sent, ParseAction::Swallow(Some(stmt.clone()))));
        }
        Ok(())
    }

    /// Before `stmt` is prepared on the server: if it may exist there
    /// already (see `ServerConn::doubtful`), its name is closed first.
    fn close_doubtful(&mut self, stmt: &Statement) -> Result<(), ProxyError> {
        if self.server_mut()?.conn.doubtful.remove(&stmt.id) {
            messages::close(&mut self.to_server, b'S', &stmt.server_name);
            self.t
                .close_q
                .push_back((self.t.sent, CloseAction::Swallow));
        }
        Ok(())
    }

    /// A `DEALLOCATE ALL` or `DISCARD ALL` is sent to run: whatever was
    /// prepared on the server before it may be gone (it is, unless it
    /// fails), so it is prepared again when used after it, behind a Close
    /// of its name. The client's names defined so far are gone for what it
    /// sends after it (which runs after it, or not at all if it fails: then
    /// they are given back).
    fn dropping_statements(&mut self) {
        if let Some(server) = self.server.as_mut() {
            let conn = &mut server.conn;
            conn.doubtful.extend(conn.prepared.drain());
        }
        let taken = self.statements.take_all();
        self.t.drops_q.push_back((self.t.sent, taken));
    }

    fn on_bind(&mut self, msg: &[u8]) -> Result<(), ProxyError> {
        let (stmt_name, stmt_end) = bind_names(msg)?;
        let portal = read_cstr(msg, &mut 5)?;
        // Both names are read, their encoding checked, before the
        // statement is looked up (as Postgres reads a Bind).
        self.check_name_encoding(portal)?;
        self.check_name_encoding(stmt_name)?;
        if self.t.tenant_changed {
            return Err(ProxyError::statement_after_tenant_change());
        }
        let target = self.client_statement(stmt_name)?;
        self.check_planned_route(stmt_name, &target)?;
        self.bind_tenant_set(&target)?;
        if let Some(iso) = self.iso.as_ref()
            && iso.held_elsewhere()
            && let Some(sql) = target.text()
        {
            iso.check_home_held(sql)?;
        }
        if let Some(iso) = self.iso.as_mut()
            && !iso.tenant.is_bound()
            && target.sql().is_some_and(|sql| mentions(sql, "savepoint"))
        {
            // Bound again without a Parse (see `TenantContext::note_savepoint`).
            iso.tenant.note_savepoint();
        }
        self.bound_transaction_control(&target)?;
        self.t.unsynced = true;
        if portal.starts_with(SERVER_NAME_PREFIX.as_bytes()) {
            return Err(ProxyError::reserved_portal_name(&String::from_utf8_lossy(
                portal,
            )));
        }
        if self.obs.wants_sql()
            && let Target::Named(s) = &target
        {
            let sql = s.query.clone();
            self.obs.note_sql(|| sql);
        }
        self.make_present(&target)?;
        let server_name = target.server_name(stmt_name);
        match (target.binding(), &self.iso) {
            (Some(b), Some(iso)) => {
                // The portal and statement names as the server gets them.
                let mut head = Vec::with_capacity(portal.len() + server_name.len() + 2);
                head.extend_from_slice(portal);
                head.push(0);
                head.extend_from_slice(server_name);
                head.push(0);
                // Checks run before anything is written, so a refusal
                // leaves no partial message behind.
                iso.bind(b, msg, &head, stmt_end, &mut self.to_server)?;
            }
            _ if server_name == stmt_name => self.to_server.extend_from_slice(msg),
            _ => {
                let rest = &msg[stmt_end..];
                let out = &mut self.to_server;
                out.put_u8(ftag::BIND);
                out.put_i32((4 + portal.len() + server_name.len() + 2 + rest.len()) as i32);
                out.extend_from_slice(portal);
                out.put_u8(0);
                out.extend_from_slice(server_name);
                out.put_u8(0);
                out.extend_from_slice(rest);
            }
        }
        let meaning = PortalMeaning {
            effects: target.effects(),
            shows: target.binding().is_some_and(|b| b.shows),
        };
        self.track_portal(portal, meaning);
        self.t.bind_q.push_back((self.t.sent, BindAction::Forward));
        Ok(())
    }

    /// The kind of home of the session's route for isolated sessions.
    fn route_key(&self) -> Result<Option<RouteKey>, ProxyError> {
        self.iso.as_ref().map(Isolation::route_key).transpose()
    }

    /// A statement bound where it was not planned for: prepared while the
    /// tenant lived elsewhere (another tenant of a trusted session, or a
    /// reload moved it), its text may be unrewritten (planned for a
    /// dedicated database) or confined to another schema. Refused; the
    /// client prepares it again.
    fn check_planned_route(&self, stmt_name: &[u8], target: &Target) -> Result<(), ProxyError> {
        let Some(now) = self.route_key()? else {
            return Ok(());
        };
        match target.route() {
            Some(p) if *p != now => Err(ProxyError::statement_planned_elsewhere(
                &String::from_utf8_lossy(stmt_name),
            )),
            _ => Ok(()),
        }
    }

    /// The tenant SET that binding `target` runs, if it is one.
    fn bound_tenant_set(&self, iso: &Isolation, target: &Target) -> Option<TenantSet> {
        match target {
            Target::Unnamed(u) => u.tenant_set.clone(),
            Target::Named(s) => s.tenant_set(|sql| iso.tenant_set_of(sql)).cloned(),
            Target::Unknown => None,
        }
    }

    /// Transaction control bound while a `SET LOCAL` of the tenant is in
    /// force (drivers bind statements prepared before it): a ROLLBACK TO
    /// SAVEPOINT is refused as its Parse would be now (see
    /// [`Isolation::check_savepoint_rollback`]), and a statement that ends
    /// the transaction ends the `SET LOCAL` too (later messages are planned
    /// for the session's tenant).
    fn bound_transaction_control(&mut self, target: &Target) -> Result<(), ProxyError> {
        let Some(iso) = self.iso.as_mut().filter(|i| {
            i.tenant.has_local()
                || i.tenant.undoable_by_savepoint_rollback()
                || i.tenant.chosen_in_transaction()
        }) else {
            return Ok(());
        };
        let Some(sql) = target.text() else {
            return Ok(());
        };
        iso.check_savepoint_rollback(sql)?;
        if super::classify::ends_transaction(sql) {
            let rolls_back = target
                .effects()
                .is_some_and(|e| e.iter().any(|e| matches!(e, Effect::Rollback)));
            if rolls_back {
                iso.tenant.rollback_sent();
            }
            iso.tenant.end_local();
        }
        Ok(())
    }

    /// A named statement that sets the tenant variable, bound again: the
    /// change counts now (drivers stop sending its Parse once it is
    /// prepared on the server).
    fn bind_tenant_set(&mut self, target: &Target) -> Result<(), ProxyError> {
        let Some(set) = self
            .iso
            .as_ref()
            .and_then(|iso| self.bound_tenant_set(iso, target))
        else {
            return Ok(());
        };
        let Some(iso) = self.iso.as_mut() else {
            return Ok(());
        };
        let hold = ServerHold {
            pinned: self.pin.is_some(),
            // Earlier statements run: the SET's own Parse and Describe in this
            // pipeline do not count.
            busy: self.server.is_some() && (self.t.pending > 0 || self.t.batch_executes > 0),
            kept: self.mode == PoolMode::Session,
            fresh: false,
        };
        let in_transaction = self.t.tx_status != b'I';
        if iso.apply_prepared_set(&set, in_transaction, hold)? && self.server.is_some() {
            self.t.tenant_changed = true;
            if iso.held_elsewhere() {
                self.t.tenant_unsettled = true;
            }
        }
        Ok(())
    }

    fn on_describe(&mut self, msg: &[u8]) -> Result<(), ProxyError> {
        let (kind, name) = kind_and_name(msg)?;
        if kind != b'S' {
            self.t.unsynced = true;
            self.to_server.extend_from_slice(msg);
            self.t
                .describe_q
                .push_back((self.t.sent, DescribeAction::Forward));
            return Ok(());
        }
        // Read (and its encoding checked) before it is looked up.
        self.check_name_encoding(name)?;
        let target = self.client_statement(name)?;
        self.t.unsynced = true;
        self.check_planned_route(name, &target)?;
        self.make_present(&target)?;
        let server_name = target.server_name(name);
        let out = &mut self.to_server;
        out.put_u8(ftag::DESCRIBE);
        out.put_i32((4 + 1 + server_name.len() + 1) as i32);
        out.put_u8(b'S');
        out.extend_from_slice(server_name);
        out.put_u8(0);
        // The tenant parameter is the proxy's: hide it from the description.
        let action = if target.binding().is_some() {
            DescribeAction::HideLastParam
        } else {
            DescribeAction::Forward
        };
        self.t.describe_q.push_back((self.t.sent, action));
        Ok(())
    }

    fn on_close(&mut self, msg: &[u8]) -> Result<(), ProxyError> {
        self.t.unsynced = true;
        let (kind, name) = kind_and_name(msg)?;
        if kind == b'S' && !name.is_empty() {
            self.check_name_encoding(name)?;
            // The statement stays prepared on the server for others; the
            // client's name is forgotten. A Close of a name that does not
            // exist answers CloseComplete, as Postgres does.
            self.statements.remove(name);
            messages::close(&mut self.to_server, b'S', NOOP_NAME);
        } else {
            if kind == b'P' {
                self.portals.remove(name);
            }
            self.to_server.extend_from_slice(msg);
        }
        self.t
            .close_q
            .push_back((self.t.sent, CloseAction::Forward));
        Ok(())
    }
}

/// A client's statement as a Bind or Describe names it.
pub(super) enum Target {
    /// The client's unnamed statement.
    Unnamed(Arc<UnnamedStatement>),
    /// A statement the client prepared under a name.
    Named(Arc<Statement>),
    /// A name the client never prepared: the server reports it.
    Unknown,
}

impl Target {
    /// Its name on the server, for a client that calls it `client_name`.
    fn server_name<'a>(&'a self, client_name: &'a [u8]) -> &'a [u8] {
        match self {
            Target::Unnamed(_) => b"",
            Target::Named(s) => s.server_name.as_bytes(),
            Target::Unknown => client_name,
        }
    }

    /// How the tenant is bound, if isolation rewrote it.
    fn binding(&self) -> Option<&Arc<TenantBinding>> {
        match self {
            Target::Unnamed(u) => u.binding.as_ref(),
            Target::Named(s) => s.binding.as_ref(),
            Target::Unknown => None,
        }
    }

    /// What running it does to the session, if anything.
    fn effects(&self) -> Option<Arc<[Effect]>> {
        match self {
            Target::Unnamed(u) => u.effects.clone(),
            Target::Named(s) => s.effects().cloned(),
            Target::Unknown => None,
        }
    }

    /// The kind of home it was planned for (isolated sessions).
    fn route(&self) -> Option<&RouteKey> {
        match self {
            Target::Unnamed(u) => u.route.as_ref(),
            Target::Named(s) => s.route.as_ref(),
            Target::Unknown => None,
        }
    }

    /// Its text as prepared on servers, if it is UTF-8.
    pub(super) fn text(&self) -> Option<&str> {
        std::str::from_utf8(self.sql()?).ok()
    }

    /// The statement's text as bytes (as planned for the server).
    fn sql(&self) -> Option<&[u8]> {
        match self {
            Target::Unnamed(u) => Some(&u.sql),
            Target::Named(s) => Some(&s.query),
            Target::Unknown => None,
        }
    }
}

/// The end of a Parse message after its query text (the count of
/// parameter types, then each type's OID) as Postgres reads it.
fn check_parameter_types(types: &[u8]) -> Result<(), ProxyError> {
    let short = || ProxyError::malformed_message("insufficient data left in message");
    let count = types.get(..2).ok_or_else(short)?;
    // An unsigned count, as Postgres reads it.
    let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
    let end = 2 + 4 * count;
    if types.len() < end {
        return Err(short());
    }
    if types.len() > end {
        return Err(ProxyError::malformed_message("invalid message format"));
    }
    Ok(())
}

/// The kind byte (`S` or `P`) and name of a Describe or Close message,
/// which must end with the name (as Postgres checks).
fn kind_and_name(msg: &[u8]) -> Result<(u8, &[u8]), ProxyError> {
    let kind = *msg
        .get(5)
        .ok_or_else(|| ProxyError::malformed_message("insufficient data left in message"))?;
    let mut pos = 6;
    let name = read_cstr(msg, &mut pos)?;
    if pos != msg.len() {
        return Err(ProxyError::malformed_message("invalid message format"));
    }
    Ok((kind, name))
}

/// Whether `sql` holds a `RESET ALL` or `DISCARD ALL`.
fn resets_all(sql: &[u8]) -> bool {
    std::str::from_utf8(sql).is_ok_and(|s| crate::rewrite::path_reset_in(s).is_some())
}

/// The SQL text of a Query or Parse.
fn sql_of(tag: u8, msg: &[u8]) -> Option<&[u8]> {
    let mut pos = 5;
    let sql = match tag {
        ftag::QUERY => text_body(msg),
        ftag::PARSE => {
            read_cstr(msg, &mut pos).ok()?;
            read_cstr(msg, &mut pos).ok()?
        }
        _ => return None,
    };
    Some(sql)
}

/// SQL text must be UTF-8 to be analysed.
fn sql_text(b: &[u8]) -> Result<&str, ProxyError> {
    std::str::from_utf8(b).map_err(|_| ProxyError::invalid_utf8())
}

/// Whether SQL text has no session effect (so answering its Parse locally
/// skips nothing the proxy must see on a server).
fn classify_is_plain(sql: &[u8]) -> bool {
    std::str::from_utf8(sql).is_ok_and(|s| {
        classify(s)
            .iter()
            .all(|e| matches!(e, Effect::Commit | Effect::Rollback))
    })
}
