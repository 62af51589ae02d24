//! Tenant isolation for one session: the tenant context, and turning each
//! Query / Parse / Bind into what is sent to a shared shard (rewritten via the
//! shard's cache, or refused). Dedicated shards and configs without
//! `[tenancy]` never get here.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use crate::error::ProxyError;
use crate::frontend::classify::{mentions, split_statements};
use crate::pool::Pool;
use crate::protocol::framing::{read_cstr, read_i16, read_i32};
use crate::protocol::messages::ftag;
use crate::rewrite::template::quote_literal;
use crate::rewrite::{self, Rewritten, TenantCheck, TenantType};
use crate::router::{Route, RouteKey};
use crate::state::{IsolationRules, ProxyState};
use crate::tenant::{TenantContext, TenantSet, parse_tenant_set, validate_tenant_id};

/// Text OID: the tenant parameter is always sent as text.
const TEXT_OID: u32 = 25;
/// Declared parameter types whose text a text column stores as it is: none
/// declared (the server gives it the column's type), `text`, `varchar`,
/// `bpchar` (the value checked has no trailing spaces to lose), `unknown`.
const TEXT_LIKE_OIDS: &[u32] = &[0, 25, 1043, 1042, 705];

/// `"char"` (one byte) and `name` (63 bytes): types that cut a value short.
const CHAR_OID: u32 = 18;
const NAME_OID: u32 = 19;

/// What the session's server connection is doing when a statement is
/// planned: a tenant change must not land on a connection that serves the
/// old tenant.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerHold {
    /// Pinned: cursors, prepared statements or other state live on it.
    pub pinned: bool,
    /// Earlier messages of the batch or pipeline are still unanswered on it.
    pub busy: bool,
    /// Session pooling: the client keeps it for the whole session.
    pub kept: bool,
    /// The transaction open on it has run nothing but the `BEGIN` that
    /// opened it (a simple Query of its own, answered): it can still move
    /// to another home (see [`Isolation::take_move`]).
    pub fresh: bool,
}

/// What a rewritten extended-protocol statement needs at Bind time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantBinding {
    /// 1-based number of the parameter that carries the tenant.
    pub param: usize,
    /// Conditions on client parameters / literals.
    pub checks: Vec<TenantCheck>,
    /// The parameter numbers that must be the tenant, ascending, each once
    /// (a Bind checks each value at most once, however many checks name
    /// it), with the type a binary value of each is read as.
    params: Vec<(usize, TenantType)>,
    /// The parameters used as LIKE patterns, with their escape characters,
    /// ascending.
    patterns: Vec<(usize, u8)>,
    /// The statement only shows the tenant (a prepared `SHOW` of the
    /// variable): a session without one binds `''`.
    pub shows: bool,
}

impl TenantBinding {
    /// The tenant as parameter `param`, under `checks`.
    pub fn new(param: usize, checks: Vec<TenantCheck>) -> TenantBinding {
        let mut params: Vec<usize> = checks
            .iter()
            .filter_map(|c| match c {
                TenantCheck::Param(n) => Some(*n),
                TenantCheck::Literal(_) | TenantCheck::Pattern { .. } => None,
            })
            .collect();
        params.sort_unstable();
        params.dedup();
        let params = params.into_iter().map(|n| (n, TenantType::Text)).collect();
        let mut patterns: Vec<(usize, u8)> = checks
            .iter()
            .filter_map(|c| match c {
                TenantCheck::Pattern { param, escape } => Some((*param, *escape)),
                TenantCheck::Literal(_) | TenantCheck::Param(_) => None,
            })
            .collect();
        patterns.sort_unstable();
        patterns.dedup();
        TenantBinding {
            param,
            checks,
            params,
            patterns,
            shows: false,
        }
    }

    /// The binding of a prepared `SHOW` of the variable: the tenant, as it
    /// is at each Bind, is its only parameter.
    pub fn showing() -> TenantBinding {
        TenantBinding {
            shows: true,
            ..TenantBinding::new(1, Vec::new())
        }
    }

    /// The binding with each checked parameter read, when sent in binary,
    /// as the type the client declared for it in `param_types` (a Parse's
    /// raw type section), or else as the tenant column's `column` type (the
    /// type the server gives it).
    pub fn typed(mut self, column: TenantType, param_types: &[u8]) -> TenantBinding {
        for (n, ty) in &mut self.params {
            *ty = TenantType::of_oid(declared_type(param_types, *n)).unwrap_or(column);
        }
        self
    }
}

/// The type OID a Parse's raw type section declares for parameter `n`
/// (1-based); 0 when it declares none (`$0`, which no Bind carries, and a
/// parameter past the declared count).
fn declared_type(param_types: &[u8], n: usize) -> u32 {
    let Some(at) = n.checked_sub(1).map(|i| 2 + 4 * i) else {
        return 0;
    };
    let declared = param_types
        .get(..2)
        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]) as usize);
    if n > declared {
        return 0;
    }
    param_types
        .get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Most parameters a statement can have: the protocol counts them in an
/// unsigned 16-bit field.
const MAX_PARAMS: usize = u16::MAX as usize;

/// A rewritten Parse.
#[derive(Debug, Clone)]
pub struct ParsePlan {
    /// SQL to prepare on the server.
    pub sql: String,
    /// Raw parameter type section (i16 count + OIDs).
    pub param_types: Vec<u8>,
    /// Present when the statement takes the tenant as a parameter.
    pub binding: Option<Arc<TenantBinding>>,
}

/// Per-session isolation state.
#[derive(Debug)]
pub struct Isolation {
    state: Arc<ProxyState>,
    rules: Arc<IsolationRules>,
    /// The tenant context.
    pub tenant: TenantContext,
    /// The tenant SET of the last Parse planned (see [`Isolation::take_parsed_set`]).
    parsed_set: Option<TenantSet>,
    /// The route of the server connection the session holds: statements
    /// are rewritten for it until the connection is given back, whatever a
    /// reload says meanwhile.
    held: Option<Route>,
    /// The tenant the held connection was routed for (trusted sessions;
    /// a bound session's never changes).
    held_for: Option<String>,
    /// The route the last statement planned was rewritten for.
    planned: Option<RouteKey>,
    /// See [`Isolation::take_move`].
    move_transaction: bool,
    /// See [`Isolation::take_show`].
    answered_show: bool,
}

impl Isolation {
    /// Isolation for a session on `shard`.
    pub fn new(
        state: Arc<ProxyState>,
        rules: Arc<IsolationRules>,
        tenant: TenantContext,
    ) -> Isolation {
        Isolation {
            state,
            rules,
            tenant,
            parsed_set: None,
            held: None,
            held_for: None,
            planned: None,
            move_transaction: false,
            answered_show: false,
        }
    }

    /// Where the session's statements go now: the current tenant's home, or
    /// the default shard while no tenant is chosen.
    pub fn route(&self) -> Result<Route, ProxyError> {
        if let Some(r) = &self.held {
            return Ok(r.clone());
        }
        let loaded = self.state.loaded();
        match self.tenant.current() {
            Some(t) => loaded
                .router
                .route(t)
                .map_err(|e| ProxyError::tenant_not_routable(t, &e.to_string())),
            None => loaded
                .router
                .default_route()
                .map_err(|_| ProxyError::no_shard_for_session()),
        }
    }

    /// The pool of the current route.
    pub fn pool(&self) -> Result<Arc<Pool>, ProxyError> {
        let route = self.route()?;
        self.state
            .pool(&route.shard)
            .ok_or_else(ProxyError::internal)
    }

    /// The session variable's name.
    pub fn variable(&self) -> &str {
        &self.rules.variable
    }

    /// Applies any SET/RESET of the tenant variable in `sql`.
    ///
    /// A tenant SET must be the only statement of its message (the
    /// statements around it would otherwise run as the wrong tenant). A
    /// change of tenant cannot happen while the session is pinned (its
    /// server connection holds the old tenant's cursors or prepared
    /// statements), nor while earlier messages of a pipeline are unanswered
    /// (the statements after it would run on the connection routed for the
    /// old tenant; the session holds a change back until earlier batches
    /// are answered, so this is left for statements executed earlier in
    /// the change's own batch), nor, in session pooling, to a tenant served
    /// elsewhere.
    ///
    /// `hold` is `None` for a Parse: the SET is checked, and returned, but
    /// counts only when it is bound ([`Isolation::apply_prepared_set`]), as
    /// Postgres runs it at Execute.
    async fn apply_tenant_sets(
        &mut self,
        sql: &str,
        in_transaction: bool,
        hold: Option<ServerHold>,
    ) -> Result<Option<TenantSet>, ProxyError> {
        if !self.tenant.is_bound() && mentions(sql.as_bytes(), "savepoint") {
            // A change of tenant made after it could be undone by a
            // rollback to it (see `TenantContext::apply`); a bound
            // session's tenant never changes.
            self.tenant.note_savepoint();
        }
        if self.tenant.reset_would_change()
            && !crate::frontend::classify::plainly_without_effect(sql.as_bytes())
            && let Some((what, rest)) = crate::rewrite::path_reset_then(sql)
            && split_statements(rest).any(|s| !crate::frontend::classify::ends_transaction(s))
        {
            // The statements after it would be planned for the tenant it
            // ends (a transaction's end runs no statement of a tenant).
            return Err(ProxyError::tenant_reset_not_alone(what));
        }
        // The name's last part: `"app".current_tenant` spells the variable
        // without its dotted whole.
        let last = self.rules.variable.rsplit('.').next().unwrap_or_default();
        if !mentions(sql.as_bytes(), last) {
            return Ok(None);
        }
        let statements = split_statements(sql).count();
        for stmt in split_statements(sql) {
            if let Some(set) = parse_tenant_set(stmt, &self.rules.variable)? {
                let set = self.tenant.resolved(&set);
                if statements > 1 {
                    return Err(ProxyError::tenant_set_not_alone(&self.rules.variable));
                }
                if let Some(hold) = hold {
                    self.check_change(&set, hold, in_transaction)?;
                }
                if let Some(v) = &set.value {
                    validate_tenant_id(v, [])?;
                    let home = self
                        .state
                        .loaded()
                        .router
                        .route(v)
                        .map_err(|e| ProxyError::tenant_not_routable(v, &e.to_string()))?;
                    if !home.dedicated {
                        let iso = self.state.shard_isolation(&home.shard).await?;
                        validate_tenant_id(v, iso.catalog.tenant_column_types())?;
                    }
                }
                if hold.is_none() {
                    return Ok(Some(set));
                }
                self.tenant.apply(&set, in_transaction)?;
            } else if mentions(stmt.as_bytes(), "set_config") {
                return Err(ProxyError::tenant_set_config(&self.rules.variable));
            }
        }
        Ok(None)
    }

    /// While a `SET LOCAL` of the tenant is in force: whether `sql` ends the
    /// transaction with its last statement (then the tenant is the
    /// session's again for what follows); refuses statements after such an
    /// end in the same query string (the string is planned for one tenant).
    fn check_local_end(&self, sql: &str) -> Result<bool, ProxyError> {
        if !self.tenant.has_local() && !self.tenant.chosen_in_transaction() {
            return Ok(false);
        }
        let statements: Vec<&str> = split_statements(sql).collect();
        match statements
            .iter()
            .position(|s| crate::frontend::classify::ends_transaction(s))
        {
            None => Ok(false),
            Some(i) if i + 1 == statements.len() => Ok(true),
            Some(_) => Err(ProxyError::statements_after_local_end(&self.rules.variable)),
        }
    }

    /// Refuses a ROLLBACK TO SAVEPOINT while a `SET LOCAL` of the tenant is
    /// in force: the SET may come after the savepoint (then Postgres undoes
    /// it and the transaction is another tenant's again) or before it, and
    /// the proxy cannot tell which.
    pub fn check_savepoint_rollback(&self, sql: &str) -> Result<(), ProxyError> {
        if self.tenant.undoable_by_savepoint_rollback()
            && mentions(sql.as_bytes(), "rollback")
            && crate::frontend::classify::classify(sql)
                .iter()
                .any(|e| matches!(e, crate::frontend::classify::Effect::RollbackToSavepoint))
        {
            return Err(ProxyError::tenant_savepoint_rollback(&self.rules.variable));
        }
        Ok(())
    }

    /// Whether `set` changes the tenant; refuses a change the session's
    /// server connection cannot take (see [`Isolation::apply_tenant_sets`]).
    fn check_change(
        &mut self,
        set: &TenantSet,
        hold: ServerHold,
        in_transaction: bool,
    ) -> Result<bool, ProxyError> {
        let changes = !self.tenant.is_bound() && set.value.as_deref() != self.tenant.current();
        if changes && hold.pinned {
            return Err(ProxyError::tenant_change_while_pinned());
        }
        if changes && hold.busy {
            return Err(ProxyError::tenant_change_in_pipeline());
        }
        if changes && (hold.kept || in_transaction) {
            let now = self.route()?;
            let next = self.route_of(set.value.as_deref())?;
            if (&next.shard, &next.schema, next.dedicated)
                != (&now.shard, &now.schema, now.dedicated)
            {
                // A first choice right after the BEGIN (drivers in their
                // default mode send one before the application's first
                // statement): nothing ran there yet, the transaction moves.
                if in_transaction
                    && hold.fresh
                    && !hold.pinned
                    && !hold.kept
                    && self.tenant.is_first_choice(set)
                {
                    self.move_transaction = true;
                    return Ok(changes);
                }
                // The transaction's server connection is the old home's.
                return Err(if in_transaction {
                    ProxyError::tenant_change_elsewhere_in_transaction()
                } else {
                    ProxyError::tenant_change_needs_another_server()
                });
            }
        }
        Ok(changes)
    }

    /// The home of `tenant` (none: the default shard).
    fn route_of(&self, tenant: Option<&str>) -> Result<Route, ProxyError> {
        let loaded = self.state.loaded();
        match tenant {
            Some(v) => loaded
                .router
                .route(v)
                .map_err(|e| ProxyError::tenant_not_routable(v, &e.to_string())),
            None => loaded
                .router
                .default_route()
                .map_err(|_| ProxyError::no_shard_for_session()),
        }
    }

    /// Refuses `sql` if it may read or write rows while the server
    /// connection held is routed for another home than the session's tenant
    /// has now: a `RESET ALL`, or a change settled when its transaction
    /// ended, while the connection stays held (a chained transaction, a pin,
    /// unsynced messages). It would run on the old home (unrewritten, on a
    /// dedicated tenant's database). Transaction control and `SET`,
    /// `RESET`, `SHOW`, `DISCARD` still run, so the session can get out.
    pub fn check_home_held(&self, sql: &str) -> Result<(), ProxyError> {
        if self.tenant.is_bound() || !self.held_elsewhere() || touches_nothing(sql) {
            return Ok(());
        }
        Err(match self.tenant.current() {
            None => ProxyError::no_tenant(&self.rules.variable),
            Some(_) => ProxyError::tenant_home_not_held(),
        })
    }

    /// Whether the server connection held is routed for another home than
    /// the current tenant's (after a change of tenant).
    pub fn held_elsewhere(&self) -> bool {
        let Some(held) = &self.held else {
            return false;
        };
        if self.tenant.is_bound() || self.held_for.as_deref() == self.tenant.current() {
            // Still the tenant it was routed for: where a reload moved that
            // tenant meanwhile, the transaction finishes on the old home.
            return false;
        }
        match self.route_of(self.tenant.current()) {
            Ok(now) => {
                (&now.shard, &now.schema, now.dedicated)
                    != (&held.shard, &held.schema, held.dedicated)
            }
            Err(_) => true,
        }
    }

    /// The session now holds a server connection of `route` (or none).
    pub fn hold_route(&mut self, route: Option<Route>) {
        self.held_for = match (&route, self.tenant.is_bound()) {
            (Some(_), false) => self.tenant.current().map(str::to_string),
            _ => None,
        };
        self.held = route;
    }

    /// What of the current route shapes a rewrite.
    pub fn route_key(&self) -> Result<RouteKey, ProxyError> {
        self.route().map(|r| r.key())
    }

    /// Forgets which route the last statement was planned for.
    pub fn clear_planned(&mut self) {
        self.planned = None;
        self.move_transaction = false;
        self.answered_show = false;
    }

    /// Whether the statement just planned is a first choice of a tenant
    /// served elsewhere that may move its transaction there (it has run
    /// nothing but its BEGIN); asked once.
    pub fn take_move(&mut self) -> bool {
        std::mem::take(&mut self.move_transaction)
    }

    /// Whether the Query just planned is a `SHOW` of the tenant variable,
    /// answered by a `SELECT` of the session's tenant: its CommandComplete
    /// is to say `SHOW`, as Postgres's does. Asked once.
    pub fn take_show(&mut self) -> bool {
        std::mem::take(&mut self.answered_show)
    }

    /// Whether the last statement planned was rewritten for another route
    /// than the current one (a reload moved the tenant between its planning
    /// and the checkout of its server connection).
    pub fn planned_elsewhere(&self) -> bool {
        match (&self.planned, self.route_key()) {
            (Some(p), Ok(now)) => *p != now,
            _ => false,
        }
    }

    /// The tenant SET of the last Parse planned, if it was one (taken once).
    pub fn take_parsed_set(&mut self) -> Option<TenantSet> {
        self.parsed_set.take()
    }

    /// A statement that sets the tenant, bound: the change counts now, as
    /// Postgres runs the SET at Execute (drivers bind a statement they
    /// prepared on the server again and again without a new Parse). Its
    /// value was checked against the tenant column when it was parsed.
    /// Returns whether the tenant changed.
    pub fn apply_prepared_set(
        &mut self,
        set: &TenantSet,
        in_transaction: bool,
        hold: ServerHold,
    ) -> Result<bool, ProxyError> {
        let set = &self.tenant.resolved(set);
        let changes = self.check_change(set, hold, in_transaction)?;
        if let Some(v) = &set.value {
            validate_tenant_id(v, [])?;
            self.route_of(Some(v))?;
        }
        self.tenant.apply(set, in_transaction)?;
        Ok(changes)
    }

    /// Whether `sql` (one statement's text) sets or resets the tenant
    /// variable.
    pub fn tenant_set_of(&self, sql: &[u8]) -> Option<TenantSet> {
        let last = self.rules.variable.rsplit('.').next().unwrap_or_default();
        if !mentions(sql, last) {
            return None;
        }
        let sql = std::str::from_utf8(sql).ok()?;
        parse_tenant_set(sql, &self.rules.variable).ok().flatten()
    }

    async fn rewritten(&mut self, sql: &str) -> Result<Rewritten, ProxyError> {
        self.rewritten_with(sql, false).await
    }

    /// The rewrite of `sql`; `fence`: with every tenant relation fenced
    /// (see [`rewrite::RewriteRules::fence`]).
    async fn rewritten_with(&mut self, sql: &str, fence: bool) -> Result<Rewritten, ProxyError> {
        self.check_home_held(sql)?;
        let route = self.route()?;
        self.planned = Some(route.key());
        if route.dedicated {
            // The tenant is alone in its database: nothing to scope.
            return Ok(Rewritten::Unchanged);
        }
        let iso = self.state.shard_isolation(&route.shard).await?;
        let strict = self.tenant.current().is_some();
        let schema = route.schema.clone();
        match self
            .rewritten_on(&iso, schema.clone(), strict, sql, fence)
            .await
        {
            // A relation the catalog does not know may have been created
            // since it was read (a migration): read it again (at most every
            // few seconds per shard) and try once more.
            Err(e) if e.code == crate::protocol::sqlstate::SqlState::UNDEFINED_TABLE => {
                let fresh = match self.state.reread_catalog(&route.shard, &iso).await {
                    Ok(fresh) if !Arc::ptr_eq(&fresh, &iso) => fresh,
                    _ => return Err(e),
                };
                self.rewritten_on(&fresh, schema, strict, sql, fence).await
            }
            r => r,
        }
    }

    /// The rewrite of `sql` with `iso`'s catalog and cache.
    async fn rewritten_on(
        &self,
        iso: &Arc<crate::state::ShardIsolation>,
        schema: Option<Arc<str>>,
        strict: bool,
        sql: &str,
        fence: bool,
    ) -> Result<Rewritten, ProxyError> {
        let mut key = rewrite::cache_key(strict, schema.clone(), sql);
        if fence {
            key = key.fenced();
        }
        if sql.len() <= rewrite::SMALL_STATEMENT_BYTES {
            let rules = rewrite::RewriteRules {
                fence,
                ..self
                    .rules
                    .for_rewrite(&iso.catalog, schema.as_deref(), strict)
            };
            return iso.cache.rewrite(key, &rules);
        }
        if let Some(hit) = iso.cache.cached(&key) {
            return hit;
        }
        // A large statement the cache does not hold may take a parse of many
        // milliseconds (a second for some 1 MB statements): that runs on a
        // blocking thread, so this runtime worker's other sessions go on.
        let permit = Arc::clone(&self.state.cold_rewrites)
            .acquire_owned()
            .await
            .map_err(|_| ProxyError::internal())?;
        let rules = Arc::clone(&self.rules);
        let iso = Arc::clone(iso);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let rules = rewrite::RewriteRules {
                fence,
                ..rules.for_rewrite(&iso.catalog, schema.as_deref(), strict)
            };
            iso.cache.rewrite(key, &rules)
        })
        .await
        .map_err(|_| ProxyError::internal())?
    }

    /// Whether `tenancy.rls` is on: every transaction also sets the variable
    /// on the server.
    pub fn rls(&self) -> bool {
        self.rules.rls
    }

    /// `SHOW <variable>` answered from the session's tenant (servers never
    /// keep a session-level copy of the variable): the SQL that answers it,
    /// with the tenant as a literal.
    fn show_variable(&self, sql: &str) -> Option<String> {
        self.shows_variable(sql).then(|| {
            format!(
                "SELECT CAST({} AS text) AS \"{}\"",
                quote_literal(self.tenant.current().unwrap_or_default()),
                self.rules.variable.replace('"', "")
            )
        })
    }

    /// Whether `sql` is `SHOW <variable>` alone.
    fn shows_variable(&self, sql: &str) -> bool {
        // Its first word is SHOW (empty statements before it aside): most
        // statements end here, unlexed.
        let starts_with_show = sql
            .trim_start_matches(|c: char| crate::frontend::classify::is_pg_space(c) || c == ';')
            .as_bytes()
            .get(..4)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"show"));
        if !starts_with_show {
            return false;
        }
        let mut stmts = split_statements(sql);
        let (Some(only), None) = (stmts.next(), stmts.next()) else {
            return false;
        };
        let mut words = only.split_whitespace();
        let (Some(show), Some(var), None) = (words.next(), words.next(), words.next()) else {
            return false;
        };
        show.eq_ignore_ascii_case("show")
            && var.trim_matches('"').to_lowercase() == self.rules.variable
    }

    /// A simple Query: `None` to forward it as sent, or the SQL to send.
    pub async fn query(
        &mut self,
        sql: &str,
        in_transaction: bool,
        hold: ServerHold,
    ) -> Result<Option<String>, ProxyError> {
        if let Some(show) = self.show_variable(sql) {
            self.answered_show = true;
            return Ok(Some(show));
        }
        self.apply_tenant_sets(sql, in_transaction, Some(hold))
            .await?;
        self.check_savepoint_rollback(sql)?;
        let ends_local = self.check_local_end(sql)?;
        let planned = self.planned_query(sql).await;
        if ends_local && planned.is_ok() {
            self.tenant.end_local();
        }
        planned
    }

    /// The plan of a simple Query, after the tenant checks.
    async fn planned_query(&mut self, sql: &str) -> Result<Option<String>, ProxyError> {
        match self.rewritten(sql).await? {
            Rewritten::Unchanged => Ok(None),
            Rewritten::Template(t) => {
                let tenant = self.require_tenant(t.has_holes() || !t.checks.is_empty())?;
                for c in &t.checks {
                    match c {
                        TenantCheck::Literal(v) if Some(v.as_str()) == tenant => {}
                        // A simple Query has no parameters to check (the
                        // server refuses a `$n` in it).
                        TenantCheck::Pattern { .. } => {}
                        _ => return Err(ProxyError::tenant_value_mismatch()),
                    }
                }
                Ok(Some(t.render_literal(tenant.unwrap_or_default())))
            }
        }
    }

    /// A Parse: `None` to forward it as sent.
    pub async fn parse(
        &mut self,
        sql: &str,
        param_types: &[u8],
        in_transaction: bool,
    ) -> Result<Option<ParsePlan>, ProxyError> {
        self.parsed_set = None;
        if self.shows_variable(sql) {
            // Prepared: the tenant is the one in force at each Bind (a
            // driver binds it again after the session changed tenant).
            return Ok(Some(ParsePlan {
                sql: format!(
                    "SELECT CAST($1 AS text) AS \"{}\"",
                    self.rules.variable.replace('"', "")
                ),
                param_types: vec![0, 1, 0, 0, 0, 25],
                binding: Some(Arc::new(TenantBinding::showing())),
            }));
        }
        self.parsed_set = self.apply_tenant_sets(sql, in_transaction, None).await?;
        self.check_savepoint_rollback(sql)?;
        let mut t = match self.rewritten(sql).await? {
            Rewritten::Unchanged => return Ok(None),
            Rewritten::Template(t) => t,
        };
        // A parameter the statement casts, declared with a type: the cast
        // runs where the qualifier is evaluated, so it must not see other
        // tenants' rows.
        if t.cast_params
            .iter()
            .any(|&n| declared_type(param_types, n) != 0)
        {
            t = match self.rewritten_with(sql, true).await? {
                Rewritten::Unchanged => return Ok(None),
                Rewritten::Template(t) => t,
            };
        }
        if !t.has_holes() && t.checks.is_empty() {
            return Ok(Some(ParsePlan {
                sql: t.render_param(0),
                param_types: param_types.to_vec(),
                binding: None,
            }));
        }
        let mut pos = 0;
        // Counts are unsigned 16-bit, as Postgres reads them.
        let declared = read_i16(param_types, &mut pos)? as u16 as usize;
        // A checked parameter declared `"char"` or `name` would be cut
        // short by the server: another id stored than the one checked.
        // So would a LIKE pattern (cut after an escape character).
        for check in &t.checks {
            let (n, refusal): (usize, fn() -> ProxyError) = match check {
                TenantCheck::Param(n) => (*n, ProxyError::tenant_value_not_checkable),
                TenantCheck::Pattern { param, .. } => (*param, || {
                    ProxyError::construct_unsupported(
                        "a LIKE pattern parameter declared \"char\" or name",
                    )
                }),
                TenantCheck::Literal(_) => continue,
            };
            let oid = declared_type(param_types, n);
            // Into a text tenant column, a value of another declared type is
            // stored as that type's text (`042` as int4 is `42`, bytea
            // `acme` is `\x61636d65`): not the text checked.
            let converted = matches!(check, TenantCheck::Param(_))
                && t.check_type == TenantType::Text
                && !TEXT_LIKE_OIDS.contains(&oid);
            if matches!(oid, CHAR_OID | NAME_OID) || converted {
                return Err(refusal());
            }
        }
        let used = declared.max(t.max_param);
        if used >= MAX_PARAMS {
            return Err(ProxyError::too_many_parameters(MAX_PARAMS));
        }
        let k = used + 1;
        let mut types = Vec::with_capacity(2 + 4 * k);
        types.extend_from_slice(&(k as u16).to_be_bytes());
        types.extend_from_slice(&param_types[2..2 + 4 * declared.min((param_types.len() - 2) / 4)]);
        for _ in declared..k - 1 {
            types.extend_from_slice(&0u32.to_be_bytes());
        }
        types.extend_from_slice(&TEXT_OID.to_be_bytes());
        Ok(Some(ParsePlan {
            sql: t.render_param(k),
            param_types: types,
            binding: Some(Arc::new(
                TenantBinding::new(k, t.checks.clone()).typed(t.check_type, param_types),
            )),
        }))
    }

    fn require_tenant(&self, needed: bool) -> Result<Option<&str>, ProxyError> {
        match self.tenant.current() {
            Some(t) => Ok(Some(t)),
            None if needed => Err(ProxyError::no_tenant(&self.rules.variable)),
            None => Ok(None),
        }
    }

    /// A Bind of a statement that takes the tenant as a parameter: checks the
    /// client's values and appends the tenant. `msg` is the whole message;
    /// `stmt_end` is where the statement name's NUL ends.
    pub fn bind(
        &self,
        binding: &TenantBinding,
        msg: &[u8],
        head: &[u8],
        stmt_end: usize,
        out: &mut BytesMut,
    ) -> Result<(), ProxyError> {
        let tenant = match self.tenant.current() {
            Some(t) => t,
            None if binding.shows => "",
            None => return Err(ProxyError::no_tenant(&self.rules.variable)),
        };
        let mut pos = stmt_end;
        let nfmt = read_i16(msg, &mut pos)? as u16 as usize;
        // The format codes are read where they are: no copy of them, and no
        // list of the values either (a Bind allocates nothing here).
        let formats = msg
            .get(pos..pos + 2 * nfmt)
            .ok_or_else(|| ProxyError::malformed_message("insufficient data left in message"))?;
        pos += 2 * nfmt;
        // The format of parameter `i` (0-based), as Postgres reads the list:
        // none = all text, one = for all, else one each.
        let format_of = |i: usize| -> i16 {
            let k = if nfmt == 1 { 0 } else { i };
            formats
                .get(2 * k..2 * k + 2)
                .map_or(0, |b| i16::from_be_bytes([b[0], b[1]]))
        };
        let nparams = read_i16(msg, &mut pos)? as u16 as usize;
        let params_start = pos;
        // The client's own parameters the checks name, as each value goes
        // by (a malformed message is reported before a mismatch, as it would
        // be if the values were collected first).
        let mut wanted = binding.params.iter().copied().peekable();
        let mut patterns = binding.patterns.iter().copied().peekable();
        let mut mismatch = false;
        let mut dangling = false;
        for i in 0..nparams {
            let len = read_i32(msg, &mut pos)?;
            let value = if len < 0 {
                None
            } else {
                let end = pos + len as usize;
                let v = msg.get(pos..end).ok_or_else(|| {
                    ProxyError::malformed_message("insufficient data left in message")
                })?;
                pos = end;
                Some(v)
            };
            if let Some((_, ty)) = wanted.next_if(|(n, _)| *n == i + 1) {
                mismatch |= !value.is_some_and(|v| param_equals(v, format_of(i), ty, tenant));
            }
            while let Some((_, escape)) = patterns.next_if(|(n, _)| *n == i + 1) {
                dangling |= value.is_some_and(|v| rewrite::like_pattern_dangles(v, escape));
            }
        }
        let params_end = pos;
        // A check on a parameter the Bind does not carry ($0, or beyond the
        // last) fails, as does a literal that is not the tenant.
        let literal_mismatch = binding
            .checks
            .iter()
            .any(|c| matches!(c, TenantCheck::Literal(v) if v != tenant));
        if mismatch || wanted.next().is_some() || literal_mismatch {
            return Err(ProxyError::tenant_value_mismatch());
        }
        if dangling {
            return Err(ProxyError::like_pattern_dangling());
        }
        if nparams + 1 != binding.param {
            // Refused here: the server's statement takes one value more
            // (the tenant), so a Bind with one value too many would match
            // it, and that value would stand for the tenant.
            return Err(ProxyError::bind_parameter_count(nparams, binding.param - 1));
        }
        // Rebuild: head, formats (extended if needed), params + tenant, rest.
        let at = out.len();
        out.put_u8(ftag::BIND);
        out.put_i32(0);
        out.extend_from_slice(head);
        match nfmt {
            0 => out.put_i16(0),
            1 if format_of(0) == 0 => {
                out.put_i16(1);
                out.put_i16(0);
            }
            _ => {
                out.put_u16((nparams + 1) as u16);
                for i in 0..nparams {
                    out.put_i16(format_of(i));
                }
                out.put_i16(0);
            }
        }
        out.put_u16((nparams + 1) as u16);
        out.extend_from_slice(&msg[params_start..params_end]);
        out.put_i32(tenant.len() as i32);
        out.extend_from_slice(tenant.as_bytes());
        out.extend_from_slice(&msg[params_end..]);
        let len = (out.len() - at - 1) as i32;
        out[at + 1..at + 5].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

/// Whether a Bind value is the tenant: in text format, its bytes are the
/// tenant's text; in binary format, it is read as `ty` (the parameter's
/// type), so a text tenant's bytes are never taken for an integer's.
fn param_equals(v: &[u8], format: i16, ty: TenantType, tenant: &str) -> bool {
    if format == 0 {
        return v == tenant.as_bytes();
    }
    match ty {
        TenantType::Text => v == tenant.as_bytes(),
        TenantType::Integer => match *v {
            [a, b] => i16::from_be_bytes([a, b]).to_string() == tenant,
            [a, b, c, d] => i32::from_be_bytes([a, b, c, d]).to_string() == tenant,
            [a, b, c, d, e, f, g, h] => {
                i64::from_be_bytes([a, b, c, d, e, f, g, h]).to_string() == tenant
            }
            _ => false,
        },
        TenantType::Uuid if v.len() == 16 => {
            let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
            let uuid = format!(
                "{}-{}-{}-{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            );
            uuid.eq_ignore_ascii_case(tenant)
        }
        TenantType::Uuid | TenantType::Other => false,
    }
}

/// Whether every statement of `sql` is transaction control or a session
/// command (`SET`, `RESET`, `SHOW`, `DISCARD`): none reads or writes rows.
pub(super) fn touches_nothing(sql: &str) -> bool {
    split_statements(sql).all(|stmt| {
        matches!(
            rewrite::first_words(stmt, 1).first().map(String::as_str),
            Some(
                "begin"
                    | "start"
                    | "commit"
                    | "end"
                    | "rollback"
                    | "abort"
                    | "savepoint"
                    | "release"
                    | "set"
                    | "reset"
                    | "show"
                    | "discard"
            )
        )
    })
}

/// A statement that makes the server raise `e`, so a refusal reaches the
/// client in its place in a pipeline and aborts a transaction as Postgres
/// would.
pub fn raise_statement(e: &ProxyError) -> String {
    let clean = |s: &str| s.replace('$', "＄");
    let mut sql = format!(
        "DO $tenantgate$ BEGIN RAISE EXCEPTION USING ERRCODE = '{}', MESSAGE = {}",
        e.code,
        quote_literal(&clean(&e.message))
    );
    if let Some(h) = &e.hint {
        sql.push_str(&format!(", HINT = {}", quote_literal(&clean(h))));
    }
    if let Some(d) = &e.detail {
        sql.push_str(&format!(", DETAIL = {}", quote_literal(&clean(d))));
    }
    sql.push_str("; END $tenantgate$");
    sql
}

/// Reads Bind's portal and statement names; returns (statement name, the
/// byte offset after the statement name's NUL).
pub fn bind_names(msg: &[u8]) -> Result<(&[u8], usize), ProxyError> {
    let mut pos = 5;
    read_cstr(msg, &mut pos)?;
    let stmt = read_cstr(msg, &mut pos)?;
    Ok((stmt, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_is_safe() {
        let e = ProxyError::relation_refused("x$tenantgate$; DROP TABLE t; --", "why's");
        let sql = raise_statement(&e);
        assert_eq!(sql.matches("$tenantgate$").count(), 2);
        assert!(sql.contains("why''s"));
    }

    #[test]
    fn a_binding_names_each_checked_parameter_once() {
        let checks = vec![
            TenantCheck::Param(3),
            TenantCheck::Literal("acme".into()),
            TenantCheck::Param(1),
            TenantCheck::Param(3),
            TenantCheck::Param(3),
        ];
        let b = TenantBinding::new(4, checks.clone());
        assert_eq!(b.params, vec![(1, TenantType::Text), (3, TenantType::Text)]);
        // Typed: $1 declared int8 by the client, $3 left to the server
        // (the tenant column's type).
        let declared = [&[0u8, 3][..], &20u32.to_be_bytes(), &[0; 4], &[0; 4]].concat();
        let typed = b.clone().typed(TenantType::Uuid, &declared);
        assert_eq!(
            typed.params,
            vec![(1, TenantType::Integer), (3, TenantType::Uuid)]
        );
        // `$0` and numbers past the declared types take the column's type.
        let odd = TenantBinding::new(9, vec![TenantCheck::Param(0), TenantCheck::Param(8)])
            .typed(TenantType::Text, &declared);
        assert_eq!(
            odd.params,
            vec![(0, TenantType::Text), (8, TenantType::Text)]
        );
        assert_eq!((b.param, b.checks), (4, checks));
        assert!(TenantBinding::new(1, vec![]).params.is_empty());
        let pattern = |param, escape| TenantCheck::Pattern { param, escape };
        let b = TenantBinding::new(
            3,
            vec![
                pattern(2, b'!'),
                TenantCheck::Param(1),
                pattern(2, b'!'),
                pattern(1, b'\\'),
            ],
        );
        assert_eq!(b.params, vec![(1, TenantType::Text)]);
        assert_eq!(b.patterns, vec![(1, b'\\'), (2, b'!')]);
    }

    #[test]
    fn binary_params_compare() {
        use TenantType::{Integer, Other, Text, Uuid};
        assert!(param_equals(&42i64.to_be_bytes(), 1, Integer, "42"));
        assert!(param_equals(&42i32.to_be_bytes(), 1, Integer, "42"));
        assert!(!param_equals(&43i32.to_be_bytes(), 1, Integer, "42"));
        assert!(param_equals(b"acme", 0, Text, "acme"));
        assert!(!param_equals(b"acme", 0, Text, "acm"));
        // A four-letter text tenant in binary format is its bytes, not an
        // int4; and bytes that spell the tenant are no integer's value.
        assert!(param_equals(b"acme", 1, Text, "acme"));
        assert!(!param_equals(b"1234", 1, Integer, "1234"));
        assert!(param_equals(&1234i32.to_be_bytes(), 1, Integer, "1234"));
        let id = "0123abcd-0000-1111-2222-333344445555";
        let bytes: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&id.replace('-', "")[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert!(param_equals(&bytes, 1, Uuid, id));
        assert!(!param_equals(&bytes, 1, Text, id));
        assert!(!param_equals(b"acme", 1, Other, "acme"));
    }
}
