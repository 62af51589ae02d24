//! Server → client: forwarding replies unchanged, except those that answer
//! messages the proxy injected or renamed, and keeping the session's view
//! (transaction status, settings, tenant, prepared statements) in step.

use std::sync::Arc;

use bytes::{Buf, BytesMut};

use super::classify::mentions;
use super::error_position::PositionFix;
use super::prepared::SERVER_NAME_PREFIX;
use super::session::{
    BindAction, CloseAction, Committed, DescribeAction, HIGH_WATER, MAX_SERVER_MESSAGE,
    ParseAction, Retag, Retagged, STREAM_THRESHOLD, Session, TxControl, reserve_ahead,
};
use crate::error::ProxyError;
use crate::protocol::framing::{peek_header, text_body};
use crate::protocol::messages::{self, tag};

impl Session {
    /// Handles every complete message the server has sent.
    pub(super) fn process_server(&mut self) -> Result<(), ProxyError> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        // Messages are read in place and the buffer advanced past them; it
        // is lent out meanwhile so replies can be matched against the rest
        // of the session's state.
        let mut buf = std::mem::take(&mut server.conn.read_buf);
        let r = self.process_server_messages(&mut buf);
        if let Some(server) = self.server.as_mut() {
            server.conn.read_buf = buf;
        }
        r
    }

    fn process_server_messages(&mut self, buf: &mut BytesMut) -> Result<(), ProxyError> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        loop {
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
                // Large messages passed on unread are streamed, not buffered
                // whole: rows, COPY data, notices (RAISE NOTICE of a large
                // value), notifications and function-call results.
                if matches!(h.tag, b'D' | b'd' | b'N' | b'A' | b'V')
                    && h.total_len >= STREAM_THRESHOLD
                {
                    self.server_streaming = h.total_len;
                    continue;
                }
                reserve_ahead(buf, h.total_len);
                return Ok(());
            }
            let msg = &buf[..h.total_len];
            let t = &mut self.t;
            match h.tag {
                tag::READY_FOR_QUERY => {
                    t.pending = t.pending.saturating_sub(1);
                    t.tx_status = msg.get(5).copied().unwrap_or(b'I');
                    // It also answers the batches whose Queries the server
                    // skipped after an error.
                    let first = t.answered;
                    let batch = first + std::mem::take(&mut t.skipped);
                    t.answered = batch + 1;
                    t.batch_results = 0;
                    while t
                        .queries_after_extended
                        .front()
                        .is_some_and(|(b, _)| *b <= batch)
                    {
                        t.queries_after_extended.pop_front();
                    }
                    // Parses sent after an error in this batch were skipped.
                    if t.parse_q.front().is_some_and(|(b, _)| *b <= batch)
                        || t.close_q.front().is_some_and(|(b, _)| *b <= batch)
                    {
                        forget_unprepared(
                            t,
                            first..=batch,
                            &mut server.conn,
                            &mut self.statements,
                            &mut self.unnamed,
                        );
                    }
                    // Drops in skipped batches did not run.
                    restore_undropped(t, batch, &mut self.statements);
                    // Replies still expected for this batch were skipped.
                    t.retain_replies(|b| b > batch);
                    if self.rls.inserted.as_ref().is_some_and(|(b, _)| *b <= batch) {
                        self.rls.inserted = None;
                    }
                    if t.pending == 0 {
                        // Known now: whether the next statement starts a
                        // transaction, or runs in one that began without
                        // the variable (chained to one that ended).
                        // (Still armed in a transaction: nothing has set
                        // the variable in it yet.)
                        let ended = std::mem::take(&mut self.rls.ended);
                        self.rls.armed = t.tx_status == b'I'
                            || (t.tx_status == b'T' && (ended || self.rls.armed));
                        if t.tx_status == b'I' && !t.unsynced {
                            // No portal outlives its transaction.
                            self.portals.clear();
                        }
                    }
                    match self.settings.on_ready(t.tx_status, batch) {
                        Committed::Nothing => {}
                        Committed::InSync => {
                            server.conn.settings_fingerprint = self.settings.fingerprint()
                        }
                        Committed::Unknown => server.conn.settings_fingerprint = u64::MAX,
                    }
                    if let Some(iso) = self.iso.as_mut() {
                        iso.tenant.on_ready(t.tx_status);
                        if t.tx_status == b'I' && t.pending == 0 && !t.unsynced {
                            iso.tenant.on_settled_idle();
                        }
                    }
                    self.obs.ready(t.tx_status);
                    self.to_client.extend_from_slice(msg);
                }
                tag::PARSE_COMPLETE => match t.parse_q.pop_front() {
                    Some((_, ParseAction::Swallow(stmt))) => {
                        if let Some(s) = stmt {
                            s.mark_validated();
                        }
                    }
                    Some((_, ParseAction::Forward(Some((stmt, _))))) => {
                        stmt.mark_validated();
                        self.to_client.extend_from_slice(msg);
                    }
                    _ => self.to_client.extend_from_slice(msg),
                },
                tag::BIND_COMPLETE => match t.bind_q.pop_front() {
                    Some((_, BindAction::Swallow)) => {}
                    _ => self.to_client.extend_from_slice(msg),
                },
                tag::CLOSE_COMPLETE => match t.close_q.pop_front() {
                    Some((_, CloseAction::AsParseComplete(_))) => {
                        messages::parse_complete(&mut self.to_client)
                    }
                    Some((_, CloseAction::Swallow)) => {}
                    _ => self.to_client.extend_from_slice(msg),
                },
                tag::PARAMETER_DESCRIPTION => match t.describe_q.front() {
                    Some((_, DescribeAction::HideLastParam)) => {
                        hide_last_param(msg, &mut self.to_client)
                    }
                    _ => self.to_client.extend_from_slice(msg),
                },
                tag::ROW_DESCRIPTION | tag::NO_DATA => {
                    // The end of a Describe's answer (a simple Query's
                    // RowDescription comes after every Describe of its batch).
                    if t.describe_q.front().is_some_and(|(b, _)| *b == t.answered) {
                        t.describe_q.pop_front();
                    }
                    self.to_client.extend_from_slice(msg);
                }
                tag::ERROR_RESPONSE => {
                    let severity = messages::error_field(msg, b'V')
                        .or_else(|| messages::error_field(msg, b'S'));
                    if matches!(severity, Some(b"FATAL" | b"PANIC")) {
                        self.server_fatal = true;
                    }
                    // The server skips the rest of this batch: statements it
                    // was asked to prepare in it do not exist, and names the
                    // client gave them are not defined (as in Postgres).
                    let batch = t.answered;
                    if batch == t.sent && t.unsynced {
                        // In the extended-protocol batch still being sent:
                        // the server skips the rest up to the next Sync.
                        t.skipping = true;
                    } else if let Some(&(b, executes)) = t.queries_after_extended.front()
                        && b == batch
                        && (t.batch_results < executes
                            || t.parse_q.iter().any(|(b, _)| *b == batch)
                            || t.bind_q.iter().any(|(b, _)| *b == batch)
                            || t.describe_q.iter().any(|(b, _)| *b == batch)
                            || t.close_q.iter().any(|(b, _)| *b == batch))
                    {
                        // The extended-protocol messages in front of the
                        // Query that ends this batch failed: the server skips
                        // that Query, and those after it, up to the next Sync.
                        let mut skipped = 0;
                        while t
                            .queries_after_extended
                            .front()
                            .is_some_and(|(b, _)| *b == batch + skipped)
                        {
                            t.queries_after_extended.pop_front();
                            skipped += 1;
                        }
                        // The first is this batch's own end, answered by the
                        // Sync's ReadyForQuery with the others.
                        t.skipped += skipped;
                        t.pending = t.pending.saturating_sub(skipped as u32);
                        // No Sync sent since: what comes next is skipped too.
                        t.skipping = t.sent == batch + skipped;
                    }
                    forget_unprepared(
                        t,
                        batch..=batch,
                        &mut server.conn,
                        &mut self.statements,
                        &mut self.unnamed,
                    );
                    // A drop in this batch that did not complete: the names
                    // it took are the client's again.
                    restore_undropped(t, batch, &mut self.statements);
                    let raised = t.raised_q.iter().find(|r| r.0 == batch).map(|r| r.1);
                    t.retain_replies(|b| b != batch);
                    self.settings.on_error();
                    if let Some(iso) = self.iso.as_mut() {
                        iso.tenant.on_error();
                    }
                    self.obs.server_error(msg);
                    // A refusal the proxy raised: the client gets it as the
                    // proxy's, without the server's account of the DO block
                    // that raised it (context, source file, line, routine).
                    let own = raised
                        .filter(|_| is_raised_refusal(msg))
                        .map(|routine| messages::without_error_fields(msg, b"WFLR", routine));
                    let msg: &[u8] = own.as_deref().unwrap_or(msg);
                    // Server-side statement names are the proxy's: the
                    // client gets its own.
                    let renamed = mentions(msg, SERVER_NAME_PREFIX).then(|| {
                        messages::map_error_text(msg, |m| self.statements.client_names(m))
                    });
                    let msg: &[u8] = renamed.as_deref().unwrap_or(msg);
                    match (self.sent_statements.fix_for(batch), &self.rls.inserted) {
                        // The position is in text the proxy wrote.
                        (PositionFix::Internal(sent_as), _) => {
                            messages::internal_error_position(msg, sent_as, &mut self.to_client)
                        }
                        (PositionFix::Drop, _) => {
                            messages::drop_error_position(msg, &mut self.to_client)
                        }
                        // The query string holds the proxy's SET LOCAL.
                        (PositionFix::Keep, Some((b, inserted))) if *b == batch => {
                            messages::shift_error_position(msg, inserted, &mut self.to_client)
                        }
                        (PositionFix::Keep, _) => self.to_client.extend_from_slice(msg),
                    }
                }
                tag::DATA_ROW if ours(t) => {
                    // A row of the proxy's own statement.
                }
                tag::EMPTY_QUERY | tag::PORTAL_SUSPENDED => {
                    // A result of the client's.
                    t.batch_results += 1;
                    self.to_client.extend_from_slice(msg);
                }
                tag::PARAMETER_STATUS => {
                    server.conn.record_parameter(msg);
                    messages::record_parameter(Arc::make_mut(&mut self.told), msg);
                    self.told_stale = true;
                    self.to_client.extend_from_slice(msg);
                }
                tag::COMMAND_COMPLETE if ours(t) => {
                    // The proxy's own statement is done.
                    t.results_q.pop_front();
                }
                tag::COMMAND_COMPLETE => {
                    // A result of the client's.
                    // Results the client is to see under another tag (see
                    // `Retagged`). (A `SHOW` portal's Execute that stopped
                    // at its row limit is completed by a later one: its
                    // entry is spent.)
                    while t.retags_q.front().is_some_and(|r| {
                        r.batch < t.answered
                            || (r.batch == t.answered && r.results_before < t.batch_results)
                    }) {
                        if let Some(spent) = t.retags_q.pop_front() {
                            restore_taken(spent, &mut self.statements);
                        }
                    }
                    if t.retags_q.front().is_some_and(|r| {
                        r.batch == t.answered && r.results_before == t.batch_results
                    }) && let Some(retag) = t.retags_q.pop_front()
                    {
                        t.batch_results += 1;
                        self.settings.on_result();
                        messages::command_complete(&mut self.to_client, retag.sent.tag());
                        buf.advance(h.total_len);
                        continue;
                    }
                    t.batch_results += 1;
                    let text = text_body(msg);
                    // The statement this tag answers, when it may end a
                    // transaction (older entries were skipped by an error).
                    let control = if matches!(text, b"COMMIT" | b"ROLLBACK") {
                        t.tx_control_q.retain(|(b, _)| *b >= t.answered);
                        t.tx_control_q.pop_front().map(|(_, c)| c)
                    } else {
                        None
                    };
                    if !matches!(text, b"COMMIT" | b"ROLLBACK")
                        || control == Some(TxControl::RollbackTo)
                    {
                        self.settings.on_result();
                    }
                    match text {
                        // A savepoint rollback: the transaction goes on.
                        b"ROLLBACK" if control == Some(TxControl::RollbackTo) => {}
                        b"COMMIT" | b"ROLLBACK" => {
                            self.rls.ended = true;
                            let committed = text == b"COMMIT";
                            self.settings.on_transaction_end(committed, t.answered);
                            if let Some(iso) = self.iso.as_mut() {
                                iso.tenant.on_transaction_end(committed);
                            }
                        }
                        b"DISCARD ALL" => {
                            forget_dropped(t, &mut server.conn, &mut self.statements);
                            server.conn.settings_fingerprint = 0;
                            self.settings.on_discard_all();
                            self.pin = None;
                            self.pin_lease = None;
                        }
                        b"DEALLOCATE ALL" => {
                            forget_dropped(t, &mut server.conn, &mut self.statements);
                        }
                        _ => {}
                    }
                    self.to_client.extend_from_slice(msg);
                }
                _ => self.to_client.extend_from_slice(msg),
            }
            buf.advance(h.total_len);
        }
    }
}

/// Whether the next result of the batch being answered belongs to the
/// proxy's own statement: the first one the proxy put in this batch comes
/// after as many of the client's results as have come in.
fn ours(t: &super::session::Tracker) -> bool {
    matches!(
        t.results_q.front(),
        Some((b, before)) if *b == t.answered && *before == t.batch_results
    )
}

/// The drops (`DEALLOCATE ALL`, `DISCARD ALL`, `DEALLOCATE name`) of
/// batches up to `batch` that did not complete (an error, or skipped after
/// one): the names they took are the client's again.
fn restore_undropped(
    t: &mut super::session::Tracker,
    batch: u64,
    statements: &mut super::prepared::ClientStatements,
) {
    while t.drops_q.front().is_some_and(|(b, _)| *b <= batch) {
        if let Some((_, taken)) = t.drops_q.pop_front() {
            statements.restore(taken);
        }
    }
    while t.retags_q.front().is_some_and(|r| r.batch <= batch) {
        if let Some(r) = t.retags_q.pop_front() {
            restore_taken(r, statements);
        }
    }
}

/// A retagged result that did not complete as the client's: a name its
/// `DEALLOCATE` took is the client's again.
fn restore_taken(retag: Retag, statements: &mut super::prepared::ClientStatements) {
    if let Retagged::Deallocate(taken) = retag.sent {
        statements.restore(taken);
    }
}

/// ParameterDescription without its last parameter (the proxy's tenant).
fn hide_last_param(msg: &[u8], out: &mut BytesMut) {
    // The count is unsigned 16-bit, as Postgres writes it.
    let count = msg
        .get(5..7)
        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
    if count < 1 || msg.len() < 7 + 4 * count as usize {
        out.extend_from_slice(msg);
        return;
    }
    let keep = count - 1;
    let len = 4 + 2 + 4 * i32::from(keep);
    out.extend_from_slice(&[tag::PARAMETER_DESCRIPTION]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&keep.to_be_bytes());
    out.extend_from_slice(&msg[7..7 + 4 * keep as usize]);
}

/// Whether an ErrorResponse comes from the proxy's own one-line `DO` block
/// that raises a refusal (see [`super::isolation::raise_statement`]), and
/// not from a statement of the client's in the same batch.
fn is_raised_refusal(msg: &[u8]) -> bool {
    messages::error_field(msg, b'W')
        .is_some_and(|w| w == b"PL/pgSQL function inline_code_block line 1 at RAISE")
}

/// The Parses of `batches` still awaiting their ParseComplete, which
/// an error made the server skip (or fail): the statements do not exist on
/// the server, and names the client gave them are not defined (as in
/// Postgres). Whether the server still has a statement from before (a
/// `DEALLOCATE ALL` pipelined in front of it may have been skipped too) is
/// not known: it is doubtful.
fn forget_unprepared(
    t: &super::session::Tracker,
    batches: std::ops::RangeInclusive<u64>,
    conn: &mut crate::backend::ServerConn,
    statements: &mut super::prepared::ClientStatements,
    unnamed: &mut Option<Arc<super::session::UnnamedStatement>>,
) {
    for (b, action) in &t.parse_q {
        if !batches.contains(b) {
            continue;
        }
        match action {
            ParseAction::Forward(Some((stmt, name))) => {
                conn.prepared.remove(&stmt.id);
                conn.doubtful.insert(stmt.id);
                statements.remove_if(name, stmt);
            }
            ParseAction::Swallow(Some(stmt)) => {
                conn.prepared.remove(&stmt.id);
                conn.doubtful.insert(stmt.id);
            }
            ParseAction::Forward(None) => {
                // A failed unnamed Parse leaves no unnamed statement, unless
                // a later batch (pipelined behind it) parses a new one.
                let newer = t.parse_q.iter().any(|(later, a)| {
                    *later > *batches.end() && matches!(a, ParseAction::Forward(None))
                });
                if !newer {
                    *unnamed = None;
                    conn.unnamed_owner = None;
                }
            }
            ParseAction::Swallow(None) => conn.unnamed_owner = None,
        }
    }
    // Parses answered by the proxy, the server holding the statement: the
    // name is not defined either.
    for (b, action) in &t.close_q {
        if batches.contains(b)
            && let CloseAction::AsParseComplete(name) = action
        {
            statements.remove(name);
        }
    }
}

/// A `DEALLOCATE ALL` or `DISCARD ALL` completed: the statements prepared
/// before it was sent are gone (those the proxy prepared on the server were
/// set aside as doubtful when it was sent, see `Session::dropping_statements`),
/// and so are the client's names defined before it (forgotten as it was
/// sent); names and statements pipelined behind it stay.
fn forget_dropped(
    t: &mut super::session::Tracker,
    conn: &mut crate::backend::ServerConn,
    statements: &mut super::prepared::ClientStatements,
) {
    conn.doubtful.clear();
    if t.drops_q.pop_front().is_none() {
        // Not seen going out (run where the proxy does not look).
        conn.prepared.clear();
        statements.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ParameterDescription of `count` parameters (OIDs 1, 2, …).
    fn description(count: u16) -> Vec<u8> {
        let mut m = vec![tag::PARAMETER_DESCRIPTION];
        m.extend_from_slice(&(6 + 4 * i32::from(count)).to_be_bytes());
        m.extend_from_slice(&count.to_be_bytes());
        for oid in 1..=u32::from(count) {
            m.extend_from_slice(&oid.to_be_bytes());
        }
        m
    }

    #[test]
    fn hides_the_last_parameter_of_any_count() {
        // Counts above 32,767 are unsigned, as Postgres writes them.
        for count in [1u16, 2, 40_000, u16::MAX] {
            let mut out = BytesMut::new();
            hide_last_param(&description(count), &mut out);
            assert_eq!(out.as_ref(), description(count - 1).as_slice(), "{count}");
        }
        // Too short for its count: passed on as it came.
        let mut short = description(3);
        short.truncate(10);
        let mut out = BytesMut::new();
        hide_last_param(&short, &mut out);
        assert_eq!(out.as_ref(), short.as_slice());
    }
}
