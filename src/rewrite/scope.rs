//! The walker that scopes every relation reference in a query. A reference
//! to a tenant relation in any FROM position (joins of every kind, LATERAL,
//! subqueries, CTEs, set operations, UPDATE … FROM, DELETE … USING) becomes
//! `(SELECT * FROM rel WHERE tenant_col = <tenant>) AS alias`, which keeps
//! outer joins outer and is flattened by the Postgres planner. CTE names are
//! tracked with Postgres's visibility rules so a CTE can never hide a table.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, JoinConstraint,
    JoinOperator, ObjectName, ObjectNamePart, Query, Select, SetExpr, TableAlias, TableFactor,
    TableSampleKind, TableSampleModifier, TableWithJoins, Value, ValueWithSpan, VisitMut,
    VisitorMut,
};

use super::{FixedQuery, Rewriter, fold};
use crate::catalog::RelationKind;
use crate::error::ProxyError;

type R<T = ()> = Result<T, ProxyError>;

/// The derived table a tenant relation becomes; its FROM item and WHERE are
/// replaced.
static SCOPED_RELATION: FixedQuery = FixedQuery::new("SELECT * FROM t");
/// The same, fenced: Postgres neither flattens a subquery with OFFSET nor
/// pushes the client's qualifiers into it, so they run on its output only
/// (see [`super::leak`]).
static FENCED_RELATION: FixedQuery = FixedQuery::new("SELECT * FROM t OFFSET 0");

impl Rewriter<'_> {
    /// Scopes a whole query (WITH, body, ORDER BY, LIMIT).
    pub(super) fn query(&mut self, q: &mut Query) -> R {
        if !q.pipe_operators.is_empty()
            || q.for_clause.is_some()
            || q.settings.is_some()
            || q.format_clause.is_some()
        {
            return Err(ProxyError::construct_unsupported("this query clause"));
        }
        let inherited = std::mem::take(&mut self.inherit_lock);
        let pushed = if let Some(with) = &mut q.with {
            let names: Vec<String> = with
                .cte_tables
                .iter()
                .map(|c| fold(&c.alias.name))
                .collect();
            if with.recursive {
                self.ctes.push(names);
                for cte in &mut with.cte_tables {
                    self.query(&mut cte.query)?;
                }
            } else {
                self.ctes.push(Vec::new());
                for (cte, name) in with.cte_tables.iter_mut().zip(names) {
                    self.query(&mut cte.query)?;
                    if let Some(frame) = self.ctes.last_mut() {
                        frame.push(name);
                    }
                }
            }
            true
        } else {
            false
        };
        let outer = self.enter_lock_scope(q, inherited);
        let r = self.query_rest(q);
        self.leave_lock_scope(outer);
        if pushed {
            self.ctes.pop();
        }
        r
    }

    fn query_rest(&mut self, q: &mut Query) -> R {
        self.set_expr(&mut q.body)?;
        if let Some(order_by) = &mut q.order_by {
            self.exprs_in(order_by)?;
        }
        if let Some(limit) = &mut q.limit_clause {
            self.exprs_in(limit)?;
        }
        if let Some(fetch) = &mut q.fetch {
            self.exprs_in(fetch)?;
        }
        Ok(())
    }

    /// A query body: SELECT, set operation, VALUES, data-modifying statement.
    pub(super) fn set_expr(&mut self, s: &mut SetExpr) -> R {
        match s {
            SetExpr::Select(sel) => self.select(sel),
            SetExpr::Query(q) => {
                self.inherit_lock = self.lock_reaches_any();
                self.query(q)
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left)?;
                self.set_expr(right)
            }
            SetExpr::Values(v) => {
                for row in &mut v.rows {
                    for e in row {
                        self.expr(e)?;
                    }
                }
                Ok(())
            }
            SetExpr::Insert(stmt) | SetExpr::Update(stmt) | SetExpr::Delete(stmt) => {
                self.data_statement(stmt)
            }
            SetExpr::Merge(_) => Err(ProxyError::construct_unsupported("MERGE")),
            // `TABLE t` is `SELECT * FROM t` (as a subquery, a set
            // operation's branch or the query of `CREATE TABLE … AS`).
            SetExpr::Table(t) => {
                let Some(name) = &t.table_name else {
                    return Err(ProxyError::construct_unsupported("TABLE without a name"));
                };
                // sqlparser keeps a name's text without its quotes (and
                // drops words after it): only a plain name reads the same
                // either way, and it is never read as SQL text again.
                let plain = |n: &str| {
                    n.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                        && n.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$'
                        })
                };
                let parts: Vec<&String> = t.schema_name.iter().chain([name]).collect();
                if !parts.iter().all(|p| plain(p)) {
                    return Err(ProxyError::construct_unsupported(
                        "TABLE with a quoted or upper-case name inside a query (write SELECT * FROM)",
                    ));
                }
                // `SELECT * FROM t`, with the name put in.
                let mut q = SCOPED_RELATION.get()?;
                if let SetExpr::Select(sel) = q.body.as_mut()
                    && let Some(TableWithJoins {
                        relation: TableFactor::Table { name: n, .. },
                        ..
                    }) = sel.from.first_mut()
                {
                    *n = ObjectName(
                        parts
                            .into_iter()
                            .map(|p| {
                                ObjectNamePart::Identifier(sqlparser::ast::Ident::new(p.as_str()))
                            })
                            .collect(),
                    );
                }
                *s = *q.body;
                self.set_expr(s)
            }
        }
    }

    fn select(&mut self, sel: &mut Select) -> R {
        if sel.into.is_some() {
            return Err(ProxyError::statement_refused("SELECT INTO"));
        }
        if !sel.lateral_views.is_empty()
            || sel.prewhere.is_some()
            || !sel.connect_by.is_empty()
            || sel.top.is_some()
            || !sel.cluster_by.is_empty()
            || !sel.distribute_by.is_empty()
            || !sel.sort_by.is_empty()
            || sel.qualify.is_some()
            || sel.value_table_mode.is_some()
        {
            return Err(ProxyError::construct_unsupported("this SELECT clause"));
        }
        for twj in &mut sel.from {
            self.table_with_joins(twj)?;
        }
        for item in &mut sel.projection {
            self.exprs_in(item)?;
        }
        if let Some(e) = &mut sel.selection {
            self.expr(e)?;
        }
        self.exprs_in(&mut sel.group_by)?;
        if let Some(e) = &mut sel.having {
            self.expr(e)?;
        }
        for w in &mut sel.named_window {
            self.exprs_in(w)?;
        }
        if let Some(d) = &mut sel.distinct {
            self.exprs_in(d)?;
        }
        Ok(())
    }

    /// A FROM item with its joins.
    pub(super) fn table_with_joins(&mut self, t: &mut TableWithJoins) -> R {
        self.table_factor(&mut t.relation)?;
        for j in &mut t.joins {
            self.table_factor(&mut j.relation)?;
            let constraint = match &mut j.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c) => c,
                _ => return Err(ProxyError::construct_unsupported("this kind of join")),
            };
            match constraint {
                JoinConstraint::On(e) => self.expr(e)?,
                JoinConstraint::Using(_) | JoinConstraint::Natural | JoinConstraint::None => {}
            }
        }
        Ok(())
    }

    fn table_factor(&mut self, tf: &mut TableFactor) -> R {
        if let TableFactor::Table { sample, .. } | TableFactor::Derived { sample, .. } = tf {
            self.sample(sample)?;
        }
        match tf {
            TableFactor::Table { args: Some(_), .. } => {
                // A function call in FROM: check the function, scope its arguments.
                if let TableFactor::Table {
                    name,
                    args: Some(args),
                    ..
                } = tf
                {
                    reads_as_relation(name)?;
                    self.function_name(name)?;
                    for a in &mut args.args {
                        self.function_arg(a)?;
                    }
                }
                Ok(())
            }
            TableFactor::Table { .. } => self.relation(tf),
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                self.inherit_lock = self.lock_reaches_subquery(alias.as_ref());
                self.query(subquery)
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.table_with_joins(table_with_joins),
            TableFactor::Function { name, args, .. } => {
                reads_as_relation(name)?;
                self.function_name(name)?;
                for a in args {
                    self.function_arg(a)?;
                }
                Ok(())
            }
            TableFactor::UNNEST { array_exprs, .. } => {
                for e in array_exprs {
                    self.expr(e)?;
                }
                Ok(())
            }
            TableFactor::TableFunction { expr, .. } => self.expr(expr),
            _ => Err(ProxyError::construct_unsupported("this FROM item")),
        }
    }

    /// `TABLESAMPLE method (quantity) [REPEATABLE (seed)]`: the quantity is
    /// an expression like any other, checked and scoped (a subquery or a
    /// refused function there ran unscoped); the seed is a literal or a
    /// parameter. Sampling forms Postgres does not have are refused.
    fn sample(&mut self, sample: &mut Option<TableSampleKind>) -> R {
        let Some(TableSampleKind::BeforeTableAlias(s) | TableSampleKind::AfterTableAlias(s)) =
            sample
        else {
            return Ok(());
        };
        if s.modifier != TableSampleModifier::TableSample
            || s.bucket.is_some()
            || s.offset.is_some()
        {
            return Err(ProxyError::construct_unsupported("this TABLESAMPLE form"));
        }
        match &mut s.quantity {
            Some(q) => self.expr(&mut q.value),
            None => Ok(()),
        }
    }

    fn function_arg(&mut self, a: &mut FunctionArg) -> R {
        let e = match a {
            FunctionArg::Named { arg, .. }
            | FunctionArg::ExprNamed { arg, .. }
            | FunctionArg::Unnamed(arg) => arg,
        };
        match e {
            FunctionArgExpr::Expr(e) => self.expr(e),
            _ => Ok(()),
        }
    }

    /// A plain relation reference in FROM.
    fn relation(&mut self, tf: &mut TableFactor) -> R {
        let TableFactor::Table {
            name,
            alias,
            with_hints,
            version,
            partitions,
            json_path,
            index_hints,
            with_ordinality,
            ..
        } = tf
        else {
            return Ok(());
        };
        if !with_hints.is_empty()
            || version.is_some()
            || !partitions.is_empty()
            || json_path.is_some()
            || !index_hints.is_empty()
            || *with_ordinality
        {
            return Err(ProxyError::construct_unsupported("this table modifier"));
        }
        // sqlparser reads `ONLY t [alias]` as a table named ONLY aliased t.
        let mut only = false;
        let mut name = name.clone();
        let mut alias = alias.clone();
        if is_only_keyword(&name)
            && let Some(a) = alias.take()
        {
            if !a.columns.is_empty() {
                return Err(ProxyError::construct_unsupported(
                    "ONLY with column aliases",
                ));
            }
            only = true;
            name = ObjectName(vec![ObjectNamePart::Identifier(a.name)]);
        }
        let parts = name_parts(&name)?;
        // A CTE in scope shadows tables of the same (unqualified) name.
        if parts.len() == 1 && self.cte_visible(&parts[0]) {
            return Ok(());
        }
        let kind = match self.classify_relation(&parts)? {
            Access::Tenant(cast) => Some(cast),
            Access::Free { writable } => {
                if !writable {
                    let visible = alias.as_ref().map(|a| fold(&a.name));
                    let visible = visible.as_deref().or(parts.last().map(String::as_str));
                    self.check_global_row_lock(&parts.join("."), visible.unwrap_or_default())?;
                }
                None
            }
        };
        let alias_ident = match name.0.last() {
            Some(ObjectNamePart::Identifier(i)) => i.clone(),
            _ => return Err(ProxyError::construct_unsupported("computed object names")),
        };
        // A relation used as is stays as written.
        let Some(cast) = kind else {
            return Ok(());
        };
        // `ONLY t` goes into the scoped relation as sqlparser reads it (the
        // relation `ONLY` aliased `t`), which prints as written.
        let (name, inner_alias) = if only {
            let only = ObjectName(vec![ObjectNamePart::Identifier(
                sqlparser::ast::Ident::new("ONLY"),
            )]);
            let table = TableAlias {
                explicit: false,
                name: alias_ident.clone(),
                columns: vec![],
            };
            (only, Some(table))
        } else {
            (name, None)
        };
        // Move the relation (without its alias) into `SELECT * FROM rel WHERE col = hole`.
        let alias = alias.unwrap_or_else(|| TableAlias {
            explicit: true,
            name: alias_ident,
            columns: vec![],
        });
        let mut inner_rel = std::mem::replace(
            tf,
            TableFactor::Table {
                name: ObjectName(vec![]),
                alias: None,
                args: None,
                with_hints: vec![],
                version: None,
                with_ordinality: false,
                partitions: vec![],
                json_path: None,
                sample: None,
                index_hints: vec![],
            },
        );
        if let TableFactor::Table {
            name: n, alias: a, ..
        } = &mut inner_rel
        {
            *n = name;
            *a = inner_alias;
        }
        let mut subquery = if self.barrier {
            FENCED_RELATION.get()?
        } else {
            SCOPED_RELATION.get()?
        };
        let predicate = Expr::BinaryOp {
            left: Box::new(Expr::Identifier(self.column_ident.clone())),
            op: BinaryOperator::Eq,
            right: Box::new(self.hole_expr(cast)),
        };
        match subquery.body.as_mut() {
            SetExpr::Select(sel) => {
                if let Some(first) = sel.from.first_mut() {
                    first.relation = inner_rel;
                }
                sel.selection = Some(predicate);
            }
            _ => return Err(ProxyError::internal()),
        }
        *tf = TableFactor::Derived {
            lateral: false,
            subquery: Box::new(subquery),
            alias: Some(alias),
            sample: None,
        };
        Ok(())
    }

    /// Decides what a relation is for this session: a tenant relation to
    /// scope (with the cast for its tenant value), or one used as is (and
    /// whether it may be written); refuses the rest.
    pub(super) fn classify_relation(&mut self, parts: &[String]) -> R<Access> {
        let (schema, rel) = match parts {
            [rel] => (None, rel.as_str()),
            [schema, rel] => (Some(schema.as_str()), rel.as_str()),
            _ => {
                return Err(ProxyError::construct_unsupported(
                    "cross-database references",
                ));
            }
        };
        let display = parts.join(".");
        if let Some(s) = schema {
            // Another tenant's schema is refused wherever it lives.
            self.check_schema(s)?;
        }
        let resolved = match (schema, self.own_schema) {
            // A schema tenant's own schema comes first on its search path
            // (after pg_catalog, as in Postgres).
            (None, Some(own)) if self.catalog.resolve(Some("pg_catalog"), rel).is_none() => self
                .catalog
                .resolve(Some(own), rel)
                .or_else(|| self.catalog.resolve(None, rel)),
            _ => self.catalog.resolve(schema, rel),
        };
        let Some(resolved) = resolved else {
            if self.strict {
                return Err(ProxyError::relation_unknown(&display));
            }
            return Ok(Access::Free { writable: true });
        };
        match resolved.kind {
            RelationKind::Tenant(ty) => {
                self.check_schema(resolved.schema)?;
                Ok(Access::Tenant(cast_for(ty)))
            }
            RelationKind::System => {
                if self.strict
                    && super::policy::relation_denied(resolved.name)
                    && resolved.schema == "pg_catalog"
                {
                    return Err(ProxyError::relation_refused(
                        &display,
                        "it shows other tenants' data",
                    ));
                }
                Ok(Access::Free {
                    writable: !self.strict,
                })
            }
            RelationKind::Plain => {
                self.check_schema(resolved.schema)?;
                if !self.strict || self.own_schema == Some(resolved.schema) {
                    return Ok(Access::Free { writable: true });
                }
                if self.is_global(resolved.schema, resolved.name) {
                    return Ok(Access::Free { writable: false });
                }
                Err(ProxyError::relation_refused(
                    &display,
                    &format!("it has no {} column and is not a global table", self.column),
                ))
            }
        }
    }

    fn cte_visible(&self, name: &str) -> bool {
        self.ctes
            .iter()
            .any(|frame| frame.iter().any(|n| n == name))
    }

    /// Scopes subqueries inside an expression and checks its function calls.
    pub(super) fn expr(&mut self, e: &mut Expr) -> R {
        self.exprs_in(e)
    }

    /// Runs the subquery/function finder over any AST node.
    pub(super) fn exprs_in<T: VisitMut>(&mut self, node: &mut T) -> R {
        let mut finder = Finder { rw: self, depth: 0 };
        match node.visit(&mut finder) {
            ControlFlow::Break(e) => Err(e),
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    /// Checks a function call against the function policy: its name
    /// ([`Rewriter::function_name`]), except a `set_config` the session
    /// tracks as it would a SET ([`harmless_set_config`]).
    pub(super) fn function_call(&mut self, f: &sqlparser::ast::Function) -> R {
        if harmless_set_config(f) {
            return Ok(());
        }
        self.function_name(&f.name)?;
        self.sequence_argument(f)
    }

    /// `nextval` and `currval` name their sequence in a string, where the
    /// schema check of relation names does not look: the sequence must be
    /// named by a literal, outside other tenants' schemas (a schema
    /// tenant's sequences are its own: another could draw from them or
    /// read its newest id).
    fn sequence_argument(&mut self, f: &sqlparser::ast::Function) -> R {
        if !self.strict {
            return Ok(());
        }
        let parts = name_parts(&f.name)?;
        let is_sequence_function = match parts.as_slice() {
            [name] | [_, name] if parts.len() == 1 || parts[0] == "pg_catalog" => {
                matches!(name.as_str(), "nextval" | "currval")
            }
            _ => false,
        };
        if !is_sequence_function {
            return Ok(());
        }
        let literal = match &f.args {
            FunctionArguments::List(list) => match list.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => string_literal(e),
                _ => None,
            },
            _ => None,
        };
        let name = literal.ok_or_else(|| {
            ProxyError::construct_unsupported(&format!(
                "{}() of a sequence not named by a string literal",
                parts.join(".")
            ))
        })?;
        let sequence = regclass_parts(name).ok_or_else(|| {
            ProxyError::construct_unsupported(&format!("the sequence name {name:?}"))
        })?;
        if let [.., schema, _] = sequence.as_slice() {
            self.check_schema(schema)?;
        }
        Ok(())
    }

    /// Checks a function name against the deny list and the catalog's
    /// user-defined functions.
    pub(super) fn function_name(&mut self, name: &ObjectName) -> R {
        if !self.strict {
            return Ok(());
        }
        let parts = name_parts(name)?;
        let Some(f) = parts.last() else { return Ok(()) };
        let system_schema = parts.len() == 1 || parts[0] == "pg_catalog";
        if super::policy::function_denied(f) && system_schema {
            return Err(ProxyError::function_refused(&parts.join(".")));
        }
        let user_defined = !system_schema || self.catalog.is_user_function(f);
        if user_defined && !self.allowed_functions.contains(f.as_str()) {
            return Err(ProxyError::user_function_refused(&parts.join(".")));
        }
        Ok(())
    }

    /// A new tenant hole of the given cast; returns its placeholder text.
    pub(super) fn new_hole(&mut self, cast: Option<String>) -> String {
        let i = self.casts.len();
        self.casts.push(cast);
        super::template::hole_marker(i)
    }

    /// A new tenant hole as an expression.
    pub(super) fn hole_expr(&mut self, cast: Option<String>) -> Expr {
        let marker = self.new_hole(cast);
        Expr::Value(ValueWithSpan {
            value: Value::Placeholder(marker),
            span: sqlparser::tokenizer::Span::empty(),
        })
    }
}

/// How a session may use a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Access {
    /// A tenant relation: scope it; the cast for the tenant value.
    Tenant(Option<String>),
    /// Used as is.
    Free {
        /// Whether INSERT/UPDATE/DELETE may target it.
        writable: bool,
    },
}

/// Finds subqueries (outermost only: each is scoped by `Rewriter::query`,
/// which handles what is nested inside it) and function calls.
struct Finder<'a, 'b> {
    rw: &'a mut Rewriter<'b>,
    depth: usize,
}

impl VisitorMut for Finder<'_, '_> {
    type Break = ProxyError;

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<ProxyError> {
        if self.depth == 0
            && let Err(e) = self.rw.query(q)
        {
            return ControlFlow::Break(e);
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &mut Query) -> ControlFlow<ProxyError> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<ProxyError> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        let r = match e {
            // `ARRAY(SELECT …)`: the subquery is scoped when the walk
            // reaches it, like any other.
            Expr::Function(f) => self.rw.function_call(f),
            Expr::Value(v) => {
                if let Value::Placeholder(p) = &v.value {
                    self.rw.note_placeholder(p);
                }
                Ok(())
            }
            _ => Ok(()),
        };
        match r {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// `set_config('<name>', …)` of a setting tenant sessions may change with
/// SET anyway ([`super::policy::set_config_allowed`]), named by a plain
/// literal: drivers call it (asyncpg turns `jit` off around its type
/// lookups).
fn harmless_set_config(f: &sqlparser::ast::Function) -> bool {
    let Ok(parts) = name_parts(&f.name) else {
        return false;
    };
    let system = match parts.as_slice() {
        [name] => name == "set_config",
        [schema, name] => schema == "pg_catalog" && name == "set_config",
        _ => false,
    };
    let FunctionArguments::List(list) = &f.args else {
        return false;
    };
    system
        && matches!(
            list.args.first(),
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(ValueWithSpan {
                value: Value::SingleQuotedString(name),
                ..
            })))) if super::policy::set_config_allowed(&name.to_ascii_lowercase())
        )
}

/// The text of a string literal, also under a cast (`'s'::regclass`).
fn string_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s),
            ..
        }) => Some(s),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => string_literal(expr),
        _ => None,
    }
}

/// The parts of a relation name written as text (`regclass` input), as
/// Postgres reads them: split at dots outside double quotes, unquoted
/// parts folded to lower case, spaces around parts ignored. `None` for
/// text that is no name.
pub(super) fn regclass_parts(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut part = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next()? {
                    '"' if chars.next_if_eq(&'"').is_some() => part.push('"'),
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|&c| c != '.' && !c.is_whitespace()) {
                part.push(c.to_ascii_lowercase());
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

/// The folded parts of a name (unquoted identifiers lower-cased).
pub(super) fn name_parts(name: &ObjectName) -> R<Vec<String>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(fold(i)),
            ObjectNamePart::Function(_) => {
                Err(ProxyError::construct_unsupported("computed object names"))
            }
        })
        .collect()
}

fn is_only_keyword(name: &ObjectName) -> bool {
    matches!(name.0.as_slice(), [ObjectNamePart::Identifier(i)] if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("only"))
}

/// The cast the tenant value needs for a column of SQL type `ty`.
pub(super) fn cast_for(ty: &str) -> Option<String> {
    match ty {
        "text" => None,
        t if t.starts_with("character varying")
            || t.starts_with("character(")
            || t == "character"
            || t == "name" =>
        {
            None
        }
        t => Some(t.to_string()),
    }
}

/// `ONLY (t)` in FROM: sqlparser reads it as a call of a function `only`,
/// Postgres as the relation `t` without its children. A call that Postgres
/// would read as a relation is refused, so nothing reaches it unscoped.
fn reads_as_relation(name: &ObjectName) -> R {
    let only = match name.0.as_slice() {
        [part] => part
            .as_ident()
            .is_some_and(|i| i.quote_style.is_none() && i.value.eq_ignore_ascii_case("only")),
        _ => false,
    };
    if only {
        return Err(ProxyError::construct_unsupported(
            "ONLY (table) with the name in parentheses (write ONLY table)",
        ));
    }
    Ok(())
}
