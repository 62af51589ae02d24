//! A client's session settings: startup parameters and session-level `SET`s.
//! Under transaction pooling they are replayed on any server connection whose
//! applied settings differ (compared by fingerprint, so the common case costs
//! nothing), and a `SET` counts only once its transaction commits.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::frontend::classify::Effect;

/// Settings as the client believes them to be.
#[derive(Debug, Default)]
pub struct Settings {
    /// From the startup packet and `options`: (name, value).
    startup: Vec<(String, String)>,
    /// Committed session `SET`s: (name, statement).
    session: Vec<(String, String)>,
    /// search_path pinned by routing (schema-per-tenant), if any.
    pinned_search_path: Option<String>,
    /// `SET`/`RESET` sent in the current transaction, not yet committed.
    tentative: Vec<Effect>,
    /// Whether the current batch saw an error.
    error_in_batch: bool,
    /// Whether the last transaction-ending command was a ROLLBACK.
    rolled_back: bool,
    /// A ROLLBACK TO SAVEPOINT ran in the current transaction.
    savepoint_rollback: bool,
    fingerprint: u64,
}

/// What a commit did to the server's state relative to the fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Nothing changed.
    Nothing,
    /// The server now holds exactly the client's settings.
    InSync,
    /// A RESET ran: the server's values no longer match any fingerprint.
    Unknown,
}

impl Settings {
    /// Settings from the startup packet.
    pub fn new(startup: Vec<(String, String)>) -> Settings {
        let mut s = Settings {
            startup,
            ..Settings::default()
        };
        s.refresh();
        s
    }

    /// Fingerprint of the settings; 0 means "server defaults".
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn refresh(&mut self) {
        self.fingerprint = if self.startup.is_empty()
            && self.session.is_empty()
            && self.pinned_search_path.is_none()
        {
            0
        } else {
            let mut h = DefaultHasher::new();
            self.startup.hash(&mut h);
            self.session.hash(&mut h);
            self.pinned_search_path.hash(&mut h);
            h.finish().max(1)
        };
    }

    /// Pins `search_path` to a schema tenant's schema (then `public`), or
    /// unpins it. Replayed like any setting; changes the fingerprint.
    pub fn pin_schema(&mut self, schema: Option<&str>) {
        let path = schema.map(|s| format!("\"{}\", public", s.replace('"', "\"\"")));
        if path != self.pinned_search_path {
            self.pinned_search_path = path;
            self.refresh();
        }
    }

    /// Statements that bring a server connection from `server_fingerprint`
    /// to these settings.
    pub fn replay(&self, server_fingerprint: u64) -> Vec<String> {
        let mut out = Vec::with_capacity(1 + self.startup.len() + self.session.len());
        if server_fingerprint != 0 {
            out.push("RESET ALL".to_string());
        }
        for (name, value) in &self.startup {
            out.push(format!(
                "SELECT pg_catalog.set_config('{}', '{}', false)",
                name.replace('\'', "''"),
                value.replace('\'', "''")
            ));
        }
        if let Some(path) = &self.pinned_search_path {
            out.push(format!(
                "SELECT pg_catalog.set_config('search_path', '{}', false)",
                path.replace('\'', "''")
            ));
        }
        for (_, stmt) in &self.session {
            out.push(stmt.clone());
        }
        out
    }

    /// Records a `SET`/`RESET`/`RESET ALL` the client sent.
    pub fn note(&mut self, effect: &Effect) {
        if matches!(effect, Effect::Setting { .. } | Effect::ResetAll) {
            self.tentative.push(effect.clone());
        }
    }

    /// The batch had an error.
    pub fn on_error(&mut self) {
        self.error_in_batch = true;
    }

    /// A CommandComplete ended a transaction (`COMMIT` or `ROLLBACK`).
    pub fn on_transaction_end(&mut self, committed: bool) {
        self.rolled_back = !committed;
    }

    /// The client sent ROLLBACK TO SAVEPOINT in the current transaction.
    pub fn on_savepoint_rollback(&mut self) {
        self.savepoint_rollback = true;
    }

    /// Whether settings changed in this transaction may have been partly
    /// undone by a ROLLBACK TO SAVEPOINT: the proxy cannot know the values
    /// the transaction ends with, so the session must keep its server.
    pub fn untrackable(&self) -> bool {
        self.savepoint_rollback && !self.tentative.is_empty()
    }

    /// DISCARD ALL ran: only the startup settings remain wanted.
    pub fn on_discard_all(&mut self) {
        self.session.clear();
        self.tentative.clear();
        self.refresh();
    }

    /// ReadyForQuery with `status`. Returns how the server's applied
    /// settings relate to the client's after this point.
    pub fn on_ready(&mut self, status: u8) -> Committed {
        let mut result = Committed::Nothing;
        if status == b'I' {
            if self.error_in_batch || self.rolled_back {
                self.tentative.clear();
            } else if !self.tentative.is_empty() {
                let mut reset = false;
                for e in std::mem::take(&mut self.tentative) {
                    match e {
                        Effect::Setting { name, statement } => {
                            self.session.retain(|(n, _)| *n != name);
                            if statement
                                .trim_start()
                                .get(..5)
                                .is_some_and(|w| w.eq_ignore_ascii_case("reset"))
                            {
                                reset = true;
                            } else {
                                self.session.push((name, statement));
                            }
                        }
                        Effect::ResetAll => {
                            self.session.clear();
                            reset = true;
                        }
                        _ => {}
                    }
                }
                self.refresh();
                result = if reset {
                    Committed::Unknown
                } else {
                    Committed::InSync
                };
            }
            self.rolled_back = false;
            self.savepoint_rollback = false;
        }
        self.error_in_batch = false;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, stmt: &str) -> Effect {
        Effect::Setting {
            name: name.into(),
            statement: stmt.into(),
        }
    }

    #[test]
    fn empty_settings_are_server_defaults() {
        let s = Settings::new(vec![]);
        assert_eq!(s.fingerprint(), 0);
        assert!(s.replay(0).is_empty());
        assert_eq!(s.replay(7), vec!["RESET ALL"]);
    }

    #[test]
    fn startup_params_replay_quoted() {
        let s = Settings::new(vec![("application_name".into(), "it's".into())]);
        assert_ne!(s.fingerprint(), 0);
        assert_eq!(
            s.replay(0),
            vec!["SELECT pg_catalog.set_config('application_name', 'it''s', false)"]
        );
    }

    #[test]
    fn set_commits_on_ready_idle() {
        let mut s = Settings::new(vec![]);
        s.note(&set("statement_timeout", "SET statement_timeout = 5"));
        assert_eq!(s.on_ready(b'I'), Committed::InSync);
        assert_eq!(s.replay(0), vec!["SET statement_timeout = 5"]);
        s.note(&set("statement_timeout", "SET statement_timeout = 6"));
        s.on_ready(b'I');
        assert_eq!(s.replay(0), vec!["SET statement_timeout = 6"]);
    }

    #[test]
    fn set_in_rolled_back_transaction_is_dropped() {
        let mut s = Settings::new(vec![]);
        s.note(&set("a.b", "SET a.b = 1"));
        assert_eq!(s.on_ready(b'T'), Committed::Nothing);
        s.on_transaction_end(false);
        assert_eq!(s.on_ready(b'I'), Committed::Nothing);
        assert_eq!(s.fingerprint(), 0);
    }

    #[test]
    fn set_in_failed_batch_is_dropped() {
        let mut s = Settings::new(vec![]);
        s.note(&set("a.b", "SET a.b = 1"));
        s.on_error();
        s.on_ready(b'I');
        assert_eq!(s.fingerprint(), 0);
    }

    #[test]
    fn schema_pin_is_replayed() {
        let mut s = Settings::new(vec![]);
        s.pin_schema(Some("globex"));
        assert_ne!(s.fingerprint(), 0);
        assert_eq!(
            s.replay(0),
            vec!["SELECT pg_catalog.set_config('search_path', '\"globex\", public', false)"]
        );
        s.pin_schema(None);
        assert_eq!(s.fingerprint(), 0);
    }

    #[test]
    fn reset_makes_server_state_unknown() {
        let mut s = Settings::new(vec![]);
        s.note(&set("a.b", "SET a.b = 1"));
        s.on_ready(b'I');
        s.note(&set("a.b", "RESET a.b"));
        assert_eq!(s.on_ready(b'I'), Committed::Unknown);
        assert_eq!(s.fingerprint(), 0);
    }
}
