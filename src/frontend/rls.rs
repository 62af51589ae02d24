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
//! A statement that ends the transaction (`COMMIT`, `ROLLBACK`, …) or resets
//! every setting (`RESET ALL`) leaves what follows it without the variable:
//! in the same query string the `SET LOCAL` goes in again in front of the
//! statements after it, in the same batch or transaction the next Bind or
//! Query that touches rows gets it again.
//!
//! The server's transaction state is only known once it has answered: while
//! replies are outstanding, the next batch waits (only with `rls` on, and
//! only for clients that pipeline several Syncs).

use std::sync::Arc;

use super::classify::{
    ends_transaction, plainly_without_effect, split_statements, touches_rows,
    wants_transaction_block,
};
use super::isolation::bind_names;
use super::prepared::Statement;
use super::session::{BindAction, CloseAction, ParseAction, Session};
use crate::error::ProxyError;
use crate::protocol::framing::text_body;
use crate::protocol::messages::{self, ftag};
use crate::rewrite::path_reset_in;
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
    /// `(batch, insertions)`: the simple Query of that batch was sent with
    /// the proxy's `SET LOCAL` inserted, as `(character offset in the text
    /// sent, characters)` each.
    pub(super) inserted: Option<(u64, Vec<(usize, usize)>)>,
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
        if !matches!(tag, ftag::QUERY | ftag::BIND) {
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
                if !self.rls.armed && plainly_without_effect(sql.as_bytes()) {
                    // One statement, and none that ends the transaction or
                    // resets the variable: it keeps the variable it has.
                    return Ok(None);
                }
                let plan = variable_places(sql, self.rls.armed, self.t.tx_status == b'I')?;
                self.rls.armed = plan.unset_after;
                if plan.places.is_empty() {
                    return Ok(None);
                }
                let variable = self.iso.as_ref().map_or("", |i| i.variable());
                let set = format!("SET LOCAL {variable} = {}; ", quote_literal(&tenant));
                let set_chars = set.chars().count();
                let mut out = String::with_capacity(sql.len() + set.len() * plan.places.len());
                let mut inserted = Vec::with_capacity(plan.places.len());
                let (mut from, mut chars) = (0, 0);
                for place in &plan.places {
                    let before = &sql[from..place.at];
                    chars += before.chars().count();
                    out.push_str(before);
                    inserted.push((chars, set_chars));
                    out.push_str(&set);
                    chars += set_chars;
                    from = place.at;
                    // After the results of Executes sent in front of the
                    // Query with no Sync between (the same batch).
                    self.t
                        .results_q
                        .push_back((self.t.sent, self.t.batch_executes + place.results_before));
                }
                out.push_str(&sql[from..]);
                self.rls.inserted = Some((self.t.sent, inserted));
                Ok(Some(out))
            }
            ftag::BIND => {
                let (name, _) = bind_names(msg)?;
                let Ok(target) = self.client_statement(name) else {
                    return Ok(None);
                };
                let Some(text) = target.text() else {
                    return Ok(None);
                };
                if self.rls.armed && touches_rows(text) {
                    self.rls.armed = false;
                    self.send_set_config(&tenant)?;
                }
                if unsets_variable(text) {
                    // Statements bound after it in this batch run without
                    // the variable.
                    self.rls.armed = true;
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
        // After every result of the client's Executes so far in the batch.
        self.t.results_q.push_back((sent, self.t.batch_executes));
        messages::close(&mut self.to_server, b'P', PORTAL);
        self.t.close_q.push_back((sent, CloseAction::Swallow));
        self.t.unsynced = true;
        Ok(())
    }
}

/// Where a simple Query needs the proxy's `SET LOCAL` of the variable.
#[derive(Debug, PartialEq, Eq)]
struct VariablePlaces {
    /// In text order.
    places: Vec<Place>,
    /// The statements after the query string run without the variable
    /// (none was set, or the string ended or reset the transaction's).
    unset_after: bool,
}

/// One `SET LOCAL` to insert.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    /// Byte offset in the query string.
    at: usize,
    /// The client's statements before this place in the string: their
    /// results come before the `SET LOCAL`'s.
    results_before: u32,
}

/// Where the variable must be set in `sql`: in front of the string when
/// `unset` (the transaction has none yet) and a statement in it touches rows,
/// and again after each statement that ends the transaction or resets every
/// setting (`COMMIT`, `ROLLBACK`, `RESET ALL`, …), in front of the next
/// statement, when one after it touches rows. A `CREATE` can hold
/// semicolons of its own (rule actions, `BEGIN ATOMIC` bodies), which would
/// throw the count of results off and may put a place inside it: a string
/// that needs the variable again after one is refused.
fn variable_places(sql: &str, unset: bool, idle: bool) -> Result<VariablePlaces, ProxyError> {
    let mut out = VariablePlaces {
        places: Vec::new(),
        unset_after: unset,
    };
    if idle && wants_transaction_block(sql) {
        // Outside a transaction Postgres refuses it (25P01); a prefix would
        // make an implicit block of the string and let a cursor be declared
        // that is gone at once.
        return Ok(out);
    }
    // Where the variable would go for the statements at hand: the byte
    // offset, and how many statements come before it.
    let mut start = unset.then_some((0, 0));
    for (n, stmt) in (0u32..).zip(split_statements(sql)) {
        let at = stmt.as_ptr() as usize - sql.as_ptr() as usize;
        if out.unset_after {
            let (place, before) = *start.get_or_insert((at, n));
            if touches_rows(stmt) {
                if place > 0 && split_statements(&sql[..place]).any(is_create) {
                    return Err(ProxyError::variable_reset_refused());
                }
                out.places.push(Place {
                    at: place,
                    results_before: before,
                });
                out.unset_after = false;
                start = None;
            }
        }
        if unsets_variable(stmt) {
            out.unset_after = true;
            start = None;
        }
    }
    Ok(out)
}

/// Whether statement `stmt` leaves what follows it without the variable:
/// it ends the transaction, or resets every setting (`RESET ALL`,
/// `DISCARD ALL`), the variable set `LOCAL` included.
fn unsets_variable(stmt: &str) -> bool {
    ends_transaction(stmt)
        || (!plainly_without_effect(stmt.as_bytes()) && path_reset_in(stmt).is_some())
}

/// Whether statement `stmt` is a `CREATE` (looked at only where a count
/// of statements matters).
pub(super) fn is_create(stmt: &str) -> bool {
    crate::rewrite::first_words(stmt, 1)
        .first()
        .is_some_and(|w| w == "create")
}

#[cfg(test)]
mod tests {
    use super::{Place, VariablePlaces, variable_places};

    fn places(sql: &str, unset: bool) -> Vec<(usize, u32)> {
        variable_places(sql, unset, true)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .places
            .iter()
            .map(|p| (p.at, p.results_before))
            .collect()
    }

    #[test]
    fn the_variable_goes_in_front_of_a_string_that_touches_rows() {
        assert_eq!(places("SELECT 1", true), [(0, 0)]);
        assert_eq!(places("SET x = 1; SELECT 1", true), [(0, 0)]);
        assert_eq!(places("SET x = 1", true), []);
        assert_eq!(places("SELECT 1", false), []);
        // A cursor outside a transaction block stays refused by Postgres.
        assert_eq!(places("DECLARE c CURSOR FOR SELECT 1", true), []);
    }

    #[test]
    fn the_variable_is_set_again_after_what_ends_or_resets_it() {
        let sql = "BEGIN; SELECT 1; COMMIT; SELECT 2";
        assert_eq!(places(sql, true), [(0, 0), (24, 3)]);
        assert_eq!(places(sql, false), [(24, 3)]);
        assert_eq!(
            places(
                "SELECT 1; RESET ALL; SHOW x; SELECT 2; ROLLBACK; VALUES (1)",
                true
            ),
            [(0, 0), (20, 2), (48, 5)]
        );
        assert_eq!(places("reset all; -- c\nSELECT 2", false), [(10, 1)]);
        // Nothing that touches rows after the reset: the next message gets it.
        let after = variable_places("SELECT 1; RESET ALL", false, false).unwrap();
        assert_eq!(
            after,
            VariablePlaces {
                places: Vec::new(),
                unset_after: true
            }
        );
        let after = variable_places("RESET ALL; SELECT 1", false, false).unwrap();
        assert_eq!(
            after,
            VariablePlaces {
                places: vec![Place {
                    at: 10,
                    results_before: 1
                }],
                unset_after: false
            }
        );
        // Savepoint rollbacks and other transactions' ends do not.
        assert_eq!(places("ROLLBACK TO s; SELECT 1", false), []);
        assert_eq!(places("COMMIT PREPARED 'x'; SELECT 1", false), []);
        assert_eq!(places("RESET search_path; SELECT 1", false), []);
    }

    #[test]
    fn a_create_before_a_place_is_refused() {
        for sql in [
            // The proxy would put it inside the rule's actions.
            "COMMIT; CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY x; COMMIT; SELECT 1)",
            // And `COMMIT)` for a transaction's end.
            "CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY x; COMMIT); SELECT 2",
        ] {
            let e = variable_places(sql, false, false).unwrap_err();
            assert_eq!(e.code.code(), "0A000", "{sql}");
        }
        // In front of the whole string, or of the CREATE, the count holds.
        assert_eq!(places("CREATE TABLE t (a int); SELECT 1", true), [(0, 0)]);
        assert_eq!(
            places(
                "COMMIT; CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2)",
                false
            ),
            [(7, 1)]
        );
    }
}
