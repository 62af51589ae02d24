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
/// `!~~*`): the same matching, with the default escape.
pub(super) fn is_like_operator(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::PGLikeMatch
            | BinaryOperator::PGILikeMatch
            | BinaryOperator::PGNotLikeMatch
            | BinaryOperator::PGNotILikeMatch
    )
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
    match unnest(pattern) {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => match p.strip_prefix('$').and_then(|n| n.parse().ok()) {
                Some(param) if param >= 1 && escape.is_ascii() => Pattern::Bound {
                    param,
                    escape: escape as u8,
                },
                _ => Pattern::Unknown,
            },
            other => match string_literal(other) {
                Some(s) if ends_dangling(s.chars(), escape) => Pattern::Dangling,
                Some(_) => Pattern::Safe,
                None => Pattern::Unknown,
            },
        },
        _ => Pattern::Unknown,
    }
}

/// A list of patterns: each literal is checked; anything else is unknown.
fn list(patterns: &Expr, escape: char) -> Pattern {
    let items: &[Expr] = match unnest(patterns) {
        Expr::Array(a) => &a.elem,
        Expr::Tuple(items) => items,
        one => std::slice::from_ref(one),
    };
    let mut all = Pattern::Safe;
    for item in items {
        match unnest(item) {
            Expr::Value(v) => match string_literal(&v.value) {
                Some(s) if ends_dangling(s.chars(), escape) => return Pattern::Dangling,
                Some(_) => {}
                None => all = Pattern::Unknown,
            },
            _ => all = Pattern::Unknown,
        }
    }
    all
}

fn unnest(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(x) => unnest(x),
        other => other,
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
/// dangling `escape`: an odd run of it at the end. Text and binary formats
/// of the string types carry the same bytes.
pub fn dangling(value: &[u8], escape: u8) -> bool {
    value.iter().rev().take_while(|b| **b == escape).count() % 2 == 1
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
    }
}
