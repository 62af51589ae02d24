//! Named prepared statements under transaction pooling. Each distinct
//! (query text, parameter types) gets one proxy-wide id and a server-side name
//! `_tg_<id>`; a client's own names map onto those. A server connection
//! records which ids it has prepared, so a client's statement works on
//! whichever server its next transaction gets: it is prepared there on demand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use dashmap::DashMap;

use super::classify::{
    Effect, MAX_IDENTIFIER_BYTES, SQL_PREPARE, classify, effects_of, execute_target, mentions,
    prepare_target, split_statements,
};
use super::deallocate::{STAND_IN, runs_as_stand_in};
use super::isolation::TenantBinding;
use crate::error::ProxyError;
use crate::rewrite::TenantCheck;
use crate::router::RouteKey;
use crate::tenant::TenantSet;

/// Prefix of every server-side statement name tenantgate creates.
pub const SERVER_NAME_PREFIX: &str = "_tg_";

/// A statement name that never exists on a server: a Close of it answers
/// CloseComplete and does nothing.
pub const NOOP_NAME: &str = "_tg_noop";

/// `name` as Postgres keys statement and portal names: its first
/// [`MAX_IDENTIFIER_BYTES`] (63) bytes, cut without regard for characters
/// (Postgres copies the name into its key byte by byte), so two longer
/// names that share them are one name. Errors still quote a name as the
/// client sent it.
pub(super) fn name_key(name: &[u8]) -> &[u8] {
    &name[..name.len().min(MAX_IDENTIFIER_BYTES)]
}

/// One distinct prepared statement.
#[derive(Debug)]
pub struct Statement {
    /// Proxy-wide id.
    pub id: u64,
    /// Name on every server (`_tg_<id>`).
    pub server_name: String,
    /// Query text as the client sent it (no NUL terminator).
    pub query: Bytes,
    /// Raw parameter type section of Parse: i16 count then the OIDs.
    pub param_types: Bytes,
    /// How the tenant is bound, when tenant isolation rewrote the statement.
    pub binding: Option<Arc<TenantBinding>>,
    /// The kind of home it was planned for (isolated sessions).
    pub route: Option<RouteKey>,
    /// A server has accepted this statement at least once, so a client's
    /// Parse of it can be answered without a server connection.
    validated: AtomicBool,
    /// What it does to the tenant variable (worked out at its first Bind).
    tenant_set: OnceLock<Option<TenantSet>>,
    /// What running it does to the session (worked out at its first Bind).
    effects: OnceLock<Option<Arc<[Effect]>>>,
}

impl Statement {
    /// Whether a server has accepted this statement.
    pub fn is_validated(&self) -> bool {
        self.validated.load(Ordering::Relaxed)
    }

    /// What the statement does to the tenant variable, as `of` reads its
    /// text; read once per statement, not at every Bind.
    pub fn tenant_set(&self, of: impl FnOnce(&[u8]) -> Option<TenantSet>) -> Option<&TenantSet> {
        self.tenant_set.get_or_init(|| of(&self.query)).as_ref()
    }

    /// What running it does to the session (`SET`s, pins, …), if anything;
    /// read once per statement, not at every Bind.
    pub fn effects(&self) -> Option<&Arc<[Effect]>> {
        self.effects
            .get_or_init(|| effects_of(&self.query))
            .as_ref()
    }

    /// The text servers prepare: its own, except that a `DEALLOCATE name`
    /// runs as the proxy's stand-in (see `frontend::deallocate`).
    pub fn server_query(&self) -> &[u8] {
        if runs_as_stand_in(self.effects().map(|e| &e[..]), &self.query) {
            STAND_IN.as_bytes()
        } else {
            &self.query
        }
    }

    /// Records that a server accepted it.
    pub fn mark_validated(&self) {
        self.validated.store(true, Ordering::Relaxed);
    }
}

/// Proxy-wide registry of distinct statements, shared by all sessions.
#[derive(Debug, Default)]
pub struct StatementRegistry {
    by_text: DashMap<Bytes, Arc<Statement>>,
    next_id: AtomicU64,
    /// Size at which the next prune runs: the soft cap, or twice what the
    /// last prune left (statements clients still hold cannot go), so a
    /// registry full of held statements is not scanned at every miss.
    prune_at: AtomicUsize,
}

/// Above this many distinct statements, unused entries are pruned.
const REGISTRY_SOFT_CAP: usize = 50_000;

/// `binding` as part of a registry key (none: one zero byte).
fn push_binding(key: &mut Vec<u8>, binding: Option<&TenantBinding>) {
    let Some(b) = binding else {
        key.push(0);
        return;
    };
    key.push(if b.shows { 2 } else { 1 });
    key.extend_from_slice(&(b.param as u64).to_be_bytes());
    for check in &b.checks {
        match check {
            TenantCheck::Param(n) => {
                key.push(b'p');
                key.extend_from_slice(&(*n as u64).to_be_bytes());
            }
            TenantCheck::Pattern { param, escape } => {
                key.push(b'k');
                key.extend_from_slice(&(*param as u64).to_be_bytes());
                key.push(*escape);
            }
            TenantCheck::Literal(v) => {
                key.push(b'l');
                key.extend_from_slice(&(v.len() as u64).to_be_bytes());
                key.extend_from_slice(v.as_bytes());
            }
        }
    }
}

impl StatementRegistry {
    /// The statement for `query` with `param_types`, created on first use.
    pub fn intern(
        &self,
        query: &[u8],
        param_types: &[u8],
        binding: Option<Arc<TenantBinding>>,
        route: Option<RouteKey>,
    ) -> Arc<Statement> {
        let mut key = Vec::with_capacity(query.len() + 2 + param_types.len());
        key.extend_from_slice(query);
        key.push(0);
        key.extend_from_slice(param_types);
        // The same text means another statement with another binding: a
        // dedicated tenant's session forwards text unrewritten (no binding),
        // and must not lend that entry to a tenant whose rewrite of its own
        // statement came out as the same text (it would go unchecked).
        push_binding(&mut key, binding.as_deref());
        // The kind of home too: text planned for a dedicated database (not
        // rewritten) must not serve a shared tenant.
        match &route {
            None => key.push(0),
            Some(r) => {
                key.push(if r.dedicated { 2 } else { 1 });
                key.extend_from_slice(r.schema.as_deref().unwrap_or("").as_bytes());
                key.push(0);
            }
        }
        let key = Bytes::from(key);
        if let Some(s) = self.by_text.get(&key) {
            return s.clone();
        }
        if self.by_text.len() > self.prune_at.load(Ordering::Relaxed).max(REGISTRY_SOFT_CAP) {
            self.by_text.retain(|_, s| Arc::strong_count(s) > 1);
            self.prune_at
                .store(2 * self.by_text.len(), Ordering::Relaxed);
        }
        self.by_text
            .entry(key)
            .or_insert_with(|| {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                Arc::new(Statement {
                    id,
                    server_name: format!("{SERVER_NAME_PREFIX}{id}"),
                    query: Bytes::copy_from_slice(query),
                    param_types: Bytes::copy_from_slice(param_types),
                    binding,
                    route,
                    validated: AtomicBool::new(false),
                    tenant_set: OnceLock::new(),
                    effects: OnceLock::new(),
                })
            })
            .clone()
    }

    /// Distinct statements currently known.
    pub fn len(&self) -> usize {
        self.by_text.len()
    }

    /// Whether no statement is known.
    pub fn is_empty(&self) -> bool {
        self.by_text.is_empty()
    }
}

/// One client's statement names, as the bytes it sent, cut as Postgres
/// cuts them (see [`name_key`]; Postgres compares names byte for byte;
/// clients choose them, so the map keeps std's keyed hasher).
#[derive(Debug, Default)]
pub struct ClientStatements {
    names: HashMap<Box<[u8]>, Arc<Statement>>,
    /// The text and parameter types as the client sent them, for the
    /// statements isolation rewrote (the others' are the statement's own):
    /// planned again when the session's tenant moves to another kind of home.
    sources: HashMap<Box<[u8]>, Source>,
}

/// A statement as the client's Parse sent it.
#[derive(Debug, Clone)]
pub struct Source {
    /// The SQL text (no NUL terminator).
    pub query: Bytes,
    /// The parameter type section: i16 count then the OIDs.
    pub param_types: Bytes,
}

impl Source {
    /// The text and types `stmt` is prepared with.
    fn of(stmt: &Statement) -> Source {
        Source {
            query: stmt.query.clone(),
            param_types: stmt.param_types.clone(),
        }
    }
}

impl ClientStatements {
    /// Defines (or redefines) `name`; `source` is what the client sent when
    /// `stmt` is a rewrite of it.
    pub fn insert(&mut self, name: &[u8], stmt: Arc<Statement>, source: Option<Source>) {
        let name = name_key(name);
        self.names.insert(name.into(), stmt);
        match source {
            Some(src) => {
                self.sources.insert(name.into(), src);
            }
            None => {
                if !self.sources.is_empty() {
                    self.sources.remove(name);
                }
            }
        }
    }

    /// Puts `stmt`, planned again for the session's current home, in
    /// place of what `name` meant (its source stays).
    pub fn replan(&mut self, name: &[u8], stmt: Arc<Statement>) {
        let name = name_key(name);
        let Some(slot) = self.names.get_mut(name) else {
            return;
        };
        if !self.sources.contains_key(name) {
            // It was the client's text as sent (not rewritten): that is
            // the source from now on, not the statement replacing it.
            self.sources.insert(name.into(), Source::of(slot));
        }
        *slot = stmt;
    }

    /// What the client sent for `name`: its source if isolation rewrote
    /// it, else the statement's own text.
    pub fn source(&self, name: &[u8]) -> Option<Source> {
        let name = name_key(name);
        if let Some(src) = self.sources.get(name) {
            return Some(src.clone());
        }
        self.names.get(name).map(|s| Source::of(s))
    }

    /// The statement behind `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.names.get(name_key(name))
    }

    /// Whether `name` is defined.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.names.contains_key(name_key(name))
    }

    /// Forgets `name`.
    pub fn remove(&mut self, name: &[u8]) {
        let name = name_key(name);
        self.names.remove(name);
        if !self.sources.is_empty() {
            self.sources.remove(name);
        }
    }

    /// What SQL in query string `sql` does with these statements' names
    /// that the proxy refuses, for the first statement that does it: a
    /// `PREPARE` of a name one of them holds where it runs (not released
    /// by a `DEALLOCATE`, `DEALLOCATE ALL` or `DISCARD ALL` before it in
    /// the string) is refused as Postgres refuses it (42P05: one set of
    /// names serves statements prepared by SQL and by Parse, where on a
    /// server the client's statements have the proxy's names and the
    /// `PREPARE` would make a second one); an `EXECUTE` (or `EXPLAIN
    /// EXECUTE`) of such a name is not supported (0A000): the server knows
    /// the statement under the proxy's name only.
    pub fn refused_in_sql(&self, sql: &str) -> Option<ProxyError> {
        if self.names.is_empty()
            || !(mentions(sql.as_bytes(), "prepare") || mentions(sql.as_bytes(), "execute"))
        {
            return None;
        }
        // Names released, or defined by SQL, before the statement at hand.
        let mut not_mine: Vec<String> = Vec::new();
        let held = |name: &str, not_mine: &[String]| {
            self.contains(name.as_bytes()) && !not_mine.iter().any(|n| n == name)
        };
        for stmt in split_statements(sql) {
            match classify(stmt).first() {
                Some(Effect::DeallocateAll | Effect::DiscardAll) => return None,
                Some(Effect::Deallocate(name)) => not_mine.push(name.clone()),
                Some(Effect::Pins(SQL_PREPARE)) => {
                    if let Some(name) = prepare_target(stmt) {
                        if held(&name, &not_mine) {
                            return Some(ProxyError::duplicate_prepared_statement(&name));
                        }
                        not_mine.push(name);
                    }
                }
                _ => {
                    if let Some(name) = execute_target(stmt)
                        && held(&name, &not_mine)
                    {
                        return Some(ProxyError::sql_execute_of_protocol_statement(&name));
                    }
                }
            }
        }
        None
    }

    /// Forgets `name` if it still means `stmt`.
    pub fn remove_if(&mut self, name: &[u8], stmt: &Arc<Statement>) {
        if self.get(name).is_some_and(|s| Arc::ptr_eq(s, stmt)) {
            self.remove(name);
        }
    }

    /// `text` (a server's error message) with the server-side statement
    /// names in it (`"_tg_<id>"`) written as this client named them: other
    /// clients' statements share those ids, and the client knows only its
    /// own names.
    pub fn client_names(&self, text: &str) -> String {
        let quoted = format!("\"{SERVER_NAME_PREFIX}");
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(&quoted) {
            out.push_str(&rest[..at]);
            let after = &rest[at + quoted.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let id = after[..digits].parse::<u64>().ok();
            let name = id
                .filter(|_| after[digits..].starts_with('"'))
                .and_then(|id| {
                    self.names
                        .iter()
                        .filter(|(_, s)| s.id == id)
                        .map(|(n, _)| n)
                        .min()
                });
            match name {
                Some(n) => {
                    out.push('"');
                    out.push_str(&String::from_utf8_lossy(n));
                    out.push('"');
                    rest = &after[digits + 1..];
                }
                None => {
                    out.push_str(&quoted);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Forgets every name (DISCARD ALL / DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.names.clear();
        self.sources.clear();
    }

    /// Forgets every name, as a `DEALLOCATE ALL` sent to run will (messages
    /// behind it in its batch run after it, or not at all), returning them
    /// for [`ClientStatements::restore`] should it fail.
    pub fn take_all(&mut self) -> ClientStatements {
        std::mem::take(self)
    }

    /// Forgets `name`, as a `DEALLOCATE name` sent to run will, returning
    /// it for [`ClientStatements::restore`] should that fail; `None` when
    /// `name` is not defined.
    pub fn take(&mut self, name: &[u8]) -> Option<ClientStatements> {
        let (name, stmt) = self.names.remove_entry(name_key(name))?;
        let mut taken = ClientStatements::default();
        if let Some(src) = self.sources.remove(&name) {
            taken.sources.insert(name.clone(), src);
        }
        taken.names.insert(name, stmt);
        Some(taken)
    }

    /// Defines again the names of `dropped` not defined since: the drop
    /// that took them failed.
    pub fn restore(&mut self, dropped: ClientStatements) {
        let ClientStatements { names, mut sources } = dropped;
        for (name, stmt) in names {
            if !self.names.contains_key(&name) {
                let source = sources.remove(&name);
                self.insert(&name, stmt, source);
            }
        }
    }

    /// Number of names defined.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no name is defined.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_naming_a_protocol_statement_is_found_where_it_runs() {
        let r = StatementRegistry::default();
        let mut mine = ClientStatements::default();
        assert!(mine.refused_in_sql("PREPARE d AS SELECT 1").is_none());
        mine.insert(b"d", r.intern(b"SELECT 1", b"\0\0", None, None), None);
        mine.insert(b"Big", r.intern(b"SELECT 2", b"\0\0", None, None), None);
        let refused = |sql: &str| mine.refused_in_sql(sql).map(|e| (e.code.code(), e.message));
        let prepared = |name: &str| {
            Some((
                "42P05",
                format!("prepared statement \"{name}\" already exists"),
            ))
        };
        assert_eq!(refused("PREPARE d AS SELECT 2"), prepared("d"));
        assert_eq!(refused("prepare D(int4) as select $1"), prepared("d"));
        assert_eq!(
            refused("SELECT 1; PREPARE \"Big\" AS SELECT 3"),
            prepared("Big")
        );
        // Unquoted, `Big` is `big`: another name.
        assert_eq!(refused("PREPARE Big AS SELECT 3"), None);
        assert_eq!(refused("PREPARE e AS SELECT 2"), None);
        assert_eq!(refused("PREPARE TRANSACTION 'd'"), None);
        // Released first, in the same string.
        assert_eq!(refused("DEALLOCATE d; PREPARE d AS SELECT 2"), None);
        assert_eq!(refused("DEALLOCATE ALL; PREPARE d AS SELECT 2"), None);
        assert_eq!(refused("DISCARD ALL; PREPARE d AS SELECT 2"), None);
        assert_eq!(
            refused("DEALLOCATE e; PREPARE d AS SELECT 2"),
            prepared("d")
        );
        // Not a statement: in a literal.
        assert_eq!(refused("SELECT 'PREPARE d AS SELECT 1'"), None);
        // EXECUTE of a statement prepared with Parse.
        let execute = |sql: &str| refused(sql).map(|(code, _)| code);
        assert_eq!(execute("EXECUTE d"), Some("0A000"));
        assert_eq!(execute("execute D(1, 2);"), Some("0A000"));
        assert_eq!(
            execute("EXPLAIN (ANALYZE, COSTS off) EXECUTE d"),
            Some("0A000")
        );
        assert_eq!(execute("SELECT 1; EXECUTE \"Big\""), Some("0A000"));
        assert_eq!(execute("EXECUTE e"), None);
        assert_eq!(execute("EXPLAIN SELECT execute d FROM t"), None);
        // Defined by SQL first: the server has it under that name.
        assert_eq!(
            execute("DEALLOCATE d; PREPARE d AS SELECT 3; EXECUTE d"),
            None
        );
        assert_eq!(execute("DISCARD ALL; EXECUTE d"), None);
    }

    #[test]
    fn another_binding_is_another_statement() {
        let r = StatementRegistry::default();
        let sql = b"SELECT 1 FROM t WHERE tenant_id = $1";
        let bare = r.intern(sql, b"\0\0", None, None);
        let bound = r.intern(
            sql,
            b"\0\0",
            Some(Arc::new(TenantBinding::new(1, vec![]))),
            None,
        );
        let checked = r.intern(
            sql,
            b"\0\0",
            Some(Arc::new(TenantBinding::new(1, vec![TenantCheck::Param(2)]))),
            None,
        );
        assert_ne!(
            bare.id, bound.id,
            "a statement without binding lent to a tenant"
        );
        assert_ne!(bound.id, checked.id);
        assert!(bound.binding.is_some() && bare.binding.is_none());
        let again = r.intern(
            sql,
            b"\0\0",
            Some(Arc::new(TenantBinding::new(1, vec![]))),
            None,
        );
        assert_eq!(again.id, bound.id, "the same binding shares the statement");
        // Planned for a dedicated database: another statement.
        let dedicated = crate::router::RouteKey {
            dedicated: true,
            schema: None,
        };
        let passed = r.intern(sql, b"\0\0", None, Some(dedicated.clone()));
        assert_ne!(passed.id, bare.id);
        assert_eq!(r.intern(sql, b"\0\0", None, Some(dedicated)).id, passed.id);
    }

    #[test]
    fn same_text_same_statement() {
        let r = StatementRegistry::default();
        let a = r.intern(b"select 1", b"\0\0", None, None);
        let b = r.intern(b"select 1", b"\0\0", None, None);
        let c = r.intern(b"select 1", b"\0\x01\0\0\0\x17", None, None);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(a.server_name, format!("_tg_{}", a.id));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn pruning_drops_only_unheld_statements_and_backs_off() {
        let r = StatementRegistry::default();
        // Past the soft cap, every statement still held by a client.
        let held: Vec<_> = (0..=REGISTRY_SOFT_CAP)
            .map(|i| r.intern(format!("select {i}").as_bytes(), b"\0\0", None, None))
            .collect();
        // The next miss prunes: nothing can go, and the next prune waits
        // until the registry has doubled.
        let extra = r.intern(b"select 'x'", b"\0\0", None, None);
        assert_eq!(r.len(), held.len() + 1);
        assert_eq!(r.prune_at.load(Ordering::Relaxed), 2 * held.len());
        // Misses below that size do not prune (they would find nothing);
        // the first above it removes everything no client holds.
        drop(held);
        for i in 0..=REGISTRY_SOFT_CAP {
            drop(r.intern(format!("again {i}").as_bytes(), b"\0\0", None, None));
        }
        assert_eq!(r.len(), 2 * (REGISTRY_SOFT_CAP + 1) + 1);
        let last = r.intern(b"select 'last'", b"\0\0", None, None);
        assert_eq!(r.len(), 2, "the held `extra` and the new `last` remain");
        assert_eq!(r.intern(b"select 'x'", b"\0\0", None, None).id, extra.id);
        assert_eq!(r.intern(b"select 'last'", b"\0\0", None, None).id, last.id);
    }
}
