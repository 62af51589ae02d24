//! Which statements need the tenant predicate to act as a barrier.
//!
//! The predicate the rewriter adds is an ordinary qualifier: Postgres
//! flattens the derived table and orders the qualifiers of a scan by cost,
//! then as written, so a client's own qualifier may run on other tenants'
//! rows before the tenant predicate rejects them. Most qualifiers cannot
//! tell anyone anything there (`id = 42`, `name LIKE 'a%'`); one that can
//! raise an error depending on a column's value can (`current_setting(name)`
//! quotes the name in its error, `make_date(1, total, 1)` the number, an
//! overflow in `a + k` answers whether `a` is above some bound, and a whole
//! row compared with a record errs only when the columns before a type
//! mismatch are equal). An expression that fails without reading a column
//! tells as much where a qualifier before it decides whether it runs
//! (`CASE WHEN name = 'x' THEN (SELECT 1 / count(*) …) END`): any value
//! known only at run time (parameters, subqueries, function results)
//! counts like a column.
//!
//! This module finds statements with such an expression where Postgres may
//! evaluate it before the predicate: anywhere but the top-level SELECT list,
//! GROUP BY, DISTINCT and ORDER BY (computed from rows the scans have
//! already filtered). For those, the rewriter fences each tenant relation's
//! derived table with `OFFSET 0` (Postgres neither flattens such a subquery
//! nor pushes qualifiers into it) and guards the client's WHERE of an UPDATE
//! or DELETE target with a CASE on the predicate. Comparisons, boolean logic,
//! `IS [NOT] NULL`, `IN`, `BETWEEN`, and `LIKE` with a literal pattern or a
//! parameter (checked at Bind, see [`super::like_pattern`]) keep their
//! place, so the index scans of ordinary statements are untouched.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArguments, ObjectName, ObjectNamePart, Query, SetExpr, Statement,
    TableFactor, UnaryOperator, Value, ValueWithSpan, Visit, Visitor,
};

use super::{fold, like_pattern};

/// The leak check for one statement: knows the names its relations go by,
/// so that a whole-row reference (`c` for `customers c`) is told from a
/// column. Compared with another record, a whole row fails at run time
/// ("cannot compare dissimilar column types") only once the columns before
/// the mismatch are equal: an oracle on other tenants' rows.
#[derive(Debug, Default)]
pub(super) struct LeakCheck {
    relations: HashSet<String>,
}

impl LeakCheck {
    /// The check for `node` (a statement or a query), reading its relation
    /// names, aliases and CTE names.
    pub(super) fn of<V: Visit>(node: &V) -> LeakCheck {
        let mut names = RelationNames::default();
        let _ = node.visit(&mut names);
        LeakCheck { relations: names.0 }
    }

    /// Whether `s` holds an expression that may raise an error depending on
    /// a column's value where Postgres may evaluate it before the tenant
    /// predicate.
    pub(super) fn statement(&self, s: &Statement) -> bool {
        match s {
            Statement::Query(q) => self.query(q),
            Statement::Explain { statement, .. } | Statement::Prepare { statement, .. } => {
                self.statement(statement)
            }
            // SET and RETURNING are computed for rows the WHERE has let
            // through: only queries nested in them count.
            Statement::Update(u) => {
                self.leaks_in(&u.from, 0)
                    || self.leaks_in(&u.selection, 0)
                    || self.leaks_in(&u.assignments, 1)
                    || self.leaks_in(&u.returning, 1)
            }
            Statement::Delete(d) => {
                self.leaks_in(&d.using, 0)
                    || self.leaks_in(&d.selection, 0)
                    || self.leaks_in(&d.returning, 1)
            }
            Statement::Insert(ins) => {
                ins.source.as_deref().is_some_and(|q| self.query(q))
                    || self.leaks_in(&ins.on, 0)
                    || self.leaks_in(&ins.returning, 1)
            }
            other => self.leaks_in(other, 0),
        }
    }

    /// [`LeakCheck::statement`] for a query at the top of a statement.
    pub(super) fn query(&self, q: &Query) -> bool {
        let SetExpr::Select(sel) = q.body.as_ref() else {
            return self.leaks_in(q, 0);
        };
        // Computed from rows the scans have filtered already: only queries
        // nested in them count.
        let after_filtering = sel.projection.iter().any(|p| self.leaks_in(p, 1))
            || self.leaks_in(&sel.group_by, 1)
            || self.leaks_in(&sel.distinct, 1)
            || self.leaks_in(&q.order_by, 1)
            || self.leaks_in(&q.limit_clause, 1);
        after_filtering
            || self.leaks_in(&q.with, 0)
            || sel.from.iter().any(|t| self.leaks_in(t, 0))
            || self.leaks_in(&sel.selection, 0)
            || self.leaks_in(&sel.having, 0)
            || self.leaks_in(&sel.named_window, 0)
    }

    /// Whether `e`, a WHERE clause or one of its terms, holds such an
    /// expression.
    pub(super) fn expr(&self, e: &Expr) -> bool {
        self.leaks_in(e, 0)
    }

    /// Whether `node` holds a leaking expression at query nesting
    /// `min_depth` or deeper (0: anywhere; 1: only inside nested queries).
    fn leaks_in<V: Visit>(&self, node: &V, min_depth: usize) -> bool {
        let mut finder = LeakFinder {
            check: self,
            depth: 0,
            min_depth,
            in_aggregate: 0,
            lists: Vec::new(),
            announced: 0,
            nested: Vec::new(),
        };
        node.visit(&mut finder).is_break()
    }

    /// Whether the node itself (its children are visited on their own) may
    /// raise an error that depends on a column's value.
    fn node_leaks(&self, e: &Expr) -> bool {
        let rows = |es: &[&Expr]| es.iter().any(|e| self.whole_row(e));
        match e {
            Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::Value(_)
            | Expr::TypedString(_)
            | Expr::Nested(_)
            | Expr::IsFalse(_)
            | Expr::IsNotFalse(_)
            | Expr::IsTrue(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotUnknown(_)
            | Expr::Exists { .. }
            | Expr::Collate { .. }
            | Expr::Tuple(_)
            | Expr::Wildcard(_)
            | Expr::QualifiedWildcard(..) => false,
            // An aggregate call itself does not fail (its arguments are
            // checked as nodes of their own where they are not exempt).
            e if is_aggregate(e) => false,
            // A scalar subquery fails when it returns more than one row
            // (21000), which can hang on whether the qualifiers before it
            // let another tenant's row through.
            Expr::Subquery(q) => !at_most_one_row(q),
            // A simple CASE compares its operand with each WHEN value.
            Expr::Case {
                operand,
                conditions,
                ..
            } => operand.as_deref().is_some_and(|o| {
                self.whole_row(o) || conditions.iter().any(|w| self.whole_row(&w.condition))
            }),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => rows(&[a, b]),
            Expr::InList { expr, list, .. } => {
                self.whole_row(expr) || list.iter().any(|e| self.whole_row(e))
            }
            Expr::InSubquery { expr, .. } => self.whole_row(expr),
            Expr::Between {
                expr, low, high, ..
            } => rows(&[expr, low, high]),
            Expr::BinaryOp { op, left, right } => match op {
                BinaryOperator::And | BinaryOperator::Or => false,
                // `||` of arrays fails on mismatched dimensions ("cannot
                // concatenate incompatible arrays"); the rewriter cannot tell
                // arrays from text, so `||` counts as arithmetic.
                op if comparison(op) => rows(&[left, right]),
                op if like_pattern::is_like_operator(op) => {
                    (runtime_value(left) || runtime_value(right))
                        && !like_pattern::classify(right, None, false).is_checked()
                }
                _ => runtime_value(left) || runtime_value(right),
            },
            Expr::AnyOp {
                compare_op,
                left,
                right,
                ..
            }
            | Expr::AllOp {
                compare_op,
                left,
                right,
            } => {
                if comparison(compare_op) {
                    rows(&[left, right])
                } else if like_pattern::is_like_operator(compare_op) {
                    (runtime_value(left) || runtime_value(right))
                        && !like_pattern::classify(right, None, true).is_checked()
                } else {
                    runtime_value(left) || runtime_value(right)
                }
            }
            Expr::UnaryOp { op, expr } => {
                !matches!(op, UnaryOperator::Not | UnaryOperator::Plus) && runtime_value(expr)
            }
            // LIKE fails ("must not end with escape character") only when
            // matching reaches a dangling escape, that is for values that
            // start with the pattern's prefix: safe for a literal pattern
            // without one and for a parameter checked at Bind.
            Expr::Like {
                expr,
                pattern,
                escape_char,
                any,
                ..
            }
            | Expr::ILike {
                expr,
                pattern,
                escape_char,
                any,
                ..
            } => {
                (runtime_value(expr) || runtime_value(pattern))
                    && !like_pattern::classify(pattern, escape_char.as_ref(), *any).is_checked()
            }
            Expr::SimilarTo { expr, pattern, .. } | Expr::RLike { expr, pattern, .. } => {
                runtime_value(expr) || runtime_value(pattern)
            }
            // A call can fail whatever its arguments (`current_setting('x')`,
            // `currval('s')`, `to_date('…', '…')` run when evaluated), except
            // the few that read the clock or the session's identity.
            Expr::Function(f) => runtime_input(e) || !cannot_fail(f),
            // Casts, EXTRACT, SUBSTRING, subscripts, …
            other => runtime_input(other),
        }
    }

    /// Whether `e` is, or holds as a row element, a whole-row value: a
    /// relation's name or alias used as an expression, `t.*`, or `ROW(…)`
    /// of columns.
    fn whole_row(&self, e: &Expr) -> bool {
        match e {
            Expr::Nested(x) => self.whole_row(x),
            Expr::Identifier(i) => self.relations.contains(&fold(i)),
            Expr::CompoundIdentifier(parts) => parts
                .last()
                .is_some_and(|i| self.relations.contains(&fold(i))),
            Expr::Tuple(items) => items.iter().any(|x| self.whole_row(x)),
            Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => true,
            // `ROW(…)` over columns: counted as a row of the table (a
            // comparison of it is rare enough to fence).
            Expr::Function(f) if last_name(&f.name).is_some_and(|n| n == "row") => has_column(e),
            _ => false,
        }
    }
}

/// Calls without arguments that cannot fail: the clock, the session's
/// identity and the like (compared by folded name, in `pg_catalog` or
/// unqualified).
const CANNOT_FAIL: &[&str] = &[
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "transaction_timestamp",
    "statement_timestamp",
    "clock_timestamp",
    "current_user",
    "session_user",
    "current_role",
    "user",
    "current_schema",
    "current_database",
    "current_catalog",
    "random",
    "gen_random_uuid",
    "pi",
];

fn cannot_fail(f: &sqlparser::ast::Function) -> bool {
    let no_args = match &f.args {
        sqlparser::ast::FunctionArguments::None => true,
        sqlparser::ast::FunctionArguments::List(l) => l.args.is_empty(),
        sqlparser::ast::FunctionArguments::Subquery(_) => false,
    };
    let name = match f.name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => Some(i),
        [ObjectNamePart::Identifier(s), ObjectNamePart::Identifier(i)]
            if fold(s) == "pg_catalog" =>
        {
            Some(i)
        }
        _ => None,
    };
    no_args && name.is_some_and(|i| CANNOT_FAIL.contains(&fold(i).as_str()))
}

/// Whether `q` returns one row at most: `LIMIT 0` or `LIMIT 1`, or a
/// SELECT of aggregates alone without GROUP BY (one row exactly).
fn at_most_one_row(q: &Query) -> bool {
    let limited = matches!(
        &q.limit_clause,
        Some(sqlparser::ast::LimitClause::LimitOffset {
            limit: Some(Expr::Value(ValueWithSpan {
                value: Value::Number(n, _),
                ..
            })),
            ..
        }) if n == "0" || n == "1"
    );
    if limited {
        return true;
    }
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return false;
    };
    let ungrouped = matches!(&sel.group_by, sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty())
        && sel.having.is_none();
    // `(SELECT $1::int)`: no FROM, no WHERE, and no call that could return
    // a set.
    let calls = || {
        sqlparser::ast::visit_expressions(&sel.projection, |x| match x {
            Expr::Function(_) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    };
    if ungrouped && sel.from.is_empty() && sel.selection.is_none() && !calls() {
        return true;
    }
    ungrouped
        && !sel.projection.is_empty()
        && sel.projection.iter().all(|item| match item {
            sqlparser::ast::SelectItem::UnnamedExpr(e)
            | sqlparser::ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                is_aggregate(e) && !matches!(e, Expr::Function(f) if f.over.is_some())
            }
            _ => false,
        })
}

/// Comparison operators: they cannot fail on scalar values of the built-in
/// types (only on whole rows, see [`LeakCheck`]).
fn comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    )
}

/// The last part of a name, folded.
fn last_name(name: &ObjectName) -> Option<String> {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => Some(fold(i)),
        _ => None,
    }
}

/// Collects the names relations go by: table names, aliases, CTE names.
#[derive(Default)]
struct RelationNames(HashSet<String>);

impl Visitor for RelationNames {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.0.insert(fold(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if let Some(n) = last_name(relation) {
            self.0.insert(n);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        let alias = match tf {
            TableFactor::Table { alias, .. }
            | TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::UNNEST { alias, .. }
            | TableFactor::NestedJoin { alias, .. }
            | TableFactor::JsonTable { alias, .. } => alias.as_ref(),
            _ => None,
        };
        if let Some(a) = alias {
            self.0.insert(fold(&a.name));
        }
        ControlFlow::Continue(())
    }
}

struct LeakFinder<'a> {
    check: &'a LeakCheck,
    depth: usize,
    min_depth: usize,
    /// Inside the arguments of an aggregate or window function of the
    /// statement's own level: computed from rows its scans have filtered
    /// already. (One in a query nested in a qualifier is not: whether that
    /// query runs at all, and with which outer values, can depend on a
    /// qualifier that saw another tenant's row.)
    in_aggregate: usize,
    /// Subqueries that are the list of `x = ANY (…)`/`ALL (…)`: a set, not
    /// a scalar that fails on a second row.
    lists: Vec<*const Query>,
    /// Expression subqueries announced by their expression, not yet entered.
    announced: usize,
    /// For each query entered: whether it is an expression subquery (a
    /// qualifier decides whether, and with which outer values, it runs).
    nested: Vec<bool>,
}

impl Visitor for LeakFinder<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth += 1;
        let expression = self.announced > 0;
        self.announced = self.announced.saturating_sub(1);
        self.nested.push(expression);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        self.nested.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        let subqueries = match e {
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => 1,
            Expr::Function(f) if matches!(f.args, FunctionArguments::Subquery(_)) => 1,
            _ => 0,
        };
        self.announced += subqueries;
        if self.counts_aggregate(e) {
            self.in_aggregate += 1;
        }
        if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = e
            && let Expr::Subquery(q) = right.as_ref()
        {
            self.lists.push(&**q as *const Query);
        }
        let set = matches!(e, Expr::Subquery(q) if self.lists.contains(&(&**q as *const Query)));
        if self.in_aggregate == 0
            && self.depth >= self.min_depth
            && !set
            && self.check.node_leaks(e)
        {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn post_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.counts_aggregate(e) {
            self.in_aggregate -= 1;
        }
        ControlFlow::Continue(())
    }
}

impl LeakFinder<'_> {
    /// An aggregate whose arguments are exempt: any but one in an
    /// expression subquery of a qualifier (or inside such an exempt one).
    fn counts_aggregate(&self, e: &Expr) -> bool {
        let gated = self.min_depth == 0 && self.nested.iter().any(|n| *n);
        is_aggregate(e) && (!gated || self.in_aggregate > 0)
    }
}

/// Built-in aggregates, by name: their arguments (and FILTER) are computed
/// from their input rows, after the scans' qualifiers.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "xmlagg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "mode",
    "percentile_cont",
    "percentile_disc",
];

/// An aggregate call, or any window function call (`… OVER (…)`).
fn is_aggregate(e: &Expr) -> bool {
    let Expr::Function(f) = e else {
        return false;
    };
    if f.over.is_some() {
        return true;
    }
    let name = match f.name.0.as_slice() {
        [sqlparser::ast::ObjectNamePart::Identifier(i)] => i,
        [schema, sqlparser::ast::ObjectNamePart::Identifier(i)]
            if schema
                .as_ident()
                .is_some_and(|s| s.value.eq_ignore_ascii_case("pg_catalog")) =>
        {
            i
        }
        _ => return false,
    };
    let folded = if name.quote_style.is_some() {
        name.value.clone()
    } else {
        name.value.to_ascii_lowercase()
    };
    AGGREGATES.contains(&folded.as_str())
}

/// Whether `e` holds a value known only at run time, so that an error it
/// raises happens only where Postgres evaluates it: a column, a parameter
/// (a generic plan evaluates it per row), a subquery, or a function call
/// (an aggregate, or a function whose volatility the rewriter cannot tell;
/// `now() - interval '300000 years'` fails at run time). What such an
/// expression raises tells whether a qualifier before it let a row through
/// (`CASE WHEN name = 'x' THEN (SELECT 1 / count(*) …) END`), even when it
/// reads no column itself. Literals and their casts are folded when the
/// statement is planned: they fail for every row or for none.
fn runtime_value(e: &Expr) -> bool {
    sqlparser::ast::visit_expressions(e, |x| {
        if runtime_leaf(x) || matches!(x, Expr::Function(_)) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// Whether a node's inputs (not the node itself) hold a run-time value; a
/// bare parameter under a cast (`$1::int`) is not one: Postgres gives an
/// untyped parameter the cast's type and converts it at Bind.
fn runtime_input(e: &Expr) -> bool {
    if cast_param(e).is_some() {
        return false;
    }
    let mut node_itself = true;
    sqlparser::ast::visit_expressions(e, |x| {
        let input = !std::mem::replace(&mut node_itself, false);
        if runtime_leaf(x) || (input && matches!(x, Expr::Function(_))) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// A column, a parameter or a subquery.
fn runtime_leaf(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::Subquery(_)
            | Expr::Exists { .. }
            | Expr::InSubquery { .. }
            | Expr::Value(ValueWithSpan {
                value: Value::Placeholder(_),
                ..
            })
    )
}

/// The parameters `statement` casts directly (`$1::int`, `CAST($2 AS
/// date)`), which the leak check counts as typed at Bind (see
/// [`runtime_input`]).
pub(super) fn cast_params(statement: &Statement) -> Vec<usize> {
    let mut out = Vec::new();
    let _ = sqlparser::ast::visit_expressions(statement, |e| {
        if let Some(n) = cast_param(e) {
            out.push(n);
        }
        ControlFlow::<()>::Continue(())
    });
    out
}

/// The number of the parameter `e` casts, when `e` is a cast of a bare
/// parameter (`$1::int`).
fn cast_param(e: &Expr) -> Option<usize> {
    let Expr::Cast { expr, .. } = e else {
        return None;
    };
    let Expr::Value(ValueWithSpan {
        value: Value::Placeholder(p),
        ..
    }) = expr.as_ref()
    else {
        return None;
    };
    p.strip_prefix('$').and_then(|n| n.parse().ok())
}

/// Whether `e` reads a column (also through a nested query).
fn has_column(e: &Expr) -> bool {
    sqlparser::ast::visit_expressions(e, |x| match x {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn leaks(sql: &str) -> bool {
        let parsed = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql);
        LeakCheck::of(&parsed[0]).statement(&parsed[0])
    }

    #[test]
    fn value_dependent_errors_before_the_predicate_are_found() {
        for sql in [
            "SELECT 1 FROM t WHERE current_setting(name) IS NOT NULL",
            "SELECT 1 FROM t WHERE name::int > 0",
            "SELECT 1 FROM t WHERE a + 2147483000 > 0",
            "SELECT 1 FROM t WHERE -a > 0",
            "SELECT 1 FROM t JOIN u ON make_date(1, u.total, 1) IS NOT NULL",
            "SELECT * FROM (SELECT current_setting(name) AS v FROM t) s WHERE v IS NOT NULL",
            "SELECT 1 FROM t WHERE x IN (SELECT 1 FROM u WHERE 1 / u.a > 0)",
            "SELECT 1 FROM t WHERE name LIKE other",
            "SELECT count(*) FROM t GROUP BY a HAVING lower(a) = 'x'",
            "WITH c AS (SELECT 1 / a AS v FROM t) SELECT * FROM c",
            "UPDATE t SET a = 1 WHERE current_setting(name) IS NOT NULL",
            "DELETE FROM t WHERE make_date(1, total, 1) IS NOT NULL",
            "EXPLAIN SELECT 1 FROM t WHERE lower(name) = 'x'",
            "SELECT 1 FROM t UNION SELECT 1 / a FROM u",
            "SELECT * FROM (SELECT a FROM t) s WHERE s.a IN (SELECT max(b) FROM u WHERE lower(c) = 'x')",
            "UPDATE t SET a = (SELECT max(b) FROM u WHERE 1 / u.c > 0) WHERE id = 1",
            "DELETE FROM t WHERE id = 1 RETURNING (SELECT 1 FROM u WHERE u.a::int > 0)",
            "SELECT count(*) FROM customers c WHERE c <> ('globex'::text, 2, 'x'::text, 0)",
            "SELECT 1 FROM customers WHERE customers IS DISTINCT FROM ('g'::text, 2)",
            "SELECT 1 FROM customers c JOIN orders o ON o = ROW('g'::text, 1)",
            "DELETE FROM customers c WHERE c <> ('g'::text, 2) AND id = -1",
            "SELECT * FROM (SELECT tenant_id, email FROM customers) s WHERE s <> ('g'::text, 'x'::text)",
            "WITH w AS (SELECT * FROM customers) SELECT 1 FROM w WHERE w IN (ROW('g', 1))",
            "SELECT 1 FROM customers c WHERE c.* = ('g'::text, 2)",
            "SELECT 1 FROM customers WHERE name LIKE 'Homer\\'",
            "SELECT 1 FROM customers WHERE name ILIKE 'Homer#' ESCAPE '#'",
            "SELECT 1 FROM customers WHERE name LIKE 'x\\' || ''",
            "SELECT 1 FROM customers WHERE name LIKE ANY ($1)",
            "SELECT 1 FROM customers WHERE name LIKE $1 ESCAPE $2",
            "SELECT 1 FROM customers WHERE name ~~ lower($1)",
            "SELECT 1 FROM customers WHERE name SIMILAR TO 'a%'",
            "SELECT 1 FROM customers c WHERE CASE c WHEN ROW('g'::text, 2) THEN true ELSE false END",
            "SELECT 1 FROM customers c WHERE CASE ROW('g'::text, 2) WHEN c THEN true END",
            "DELETE FROM customers WHERE name LIKE 'Homer\\' AND id = -1",
            // No column in the failing expression, but evaluated only for
            // the rows an earlier qualifier let through.
            "SELECT 1 FROM t WHERE CASE WHEN body = 'x' THEN (SELECT 1 / count(*) = 1 FROM p WHERE false) ELSE false END",
            "SELECT 1 FROM t WHERE body = 'x' AND 1 / (SELECT count(*) FROM p WHERE false) = 1",
            "SELECT 1 FROM t WHERE NOT (body <> 'x' OR 1 / $1 = 1)",
            "SELECT * FROM t WHERE created_at > now() - interval '300000 years'",
            "UPDATE t SET v = 1 WHERE CASE WHEN v = 2 THEN (SELECT 1 / count(*) = 1 FROM p WHERE false) END",
            "SELECT 1 FROM t JOIN u ON u.a = t.a AND (SELECT 1 / count(*) FROM p) > 0",
            // More than one row: 21000, only where the qualifier runs.
            "SELECT 1 FROM t WHERE body <> 'x' OR (SELECT true FROM p)",
            "DELETE FROM t WHERE body <> 'x' OR (SELECT true FROM p)",
            "SELECT 1 FROM t WHERE id = (SELECT id FROM u WHERE u.k = t.k)",
            "SELECT 1 FROM t WHERE (a || ARRAY[9]) IS NOT NULL",
            "SELECT * FROM t WHERE first || ' ' || last = $1",
            // An aggregate in a subquery that a qualifier gates: it runs with
            // another tenant's `t.c` when the qualifier sees that row.
            "SELECT * FROM t WHERE total > (SELECT avg(1 / (t2.v - t.c)) FROM t t2)",
            "SELECT * FROM t WHERE total > (SELECT avg(total / 2) FROM t t2 WHERE t2.c = t.c)",
            // A call that reads no column can fail when it runs.
            "SELECT 1 FROM t WHERE CASE WHEN body = 'x' THEN current_setting('no.such') = '' END",
            "SELECT 1 FROM t WHERE body = 'x' AND currval('t_id_seq') > 0",
        ] {
            assert!(leaks(sql), "{sql}");
        }
    }

    #[test]
    fn ordinary_qualifiers_and_the_select_list_keep_their_plans() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            "SELECT * FROM t WHERE id = 42 AND name LIKE 'a%' AND b BETWEEN 1 AND 9",
            "SELECT * FROM t WHERE a IN (1, 2) OR b IS NULL OR NOT c",
            "SELECT * FROM t WHERE created_at > now() AND id = $1::int",
            "SELECT * FROM t WHERE created_at < CURRENT_TIMESTAMP AND d <= current_date",
            "SELECT * FROM t WHERE first = $1 AND x = ANY($2)",
            "SELECT lower(name), a / 2 FROM t WHERE id = 1 ORDER BY upper(name)",
            "SELECT date_trunc('day', created_at), count(*) FROM t GROUP BY 1",
            "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = $1",
            "UPDATE t SET total = total + 1 WHERE id = 5",
            "SELECT * FROM t WHERE (a, b) = (1, 'x') AND c IS DISTINCT FROM 3",
            "SELECT * FROM t WHERE name LIKE 'ab\\%c%' AND b NOT ILIKE '%x'",
            "SELECT * FROM t WHERE name LIKE 'a#%' ESCAPE '#'",
            // A parameter is checked at Bind; a list of literals is checked here.
            "SELECT * FROM t WHERE name LIKE $1 AND b NOT ILIKE $2 ESCAPE '!' AND c ~~* $3",
            "SELECT * FROM t WHERE name LIKE ANY (ARRAY['a%', 'b%']) AND b ~~ ALL (ARRAY['%x'])",
            "SELECT * FROM t WHERE CASE status WHEN 1 THEN true ELSE false END",
            "SELECT (SELECT max(total) FROM orders)",
            // Subqueries that return one row at most.
            "SELECT * FROM t WHERE total > (SELECT max(total) FROM u WHERE u.c = t.c)",
            "SELECT * FROM t WHERE id = (SELECT id FROM u ORDER BY id LIMIT 1)",
            "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a)",
            "SELECT * FROM unnest((SELECT array_agg(id) FROM orders)) u",
            "SELECT * FROM (SELECT c, count(*) FILTER (WHERE a / 2 > 1) AS n FROM t GROUP BY c) s WHERE n > 1",
            "SELECT * FROM (SELECT a, row_number() OVER (ORDER BY lower(b)) AS r FROM t) s WHERE r < 3",
        ] {
            assert!(!leaks(sql), "{sql}");
        }
    }
}
