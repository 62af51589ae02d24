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
    /// `SET`/`RESET` sent and not yet known to be committed or rolled back,
    /// each with the number of the batch (a Query, or messages up to a
    /// Sync) it was sent in. Pipelined batches are noted before earlier ones
    /// are answered. A `COMMIT` or `ROLLBACK` sent after one of them in the
    /// same batch is noted among them ([`Effect::Commit`],
    /// [`Effect::Rollback`]): which SETs it ends.
    tentative: Vec<(u64, Effect)>,
    /// `(batch, n)`: the client's last batch with a `COMMIT` or `ROLLBACK`
    /// sent, and how many it holds.
    ends_sent: (u64, u32),
    /// What the replies to the batch being answered have shown so far.
    answering: Answering,
    /// A ROLLBACK TO SAVEPOINT ran in the current transaction.
    savepoint_rollback: bool,
    /// Why only the server connection knows the values now, if it does.
    lost: Option<&'static str>,
    /// The names of the settings whose values only the server knows now
    /// (none: a `RESET ALL` among them, so any).
    lost_names: Option<Vec<String>>,
    /// What the SETs settled since the last ReadyForQuery did.
    settled: Committed,
    fingerprint: u64,
    /// Replays leave out the settings [`guarded`] names.
    guarded: bool,
}

/// A session setting that must not reach a server connection where a
/// tenant's rows are scoped: one that changes how names resolve
/// (`search_path`), how the text the rewriter read is parsed
/// (`standard_conforming_strings`, a client encoding whose characters can
/// hold quote bytes) or whose privileges apply (`role`,
/// `session_authorization`). Tenant sessions may not set them; a session
/// sets them while it is not such a tenant's (trusted without a tenant, or
/// on a dedicated database), and they do not follow it to a shared shard.
fn guarded(name: &str, statement: &str) -> bool {
    // Looked at for every transaction of a session with settings: no
    // allocation.
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    if is("search_path")
        || is("standard_conforming_strings")
        || is("role")
        || is("session_authorization")
    {
        return true;
    }
    (is("client_encoding") || is("names"))
        && crate::tenant::check_client_encoding_set(statement).is_err()
}

/// Settings whose values only the server connection knows.
#[derive(Debug, PartialEq, Eq)]
pub struct Untracked {
    /// Why (for the logs, and the pin when they cannot be read back).
    pub reason: &'static str,
    /// Their names, to read back from the server; `None` after a
    /// `RESET ALL` (then any setting may differ).
    pub names: Option<Vec<String>>,
}

/// The replies to one batch, as far as settings care.
#[derive(Debug, Default, Clone, Copy)]
struct Answering {
    /// The batch had an error (nothing after it ran).
    error: bool,
    /// Transactions it ended (COMMIT or ROLLBACK completed).
    ends: u32,
    /// Whether the last of them committed.
    end_committed: bool,
    /// A statement completed, or failed, after the last of them.
    after_end: bool,
}

/// What a commit did to the server's state relative to the fingerprint
/// (ordered: a later variant overrides an earlier one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Committed {
    /// Nothing changed.
    #[default]
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
            for entry in self.session_to_replay() {
                entry.hash(&mut h);
            }
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

    /// Whether the session holds a setting that must not reach a server
    /// connection where a tenant's rows are scoped (see `guarded`).
    pub fn has_guarded(&self) -> bool {
        self.session.iter().any(|(n, s)| guarded(n, s))
    }

    /// Whether the server connections this session uses now serve its
    /// tenant's rows on a shared shard or schema: then the settings
    /// `guarded` names are not replayed (they were made while it was not
    /// such a tenant's session), and the fingerprint counts without them.
    pub fn set_guarded(&mut self, on: bool) {
        if self.guarded != on {
            self.guarded = on;
            self.refresh();
        }
    }

    /// The committed session SETs to replay, without the guarded ones
    /// while [`Settings::set_guarded`] is on.
    fn session_to_replay(&self) -> impl Iterator<Item = &(String, String)> {
        self.session
            .iter()
            .filter(move |(n, s)| !(self.guarded && guarded(n, s)))
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
        for (_, stmt) in self.session_to_replay() {
            out.push(stmt.clone());
        }
        out
    }

    /// Records a `SET`/`RESET`/`RESET ALL` the client sent in batch `batch`.
    pub fn note(&mut self, effect: &Effect, batch: u64) {
        if matches!(effect, Effect::Setting { .. } | Effect::ResetAll) {
            self.tentative.push((batch, effect.clone()));
        }
    }

    /// Records a `COMMIT` (`committed`) or `ROLLBACK` the client sent in
    /// batch `batch`, so that a batch of several transactions can be
    /// followed (see [`Settings::on_ready`]).
    #[inline]
    pub fn note_end(&mut self, committed: bool, batch: u64) {
        if self.ends_sent.0 == batch {
            self.ends_sent.1 += 1;
        } else {
            self.ends_sent = (batch, 1);
        }
        if self.tentative.last().is_some_and(|(b, _)| *b == batch) {
            let end = if committed {
                Effect::Commit
            } else {
                Effect::Rollback
            };
            self.tentative.push((batch, end));
        }
    }

    /// The batch being answered had an error.
    pub fn on_error(&mut self) {
        self.answering.error = true;
        self.answering.after_end |= self.answering.ends > 0;
    }

    /// A statement of the client's completed (not COMMIT or ROLLBACK).
    #[inline]
    pub fn on_result(&mut self) {
        self.answering.after_end |= self.answering.ends > 0;
    }

    /// A COMMIT (`committed`) or ROLLBACK completed in batch `batch`. The
    /// SETs of earlier batches still open were in the transaction it ended.
    /// Those of its own batch are settled when the batch is answered, when
    /// it is known whether anything ran after it.
    pub fn on_transaction_end(&mut self, committed: bool, batch: u64) {
        if self.tentative.first().is_some_and(|(b, _)| *b < batch) {
            self.settle_last_transaction(|b| b < batch, committed);
        }
        self.answering.ends += 1;
        self.answering.end_committed = committed;
        self.answering.after_end = false;
    }

    /// The client sent ROLLBACK TO SAVEPOINT in the current transaction.
    pub fn on_savepoint_rollback(&mut self) {
        self.savepoint_rollback = true;
    }

    /// Why the settings changed lately can only be known on the server
    /// connection, if they cannot be followed any more (then the session
    /// must keep it): SETs partly undone by a ROLLBACK TO SAVEPOINT, or
    /// SETs in a batch that ended a transaction and ran more after it.
    /// Reported once.
    pub fn take_untrackable(&mut self) -> Option<Untracked> {
        let reason = self.lost.take()?;
        Some(Untracked {
            reason,
            names: self.lost_names.take(),
        })
    }

    /// A query that reads the current values of `names` on a server (NULL
    /// for a custom setting that does not exist there).
    pub fn read_back_query(names: &[String]) -> String {
        let columns: Vec<String> = names
            .iter()
            .map(|n| format!("pg_catalog.current_setting({}, true)", escaped_literal(n)))
            .collect();
        format!("SELECT {}", columns.join(", "))
    }

    /// Records the values a server connection has for settings whose
    /// outcome only it knew (`None`: not set there), as the client's
    /// session settings: they are replayed like any other.
    pub fn read_back(&mut self, values: &[(String, Option<String>)]) {
        let effects = values
            .iter()
            .map(|(name, value)| Effect::Setting {
                name: name.clone(),
                statement: match value {
                    Some(v) => format!(
                        "SELECT pg_catalog.set_config({}, {}, false)",
                        escaped_literal(name),
                        escaped_literal(v)
                    ),
                    None => format!("RESET \"{}\"", name.replace('"', "\"\"")),
                },
            })
            .collect();
        self.commit_effects(effects);
        self.refresh();
    }

    /// Drops the SETs of the batches `which` accepts, whose outcome only
    /// the server knows, and notes their names for a read back.
    fn lose(&mut self, which: impl Fn(u64) -> bool, reason: &'static str) {
        let mut names = Vec::new();
        let mut all = false;
        for (b, e) in &self.tentative {
            match e {
                Effect::Setting { name, .. } if which(*b) => names.push(name.clone()),
                Effect::ResetAll if which(*b) => all = true,
                _ => {}
            }
        }
        self.settle(which, false);
        self.mark_lost(names, all, reason);
    }

    /// `set_config(…)` of `names` was sent: what it set them to (if the
    /// transaction keeps it) only the server knows, so their values are
    /// read back from the server connection before it is given back.
    pub fn read_back_later(&mut self, names: &[String]) {
        self.mark_lost(names.iter().cloned(), false, "set_config()");
    }

    /// Notes settings whose values only the server knows now: `names`, or
    /// any setting at all (`all`, after a RESET ALL, or if one was noted
    /// before).
    fn mark_lost(
        &mut self,
        names: impl IntoIterator<Item = String>,
        all: bool,
        reason: &'static str,
    ) {
        let every = all || (self.lost.is_some() && self.lost_names.is_none());
        if every {
            self.lost_names = None;
        } else {
            let list = self.lost_names.get_or_insert_with(Vec::new);
            for n in names {
                if !list.contains(&n) {
                    list.push(n);
                }
            }
        }
        self.lost = Some(reason);
    }

    /// DISCARD ALL ran: only the startup settings remain wanted.
    pub fn on_discard_all(&mut self) {
        self.session.clear();
        self.tentative.clear();
        self.refresh();
    }

    /// Takes the SETs of the batches `which` accepts out of the tentative
    /// ones and applies them (`commit`) or drops them; what that did to the
    /// server's state is reported at the next ReadyForQuery.
    fn settle(&mut self, which: impl Fn(u64) -> bool, commit: bool) {
        let (settled, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tentative)
            .into_iter()
            .partition(|(b, _)| which(*b));
        self.tentative = kept;
        if !commit || settled.is_empty() {
            return;
        }
        self.apply_committed(settled.into_iter().map(|(_, e)| e).collect());
    }

    /// Applies SETs (and `RESET ALL`s) whose transaction committed.
    fn apply_committed(&mut self, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let now = if self.commit_effects(effects) {
            Committed::Unknown
        } else {
            Committed::InSync
        };
        self.refresh();
        self.settled = self.settled.max(now);
    }

    /// Applies committed `SET`/`RESET`s as if one after the other (a name
    /// set again moves to the end; a `RESET` removes it; `RESET ALL` clears
    /// everything before it), in one pass over the session's settings
    /// however many there are. Returns whether anything was reset.
    fn commit_effects(&mut self, mut effects: Vec<Effect>) -> bool {
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
                .is_some_and(|w| w.eq_ignore_ascii_case("reset"))
                || sets_default(statement);
            reset |= is_reset;
            if last.get(name.as_str()) == Some(&i) && !is_reset {
                kept.push((name.clone(), statement.clone()));
            }
        }
        self.session.extend(kept);
        reset
    }

    /// ReadyForQuery with `status` ends batch `batch`. Returns how the
    /// server's applied settings relate to the client's after this point.
    #[inline]
    pub fn on_ready(&mut self, status: u8, batch: u64) -> Committed {
        if self.tentative.is_empty() && self.settled == Committed::Nothing {
            // The common case: no SET in flight.
            self.answering = Answering::default();
            if status == b'I' {
                self.savepoint_rollback = false;
            }
            return Committed::Nothing;
        }
        self.on_ready_with_sets(status, batch)
    }

    /// [`Settings::on_ready`] with SETs to settle.
    fn on_ready_with_sets(&mut self, status: u8, batch: u64) -> Committed {
        let a = std::mem::take(&mut self.answering);
        if !self.tentative.is_empty() {
            let own = |b: u64| b <= batch;
            if a.ends == 0 {
                // Outside a transaction block the batch's implicit
                // transaction (with any block it continued) is over.
                if status == b'I' {
                    self.settle_last_transaction(own, !a.error);
                }
            } else if self.tentative.iter().any(|(b, _)| own(*b)) {
                if a.ends == 1 && !a.after_end {
                    // Nothing ran after the one COMMIT or ROLLBACK: every
                    // SET of the batch came before it.
                    self.settle_last_transaction(own, a.end_committed);
                } else if self.settle_in_order(batch, status, a) {
                    // Each SET went with the end after it.
                } else {
                    // Some of its SETs may have been committed, others
                    // rolled back or never run: only the server knows.
                    self.lose(own, "SET in a batch of several transactions");
                }
            }
        }
        if status == b'I' {
            self.savepoint_rollback = false;
        }
        std::mem::replace(&mut self.settled, Committed::Nothing)
    }

    /// A batch of several transactions was answered: its SETs are settled
    /// by the end that follows each (a `COMMIT` applies them, a `ROLLBACK`
    /// drops them). Those after the last end that completed belong to the
    /// transaction the batch leaves: after an error, that one failed (or
    /// they never ran), so they are dropped; else they are committed when
    /// the server is idle (its implicit transaction is over), and stay
    /// tentative in a block. (Earlier batches' SETs were settled by the
    /// first end.) Only when the ends that came back are, in number, those
    /// the proxy saw go out (all of them, or the first ones up to an error),
    /// the last of them answered as sent, and no savepoint was rolled back
    /// to; returns whether it settled them.
    fn settle_in_order(&mut self, batch: u64, status: u8, a: Answering) -> bool {
        let noted: Vec<bool> = self
            .tentative
            .iter()
            .filter_map(|(b, e)| match e {
                Effect::Commit if *b == batch => Some(true),
                Effect::Rollback if *b == batch => Some(false),
                _ => None,
            })
            .collect();
        let sent = if self.ends_sent.0 == batch {
            self.ends_sent.1
        } else {
            0
        };
        // Ends sent before the batch's first SET are not noted among them.
        let unnoted = sent.saturating_sub(noted.len() as u32);
        let completed = a.ends.saturating_sub(unnoted) as usize;
        let consistent = if a.error {
            a.ends <= sent
        } else {
            a.ends == sent
        };
        if self.savepoint_rollback
            || !consistent
            || (completed > 0 && noted.get(completed - 1) != Some(&a.end_committed))
        {
            return false;
        }
        let (mine, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tentative)
            .into_iter()
            .partition(|(b, _)| *b == batch);
        self.tentative = later;
        let mut open = Vec::new();
        let mut ends = 0;
        for (_, e) in mine {
            if ends == completed && matches!(e, Effect::Commit | Effect::Rollback) {
                // Not reached: an error came first.
                break;
            }
            match e {
                Effect::Commit => {
                    ends += 1;
                    self.apply_committed(std::mem::take(&mut open));
                }
                Effect::Rollback => {
                    ends += 1;
                    open.clear();
                }
                e => open.push(e),
            }
        }
        if a.error {
            // In the transaction the error failed, or never run.
        } else if status == b'I' {
            self.apply_committed(open);
        } else {
            let open = open.into_iter().map(|e| (batch, e));
            self.tentative.splice(0..0, open);
        }
        true
    }

    /// Settles the SETs of the transaction that just ended, unless a
    /// ROLLBACK TO SAVEPOINT may have undone some of them.
    fn settle_last_transaction(&mut self, which: impl Fn(u64) -> bool, commit: bool) {
        if commit && self.savepoint_rollback && self.tentative.iter().any(|(b, _)| which(*b)) {
            self.lose(which, "SET with ROLLBACK TO SAVEPOINT");
        } else {
            self.settle(which, commit);
        }
    }
}

/// Whether a `SET` statement sets its parameter `TO DEFAULT` (or `=
/// DEFAULT`, or `TIME ZONE DEFAULT`/`LOCAL`): Postgres reads that as a
/// `RESET`, back to the session's default (its startup value).
fn sets_default(statement: &str) -> bool {
    let s = statement
        .trim()
        .trim_end_matches(';')
        .trim_end()
        .to_ascii_lowercase();
    let rest = match s.strip_suffix("default") {
        Some(r) => r,
        None => match s.strip_suffix("local") {
            Some(r) if r.trim_end().ends_with("time zone") => r,
            _ => return false,
        },
    };
    let before = rest.trim_end();
    // The keyword stands alone, after `TO`, `=` or `TIME ZONE`.
    (before.len() < rest.len() || before.ends_with('='))
        && (before.ends_with(" to") || before.ends_with('=') || before.ends_with("time zone"))
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
                let got = s.commit_effects(effects.clone());
                assert_eq!(got, want, "{effects:?}");
                assert_eq!(s.session, reference, "{effects:?}");
            }
        }
    }

    #[test]
    fn set_to_default_is_a_reset() {
        for (stmt, want) in [
            ("SET work_mem TO DEFAULT", true),
            ("set work_mem=default;", true),
            ("SET TIME ZONE DEFAULT", true),
            ("SET SESSION TIME ZONE LOCAL", true),
            ("SET work_mem TO '64kB'", false),
            ("SET application_name = 'default'", false),
            ("SET application_name TO mydefault", false),
            ("SET x.y TO local", false),
        ] {
            assert_eq!(sets_default(stmt), want, "{stmt}");
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
        s.note(&set("statement_timeout", "SET statement_timeout = 5"), 0);
        assert_eq!(s.on_ready(b'I', 0), Committed::InSync);
        assert_eq!(s.replay(0), vec!["SET statement_timeout = 5"]);
        s.note(&set("statement_timeout", "SET statement_timeout = 6"), 1);
        s.on_ready(b'I', 1);
        assert_eq!(s.replay(0), vec!["SET statement_timeout = 6"]);
    }

    #[test]
    fn set_in_rolled_back_transaction_is_dropped() {
        let mut s = Settings::new(vec![]);
        s.note(&set("a.b", "SET a.b = 1"), 0);
        assert_eq!(s.on_ready(b'T', 0), Committed::Nothing);
        s.on_transaction_end(false, 1);
        assert_eq!(s.on_ready(b'I', 1), Committed::Nothing);
        assert_eq!(s.fingerprint(), 0);
        assert_eq!(s.take_untrackable(), None);
    }

    #[test]
    fn set_in_failed_batch_is_dropped() {
        let mut s = Settings::new(vec![]);
        s.note(&set("a.b", "SET a.b = 1"), 0);
        s.on_error();
        s.on_ready(b'I', 0);
        assert_eq!(s.fingerprint(), 0);
    }

    #[test]
    fn a_batch_that_ends_its_transaction_last_settles_it() {
        // BEGIN; SET a.b = 1; COMMIT
        let mut s = Settings::new(vec![]);
        s.note(&set("a.b", "SET a.b = 1"), 0);
        s.on_result();
        s.on_result();
        s.on_transaction_end(true, 0);
        assert_eq!(s.on_ready(b'I', 0), Committed::InSync);
        assert_eq!(s.replay(0), vec!["SET a.b = 1"]);
        assert_eq!(s.take_untrackable(), None);
    }

    #[test]
    fn a_commit_and_chain_settles_the_earlier_batches() {
        // BEGIN / SET a.b = 1 / COMMIT AND CHAIN / ROLLBACK, one at a time.
        let mut s = Settings::new(vec![]);
        s.on_result();
        s.on_ready(b'T', 0);
        s.note(&set("a.b", "SET a.b = 1"), 1);
        s.on_result();
        assert_eq!(s.on_ready(b'T', 1), Committed::Nothing);
        s.on_transaction_end(true, 2);
        assert_eq!(s.on_ready(b'T', 2), Committed::InSync);
        s.on_transaction_end(false, 3);
        assert_eq!(s.on_ready(b'I', 3), Committed::Nothing);
        assert_eq!(s.replay(0), vec!["SET a.b = 1"]);
        assert_eq!(s.take_untrackable(), None);
    }

    #[test]
    fn sets_around_several_transaction_ends_in_one_batch_are_lost() {
        // BEGIN; SET a.b = 1; COMMIT; BEGIN; ROLLBACK
        let mut s = Settings::new(vec![]);
        s.note(&set("a.b", "SET a.b = 1"), 0);
        s.on_result();
        s.on_result();
        s.on_transaction_end(true, 0);
        s.on_result();
        s.on_transaction_end(false, 0);
        assert_eq!(s.on_ready(b'I', 0), Committed::Nothing);
        assert_eq!(
            s.take_untrackable().and_then(|u| u.names),
            Some(vec!["a.b".to_string()])
        );
        assert_eq!(s.take_untrackable(), None);
        // Read back from the server: the value it has is the client's now.
        let before = s.fingerprint();
        s.read_back(&[("a.b".to_string(), Some("1".to_string()))]);
        assert_ne!(s.fingerprint(), before);
        assert_eq!(
            s.replay(0),
            ["SELECT pg_catalog.set_config(E'a.b', E'1', false)"]
        );
        s.read_back(&[("a.b".to_string(), None)]);
        assert_eq!(s.fingerprint(), before);
        // SET a.b = 1; COMMIT; SELECT 1/0
        let mut s = Settings::new(vec![]);
        s.note(&set("a.b", "SET a.b = 1"), 0);
        s.on_result();
        s.on_transaction_end(true, 0);
        s.on_error();
        s.on_ready(b'I', 0);
        assert!(s.take_untrackable().is_some());
        // Several ends, but no SET in the batch: nothing to follow.
        let mut s = Settings::new(vec![]);
        s.on_transaction_end(true, 0);
        s.on_transaction_end(true, 0);
        s.on_ready(b'I', 0);
        assert_eq!(s.take_untrackable(), None);
    }

    #[test]
    fn sets_of_a_batch_of_several_transactions_go_with_the_end_after_them() {
        // SET a.b = 1; COMMIT; SET a.c = 2; ROLLBACK; SET a.d = 3; COMMIT; RESET ALL
        let mut s = Settings::new(vec![]);
        s.note(&set("a.b", "SET a.b = 1"), 0);
        s.note_end(true, 0);
        s.note(&set("a.c", "SET a.c = 2"), 0);
        s.note_end(false, 0);
        s.note(&set("a.d", "SET a.d = 3"), 0);
        s.note_end(true, 0);
        for committed in [true, false, true] {
            s.on_result();
            s.on_transaction_end(committed, 0);
        }
        assert_eq!(s.on_ready(b'I', 0), Committed::InSync);
        assert_eq!(s.replay(0), vec!["SET a.b = 1", "SET a.d = 3"]);
        assert_eq!(s.take_untrackable(), None);
        // COMMIT; RESET ALL (a pool's reset after its transaction).
        s.note_end(true, 1);
        s.note(&Effect::ResetAll, 1);
        s.on_transaction_end(true, 1);
        s.on_result();
        assert_eq!(s.on_ready(b'I', 1), Committed::Unknown);
        assert!(s.replay(0).is_empty());
        assert_eq!(s.take_untrackable(), None);
        // BEGIN; SET a.b = 1; COMMIT; BEGIN; SET a.c = 2 (a block left open).
        s.note(&set("a.b", "SET a.b = 1"), 2);
        s.note_end(true, 2);
        s.note(&set("a.c", "SET a.c = 2"), 2);
        s.on_result();
        s.on_result();
        s.on_transaction_end(true, 2);
        s.on_result();
        s.on_result();
        assert_eq!(s.on_ready(b'T', 2), Committed::InSync);
        assert_eq!(s.replay(0), vec!["SET a.b = 1"]);
        s.on_transaction_end(true, 3);
        s.on_ready(b'I', 3);
        assert_eq!(s.replay(0), vec!["SET a.b = 1", "SET a.c = 2"]);
        // An error after the first end: the SET before it committed, the
        // RESET ALL after it failed with the error's transaction.
        s.note(&set("a.f", "SET a.f = 1"), 5);
        s.note_end(true, 5);
        s.note(&Effect::ResetAll, 5);
        s.on_result();
        s.on_transaction_end(true, 5);
        s.on_result();
        s.on_error();
        s.on_ready(b'I', 5);
        assert_eq!(s.take_untrackable(), None);
        assert_eq!(
            s.replay(0),
            vec!["SET a.b = 1", "SET a.c = 2", "SET a.f = 1"]
        );
        // COMMIT; RESET ALL; SELECT 1/0: the RESET ALL failed.
        s.note_end(true, 6);
        s.note(&Effect::ResetAll, 6);
        s.on_transaction_end(true, 6);
        s.on_result();
        s.on_error();
        s.on_ready(b'I', 6);
        assert_eq!(s.take_untrackable(), None);
        assert_eq!(s.replay(0).len(), 3);
        // The ends that came back are not those that went out: lost.
        s.note(&set("a.e", "SET a.e = 1"), 7);
        s.note_end(true, 7);
        s.on_transaction_end(false, 7);
        s.on_result();
        s.on_ready(b'I', 7);
        assert!(s.take_untrackable().is_some());
    }

    #[test]
    fn pipelined_batches_settle_one_by_one() {
        // SET a.b = 1 (Sync), SET a.c = 2; SELECT 1/0 (Sync), both sent at once.
        let mut s = Settings::new(vec![]);
        s.note(&set("a.b", "SET a.b = 1"), 0);
        s.note(&set("a.c", "SET a.c = 2"), 1);
        s.on_result();
        assert_eq!(s.on_ready(b'I', 0), Committed::InSync);
        s.on_result();
        s.on_error();
        assert_eq!(s.on_ready(b'I', 1), Committed::Nothing);
        assert_eq!(s.replay(0), vec!["SET a.b = 1"]);
    }

    #[test]
    fn a_savepoint_rollback_loses_only_committed_sets() {
        let mut s = Settings::new(vec![]);
        s.note(&set("a.b", "SET a.b = 1"), 0);
        s.on_savepoint_rollback();
        s.on_transaction_end(false, 0);
        s.on_ready(b'I', 0);
        assert_eq!(s.take_untrackable(), None);
        s.note(&set("a.b", "SET a.b = 1"), 1);
        s.on_savepoint_rollback();
        s.on_transaction_end(true, 1);
        s.on_ready(b'I', 1);
        assert!(s.take_untrackable().is_some());
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
        s.note(&set("a.b", "SET a.b = 1"), 0);
        s.on_ready(b'I', 0);
        s.note(&set("a.b", "RESET a.b"), 1);
        assert_eq!(s.on_ready(b'I', 1), Committed::Unknown);
        assert_eq!(s.fingerprint(), 0);
    }
}
