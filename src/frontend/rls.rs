//! `tenancy.rls = true`: the tenant variable set with transaction scope at
//! the start of every server transaction, in the same write as the client's
//! first statement that reads rows or opens a savepoint (see
//! [`touches_rows`]), so Postgres row-level security policies that read
//! `current_setting('<variable>', true)` see the session's tenant.
//!
//! A simple Query is sent as `SET LOCAL <variable> = '<tenant>'; <query>`
//! (one query string, so one implicit transaction; error positions are moved
//! back by the prefix). In the extended protocol, the client's first Bind of
//! the transaction is preceded by a Bind/Execute/Close of the proxy's own
//! prepared `set_config(<variable>, $1, true)` on a portal of its own: no
//! Sync is added, so it runs in the same transaction as what follows. The
//! replies to what the proxy added are swallowed.
//!
//! The server's transaction state is only known once it has answered: while
//! replies are outstanding, the next batch waits (only with `rls` on, and
//! only for clients that pipeline several Syncs).

use std::sync::Arc;

use super::classify::{touches_rows, wants_transaction_block};
use super::isolation::bind_names;
use super::prepared::Statement;
use super::session::{BindAction, CloseAction, ParseAction, Session};
use crate::error::ProxyError;
use crate::protocol::framing::text_body;
use crate::protocol::messages::{self, ftag};
use crate::rewrite::template::quote_literal;

/// Portal the proxy's `set_config` runs in (closed right after).
const PORTAL: &str = "_tg_rls";

/// A session's bookkeeping for `rls`.
#[derive(Debug, Default)]
pub(super) struct RlsState {
    /// The server is outside a transaction: the next statement that touches
    /// rows starts one and needs the variable.
    pub(super) armed: bool,
    /// A transaction ended since the variable was last set: if the server
    /// is in a transaction again (`COMMIT AND CHAIN`, or `COMMIT; BEGIN` in
    /// one query string), that one has no variable yet.
    pub(super) ended: bool,
    /// `(batch, characters)`: the simple Query of that batch was sent with a
    /// prefix of that many characters.
    pub(super) prefix: Option<(u64, usize)>,
    /// The session's current home is a dedicated database (no rewriting,
    /// no variable: the tenant is alone there).
    pub(super) dedicated: bool,
    /// The proxy's `set_config` statement, once interned.
    pub(super) statement: Option<Arc<Statement>>,
}

impl Session {
    /// The tenant whose transactions get the variable, if `rls` applies now.
    fn rls_tenant(&self) -> Option<&str> {
        let iso = self.iso.as_ref()?;
        if !iso.rls() || self.rls.dedicated {
            return None;
        }
        iso.tenant.current()
    }

    /// Whether the client message `tag` must wait: it would start a new
    /// batch while the server has not yet said whether the last one left a
    /// transaction open.
    pub(super) fn rls_must_wait(&self, tag: u8) -> bool {
        self.t.pending > 0
            && !self.t.unsynced
            && !matches!(tag, ftag::COPY_DATA | ftag::COPY_DONE | ftag::COPY_FAIL)
            && self.rls_tenant().is_some()
    }

    /// With a server in hand and before `msg` is sent: if it starts a
    /// transaction that touches rows, sets the variable in front of it. For a
    /// simple Query this returns the SQL to send instead.
    pub(super) fn rls_before(
        &mut self,
        tag: u8,
        msg: &[u8],
        planned: Option<&str>,
    ) -> Result<Option<String>, ProxyError> {
        if !self.rls.armed || !matches!(tag, ftag::QUERY | ftag::BIND) {
            return Ok(None);
        }
        let Some(tenant) = self.rls_tenant() else {
            return Ok(None);
        };
        let tenant = tenant.to_string();
        match tag {
            ftag::QUERY => {
                let sql = match planned {
                    Some(s) => s,
                    None => match std::str::from_utf8(text_body(msg)) {
                        Ok(s) => s,
                        Err(_) => return Ok(None),
                    },
                };
                if !touches_rows(sql) {
                    return Ok(None);
                }
                if self.t.tx_status == b'I' && wants_transaction_block(sql) {
                    // Outside a transaction Postgres refuses it (25P01); a
                    // prefix would make an implicit block of the string and
                    // let a cursor be declared that is gone at once.
                    return Ok(None);
                }
                let variable = self.iso.as_ref().map_or("", |i| i.variable());
                let prefix = format!("SET LOCAL {variable} = {}; ", quote_literal(&tenant));
                self.rls.armed = false;
                self.rls.prefix = Some((self.t.sent, prefix.chars().count()));
                self.t.results_q.push_back((self.t.sent, 0));
                Ok(Some(prefix + sql))
            }
            ftag::BIND => {
                let (name, _) = bind_names(msg)?;
                let touches = self
                    .client_statement(name)
                    .is_ok_and(|t| t.text().is_some_and(touches_rows));
                if touches {
                    self.rls.armed = false;
                    self.send_set_config(&tenant)?;
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Bind/Execute/Close of the proxy's `set_config`, preparing it on this
    /// server connection first if needed.
    fn send_set_config(&mut self, tenant: &str) -> Result<(), ProxyError> {
        let stmt = match &self.rls.statement {
            Some(s) => s.clone(),
            None => {
                let variable = self.iso.as_ref().map_or("", |i| i.variable());
                let sql = format!(
                    "SELECT pg_catalog.set_config({}, $1, true)",
                    quote_literal(variable)
                );
                let s = self
                    .state
                    .statements
                    .intern(sql.as_bytes(), &[0, 0], None, None);
                self.rls.statement = Some(s.clone());
                s
            }
        };
        let sent = self.t.sent;
        let name = if self.t.batch_drops_statements {
            // Earlier in this batch the client dropped every prepared
            // statement (DEALLOCATE ALL, DISCARD ALL): the proxy's may be
            // gone as well. Prepare it as the unnamed statement instead (the
            // client's own unnamed one is prepared again when it is used).
            messages::parse(&mut self.to_server, "", &stmt.query, &stmt.param_types);
            self.t.parse_q.push_back((sent, ParseAction::Swallow(None)));
            self.server_mut()?.conn.unnamed_owner = None;
            ""
        } else {
            self.ensure_prepared(&stmt)?;
            stmt.server_name.as_str()
        };
        messages::bind_text(&mut self.to_server, PORTAL, name, &[tenant.as_bytes()]);
        self.t.bind_q.push_back((sent, BindAction::Swallow));
        messages::execute(&mut self.to_server, PORTAL);
        self.t.results_q.push_back((sent, self.t.batch_executes));
        messages::close(&mut self.to_server, b'P', PORTAL);
        self.t.close_q.push_back((sent, CloseAction::Swallow));
        self.t.unsynced = true;
        Ok(())
    }
}
