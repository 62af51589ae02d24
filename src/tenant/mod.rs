//! Where a session's tenant comes from, in order of authority: the user's
//! `tenant` (tenant-bound credentials), the startup `options`, then `SET` /
//! `SET LOCAL` / `RESET` of the session variable, which follow Postgres's
//! rules for settings (a SET counts once its transaction commits; SET LOCAL
//! lasts until the transaction ends).

mod client_encoding;
mod id;
mod set_statement;

pub use client_encoding::{check_client_encoding, check_client_encoding_set};
pub use id::validate_tenant_id;
pub use set_statement::{TenantSet, parse_tenant_set};

use crate::error::ProxyError;

/// A session's tenant context.
#[derive(Debug, Clone, Default)]
pub struct TenantContext {
    user: String,
    bound: Option<String>,
    session: Option<String>,
    /// A SET/RESET sent in the current transaction or batch: `Some(None)` is RESET.
    tentative: Option<Option<String>>,
    /// SET LOCAL in the current transaction.
    local: Option<String>,
    /// The tenant from the startup `options`, which `RESET ALL` and
    /// `DISCARD ALL` return the variable to.
    startup: Option<String>,
    /// A RESET ALL / DISCARD ALL is pending: until its transaction ends the
    /// session has no tenant; once committed, the startup one.
    reset_to_startup: bool,
    /// The tenant changed in the current transaction (a `SET LOCAL`, or a
    /// first choice with `SET`) after a savepoint may have been set: a
    /// ROLLBACK TO SAVEPOINT could undo the change without the proxy
    /// knowing, so it is refused. (Changed before any savepoint, no
    /// rollback to one can undo it: savepoints keep the settings in force
    /// when they were set.)
    undoable: bool,
    /// A statement that may set a savepoint was sent since the session was
    /// last idle with nothing in flight.
    savepoint_set: bool,
    /// The session made its first choice of tenant, or reset a chosen one
    /// (`RESET ALL`, `DISCARD ALL`), inside the current transaction:
    /// whether it stays is known when the transaction ends.
    chosen_here: bool,
    /// A statement ending such a transaction was sent: until its reply,
    /// the tenant of what follows is unknown (the commit may fail).
    awaiting_end: bool,
    error_in_batch: bool,
    rolled_back: bool,
}

impl TenantContext {
    /// Context for `user`, bound to `bound` if the user is tenant-bound, with
    /// the tenant from startup `options` if any.
    pub fn new(
        user: &str,
        bound: Option<String>,
        from_options: Option<String>,
    ) -> Result<TenantContext, ProxyError> {
        if let (Some(b), Some(o)) = (&bound, &from_options)
            && b != o
        {
            return Err(ProxyError::tenant_bound(user, b));
        }
        Ok(TenantContext {
            user: user.to_string(),
            session: from_options.clone().or_else(|| bound.clone()),
            startup: from_options,
            bound,
            ..TenantContext::default()
        })
    }

    /// The tenant statements run as right now.
    pub fn current(&self) -> Option<&str> {
        if let Some(b) = &self.bound {
            return Some(b);
        }
        if let Some(l) = &self.local {
            return Some(l);
        }
        match &self.tentative {
            Some(t) => t.as_deref(),
            None => self.session.as_deref(),
        }
    }

    /// Whether the session is bound by its credentials.
    pub fn is_bound(&self) -> bool {
        self.bound.is_some()
    }

    /// `set` with a RESET (or `SET … TO DEFAULT`) spelled out: as in
    /// Postgres, it returns the variable to its startup value (the tenant of
    /// the startup `options`, if any).
    pub fn resolved(&self, set: &TenantSet) -> TenantSet {
        TenantSet {
            value: set.value.clone().or_else(|| self.startup.clone()),
            local: set.local,
        }
    }

    /// Applies a SET/RESET of the tenant variable. `in_transaction`: the
    /// client is inside a transaction block.
    pub fn apply(&mut self, set: &TenantSet, in_transaction: bool) -> Result<(), ProxyError> {
        let set = &self.resolved(set);
        let value = set.value.as_deref();
        if let Some(b) = &self.bound {
            // A bound session may restate its own tenant, nothing else.
            return if value == Some(b.as_str()) {
                Ok(())
            } else {
                Err(ProxyError::tenant_bound(&self.user, b))
            };
        }
        if set.local {
            if !in_transaction {
                // Postgres warns and ignores SET LOCAL outside a transaction.
                return Ok(());
            }
            if self.local.is_some() && self.local.as_deref() != value {
                return Err(ProxyError::tenant_change_in_transaction());
            }
            if self.current() != value {
                self.undoable |= self.savepoint_set;
            }
            self.local = value.map(str::to_string);
            return Ok(());
        }
        // Inside a block a SET may only restate the tenant: the one the
        // statements run as and the one the session keeps after it. (After
        // a `SET LOCAL` of another tenant, a SET of that tenant would change
        // the session's, and a ROLLBACK TO SAVEPOINT could undo it unseen.)
        // The one exception is a session's first choice of a tenant: it
        // counts at once, for the rest of the transaction, and for the
        // session if the transaction commits, as Postgres treats a SET.
        let kept = match &self.tentative {
            Some(t) => t.as_deref(),
            None => self.session.as_deref(),
        };
        if in_transaction && (self.current() != value || kept != value) {
            let first_choice = self.current().is_none()
                && kept.is_none()
                && value.is_some()
                && !self.reset_to_startup;
            if !first_choice {
                return Err(ProxyError::tenant_change_in_transaction());
            }
            self.undoable |= self.savepoint_set;
            self.chosen_here = true;
        }
        self.tentative = Some(value.map(str::to_string));
        Ok(())
    }

    /// Whether `set` (resolved) would be the session's first choice of a
    /// tenant: none in force, none kept, none chosen or reset in this
    /// transaction, and `set` names one.
    pub fn is_first_choice(&self, set: &TenantSet) -> bool {
        let kept = match &self.tentative {
            Some(t) => t.as_deref(),
            None => self.session.as_deref(),
        };
        self.bound.is_none()
            && self.current().is_none()
            && kept.is_none()
            && set.value.is_some()
            && !self.reset_to_startup
            && !self.chosen_here
    }

    /// Whether a `SET LOCAL` of the tenant variable is in force (it ends
    /// with the transaction).
    pub fn has_local(&self) -> bool {
        self.bound.is_none() && self.local.is_some()
    }

    /// Whether the tenant was first chosen inside the current transaction.
    pub fn chosen_in_transaction(&self) -> bool {
        self.bound.is_none() && self.chosen_here
    }

    /// Whether the end of a transaction in which the tenant was first
    /// chosen was sent and not yet answered: what follows must wait.
    pub fn awaits_transaction_end(&self) -> bool {
        self.awaiting_end
    }

    /// Whether a ROLLBACK TO SAVEPOINT could undo a change of tenant made
    /// in this transaction without the proxy knowing (see `undoable`).
    pub fn undoable_by_savepoint_rollback(&self) -> bool {
        self.bound.is_none() && self.undoable
    }

    /// A statement that ends the transaction was sent (or bound): a `SET
    /// LOCAL` of the tenant ends with it, also when `AND CHAIN` opens the
    /// next one at once. (If the statement never runs, an earlier error
    /// ended the transaction already.)
    pub fn end_local(&mut self) {
        self.local = None;
        self.undoable = false;
        if self.chosen_here {
            self.awaiting_end = true;
        }
    }

    /// A ROLLBACK of the current transaction was sent: a first choice made
    /// in it is undone for what is planned behind it (statements pipelined
    /// after the ROLLBACK in the same batch).
    pub fn rollback_sent(&mut self) {
        if self.chosen_here {
            self.tentative = None;
            self.reset_to_startup = false;
            self.chosen_here = false;
        }
    }

    /// A `RESET ALL` or `DISCARD ALL` was sent: as in Postgres, the
    /// variable goes back to its startup value, so a tenant chosen with SET
    /// is gone. Until the statement's transaction ends the session runs
    /// without a tenant (statements that need one are refused), which also
    /// keeps it on the server connection it holds; once that commits, the
    /// startup tenant (if any) is the session's again.
    ///
    /// Returns whether the tenant changed.
    pub fn on_reset_all(&mut self) -> bool {
        let changes = self.reset_would_change();
        if changes {
            self.local = None;
            self.tentative = Some(None);
            self.reset_to_startup = true;
            // Like a first choice: settled when its transaction ends, and
            // a rollback to a savepoint set before it would undo it.
            self.chosen_here = true;
            self.undoable |= self.savepoint_set;
        }
        changes
    }

    /// Whether a `RESET ALL` or `DISCARD ALL` would change the tenant: one
    /// was chosen (with SET, or SET LOCAL) other than the startup one.
    pub fn reset_would_change(&self) -> bool {
        self.bound.is_none()
            && (self.local.is_some() || self.tentative.is_some() || self.session != self.startup)
    }

    /// A statement that may set a savepoint (its text mentions one) is
    /// about to be sent.
    pub fn note_savepoint(&mut self) {
        self.savepoint_set = true;
    }

    /// The server is idle with nothing in flight behind the last reply: no
    /// savepoint sent so far exists any more. (Replies to earlier batches
    /// do not clear it: a savepoint may be on its way in a later one.)
    pub fn on_settled_idle(&mut self) {
        self.savepoint_set = false;
    }

    /// The batch had an error.
    pub fn on_error(&mut self) {
        self.error_in_batch = true;
    }

    /// A transaction ended with COMMIT (`true`) or ROLLBACK. What was SET
    /// in it is settled now: the next transaction may follow at once
    /// (`COMMIT AND CHAIN`, or `ROLLBACK; BEGIN` in one query string).
    pub fn on_transaction_end(&mut self, committed: bool) {
        self.rolled_back = !committed;
        self.local = None;
        self.undoable = false;
        self.chosen_here = false;
        self.awaiting_end = false;
        if let Some(t) = self.tentative.take()
            && committed
        {
            self.session = if self.reset_to_startup {
                self.startup.clone()
            } else {
                t
            };
        }
        self.reset_to_startup = false;
    }

    /// ReadyForQuery with `status`.
    pub fn on_ready(&mut self, status: u8) {
        if status == b'I' {
            if let Some(t) = self.tentative.take()
                && !self.error_in_batch
                && !self.rolled_back
            {
                self.session = if self.reset_to_startup {
                    self.startup.clone()
                } else {
                    t
                };
            }
            self.local = None;
            self.rolled_back = false;
            self.reset_to_startup = false;
            self.undoable = false;
            self.chosen_here = false;
            self.awaiting_end = false;
        }
        self.error_in_batch = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: Option<&str>, local: bool) -> TenantSet {
        TenantSet {
            value: v.map(str::to_string),
            local,
        }
    }

    #[test]
    fn bound_sessions_cannot_switch() {
        let mut t = TenantContext::new("u", Some("acme".into()), None).unwrap();
        assert_eq!(t.current(), Some("acme"));
        assert!(t.apply(&set(Some("globex"), false), false).is_err());
        assert!(t.apply(&set(Some("acme"), false), false).is_ok());
        assert!(t.apply(&set(None, false), false).is_err());
        assert_eq!(t.current(), Some("acme"));
        assert!(TenantContext::new("u", Some("a".into()), Some("b".into())).is_err());
    }

    #[test]
    fn set_commits_like_a_setting() {
        let mut t = TenantContext::new("u", None, None).unwrap();
        assert_eq!(t.current(), None);
        t.apply(&set(Some("acme"), false), false).unwrap();
        assert_eq!(t.current(), Some("acme"));
        t.on_ready(b'I');
        assert_eq!(t.current(), Some("acme"));
        // A failed batch undoes it.
        t.apply(&set(Some("globex"), false), false).unwrap();
        t.on_error();
        t.on_ready(b'I');
        assert_eq!(t.current(), Some("acme"));
        t.apply(&set(None, false), false).unwrap();
        t.on_ready(b'I');
        assert_eq!(t.current(), None);
    }

    #[test]
    fn no_switching_inside_transactions() {
        let mut t = TenantContext::new("u", None, Some("acme".into())).unwrap();
        assert!(t.apply(&set(Some("globex"), false), true).is_err());
        assert!(t.apply(&set(Some("acme"), false), true).is_ok());
        // After SET LOCAL globex, a SET globex would change the session's
        // tenant; a SET acme the transaction's.
        t.apply(&set(Some("globex"), true), true).unwrap();
        assert!(t.has_local());
        assert!(t.apply(&set(Some("globex"), false), true).is_err());
        assert!(t.apply(&set(Some("acme"), false), true).is_err());
        t.on_ready(b'I');
        assert!(!t.has_local());
        assert_eq!(t.current(), Some("acme"));
    }

    #[test]
    fn a_first_choice_inside_a_transaction_counts_at_once() {
        // Committed: the session keeps it.
        let mut t = TenantContext::new("u", None, None).unwrap();
        t.apply(&set(Some("acme"), false), true).unwrap();
        assert_eq!(t.current(), Some("acme"));
        assert!(
            !t.undoable_by_savepoint_rollback(),
            "no savepoint before it"
        );
        // Restating it is fine, another tenant is not.
        assert!(t.apply(&set(Some("acme"), false), true).is_ok());
        assert!(t.apply(&set(Some("globex"), false), true).is_err());
        assert!(t.apply(&set(None, false), true).is_err());
        t.on_ready(b'T');
        assert_eq!(t.current(), Some("acme"));
        t.on_transaction_end(true);
        t.on_ready(b'I');
        assert_eq!(t.current(), Some("acme"));
        // After a savepoint, a rollback to it could undo the choice.
        let mut t = TenantContext::new("u", None, None).unwrap();
        t.note_savepoint();
        t.on_ready(b'T');
        t.apply(&set(Some("acme"), false), true).unwrap();
        assert!(
            t.undoable_by_savepoint_rollback(),
            "ROLLBACK TO SAVEPOINT could undo it"
        );
        t.on_transaction_end(true);
        t.on_ready(b'I');
        assert!(!t.undoable_by_savepoint_rollback());
        assert_eq!(t.current(), Some("acme"));
        // A savepoint is forgotten only once nothing is in flight.
        let mut t = TenantContext::new("u", None, None).unwrap();
        t.note_savepoint();
        t.on_ready(b'I');
        t.apply(&set(Some("acme"), false), true).unwrap();
        assert!(
            t.undoable_by_savepoint_rollback(),
            "a savepoint may be in flight"
        );
        let mut t = TenantContext::new("u", None, None).unwrap();
        t.note_savepoint();
        t.on_ready(b'I');
        t.on_settled_idle();
        t.apply(&set(Some("acme"), false), true).unwrap();
        assert!(!t.undoable_by_savepoint_rollback());
        // Rolled back: none again.
        let mut t = TenantContext::new("u", None, None).unwrap();
        t.apply(&set(Some("acme"), false), true).unwrap();
        t.on_ready(b'T');
        t.on_transaction_end(false);
        t.on_ready(b'I');
        assert_eq!(t.current(), None);
        // Failed transaction ended by COMMIT (the server answers ROLLBACK).
        t.apply(&set(Some("acme"), false), true).unwrap();
        t.on_error();
        t.on_ready(b'E');
        t.on_transaction_end(false);
        t.on_ready(b'I');
        assert_eq!(t.current(), None);
        // Not a first choice: a startup tenant, a tenant chosen before.
        let mut t = TenantContext::new("u", None, Some("acme".into())).unwrap();
        assert!(t.apply(&set(Some("globex"), false), true).is_err());
        let mut t = TenantContext::new("u", None, None).unwrap();
        t.apply(&set(Some("acme"), false), false).unwrap();
        t.on_ready(b'I');
        assert!(t.apply(&set(Some("globex"), false), true).is_err());
        // Nor after a RESET ALL in the same transaction (the session goes
        // back to its startup tenant when it commits).
        let mut t = TenantContext::new("u", None, None).unwrap();
        t.apply(&set(Some("acme"), false), false).unwrap();
        t.on_ready(b'I');
        t.on_reset_all();
        assert!(t.apply(&set(Some("globex"), false), true).is_err());
    }

    #[test]
    fn a_first_choice_is_settled_when_its_transaction_ends() {
        // ROLLBACK AND CHAIN: gone, though a transaction is still open.
        let mut t = TenantContext::new("u", None, None).unwrap();
        t.apply(&set(Some("acme"), false), true).unwrap();
        assert!(t.chosen_in_transaction());
        t.end_local();
        assert!(t.awaits_transaction_end());
        t.on_transaction_end(false);
        assert!(!t.awaits_transaction_end());
        assert_eq!(t.current(), None);
        t.on_ready(b'T');
        t.on_transaction_end(true);
        t.on_ready(b'I');
        assert_eq!(t.current(), None);
        // COMMIT AND CHAIN: kept, though the chained one rolls back.
        t.apply(&set(Some("acme"), false), true).unwrap();
        t.on_transaction_end(true);
        t.on_ready(b'T');
        assert_eq!(t.current(), Some("acme"));
        t.on_transaction_end(false);
        t.on_ready(b'I');
        assert_eq!(t.current(), Some("acme"));
    }

    #[test]
    fn a_rollback_sent_undoes_a_first_choice_at_once() {
        let mut t = TenantContext::new("u", None, Some("acme".into())).unwrap();
        t.apply(&set(Some("acme"), false), true).unwrap();
        t.rollback_sent();
        assert_eq!(t.current(), Some("acme"), "not a first choice: untouched");
        let mut t = TenantContext::new("u", None, None).unwrap();
        t.apply(&set(Some("acme"), false), true).unwrap();
        t.rollback_sent();
        assert_eq!(t.current(), None);
        t.on_transaction_end(false);
        t.on_ready(b'I');
        assert_eq!(t.current(), None);
    }

    #[test]
    fn a_reset_all_is_settled_like_a_first_choice() {
        let mut t = TenantContext::new("u", None, Some("acme".into())).unwrap();
        t.apply(&set(Some("globex"), false), false).unwrap();
        t.on_ready(b'I');
        t.on_settled_idle();
        // After a savepoint: a rollback to it could undo the reset.
        t.note_savepoint();
        assert!(t.on_reset_all());
        assert_eq!(t.current(), None);
        assert!(t.undoable_by_savepoint_rollback());
        assert!(t.chosen_in_transaction());
        // Rolled back: the chosen tenant again, at once for what follows.
        t.rollback_sent();
        assert_eq!(t.current(), Some("globex"));
        t.on_transaction_end(false);
        t.on_ready(b'I');
        assert_eq!(t.current(), Some("globex"));
        // Committed: the startup tenant.
        assert!(t.on_reset_all());
        t.end_local();
        assert!(t.awaits_transaction_end());
        t.on_transaction_end(true);
        assert_eq!(t.current(), Some("acme"));
    }

    #[test]
    fn a_set_local_after_a_savepoint_is_undoable() {
        let mut t = TenantContext::new("u", None, Some("acme".into())).unwrap();
        // SET LOCAL before any savepoint: rollbacks to later ones keep it.
        t.apply(&set(Some("globex"), true), true).unwrap();
        assert!(t.has_local());
        assert!(!t.undoable_by_savepoint_rollback());
        t.note_savepoint();
        assert!(!t.undoable_by_savepoint_rollback());
        t.on_transaction_end(true);
        t.on_ready(b'I');
        t.on_settled_idle();
        assert_eq!(t.current(), Some("acme"));
        // After one: undoable until the transaction ends.
        t.note_savepoint();
        t.apply(&set(Some("globex"), true), true).unwrap();
        assert!(t.undoable_by_savepoint_rollback());
        t.end_local();
        assert!(!t.undoable_by_savepoint_rollback());
        t.on_ready(b'I');
        t.on_settled_idle();
        // Restating the tenant with SET LOCAL changes nothing to undo.
        t.note_savepoint();
        t.apply(&set(Some("acme"), true), true).unwrap();
        assert!(!t.undoable_by_savepoint_rollback());
    }

    #[test]
    fn set_local_lasts_one_transaction() {
        let mut t = TenantContext::new("u", None, None).unwrap();
        t.apply(&set(Some("acme"), true), true).unwrap();
        assert_eq!(t.current(), Some("acme"));
        assert!(t.apply(&set(Some("globex"), true), true).is_err());
        t.on_ready(b'T');
        assert_eq!(t.current(), Some("acme"));
        t.on_ready(b'I');
        assert_eq!(t.current(), None);
        // Outside a transaction SET LOCAL does nothing, as in Postgres.
        t.apply(&set(Some("acme"), true), false).unwrap();
        assert_eq!(t.current(), None);
    }

    #[test]
    fn reset_returns_to_the_startup_tenant() {
        let mut t = TenantContext::new("u", None, Some("globex".into())).unwrap();
        t.apply(&set(Some("acme"), false), false).unwrap();
        t.on_ready(b'I');
        t.apply(&set(None, false), false).unwrap();
        t.on_ready(b'I');
        assert_eq!(t.current(), Some("globex"));
        // A bound session may restate its tenant with RESET when its
        // options named it.
        let mut t = TenantContext::new("u", Some("acme".into()), Some("acme".into())).unwrap();
        assert!(t.apply(&set(None, false), false).is_ok());
    }

    #[test]
    fn reset_all_forgets_a_chosen_tenant() {
        // Chosen with SET: gone, and none until the reset commits.
        let mut t = TenantContext::new("u", None, None).unwrap();
        t.apply(&set(Some("acme"), false), false).unwrap();
        t.on_ready(b'I');
        t.on_reset_all();
        assert_eq!(t.current(), None);
        t.on_ready(b'I');
        assert_eq!(t.current(), None);
        // A failed reset leaves it.
        t.apply(&set(Some("acme"), false), false).unwrap();
        t.on_ready(b'I');
        t.on_reset_all();
        t.on_error();
        t.on_ready(b'I');
        assert_eq!(t.current(), Some("acme"));
        // Back to the startup tenant once committed.
        let mut t = TenantContext::new("u", None, Some("globex".into())).unwrap();
        t.apply(&set(Some("acme"), false), false).unwrap();
        t.on_ready(b'I');
        t.on_reset_all();
        assert_eq!(t.current(), None);
        t.on_ready(b'I');
        assert_eq!(t.current(), Some("globex"));
        // Nothing chosen: nothing changes.
        t.on_reset_all();
        assert_eq!(t.current(), Some("globex"));
        // Bound: never.
        let mut t = TenantContext::new("u", Some("acme".into()), None).unwrap();
        t.on_reset_all();
        t.on_ready(b'I');
        assert_eq!(t.current(), Some("acme"));
    }

    #[test]
    fn rolled_back_set_is_undone() {
        let mut t = TenantContext::new("u", None, None).unwrap();
        t.apply(&set(Some("acme"), false), false).unwrap();
        t.on_ready(b'T');
        t.on_transaction_end(false);
        t.on_ready(b'I');
        assert_eq!(t.current(), None);
    }
}
