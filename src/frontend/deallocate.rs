//! SQL `DEALLOCATE name` of the client's protocol-level prepared statements.
//!
//! Those statements live on servers under the proxy's names (`_tg_<id>`),
//! shared by every client that prepared the same text, so a server must not
//! run the client's `DEALLOCATE`: it would not know the client's name. The
//! proxy forgets the name itself, in the order Postgres would, and the server
//! runs a stand-in in the statement's place: a statement without effect whose
//! reply the client gets under the `DEALLOCATE` tag. The stand-in fails where
//! `DEALLOCATE` fails (25P02 in a failed transaction, a cancel); the name is
//! then the client's again. A whole simple Query of one `DEALLOCATE` with
//! nothing in flight is answered without a server (see `process_client`).

use bytes::{Bytes, BytesMut};

use super::classify::{Effect, classify, deallocated_name, mentions, split_statements};
use super::rls::is_create;
use super::session::{Retag, Retagged, Session};
use crate::error::ProxyError;
use crate::protocol::framing::text_body;
use crate::protocol::messages;

/// What a server runs in place of a `DEALLOCATE name`: `UNLISTEN` of a
/// channel of the proxy's is allowed wherever `DEALLOCATE` is (in a
/// read-only transaction too), refused in a failed transaction as
/// `DEALLOCATE` is, needs no privilege, returns no rows and changes nothing
/// (clients may not listen on [`STAND_IN_CHANNEL`]). It is as long as the shortest
/// `DEALLOCATE` (`deallocate a`), so it takes the place of one in a query
/// string without moving what follows it (error positions stay right).
pub(super) const STAND_IN: &str = "UNLISTEN _tg";

/// The channel [`STAND_IN`] unlistens: clients may not listen on it.
pub(super) const STAND_IN_CHANNEL: &str = "_tg";

/// Whether a Parse of `sql`, whose session effects are `effects`, is
/// prepared on servers as the [`STAND_IN`]: it is one `DEALLOCATE name`.
pub(super) fn runs_as_stand_in(effects: Option<&[Effect]>, sql: &[u8]) -> bool {
    matches!(effects, Some([Effect::Deallocate(_)]))
        && std::str::from_utf8(sql).is_ok_and(|s| deallocated_name(s).is_some())
}

impl Session {
    /// A simple Query's `msg` with each `DEALLOCATE name` of one of the
    /// client's statements replaced by the [`STAND_IN`] (padded to the same
    /// number of characters), or `None` when it holds none. What it
    /// deallocates is noted for [`Session::deallocating_in_query`]. Names
    /// are followed through the string as Postgres runs it: a second
    /// `DEALLOCATE` of a name, or one after `DEALLOCATE ALL`, goes to the
    /// server as written (which reports the name unknown, as Postgres does).
    pub(super) fn stand_in_deallocations(
        &mut self,
        msg: &Bytes,
    ) -> Result<Option<Bytes>, ProxyError> {
        let text = text_body(msg);
        if !mentions(text, "deallocate") {
            return Ok(None);
        }
        let Ok(sql) = std::str::from_utf8(text) else {
            return Ok(None);
        };
        let mut spans: Vec<&str> = Vec::new();
        let mut all_gone = false;
        for (n, stmt) in (0u32..).zip(split_statements(sql)) {
            match classify(stmt).first() {
                Some(Effect::DeallocateAll | Effect::DiscardAll) => all_gone = true,
                Some(Effect::Deallocate(name))
                    if !all_gone
                        && self.statements.contains(name.as_bytes())
                        && !self.stood_in.iter().any(|(_, s)| **s == *name.as_bytes())
                        && stmt.chars().count() >= STAND_IN.len() =>
                {
                    let at = offset_in(sql, stmt);
                    // A CREATE's own semicolons would throw the count of
                    // replies off (see `rls::variable_places`).
                    if n > 0 && split_statements(&sql[..at]).any(is_create) {
                        return Err(ProxyError::deallocate_after_create());
                    }
                    spans.push(stmt);
                    self.stood_in.push((n, name.as_bytes().into()));
                }
                _ => {}
            }
        }
        if spans.is_empty() {
            return Ok(None);
        }
        // The slow-query log shows the client's text, not the stand-ins.
        self.obs.note_sql(|| msg.slice_ref(text));
        let mut out = String::with_capacity(sql.len());
        let mut from = 0;
        for stmt in spans {
            let at = offset_in(sql, stmt);
            out.push_str(&sql[from..at]);
            out.push_str(STAND_IN);
            let pad = stmt.chars().count() - STAND_IN.len();
            out.extend(std::iter::repeat_n(' ', pad));
            from = at + stmt.len();
        }
        out.push_str(&sql[from..]);
        let mut buf = BytesMut::with_capacity(out.len() + 6);
        messages::query(&mut buf, &out);
        Ok(Some(buf.freeze()))
    }

    /// The Query whose `DEALLOCATE`s [`Session::stand_in_deallocations`]
    /// replaced is sent: the names are the client's no more for what it
    /// sends after it (given back if the stand-in does not complete).
    pub(super) fn deallocating_in_query(&mut self) {
        let batch = self.t.sent;
        for (before, name) in std::mem::take(&mut self.stood_in) {
            let taken = self.statements.take(&name).unwrap_or_default();
            self.t.retags_q.push_back(Retag {
                batch,
                // Executes sent in front of the Query with no Sync between
                // are of the same batch, and answered first.
                results_before: self.t.batch_executes + before,
                sent: Retagged::Deallocate(taken),
            });
        }
    }

    /// An Execute of a portal of `DEALLOCATE name` (prepared as the
    /// [`STAND_IN`]) is sent: the name is taken as for a Query. A name the
    /// client has not prepared is refused as Postgres refuses it (26000),
    /// unless the server connection may hold an SQL-level statement of that
    /// name (the session has sent an SQL `PREPARE`): the stand-in cannot
    /// release it.
    pub(super) fn deallocating_at_execute(&mut self, name: &str) -> Result<(), ProxyError> {
        let Some(taken) = self.statements.take(name.as_bytes()) else {
            return Err(if self.sql_prepared {
                ProxyError::deallocate_sql_level_extended(name)
            } else {
                ProxyError::unknown_prepared_statement(name)
            });
        };
        self.t.retags_q.push_back(Retag {
            batch: self.t.sent,
            results_before: self.t.batch_executes,
            sent: Retagged::Deallocate(taken),
        });
        Ok(())
    }
}

/// The byte offset of `part` (a slice of `whole`) in `whole`.
fn offset_in(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::classify::effects_of;

    fn stands_in(sql: &str) -> bool {
        runs_as_stand_in(effects_of(sql.as_bytes()).as_deref(), sql.as_bytes())
    }

    #[test]
    fn the_stand_in_is_as_short_as_the_shortest_deallocate() {
        let shortest = "deallocate a";
        assert_eq!(deallocated_name(shortest).as_deref(), Some("a"));
        assert_eq!(STAND_IN.chars().count(), shortest.chars().count());
        assert_eq!(STAND_IN, format!("UNLISTEN {STAND_IN_CHANNEL}"));
        // The stand-in itself has no effect the proxy follows.
        assert!(effects_of(STAND_IN.as_bytes()).is_none());
    }

    #[test]
    fn only_one_deallocate_of_a_name_is_prepared_as_the_stand_in() {
        for sql in [
            "DEALLOCATE a",
            "deallocate prepare \"A b\"",
            " DEALLOCATE a; ",
        ] {
            assert!(stands_in(sql), "{sql}");
        }
        for sql in [
            "DEALLOCATE ALL",
            "DEALLOCATE a; SELECT 1",
            "SELECT 1; DEALLOCATE a",
            "DEALLOCATE a b",
            "DISCARD ALL",
            "SELECT 'DEALLOCATE a'",
        ] {
            assert!(!stands_in(sql), "{sql}");
        }
    }
}
