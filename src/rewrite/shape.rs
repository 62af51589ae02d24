//! Statement shapes: a statement's text with its number literals taken out.
//!
//! Applications that write values into their SQL (pgbench `-M simple`, many
//! ORMs, psycopg2) send the same statement with other numbers again and
//! again. Keyed by text, every one of them would be parsed and rewritten
//! anew. Keyed by shape, one rewrite serves them all: a [`ShapeTemplate`] is
//! the rewrite of the shape, with a slot where each literal goes, and each
//! statement fills the slots with its own numbers.
//!
//! A shape is used only where it is shown to give what the text path gives
//! ([`ShapeTemplate::build`]): the literals are found by the fast lexer,
//! which reads exactly as sqlparser does or not at all; the shape is
//! rewritten with stand-in numbers, and its template must place each
//! stand-in exactly once, carry the same holes and tenant checks as the
//! statement's own rewrite (a number written into the tenant column becomes
//! a check, so such a statement never gets a shape), and, filled with the
//! statement's numbers, reproduce that rewrite byte for byte; filled with
//! zeros, it must reproduce the rewrite of the statement with every number
//! 0 too (decisions that depend on a number's size, such as whether
//! `LIMIT n` lets a subquery return several rows, then agree at both ends).

use std::ops::Range;
use std::sync::Arc;

use super::template::{MARK, Template};
use super::{RewriteRules, Rewritten, lex};
use crate::error::ProxyError;

/// Stand-in numbers start with these digits, followed by the slot number in
/// [`SLOT_DIGITS`] digits. A statement that contains them gets no shape.
const STAND_IN_PREFIX: &str = "4721950386";
/// Digits of the slot number in a stand-in.
const SLOT_DIGITS: usize = 6;
/// Most literals a shape may have (slot numbers must fit their digits).
const MAX_SLOTS: usize = 999_999;

/// Byte ranges of the number literals in `sql`, in order, as sqlparser
/// reads them; `None` when there are none, or when the fast lexer cannot
/// vouch for its reading of the text (comments, escapes, exponents, …).
pub(crate) fn number_literals(sql: &str) -> Option<Vec<Range<usize>>> {
    // Too long a text is refused by the text path, never filled in.
    if sql.len() > super::MAX_STATEMENT_BYTES || !sql.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let out = lex::number_spans(sql)?;
    (!out.is_empty() && out.len() <= MAX_SLOTS).then_some(out)
}

/// The shape's cache key: `sql` with each literal replaced by the hole
/// marker, which client text never contains (it is refused, and the lexer
/// does not accept it).
pub(crate) fn key_text(sql: &str, literals: &[Range<usize>]) -> Box<str> {
    // Exactly as long as the key, so boxing it does not reallocate.
    let numbers: usize = literals.iter().map(|r| r.len()).sum();
    let len = sql.len() - numbers + literals.len() * MARK.len_utf8();
    fill(sql, literals, len, |_, out| out.push(MARK)).into_boxed_str()
}

/// `sql` with literal `i` replaced by what `with(i, out)` writes, in a
/// string of `capacity` bytes to begin with.
fn fill(
    sql: &str,
    literals: &[Range<usize>],
    capacity: usize,
    with: impl Fn(usize, &mut String),
) -> String {
    let mut out = String::with_capacity(capacity);
    let mut at = 0;
    for (i, r) in literals.iter().enumerate() {
        out.push_str(&sql[at..r.start]);
        with(i, &mut out);
        at = r.end;
    }
    out.push_str(&sql[at..]);
    out
}

/// Writes the stand-in number for slot `i`.
fn stand_in(i: usize, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(out, "{STAND_IN_PREFIX}{i:0width$}", width = SLOT_DIGITS);
}

/// Part of a template segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text as printed.
    Text(String),
    /// The statement's literal number `i`, as it wrote it.
    Literal(usize),
}

/// The rewrite of a shape, from which each statement of that shape gets its
/// own rewrite without parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShapeTemplate {
    /// Every statement of the shape is forwarded as sent.
    Unchanged,
    /// Every statement of the shape becomes `holes` with these segments.
    Template {
        /// Holes, casts, parameters and checks (the same for the shape).
        holes: Arc<Template>,
        /// Each segment of the template, as text and literal slots.
        segments: Vec<Vec<Piece>>,
    },
}

impl ShapeTemplate {
    /// The shape of `sql` (literals at `literals`), given `outcome`, the text
    /// path's rewrite of `sql` under `rules`; `None` when the shape cannot
    /// be shown to give the same result for this statement.
    pub(crate) fn build(
        sql: &str,
        literals: &[Range<usize>],
        outcome: &Result<Rewritten, ProxyError>,
        rules: &RewriteRules<'_>,
    ) -> Option<ShapeTemplate> {
        let Ok(actual) = outcome else {
            return None;
        };
        if sql.contains(STAND_IN_PREFIX) {
            return None;
        }
        let stand_ins = literals.len() * (STAND_IN_PREFIX.len() + SLOT_DIGITS);
        let probe_sql = fill(sql, literals, sql.len() + stand_ins, stand_in);
        let probe = super::rewrite(&probe_sql, rules).ok()?;
        let shape = match (actual, &probe) {
            (Rewritten::Unchanged, Rewritten::Unchanged) => ShapeTemplate::Unchanged,
            (Rewritten::Template(a), Rewritten::Template(p)) if a.same_holes(p) => {
                let mut seen = vec![0usize; literals.len()];
                let segments = p
                    .segments()
                    .iter()
                    .map(|s| pieces(s, &mut seen))
                    .collect::<Option<Vec<_>>>()?;
                if seen.iter().any(|&n| n != 1) {
                    return None;
                }
                ShapeTemplate::Template {
                    holes: p.clone(),
                    segments,
                }
            }
            _ => return None,
        };
        if shape.instance(sql, literals).as_ref() != Some(actual) {
            return None;
        }
        // Some decisions depend on a number's size (a subquery with `LIMIT
        // 1` returns one row at most and needs no fence; with `LIMIT 5` it
        // does): the stand-ins are the largest numbers, so the shape must
        // also give what the text path gives with every number 0, or it
        // would answer a statement of other numbers otherwise than its text.
        let zeros = fill(sql, literals, sql.len(), |_, out| out.push('0'));
        let zero_literals = number_literals(&zeros)?;
        let zero = super::rewrite(&zeros, rules).ok()?;
        (zero_literals.len() == literals.len()
            && shape.instance(&zeros, &zero_literals).as_ref() == Some(&zero))
        .then_some(shape)
    }

    /// The rewrite of `sql`, a statement of this shape with its literals at
    /// `literals`; `None` if they do not fit (not the same shape).
    pub(crate) fn instance(&self, sql: &str, literals: &[Range<usize>]) -> Option<Rewritten> {
        let ShapeTemplate::Template { holes, segments } = self else {
            return Some(Rewritten::Unchanged);
        };
        let mut filled = Vec::with_capacity(segments.len());
        for seg in segments {
            let len = seg
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => t.len(),
                    Piece::Literal(i) => literals.get(*i).map_or(0, |r| r.len()),
                })
                .sum();
            let mut text = String::with_capacity(len);
            for piece in seg {
                match piece {
                    Piece::Text(t) => text.push_str(t),
                    Piece::Literal(i) => text.push_str(sql.get(literals.get(*i)?.clone())?),
                }
            }
            filled.push(text);
        }
        Some(Rewritten::Template(Arc::new(holes.with_segments(filled))))
    }

    /// Approximate bytes held, for the cache bound.
    pub(crate) fn size(&self) -> usize {
        match self {
            ShapeTemplate::Unchanged => 16,
            ShapeTemplate::Template { holes, segments } => {
                holes.size()
                    + segments
                        .iter()
                        .flatten()
                        .map(|p| match p {
                            Piece::Text(t) => t.len() + 32,
                            Piece::Literal(_) => 32,
                        })
                        .sum::<usize>()
            }
        }
    }
}

/// `segment` cut at the stand-ins it holds, counting each slot in `seen`;
/// `None` at anything that starts like a stand-in but is not one.
fn pieces(segment: &str, seen: &mut [usize]) -> Option<Vec<Piece>> {
    let mut out = Vec::new();
    let b = segment.as_bytes();
    let mut at = 0;
    while let Some(found) = segment[at..].find(STAND_IN_PREFIX) {
        let start = at + found;
        let digits = start + STAND_IN_PREFIX.len();
        let end = digits + SLOT_DIGITS;
        let slot = segment.get(digits..end)?;
        if !slot.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let slot: usize = slot.parse().ok()?;
        let digit_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
        if (start > 0 && digit_at(start - 1)) || digit_at(end) {
            return None;
        }
        *seen.get_mut(slot)? += 1;
        out.push(Piece::Text(segment[at..start].to_string()));
        out.push(Piece::Literal(slot));
        at = end;
    }
    out.push(Piece::Text(segment[at..].to_string()));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literals(sql: &str) -> Option<Vec<&str>> {
        number_literals(sql).map(|v| v.into_iter().map(|r| &sql[r]).collect())
    }

    #[test]
    fn finds_the_numbers_sqlparser_reads() {
        assert_eq!(
            literals("SELECT abalance FROM pgbench_accounts WHERE aid = 4217;"),
            Some(vec!["4217"])
        );
        // Digits in names, parameters and strings are not literals; decimals are.
        assert_eq!(
            literals("SELECT t1.c2, \"x9\", '42' FROM t1 WHERE a = $1 AND b IN (1.5, 20)\nLIMIT 3"),
            Some(vec!["1.5", "20", "3"])
        );
        assert_eq!(literals("SELECT a FROM t"), None);
        assert_eq!(literals("SELECT a FROM t1 WHERE b = $2"), None);
        // What the fast lexer does not read (comments, exponents), no shape.
        assert_eq!(literals("SELECT 1 -- one"), None);
        assert_eq!(literals("SELECT 1e5"), None);
        assert_eq!(literals("SELECT 0x1F"), None);
        // Longer than a statement may be: the text path refuses it.
        let long = format!("SELECT {}", "1".repeat(super::super::MAX_STATEMENT_BYTES));
        assert_eq!(number_literals(&long), None);
    }

    #[test]
    fn keys_mark_each_literal() {
        let sql = "UPDATE t SET a = 10 WHERE id = 7";
        let lits = number_literals(sql).unwrap_or_default();
        assert_eq!(
            &*key_text(sql, &lits),
            "UPDATE t SET a = \u{1} WHERE id = \u{1}"
        );
        let other = "UPDATE t SET a = 123456 WHERE id = 0";
        let other_lits = number_literals(other).unwrap_or_default();
        assert_eq!(key_text(sql, &lits), key_text(other, &other_lits));
    }

    #[test]
    fn cuts_segments_at_stand_ins_only() {
        let mut s = String::from("x = ");
        stand_in(1, &mut s);
        s.push_str(" AND y = ");
        stand_in(0, &mut s);
        let mut seen = vec![0; 2];
        let p = pieces(&s, &mut seen);
        assert_eq!(
            p,
            Some(vec![
                Piece::Text("x = ".into()),
                Piece::Literal(1),
                Piece::Text(" AND y = ".into()),
                Piece::Literal(0),
                Piece::Text(String::new()),
            ])
        );
        assert_eq!(seen, vec![1, 1]);
        // Longer digit runs, or a slot out of range, are not stand-ins.
        let mut longer = String::from("x = 1");
        stand_in(0, &mut longer);
        let mut seen = vec![0; 2];
        assert_eq!(pieces(&longer, &mut seen), None);
        let mut seen = vec![0; 2];
        assert_eq!(pieces(&format!("{s}5"), &mut seen), None);
        let mut seen = vec![0; 1];
        assert_eq!(pieces(&s, &mut seen), None);
    }
}
