//! INSERT, UPDATE and DELETE (also inside data-modifying CTEs). The target
//! relation gets a `target.tenant_col = <tenant>` predicate (UPDATE, DELETE,
//! ON CONFLICT DO UPDATE) or the tenant's value (INSERT); changing the tenant
//! column is refused; writes to global and other tables are refused.

use sqlparser::ast::helpers::attached_token::AttachedToken;
use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, CaseWhen, CastKind, DataType, Expr, FromTable, Ident,
    ObjectName, ObjectNamePart, OnConflictAction, OnInsert, SelectItem, SetExpr, Statement,
    TableFactor, TableObject, UpdateTableFromKind, Value,
};

use super::scope::{Access, name_parts};
use super::{FixedQuery, Rewriter, TenantCheck, fold};
use crate::error::ProxyError;

type R<T = ()> = Result<T, ProxyError>;

/// The source of `INSERT … DEFAULT VALUES` into a tenant relation; the NULL
/// becomes the tenant hole.
static DEFAULT_VALUES: FixedQuery = FixedQuery::new("VALUES (NULL)");
/// The wrapper of `INSERT … SELECT`; the inner query is swapped in.
static INSERT_SELECT_WRAPPER: FixedQuery = FixedQuery::new("SELECT s.* FROM (SELECT 1) AS s");

/// System columns that show a transaction id (the shard's counter, which
/// other tenants' writes move) or a row's physical place.
const SYSTEM_COLUMNS: &[&str] = &["xmin", "xmax", "cmin", "cmax", "ctid"];

/// The first system column a RETURNING list names, if any (no user column
/// may take such a name).
fn system_column_in(items: &[SelectItem]) -> Option<String> {
    items.iter().find_map(|item| {
        sqlparser::ast::visit_expressions(item, |e| {
            let ident = match e {
                Expr::Identifier(i) => Some(i),
                Expr::CompoundIdentifier(parts) => parts.last(),
                _ => None,
            };
            match ident.map(fold) {
                Some(name) if SYSTEM_COLUMNS.contains(&name.as_str()) => {
                    std::ops::ControlFlow::Break(name)
                }
                _ => std::ops::ControlFlow::Continue(()),
            }
        })
        .break_value()
    })
}

/// How a write target was classified.
enum Target {
    /// A tenant relation: the cast for its tenant value.
    Tenant(Option<String>),
    /// Writable without scoping (trusted sessions only).
    Free,
}

impl Rewriter<'_> {
    /// A RETURNING list: its expressions are scoped like any others; in
    /// tenant sessions, system columns are refused (a row's `xmin` is the
    /// writing transaction's id, which counts other tenants' writes).
    fn returning(&mut self, returning: &mut Option<Vec<SelectItem>>) -> R {
        let Some(items) = returning else {
            return Ok(());
        };
        if self.strict
            && let Some(column) = system_column_in(items)
        {
            return Err(ProxyError::statement_refused(&format!(
                "the system column {column} in RETURNING"
            )));
        }
        for item in items {
            self.exprs_in(item)?;
        }
        Ok(())
    }

    /// INSERT / UPDATE / DELETE, top level or inside a CTE.
    pub(super) fn data_statement(&mut self, s: &mut Statement) -> R {
        match s {
            Statement::Insert(ins) => self.insert(ins),
            Statement::Update(u) => self.update(u),
            Statement::Delete(d) => self.delete(d),
            _ => Err(ProxyError::construct_unsupported(
                "this data-modifying statement",
            )),
        }
    }

    fn write_target(&mut self, parts: &[String]) -> R<Target> {
        match self.classify_relation(parts)? {
            Access::Tenant(cast) => Ok(Target::Tenant(cast)),
            Access::Free { writable: true } => Ok(Target::Free),
            Access::Free { writable: false } => Err(ProxyError::write_refused(&parts.join("."))),
        }
    }

    fn insert(&mut self, ins: &mut sqlparser::ast::Insert) -> R {
        if ins.or.is_some()
            || ins.ignore
            || ins.overwrite
            || ins.partitioned.is_some()
            || !ins.after_columns.is_empty()
            || ins.replace_into
            || ins.priority.is_some()
            || ins.insert_alias.is_some()
            || ins.settings.is_some()
            || ins.format_clause.is_some()
            || !ins.assignments.is_empty()
            || ins.has_table_keyword
        {
            return Err(ProxyError::construct_unsupported("this form of INSERT"));
        }
        let TableObject::TableName(name) = &ins.table else {
            return Err(ProxyError::construct_unsupported(
                "INSERT into a table function",
            ));
        };
        let parts = name_parts(name)?;
        let qualifier = ins.table_alias.clone().unwrap_or_else(|| last_ident(name));
        let target = self.write_target(&parts)?;
        if let Some(source) = &mut ins.source {
            self.query(source)?;
        }
        self.returning(&mut ins.returning)?;
        let Target::Tenant(cast) = target else {
            return Ok(());
        };
        if ins.columns.is_empty() && ins.source.is_some() {
            return Err(ProxyError::insert_needs_columns(&parts.join(".")));
        }
        let col = self.column.clone();
        let position = ins.columns.iter().position(|c| fold(c) == col);
        match (position, &mut ins.source) {
            (Some(i), Some(source)) => {
                // The client names the tenant column: each value must be the
                // tenant's (checked when the tenant is known).
                let SetExpr::Values(values) = source.body.as_mut() else {
                    return Err(ProxyError::tenant_value_not_checkable());
                };
                for row in &values.rows {
                    let e = row.get(i).ok_or_else(|| {
                        ProxyError::unparsable("VALUES row shorter than the column list")
                    })?;
                    let check = self.tenant_check_for(e, &cast)?;
                    self.checks.push(check);
                    self.check_casts.push(cast.clone());
                }
            }
            (Some(_), None) => return Err(ProxyError::internal()),
            (None, None) => {
                // DEFAULT VALUES: the tenant column is the only one we give.
                ins.columns.push(self.column_ident.clone());
                let mut q = DEFAULT_VALUES.get()?;
                if let SetExpr::Values(v) = q.body.as_mut()
                    && let Some(cell) = v.rows.first_mut().and_then(|r| r.first_mut())
                {
                    *cell = self.hole_expr(cast.clone());
                }
                ins.source = Some(Box::new(q));
            }
            (None, Some(source)) => {
                ins.columns.push(self.column_ident.clone());
                let plain_values = source.with.is_none()
                    && source.order_by.is_none()
                    && source.limit_clause.is_none()
                    && matches!(source.body.as_ref(), SetExpr::Values(_));
                if plain_values {
                    if let SetExpr::Values(values) = source.body.as_mut() {
                        for row in &mut values.rows {
                            row.push(self.hole_expr(cast.clone()));
                        }
                    }
                } else {
                    // INSERT … SELECT: `SELECT s.*, <tenant> FROM (<select>) AS s`.
                    let mut wrapper = INSERT_SELECT_WRAPPER.get()?;
                    let hole = self.hole_expr(cast.clone());
                    if let SetExpr::Select(sel) = wrapper.body.as_mut() {
                        sel.projection.push(SelectItem::UnnamedExpr(hole));
                        if let Some(TableFactor::Derived { subquery, .. }) =
                            sel.from.first_mut().map(|t| &mut t.relation)
                        {
                            std::mem::swap(subquery.as_mut(), source.as_mut());
                        }
                    }
                    **source = wrapper;
                }
            }
        }
        if let Some(on) = &mut ins.on {
            match on {
                OnInsert::OnConflict(oc) => {
                    if let OnConflictAction::DoUpdate(du) = &mut oc.action {
                        self.check_assignments(&du.assignments, &cast, true)?;
                        for a in &mut du.assignments {
                            self.expr(&mut a.value)?;
                        }
                        if let Some(sel) = &mut du.selection {
                            self.expr(sel)?;
                        }
                        du.selection =
                            Some(self.scoped_where(du.selection.take(), &qualifier, cast));
                    }
                }
                _ => return Err(ProxyError::construct_unsupported("ON DUPLICATE KEY")),
            }
        }
        Ok(())
    }

    fn update(&mut self, u: &mut sqlparser::ast::Update) -> R {
        if u.or.is_some() || u.limit.is_some() || !u.table.joins.is_empty() {
            return Err(ProxyError::construct_unsupported("this form of UPDATE"));
        }
        let (parts, qualifier) = target_of(&u.table.relation)?;
        let target = self.write_target(&parts)?;
        if let Target::Tenant(cast) = &target {
            self.check_assignments(&u.assignments, cast, false)?;
        }
        for a in &mut u.assignments {
            self.expr(&mut a.value)?;
        }
        match &mut u.from {
            Some(UpdateTableFromKind::AfterSet(from)) => {
                for t in from {
                    self.table_with_joins(t)?;
                }
            }
            Some(UpdateTableFromKind::BeforeSet(_)) => {
                return Err(ProxyError::construct_unsupported("UPDATE FROM before SET"));
            }
            None => {}
        }
        if let Some(sel) = &mut u.selection {
            self.expr(sel)?;
        }
        self.returning(&mut u.returning)?;
        if let Target::Tenant(cast) = target {
            u.selection = Some(self.scoped_where(u.selection.take(), &qualifier, cast));
        }
        Ok(())
    }

    fn delete(&mut self, d: &mut sqlparser::ast::Delete) -> R {
        if !d.tables.is_empty() || !d.order_by.is_empty() || d.limit.is_some() {
            return Err(ProxyError::construct_unsupported("this form of DELETE"));
        }
        let from = match &mut d.from {
            FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
        };
        let [only] = from.as_slice() else {
            return Err(ProxyError::construct_unsupported(
                "DELETE from several tables",
            ));
        };
        if !only.joins.is_empty() {
            return Err(ProxyError::construct_unsupported("DELETE with joins"));
        }
        let (parts, qualifier) = target_of(&only.relation)?;
        let target = self.write_target(&parts)?;
        if let Some(using) = &mut d.using {
            for t in using {
                self.table_with_joins(t)?;
            }
        }
        if let Some(sel) = &mut d.selection {
            self.expr(sel)?;
        }
        self.returning(&mut d.returning)?;
        if let Target::Tenant(cast) = target {
            d.selection = Some(self.scoped_where(d.selection.take(), &qualifier, cast));
        }
        Ok(())
    }

    /// Assignments to the tenant column: one of a literal or a parameter is
    /// checked against the session's tenant, as an INSERT's value is (ORMs
    /// write every column back, `SET tenant_id = 'acme', name = …`; on the
    /// tenant's own rows that changes nothing); any other is refused.
    /// `cast`: the tenant column's, for reading the values checked; `upsert`:
    /// the assignments of `ON CONFLICT … DO UPDATE`, where `EXCLUDED.tenant_id`
    /// is the row proposed for insertion, whose tenant is the session's.
    fn check_assignments(
        &mut self,
        assignments: &[sqlparser::ast::Assignment],
        cast: &Option<String>,
        upsert: bool,
    ) -> R {
        for a in assignments {
            let names: Vec<&ObjectName> = match &a.target {
                AssignmentTarget::ColumnName(n) => vec![n],
                AssignmentTarget::Tuple(ns) => ns.iter().collect(),
            };
            let single = names.len() == 1;
            for n in names {
                if name_parts(n)?.last().is_none_or(|c| *c != self.column) {
                    continue;
                }
                if single && upsert && self.is_excluded_tenant(&a.value) {
                    continue;
                }
                let check = single
                    .then(|| self.tenant_check_for(&a.value, cast).ok())
                    .flatten()
                    .ok_or_else(ProxyError::tenant_column_change)?;
                self.checks.push(check);
                self.check_casts.push(cast.clone());
            }
        }
        Ok(())
    }

    /// `EXCLUDED.<tenant column>`.
    fn is_excluded_tenant(&self, e: &Expr) -> bool {
        matches!(e, Expr::CompoundIdentifier(parts)
            if matches!(parts.as_slice(), [t, c] if fold(t) == "excluded" && fold(c) == self.column))
    }

    /// `qualifier.tenant_col = <tenant>`.
    /// The WHERE of an UPDATE or DELETE of a tenant relation: the client's
    /// `original` and the tenant predicate. Conjuncts that could show
    /// another tenant's values through an error (see [`super::leak`]) run
    /// only under a CASE on the predicate, so they never see another
    /// tenant's row whatever order Postgres evaluates the qualifiers in;
    /// the others stay as written, usable by index scans.
    fn scoped_where(
        &mut self,
        original: Option<Expr>,
        qualifier: &Ident,
        cast: Option<String>,
    ) -> Expr {
        let pred = self.predicate(qualifier, cast.clone());
        let Some(original) = original else {
            return pred;
        };
        if !self.leak.expr(&original) {
            return and(Some(original), pred);
        }
        let (leaky, safe): (Vec<Expr>, Vec<Expr>) = conjuncts(original)
            .into_iter()
            .partition(|e| self.leak.expr(e));
        let guard = self.predicate(qualifier, cast);
        let guarded = Expr::Case {
            case_token: AttachedToken::empty(),
            end_token: AttachedToken::empty(),
            operand: None,
            conditions: vec![CaseWhen {
                condition: guard,
                result: Expr::Nested(Box::new(all_of(leaky))),
            }],
            else_result: Some(Box::new(Expr::Value(Value::Boolean(false).into()))),
        };
        let mut out = and(Some(pred), guarded);
        for e in safe {
            out = Expr::BinaryOp {
                left: Box::new(out),
                op: BinaryOperator::And,
                right: Box::new(Expr::Nested(Box::new(e))),
            };
        }
        out
    }

    fn predicate(&mut self, qualifier: &Ident, cast: Option<String>) -> Expr {
        Expr::BinaryOp {
            left: Box::new(Expr::CompoundIdentifier(vec![
                qualifier.clone(),
                self.column_ident.clone(),
            ])),
            op: BinaryOperator::Eq,
            right: Box::new(self.hole_expr(cast)),
        }
    }

    /// What must hold for a value the client put in the tenant column (of
    /// type `cast`, `None` for text).
    fn tenant_check_for(&self, e: &Expr, cast: &Option<String>) -> R<TenantCheck> {
        match e {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => Ok(TenantCheck::Literal(s.clone())),
                // A number stored in a text column is its canonical text
                // (`042` is stored `42`): checked only for a number column.
                Value::Number(n, _) if cast.is_some() => Ok(TenantCheck::Literal(n.to_string())),
                Value::Placeholder(p) => p
                    .strip_prefix('$')
                    .and_then(|n| n.parse().ok())
                    .map(TenantCheck::Param)
                    .ok_or_else(ProxyError::tenant_value_not_checkable),
                _ => Err(ProxyError::tenant_value_not_checkable()),
            },
            // A cast that keeps the value as written (checked as written);
            // one that can change it (`::varchar(2)`, `::char`, `::"char"`)
            // would store another tenant id than the one checked.
            Expr::Cast {
                kind: CastKind::DoubleColon | CastKind::Cast,
                expr,
                data_type,
                ..
            } if keeps_value(data_type) => self.tenant_check_for(expr, cast),
            Expr::Nested(inner) => self.tenant_check_for(inner, cast),
            _ => Err(ProxyError::tenant_value_not_checkable()),
        }
    }
}

/// Whether a cast to `t` leaves a tenant id as it was written: text without
/// a length limit, and the integer and uuid types (whose ids are checked as
/// numbers and uuids).
fn keeps_value(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Text
            | DataType::Varchar(None)
            | DataType::CharacterVarying(None)
            | DataType::String(None)
            | DataType::SmallInt(None)
            | DataType::Int(None)
            | DataType::Integer(None)
            | DataType::BigInt(None)
            | DataType::Int2(None)
            | DataType::Int4(None)
            | DataType::Int8(None)
            | DataType::Uuid
    )
}

/// `(original) AND predicate`, parenthesised so precedence cannot leak.
/// The top-level AND terms of `e`.
fn conjuncts(e: Expr) -> Vec<Expr> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut out = conjuncts(*left);
            out.extend(conjuncts(*right));
            out
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner)
        }
        other => vec![other],
    }
}

/// `terms` joined by AND (each in parentheses).
fn all_of(terms: Vec<Expr>) -> Expr {
    let mut it = terms.into_iter().map(|e| Expr::Nested(Box::new(e)));
    let first = it
        .next()
        .unwrap_or(Expr::Value(Value::Boolean(true).into()));
    it.fold(first, |acc, e| Expr::BinaryOp {
        left: Box::new(acc),
        op: BinaryOperator::And,
        right: Box::new(e),
    })
}

fn and(original: Option<Expr>, predicate: Expr) -> Expr {
    match original {
        Some(e) => Expr::BinaryOp {
            left: Box::new(Expr::Nested(Box::new(e))),
            op: BinaryOperator::And,
            right: Box::new(predicate),
        },
        None => predicate,
    }
}

fn last_ident(name: &ObjectName) -> Ident {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => i.clone(),
        _ => Ident::new("t"),
    }
}

/// The target relation of UPDATE/DELETE: its folded name parts and the
/// identifier that refers to it (alias, or the table name).
fn target_of(tf: &TableFactor) -> R<(Vec<String>, Ident)> {
    let TableFactor::Table {
        name,
        alias,
        args: None,
        ..
    } = tf
    else {
        return Err(ProxyError::construct_unsupported("this write target"));
    };
    // `ONLY t [alias]` reads as a table named ONLY aliased t.
    if let [ObjectNamePart::Identifier(i)] = name.0.as_slice()
        && i.quote_style.is_none()
        && i.value.eq_ignore_ascii_case("only")
    {
        let a = alias
            .as_ref()
            .ok_or_else(|| ProxyError::unparsable("ONLY without a table"))?;
        return Ok((vec![fold(&a.name)], a.name.clone()));
    }
    let qualifier = alias
        .as_ref()
        .map(|a| a.name.clone())
        .unwrap_or_else(|| last_ident(name));
    Ok((name_parts(name)?, qualifier))
}
