//! LIKE patterns that could answer questions about other tenants' values.
//!
//! `x LIKE p` fails ("LIKE pattern must not end with escape character")
//! only when matching reaches an escape character left dangling at the end
//! of `p`, that is for values of `x` that start with the text before it.
//! Evaluated on another tenant's value, that is a yes/no answer about it.
//! The fence of [`super::leak`] keeps execution to the tenant's own rows,
//! but the planner estimates a constant pattern by running it against the
//! column's statistics (common values and histogram bounds, taken from all
//! tenants' rows) before any predicate applies. So:
//!
//! - a literal pattern with a dangling escape is refused for every value,
//!   before anything runs, with Postgres's own SQLSTATE (22025);
//! - a pattern that is a bare parameter (`x LIKE $1`, the usual form of
//!   drivers and ORMs) is checked when a Bind supplies it
//!   ([`dangling`]), and then needs no fence either;
//! - any other pattern (computed, `LIKE ANY ($1)`, an escape given as a
//!   parameter) is fenced as before; its planner estimate is the residual
//!   channel that row-level security closes (isolation.md).

use std::ops::ControlFlow;

use sqlparser::ast::{BinaryOperator, Expr, Statement, Value, visit_expressions};

use crate::error::ProxyError;

/// What a pattern is, for the checks above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pattern {
    /// A literal (or literals, for `LIKE ANY (ARRAY[…])`) that cannot fail,
    /// or any pattern with no escape character (`ESCAPE ''`).
    Safe,
    /// A literal that ends with a dangling escape character.
    Dangling,
    /// Bind parameter `param` (1-based), with this one-byte escape.
    Bound {
        /// The parameter's number.
        param: usize,
        /// The escape character (ASCII).
        escape: u8,
    },
    /// Anything else.
    Unknown,
}

impl Pattern {
    /// Whether matching with it cannot fail once a Bind has been checked.
    pub(super) fn is_checked(self) -> bool {
        matches!(self, Pattern::Safe | Pattern::Bound { .. })
    }
}

/// The LIKE-family operators written as operators (`~~`, `~~*`, `!~~`,
/// `!~~*`, also as `OPERATOR(pg_catalog.~~)`): the same matching, with the
/// default escape.
pub(super) fn is_like_operator(op: &BinaryOperator) -> bool {
    match op {
        BinaryOperator::PGLikeMatch
        | BinaryOperator::PGILikeMatch
        | BinaryOperator::PGNotLikeMatch
        | BinaryOperator::PGNotILikeMatch => true,
        // The schema as written: any case, possibly quoted.
        BinaryOperator::PGCustomBinaryOperator(parts) => match parts.as_slice() {
            [op] => is_like_symbol(op),
            [schema, op] => {
                schema.trim_matches('"').eq_ignore_ascii_case("pg_catalog") && is_like_symbol(op)
            }
            _ => false,
        },
        _ => false,
    }
}

fn is_like_symbol(op: &str) -> bool {
    matches!(op, "~~" | "~~*" | "!~~" | "!~~*")
}

/// Classifies `pattern` of a LIKE/ILIKE with `escape` (none: backslash).
/// `any`: the pattern is a list (`LIKE ANY (…)`, `~~ ANY (…)`).
pub(super) fn classify(pattern: &Expr, escape: Option<&Value>, any: bool) -> Pattern {
    let escape = match escape {
        None => '\\',
        Some(v) => match string_literal(v).map(|s| {
            let mut chars = s.chars();
            (chars.next(), chars.next())
        }) {
            // No escape character at all: nothing can dangle.
            Some((None, _)) => return Pattern::Safe,
            Some((Some(c), None)) => c,
            // A longer escape fails for every value ("invalid escape
            // string"); an escape given otherwise is not known here.
            _ => return Pattern::Unknown,
        },
    };
    if any {
        return list(pattern, escape);
    }
    // sqlparser reads `LIKE ALL (…)` and `LIKE SOME (…)` as a call of a
    // function `all` or `some` (both reserved words: no function has them
    // as unquoted names).
    if let Some(patterns) = quantified(pattern) {
        return list(patterns, escape);
    }
    if let Expr::Value(v) = unnest(pattern)
        && let Value::Placeholder(p) = &v.value
    {
        return match p.strip_prefix('$').and_then(|n| n.parse().ok()) {
            Some(param) if param >= 1 && escape.is_ascii() => Pattern::Bound {
                param,
                escape: escape as u8,
            },
            _ => Pattern::Unknown,
        };
    }
    match literal(pattern) {
        Some(Literal::Text(s)) => {
            // A `character` cast drops trailing spaces: checked both ways.
            let trimmed = s.trim_end_matches(' ');
            if ends_dangling(s.chars(), escape) || ends_dangling(trimmed.chars(), escape) {
                Pattern::Dangling
            } else {
                Pattern::Safe
            }
        }
        // Another type's input syntax may turn other characters into the
        // escape (`'…\\\\'::bytea`): safe only without it and backslashes.
        Some(Literal::Converted(s)) => holding_escapes(s, escape),
        None => Pattern::Unknown,
    }
}

/// A string literal, possibly cast.
enum Literal<'a> {
    /// As written, or cast to a character type (`text`, `varchar`,
    /// `character`).
    Text(&'a str),
    /// Cast to any other type (its input syntax reads the text).
    Converted(&'a str),
}

/// The string literal `e` is, in any spelling, possibly cast.
fn literal(e: &Expr) -> Option<Literal<'_>> {
    let (inner, data_type) = match unnest(e) {
        Expr::Value(v) => return string_literal(&v.value).map(Literal::Text),
        Expr::Cast {
            expr, data_type, ..
        } => (
            string_literal(match unnest(expr) {
                Expr::Value(v) => &v.value,
                _ => return None,
            })?,
            data_type,
        ),
        Expr::TypedString(t) => (string_literal(&t.value.value)?, &t.data_type),
        _ => return None,
    };
    let name = data_type.to_string().to_ascii_lowercase();
    let textual = ["text", "varchar", "character", "char", "bpchar"]
        .iter()
        .any(|t| {
            name == *t
                || name.starts_with(&format!("{t}("))
                || name.starts_with(&format!("{t} varying"))
        });
    Some(if textual {
        Literal::Text(inner)
    } else {
        Literal::Converted(inner)
    })
}

/// Safe without the escape character or a backslash, else refused.
fn holding_escapes(s: &str, escape: char) -> Pattern {
    if s.contains(escape) || s.contains('\\') {
        Pattern::Dangling
    } else {
        Pattern::Safe
    }
}

/// A list of patterns: each literal of an `ARRAY[…]` is checked. An array
/// written as one string (`'{"a%", "b\\\\"}'`) is read by Postgres's array
/// syntax, with escapes of its own: safe only without the escape character.
fn list(patterns: &Expr, escape: char) -> Pattern {
    if let Some(Literal::Text(s) | Literal::Converted(s)) = literal(patterns) {
        return holding_escapes(s, escape);
    }
    let items: &[Expr] = match unnest(patterns) {
        Expr::Array(a) => &a.elem,
        Expr::Tuple(items) => items,
        one => std::slice::from_ref(one),
    };
    let mut all = Pattern::Safe;
    for item in items {
        match classify(item, None, false) {
            Pattern::Dangling => return Pattern::Dangling,
            Pattern::Safe => {}
            _ => all = Pattern::Unknown,
        }
    }
    all
}

/// Brackets and `COLLATE` (which changes how a pattern is matched, not its
/// escapes) taken off.
fn unnest(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(x) | Expr::Collate { expr: x, .. } => unnest(x),
        other => other,
    }
}

/// The list of `ALL (…)`, `SOME (…)` or `ANY (…)` as sqlparser reads it after
/// `LIKE` (a function call).
fn quantified(e: &Expr) -> Option<&Expr> {
    let Expr::Function(f) = unnest(e) else {
        return None;
    };
    let [sqlparser::ast::ObjectNamePart::Identifier(name)] = f.name.0.as_slice() else {
        return None;
    };
    if name.quote_style.is_some()
        || !["all", "some", "any"]
            .iter()
            .any(|q| name.value.eq_ignore_ascii_case(q))
    {
        return None;
    }
    match &f.args {
        sqlparser::ast::FunctionArguments::List(l) => match l.args.as_slice() {
            [sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(x))] => {
                Some(x)
            }
            _ => None,
        },
        _ => None,
    }
}

/// The text of a string literal, in any of its spellings.
fn string_literal(v: &Value) -> Option<&str> {
    match v {
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::UnicodeStringLiteral(s)
        | Value::NationalStringLiteral(s) => Some(s),
        Value::DollarQuotedString(d) => Some(&d.value),
        _ => None,
    }
}

/// Whether a pattern, read left to right with `escape`, ends with an escape
/// character that escapes nothing.
fn ends_dangling(mut chars: impl Iterator<Item = char>, escape: char) -> bool {
    while let Some(c) = chars.next() {
        if c == escape && chars.next().is_none() {
            return true;
        }
    }
    false
}

/// A bound pattern value (the parameter's bytes, as sent) that ends with a
/// dangling `escape`: an odd run of it at the end, also once trailing
/// spaces are cut (a parameter of type `character` loses them on its way
/// to `text`). Text and binary formats of the string types carry the same
/// bytes.
pub fn dangling(value: &[u8], escape: u8) -> bool {
    let odd_run = |v: &[u8]| v.iter().rev().take_while(|b| **b == escape).count() % 2 == 1;
    let trimmed = value.len() - value.iter().rev().take_while(|b| **b == b' ').count();
    odd_run(value) || odd_run(&value[..trimmed])
}

/// Every LIKE pattern of `s`: refuses a literal with a dangling escape and
/// returns the parameters used as patterns, each with its escape.
pub(super) fn bound_patterns(s: &Statement) -> Result<Vec<(usize, u8)>, ProxyError> {
    let mut bound = Vec::new();
    let flow = visit_expressions(s, |e| {
        let found = match e {
            Expr::Like {
                any,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                any,
                pattern,
                escape_char,
                ..
            } => classify(pattern, escape_char.as_ref(), *any),
            Expr::BinaryOp { op, right, .. } if is_like_operator(op) => {
                classify(right, None, false)
            }
            Expr::AnyOp {
                compare_op, right, ..
            }
            | Expr::AllOp {
                compare_op, right, ..
            } if is_like_operator(compare_op) => classify(right, None, true),
            _ => Pattern::Safe,
        };
        match found {
            Pattern::Dangling => ControlFlow::Break(()),
            Pattern::Bound { param, escape } => {
                bound.push((param, escape));
                ControlFlow::Continue(())
            }
            Pattern::Safe | Pattern::Unknown => ControlFlow::Continue(()),
        }
    });
    if flow.is_break() {
        return Err(ProxyError::like_pattern_dangling());
    }
    bound.sort_unstable();
    bound.dedup();
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(sql: &str) -> Result<Vec<(usize, u8)>, ProxyError> {
        let mut parsed = super::super::parse(sql).expect("parses");
        bound_patterns(&parsed.remove(0))
    }

    fn refused(sql: &str) -> bool {
        patterns(sql).is_err_and(|e| e.code.code() == "22025")
    }

    #[test]
    fn literal_patterns_with_a_dangling_escape_are_refused() {
        for sql in [
            r"SELECT 1 FROM t WHERE name LIKE 'Homer\'",
            r"SELECT 1 FROM t WHERE name NOT ILIKE 'Homer\'",
            r"SELECT 1 FROM t WHERE name LIKE 'a\\\'",
            r"SELECT 1 FROM t WHERE name LIKE $$Homer\$$",
            r"SELECT 1 FROM t WHERE name LIKE E'Homer\\'",
            r"SELECT 1 FROM t WHERE name LIKE 'Homer#' ESCAPE '#'",
            r"SELECT 1 FROM t WHERE name ~~ 'Homer\'",
            r"SELECT 1 FROM t WHERE name !~~* ('Homer\')",
            r"SELECT 1 FROM t WHERE name LIKE ANY (ARRAY['a%', 'Homer\'])",
            r"SELECT 1 FROM t WHERE name ~~ ANY (ARRAY['Homer\'])",
            r"SELECT (SELECT 1 FROM t WHERE name LIKE 'x\') FROM u",
            // An array in its string form has escapes of its own.
            r#"SELECT 1 FROM t WHERE name LIKE ANY ('{"P%\\"}')"#,
            r#"SELECT 1 FROM t WHERE name ~~ ANY ('{P%\\}'::text[])"#,
            // Casts: `character` drops trailing spaces; other types read
            // the text by their own syntax.
            r"SELECT 1 FROM t WHERE name LIKE 'Homer\ '::bpchar",
            r"SELECT 1 FROM t WHERE name LIKE CAST('Homer\' AS varchar(10))",
            r"SELECT 1 FROM t WHERE b LIKE 'x\\'::bytea",
            r"SELECT 1 FROM t WHERE name LIKE text 'Homer\'",
            // Other spellings of the same operators and lists.
            r"SELECT 1 FROM t WHERE name OPERATOR(~~*) 'homer\'",
            r"SELECT 1 FROM t WHERE name OPERATOR(pg_catalog.!~~) '%Homer\'",
            r"SELECT 1 FROM t WHERE name OPERATOR(PG_CATALOG.~~) 'Homer\'",
            r#"SELECT 1 FROM t WHERE name OPERATOR("pg_catalog".~~*) 'Homer\'"#,
            r"SELECT 1 FROM t WHERE name LIKE ALL (ARRAY['%Homer\'])",
            r"SELECT 1 FROM t WHERE name ILIKE SOME (ARRAY['a', 'Homer\'])",
            r"SELECT 1 FROM t WHERE name NOT LIKE all ('{x\\}')",
            r#"SELECT 1 FROM t WHERE name LIKE '%Homer\' COLLATE "C""#,
            r#"SELECT 1 FROM t WHERE name ILIKE ('Homer\' COLLATE "C")"#,
        ] {
            assert!(refused(sql), "{sql}");
        }
    }

    #[test]
    fn well_formed_and_computed_patterns_pass() {
        for sql in [
            r"SELECT 1 FROM t WHERE name LIKE 'Homer\\'",
            r"SELECT 1 FROM t WHERE name LIKE 'Ho\%mer%'",
            r"SELECT 1 FROM t WHERE name LIKE 'Homer\' ESCAPE ''",
            r"SELECT 1 FROM t WHERE name LIKE 'Homer\' ESCAPE '#'",
            r"SELECT 1 FROM t WHERE name LIKE '%' || $1 || '%'",
            r"SELECT 1 FROM t WHERE name LIKE ANY ($1)",
            r"SELECT 1 FROM t WHERE name = 'Homer\'",
            r"SELECT 1 FROM t WHERE name LIKE 'a\%'::text",
            r"SELECT 1 FROM t WHERE b LIKE 'ab%'::bytea",
            r#"SELECT 1 FROM t WHERE name LIKE ANY ('{"a%", "b%"}')"#,
            r"SELECT 1 FROM t WHERE name LIKE ALL (ARRAY['a%', 'b\%'])",
            r#"SELECT 1 FROM t WHERE name LIKE 'a%' COLLATE "C""#,
            r"SELECT 1 FROM t WHERE name OPERATOR(pg_catalog.~~) 'a%'",
        ] {
            assert_eq!(patterns(sql).ok(), Some(vec![]), "{sql}");
        }
    }

    #[test]
    fn parameters_used_as_patterns_are_reported_with_their_escape() {
        assert_eq!(
            patterns(r"SELECT 1 FROM t WHERE a LIKE $2 AND b ILIKE ($1) AND c ~~ $2").ok(),
            Some(vec![(1, b'\\'), (2, b'\\')])
        );
        assert_eq!(
            patterns(r"SELECT 1 FROM t WHERE a NOT LIKE $3 ESCAPE '!'").ok(),
            Some(vec![(3, b'!')])
        );
        // No escape at all: nothing to check.
        assert_eq!(
            patterns(r"SELECT 1 FROM t WHERE a LIKE $1 ESCAPE ''").ok(),
            Some(vec![])
        );
        assert_eq!(
            classify(
                &Expr::value(Value::Placeholder("$1".into())),
                Some(&Value::SingleQuotedString("é".into())),
                false
            ),
            Pattern::Unknown
        );
    }

    #[test]
    fn a_bound_value_dangles_with_an_odd_run_of_escapes_at_its_end() {
        assert!(dangling(br"Homer\", b'\\'));
        assert!(dangling(br"a\\\", b'\\'));
        assert!(!dangling(br"a\\", b'\\'));
        assert!(!dangling(br"a\%", b'\\'));
        assert!(!dangling(b"", b'\\'));
        assert!(dangling(b"a#", b'#'));
        assert!(!dangling(br"a\", b'#'));
        // `character` parameters lose their trailing spaces.
        assert!(dangling(b"P%\\  ", b'\\'));
        assert!(!dangling(b"P%\\\\ ", b'\\'));
    }
}
