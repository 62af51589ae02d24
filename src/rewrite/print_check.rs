//! Whether a rewritten statement's printed text reads back as the
//! statement.
//!
//! A statement the rewriter changes goes to the server as sqlparser prints
//! its tree. Several of sqlparser's printers write values as they are,
//! where Postgres reads them otherwise: a string type modifier without its
//! quotes (`numeric('10)…')` printed `numeric(10)…`), a quote after a
//! backslash undoubled (`'\''` printed `'\'`), a quoted name inside
//! `OPERATOR(…)` with its quote undoubled, the one-character options of
//! COPY between bare quotes. Each turned text the rewriter had read as a
//! value into SQL that ran unscoped.
//!
//! Rather than trusting each printer, the printed text is read again: by
//! the same checked tokenizer as a tenant's own text (so Postgres and
//! sqlparser read it alike, see `token_agreement`), then by the parser,
//! and the tree it gives must equal the tree that was printed. Then
//! Postgres reads the printed text as the tree the rewriter checked. The
//! tenant holes (`hole_marker`) are read as parameters numbered past any a
//! client can send. This costs a second parse on a rewrite-cache miss of a
//! changed statement only.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Statement, Value, visit_expressions_mut};
use sqlparser::tokenizer::Span;

use super::template::MARK;
use crate::error::ProxyError;

/// Parameter number of hole 0 in the text read back: far past what the
/// protocol carries (below 65536; larger numbers a client writes are
/// refused later, with 54000), so no client's parameter is taken for a
/// hole.
const FIRST_HOLE_PARAM: u64 = 9_000_000_000_000_000_000;

/// Refuses `printed` unless it reads back as `statement`.
pub(super) fn check(statement: &Statement, printed: &str) -> Result<(), ProxyError> {
    let text = holes_as_params(printed).ok_or_else(control_character)?;
    let mut tokens = super::tokens(&text, true).map_err(|_| misprinted())?;
    // Trees compare without their positions; without them, the errors the
    // parser makes and drops while it tries alternatives are written
    // without a line and column, which is most of their cost.
    for token in &mut tokens {
        token.span = Span::empty();
    }
    let mut read = super::parse_tokens(tokens).map_err(|_| misprinted())?;
    let Some(mut read) = read.pop().filter(|_| read.is_empty()) else {
        return Err(misprinted());
    };
    // The holes, read as parameters, become hole markers again.
    let holes = holes(statement);
    let _ = visit_expressions_mut(&mut read, |e| {
        if let Expr::Value(v) = e
            && let Value::Placeholder(p) = &mut v.value
            && let Some(i) = p
                .strip_prefix('$')
                .and_then(|n| n.parse::<u64>().ok())
                .and_then(|n| n.checked_sub(FIRST_HOLE_PARAM))
                .filter(|i| holes.contains(i))
        {
            *p = super::template::hole_marker(i as usize);
        }
        ControlFlow::<()>::Continue(())
    });
    if read == *statement {
        return Ok(());
    }
    // A client's value that holds the marker's character (`E'\x01'`) was
    // read as a hole.
    if printed.matches(MARK).count() != 2 * holes.len() {
        return Err(control_character());
    }
    Err(misprinted())
}

/// The numbers of the tenant holes in `statement` (holes are numbered
/// across a query string's statements).
fn holes(statement: &Statement) -> Vec<u64> {
    let mut found = Vec::new();
    let _ = sqlparser::ast::visit_expressions(statement, |e| {
        if let Expr::Value(v) = e
            && let Value::Placeholder(p) = &v.value
            && let Some(i) = p.strip_prefix(MARK).and_then(|p| p.strip_suffix(MARK))
        {
            found.push(i.parse().unwrap_or(u64::MAX));
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// The refusal of the hole marker's character in a client's text.
fn control_character() -> ProxyError {
    ProxyError::construct_unsupported("the control character U+0001")
}

/// The refusal of a statement whose printed text reads otherwise.
fn misprinted() -> ProxyError {
    ProxyError::construct_unsupported(
        "this statement (its rewritten text would not read as it was written: a value or \
         name in it is printed otherwise)",
    )
}

/// `text` with each hole marker (`MARK i MARK`) replaced by the parameter
/// `$FIRST_HOLE_PARAM+i`; `None` if a marker is malformed.
fn holes_as_params(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 8);
    let mut parts = text.split(MARK);
    out.push_str(parts.next()?);
    while let Some(index) = parts.next() {
        let i: u64 = index.parse().ok()?;
        out.push('$');
        out.push_str(&FIRST_HOLE_PARAM.checked_add(i)?.to_string());
        out.push_str(parts.next()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(sql: &str) -> Statement {
        super::super::parse(sql).unwrap().remove(0)
    }

    #[test]
    fn faithful_printing_passes() {
        for sql in [
            "SELECT a, 'it''s', E'\\n', \"Q\"\"d\" FROM t WHERE b = $1 AND c::numeric(10, 2) > 1",
            "SELECT * FROM (SELECT * FROM t WHERE tenant_id = 'x') AS t FOR UPDATE",
        ] {
            let s = statement(sql);
            assert!(check(&s, &s.to_string()).is_ok(), "{sql}");
        }
        let marked = format!(
            "SELECT 1 FROM t WHERE c = {}",
            super::super::template::hole_marker(0)
        );
        let mut s = statement("SELECT 1 FROM t WHERE c = $7");
        let _ = visit_expressions_mut(&mut s, |e| {
            if let Expr::Value(v) = e
                && matches!(v.value, Value::Placeholder(_))
            {
                v.value = Value::Placeholder(super::super::template::hole_marker(0));
            }
            ControlFlow::<()>::Continue(())
        });
        assert!(check(&s, &marked).is_ok());
    }

    #[test]
    fn misprinted_values_are_refused() {
        for sql in [
            // A string type modifier is printed without its quotes.
            "SELECT 1::pg_catalog.numeric('10)), (SELECT 2')",
            // A quoted name in OPERATOR() is printed with its quote undoubled.
            "SELECT 1 OPERATOR(\"pg_catalog\"\".+) 2, 3 OPERATOR(\"\"pg_catalog\".+) 4",
            // The value `\'` is printed `'\'`, two quotes in a row as one,
            // in strings, national strings and quoted names alike.
            "SELECT '\\'''",
            "SELECT 'a''''b'",
            "SELECT N'it''s'",
            "SELECT \"\\\"\"\"",
            "SELECT \"a\"\"\"\"b\"",
            // COPY's one-character options are printed between bare quotes.
            "COPY t TO STDOUT (FORMAT csv, QUOTE '''')",
        ] {
            let s = statement(sql);
            assert!(check(&s, &s.to_string()).is_err(), "{sql}: {s}");
        }
    }
}
