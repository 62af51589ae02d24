//! A client's session settings: startup parameters and session-level `SET`s.
//! Under transaction pooling they are replayed on any server connection whose
//! applied settings differ (compared by fingerprint, so the common case costs
//! nothing), and a `SET` counts only once its transaction commits.

use std::collections::HashMap;
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
                "SELECT pg_catalog.set_config({}, {}, false)",
                escaped_literal(name),
                escaped_literal(value)
            ));
        }
        if let Some(path) = &self.pinned_search_path {
            out.push(format!(
                "SELECT pg_catalog.set_config('search_path', {}, false)",
                escaped_literal(path)
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

    /// Applies the committed transaction's `SET`/`RESET`s as if one after
    /// the other (a name set again moves to the end; a `RESET` removes it;
    /// `RESET ALL` clears everything before it), in one pass over the
    /// session's settings however many there are. Returns whether anything
    /// was reset.
    fn commit_tentative(&mut self) -> bool {
        let mut effects = std::mem::take(&mut self.tentative);
        let mut reset = false;
        if let Some(all) = effects.iter().rposition(|e| matches!(e, Effect::ResetAll)) {
            self.session.clear();
            reset = true;
            effects.drain(..=all);
        }
        // The last effect on each name decides; its place is the order.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(effects.len());
        for (i, e) in effects.iter().enumerate() {
            if let Effect::Setting { name, .. } = e {
                last.insert(name.as_str(), i);
            }
        }
        self.session.retain(|(n, _)| !last.contains_key(n.as_str()));
        let mut kept = Vec::with_capacity(last.len());
        for (i, e) in effects.iter().enumerate() {
            let Effect::Setting { name, statement } = e else {
                continue;
            };
            let is_reset = statement
                .trim_start()
                .get(..5)
                .is_some_and(|w| w.eq_ignore_ascii_case("reset"));
            reset |= is_reset;
            if last.get(name.as_str()) == Some(&i) && !is_reset {
                kept.push((name.clone(), statement.clone()));
            }
        }
        self.session.extend(kept);
        reset
    }

    /// ReadyForQuery with `status`. Returns how the server's applied
    /// settings relate to the client's after this point.
    pub fn on_ready(&mut self, status: u8) -> Committed {
        let mut result = Committed::Nothing;
        if status == b'I' {
            if self.error_in_batch || self.rolled_back {
                self.tentative.clear();
            } else if !self.tentative.is_empty() {
                let reset = self.commit_tentative();
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

/// `s` as an escape string literal (`E'…'`, quotes and backslashes doubled):
/// read the same whatever the server's `standard_conforming_strings` is.
fn escaped_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str("E'");
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
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

    /// The commit as a sequence of steps, one effect at a time: the
    /// reference `commit_tentative` must agree with.
    fn commit_one_by_one(session: &mut Vec<(String, String)>, effects: &[Effect]) -> bool {
        let mut reset = false;
        for e in effects {
            match e {
                Effect::Setting { name, statement } => {
                    session.retain(|(n, _)| n != name);
                    if statement.to_ascii_lowercase().starts_with("reset") {
                        reset = true;
                    } else {
                        session.push((name.clone(), statement.clone()));
                    }
                }
                Effect::ResetAll => {
                    session.clear();
                    reset = true;
                }
                _ => {}
            }
        }
        reset
    }

    #[test]
    fn a_commit_applies_its_sets_as_in_sequence() {
        let mut seed = 0x5e77_1265_u64;
        let mut rand = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..2_000 {
            let mut s = Settings::new(vec![]);
            let mut reference = Vec::new();
            for _ in 0..1 + rand(4) {
                let effects: Vec<Effect> = (0..rand(8))
                    .map(|_| {
                        let name = format!("a.x{}", rand(4));
                        match rand(7) {
                            0 => Effect::ResetAll,
                            1 | 2 => set(&name, &format!("RESET {name}")),
                            v => set(&name, &format!("SET {name} = {v}")),
                        }
                    })
                    .collect();
                let want = commit_one_by_one(&mut reference, &effects);
                for e in &effects {
                    s.note(e);
                }
                let got = s.commit_tentative();
                assert_eq!(got, want, "{effects:?}");
                assert_eq!(s.session, reference, "{effects:?}");
            }
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
            vec!["SELECT pg_catalog.set_config(E'application_name', E'it''s', false)"]
        );
        // A backslash cannot end the literal early, even on a server with
        // standard_conforming_strings off (where '\' would escape the quote).
        let s = Settings::new(vec![(
            "application_name".into(),
            "x\\'); DROP TABLE t; --".into(),
        )]);
        assert_eq!(
            s.replay(0),
            vec![
                "SELECT pg_catalog.set_config(E'application_name', E'x\\\\''); DROP TABLE t; --', false)"
            ]
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
            vec!["SELECT pg_catalog.set_config('search_path', E'\"globex\", public', false)"]
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
