//! `FOR NO KEY UPDATE` and `FOR KEY SHARE`, the row locks sqlparser does not
//! read (it knows `FOR UPDATE` and `FOR SHARE` only). Hibernate takes
//! `FOR NO KEY UPDATE` for a pessimistic write lock on Postgres, and Django
//! with `select_for_update(no_key=True)`.
//!
//! The statement is parsed with those clauses read as their stronger
//! relatives ([`weaken`] takes the words `NO KEY` and `KEY` out of its
//! tokens), and the rewritten text gets the words back in the same lock
//! clauses ([`restore`]): a rewrite never changes which lock a statement
//! takes.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::error::ProxyError;

/// The strength of one lock clause, in the order the clauses are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strength {
    /// `FOR UPDATE` or `FOR SHARE`, as sqlparser reads them.
    AsRead,
    /// `FOR NO KEY UPDATE`, parsed as `FOR UPDATE`.
    NoKeyUpdate,
    /// `FOR KEY SHARE`, parsed as `FOR SHARE`.
    KeyShare,
}

/// The tokens of `sql` with the weaker lock clauses spelled as sqlparser
/// reads them, and every lock clause's strength; `None` when `sql` has no
/// such clause (or does not tokenize: the parser then reports it).
pub(super) fn weaken(sql: &str) -> Option<(Vec<TokenWithSpan>, Vec<Strength>)> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let mut strengths = Vec::new();
    let mut drop = vec![false; tokens.len()];
    for (i, t) in tokens.iter().enumerate() {
        if !is_keyword(&t.token, Keyword::FOR) {
            continue;
        }
        let words = next_words(&tokens, i, 3);
        let kw = |n: usize, k: Keyword| {
            words
                .get(n)
                .is_some_and(|&j| is_keyword(&tokens[j].token, k))
        };
        if kw(0, Keyword::NO) && kw(1, Keyword::KEY) && kw(2, Keyword::UPDATE) {
            strengths.push(Strength::NoKeyUpdate);
            // `NO`, `KEY` and the whitespace after each.
            mark(&mut drop, words[0]..words[2]);
        } else if kw(0, Keyword::KEY) && kw(1, Keyword::SHARE) {
            strengths.push(Strength::KeyShare);
            mark(&mut drop, words[0]..words[1]);
        } else if kw(0, Keyword::UPDATE) || kw(0, Keyword::SHARE) {
            strengths.push(Strength::AsRead);
        }
    }
    if strengths.iter().all(|s| *s == Strength::AsRead) {
        return None;
    }
    let kept = tokens
        .into_iter()
        .zip(drop)
        .filter_map(|(t, d)| (!d).then_some(t))
        .collect();
    Some((kept, strengths))
}

/// `out` (the rewritten statement as sqlparser prints it) with each lock
/// clause given back its strength. Refused if the clauses printed are not
/// the ones read (the lock taken must be the one written).
pub(super) fn restore(out: &str, strengths: &[Strength]) -> Result<String, ProxyError> {
    let unsure = || ProxyError::construct_unsupported("this row lock clause");
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, out)
        .tokenize_with_location()
        .map_err(|_| unsure())?;
    let mut inserts = Vec::new();
    let mut clause = 0;
    for (i, t) in tokens.iter().enumerate() {
        if !is_keyword(&t.token, Keyword::FOR) {
            continue;
        }
        let Some(&j) = next_words(&tokens, i, 1).first() else {
            continue;
        };
        let weaker = if is_keyword(&tokens[j].token, Keyword::UPDATE) {
            (Strength::NoKeyUpdate, "NO KEY ")
        } else if is_keyword(&tokens[j].token, Keyword::SHARE) {
            (Strength::KeyShare, "KEY ")
        } else {
            continue;
        };
        let written = *strengths.get(clause).ok_or_else(unsure)?;
        if written == weaker.0 {
            inserts.push((
                byte_offset(out, tokens[j].span.start).ok_or_else(unsure)?,
                weaker.1,
            ));
        } else if written != Strength::AsRead {
            return Err(unsure());
        }
        clause += 1;
    }
    if clause != strengths.len() {
        return Err(unsure());
    }
    let mut text = String::with_capacity(out.len() + 8 * inserts.len());
    let mut from = 0;
    for (at, words) in inserts {
        text.push_str(&out[from..at]);
        text.push_str(words);
        from = at;
    }
    text.push_str(&out[from..]);
    Ok(text)
}

/// The byte offset of a token's location (lines and columns count from 1,
/// columns in characters).
fn byte_offset(text: &str, at: sqlparser::tokenizer::Location) -> Option<usize> {
    let line_start = if at.line <= 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(usize::try_from(at.line - 2).ok()?)
            .map(|(i, _)| i + 1)?
    };
    let col = usize::try_from(at.column.checked_sub(1)?).ok()?;
    text[line_start..]
        .char_indices()
        .nth(col)
        .map(|(i, _)| line_start + i)
}

/// The indexes of the next `n` tokens after `i` that are not whitespace
/// (comments included).
fn next_words(tokens: &[TokenWithSpan], i: usize, n: usize) -> Vec<usize> {
    (i + 1..tokens.len())
        .filter(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
        .take(n)
        .collect()
}

/// Marks the tokens in `range` to be dropped.
fn mark(drop: &mut [bool], range: std::ops::Range<usize>) {
    for d in &mut drop[range] {
        *d = true;
    }
}

fn is_keyword(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(w) if w.keyword == k && w.quote_style.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the parser reads, printed back as it is written, then restored.
    fn round_trip(sql: &str) -> String {
        let (tokens, strengths) = weaken(sql).expect("a weaker lock clause");
        let weakened: String = tokens
            .iter()
            .map(|t| match &t.token {
                Token::SingleQuotedString(s) => format!("'{}'", s.replace('\'', "''")),
                other => other.to_string(),
            })
            .collect();
        restore(&weakened, &strengths).expect("restored")
    }

    #[test]
    fn weaker_lock_clauses_are_read_and_given_back() {
        assert_eq!(
            round_trip("SELECT * FROM t FOR NO KEY UPDATE"),
            "SELECT * FROM t FOR NO KEY UPDATE"
        );
        assert_eq!(
            round_trip("select 1 from t for update of t for key share of u nowait"),
            "select 1 from t for update of t for KEY share of u nowait"
        );
        assert_eq!(
            round_trip(
                "SELECT 'it''s for no key update' FROM t FOR  no /* x */ key UPDATE SKIP LOCKED"
            ),
            "SELECT 'it''s for no key update' FROM t FOR  NO KEY UPDATE SKIP LOCKED"
        );
        assert!(weaken("SELECT * FROM t FOR UPDATE").is_none());
        assert!(weaken("SELECT 'for key share' FROM t").is_none());
    }

    #[test]
    fn clauses_printed_otherwise_are_refused() {
        let strengths = [Strength::NoKeyUpdate];
        assert!(restore("SELECT * FROM t", &strengths).is_err());
        assert!(restore("SELECT * FROM t FOR SHARE", &strengths).is_err());
        assert!(restore("SELECT * FROM t FOR UPDATE FOR UPDATE", &strengths).is_err());
    }
}
