//! `FOR NO KEY UPDATE` and `FOR KEY SHARE`, the row locks sqlparser does not
//! read (it knows `FOR UPDATE` and `FOR SHARE` only). Hibernate takes
//! `FOR NO KEY UPDATE` for a pessimistic write lock on Postgres, and Django
//! with `select_for_update(no_key=True)`.
//!
//! sqlparser also reads one relation after `OF` (`FOR UPDATE OF a, b`,
//! as Django's `select_for_update(of=…)` writes, is a syntax error to it).
//!
//! The statement is parsed with those clauses as sqlparser reads them
//! ([`weaken`] takes the words `NO KEY` and `KEY`, and the relations after
//! the first of an `OF` list, out of its tokens), and the rewritten text
//! gets them back in the same lock clauses ([`restore`]): a rewrite never
//! changes which lock a statement takes, nor on which relations.

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

/// One lock clause as written: its strength, and the relations its `OF`
/// names after the first (sqlparser reads one), as written from their comma.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Clause {
    /// The lock's strength.
    pub(super) strength: Strength,
    /// `, b, c` of `OF a, b, c`; empty for one relation or none.
    pub(super) more_of: String,
}

/// The tokens of `sql` (`tokens`, as read) with its lock clauses spelled as
/// sqlparser reads them, and every lock clause as written; `None` when
/// every clause reads as written.
pub(super) fn weaken(
    sql: &str,
    tokens: &[TokenWithSpan],
) -> Option<(Vec<TokenWithSpan>, Vec<Clause>)> {
    let mut clauses = Vec::new();
    let mut drop = vec![false; tokens.len()];
    for (i, t) in tokens.iter().enumerate() {
        if !is_keyword(&t.token, Keyword::FOR) {
            continue;
        }
        let words = next_words(tokens, i, 3);
        let kw = |n: usize, k: Keyword| {
            words
                .get(n)
                .is_some_and(|&j| is_keyword(&tokens[j].token, k))
        };
        let (strength, last) =
            if kw(0, Keyword::NO) && kw(1, Keyword::KEY) && kw(2, Keyword::UPDATE) {
                // `NO`, `KEY` and the whitespace after each.
                mark(&mut drop, words[0]..words[2]);
                (Strength::NoKeyUpdate, words[2])
            } else if kw(0, Keyword::KEY) && kw(1, Keyword::SHARE) {
                mark(&mut drop, words[0]..words[1]);
                (Strength::KeyShare, words[1])
            } else if kw(0, Keyword::UPDATE) || kw(0, Keyword::SHARE) {
                (Strength::AsRead, words[0])
            } else {
                continue;
            };
        let mut more_of = String::new();
        if let Some(first) = of_list(tokens, last) {
            let mut end = name_end(tokens, first);
            let mut from = None;
            while let Some(&comma) = next_words(tokens, end, 1).first()
                && matches!(tokens[comma].token, Token::Comma)
                && let Some(&name) = next_words(tokens, comma, 1).first()
                && matches!(tokens[name].token, Token::Word(_))
            {
                from.get_or_insert(end + 1);
                end = name_end(tokens, name);
            }
            if let Some(from) = from {
                mark(&mut drop, from..end + 1);
                let start =
                    super::token_agreement::Offsets::new(sql).byte_of(tokens[from].span.start)?;
                let stop = super::token_agreement::Offsets::new(sql)
                    .byte_of(tokens[end].span.end)
                    .unwrap_or(sql.len());
                more_of = sql.get(start..stop)?.to_string();
            }
        }
        clauses.push(Clause { strength, more_of });
    }
    if clauses
        .iter()
        .all(|c| c.strength == Strength::AsRead && c.more_of.is_empty())
    {
        return None;
    }
    let kept = tokens
        .iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(t, _)| t.clone())
        .collect();
    Some((kept, clauses))
}

/// `out` (the rewritten statement as sqlparser prints it) with each lock
/// clause given back its strength and its `OF` list. Refused if the clauses
/// printed are not the ones read (the lock taken must be the one written).
pub(super) fn restore(out: &str, clauses: &[Clause]) -> Result<String, ProxyError> {
    let unsure = || ProxyError::construct_unsupported("this row lock clause");
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, out)
        .tokenize_with_location()
        .map_err(|_| unsure())?;
    let mut inserts: Vec<(usize, &str)> = Vec::new();
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
        let written = clauses.get(clause).ok_or_else(unsure)?;
        if written.strength == weaker.0 {
            inserts.push((
                super::token_agreement::Offsets::new(out)
                    .byte_of(tokens[j].span.start)
                    .ok_or_else(unsure)?,
                weaker.1,
            ));
        } else if written.strength != Strength::AsRead {
            return Err(unsure());
        }
        if !written.more_of.is_empty() {
            let first = of_list(&tokens, j).ok_or_else(unsure)?;
            let end = name_end(&tokens, first);
            let at = super::token_agreement::Offsets::new(out)
                .byte_of(tokens[end].span.end)
                .unwrap_or(out.len());
            inserts.push((at, &written.more_of));
        }
        clause += 1;
    }
    if clause != clauses.len() {
        return Err(unsure());
    }
    let mut text = String::with_capacity(out.len() + 16 * inserts.len());
    let mut from = 0;
    for (at, words) in inserts {
        text.push_str(out.get(from..at).ok_or_else(unsure)?);
        text.push_str(words);
        from = at;
    }
    text.push_str(out.get(from..).ok_or_else(unsure)?);
    Ok(text)
}

/// The first token of the relation named after `OF`, when the lock word at
/// `strength` is followed by one.
fn of_list(tokens: &[TokenWithSpan], strength: usize) -> Option<usize> {
    let words = next_words(tokens, strength, 2);
    match words.as_slice() {
        [of, name]
            if is_keyword(&tokens[*of].token, Keyword::OF)
                && matches!(tokens[*name].token, Token::Word(_)) =>
        {
            Some(*name)
        }
        _ => None,
    }
}

/// The last token of a name starting at `first` (`a`, `s.a`, `"S"."a"`).
fn name_end(tokens: &[TokenWithSpan], first: usize) -> usize {
    let mut end = first;
    while matches!(tokens.get(end + 1).map(|t| &t.token), Some(Token::Period))
        && matches!(tokens.get(end + 2).map(|t| &t.token), Some(Token::Word(_)))
    {
        end += 2;
    }
    end
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

    /// `weaken` of `sql` as sqlparser tokenizes it.
    fn weaken_text(sql: &str) -> Option<(Vec<TokenWithSpan>, Vec<Clause>)> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .unwrap();
        weaken(sql, &tokens)
    }

    /// What the parser reads, printed back as it is written, then restored.
    fn round_trip(sql: &str) -> String {
        let (tokens, clauses) = weaken_text(sql).expect("a clause to give back");
        let weakened: String = tokens
            .iter()
            .map(|t| match &t.token {
                Token::SingleQuotedString(s) => format!("'{}'", s.replace('\'', "''")),
                other => other.to_string(),
            })
            .collect();
        restore(&weakened, &clauses).expect("restored")
    }

    #[test]
    fn lock_clauses_are_read_and_given_back() {
        for (sql, back) in [
            (
                "SELECT * FROM t FOR NO KEY UPDATE",
                "SELECT * FROM t FOR NO KEY UPDATE",
            ),
            (
                "select 1 from t for update of t for key share of u nowait",
                "select 1 from t for update of t for KEY share of u nowait",
            ),
            (
                "SELECT 'it''s for no key update' FROM t FOR  no /* x */ key UPDATE SKIP LOCKED",
                "SELECT 'it''s for no key update' FROM t FOR  NO KEY UPDATE SKIP LOCKED",
            ),
            (
                "SELECT 'é\n' FROM t\nFOR NO KEY UPDATE",
                "SELECT 'é\n' FROM t\nFOR NO KEY UPDATE",
            ),
            (
                "SELECT * FROM a, b, c FOR UPDATE OF a, s.b,\"C\" NOWAIT",
                "SELECT * FROM a, b, c FOR UPDATE OF a, s.b,\"C\" NOWAIT",
            ),
            (
                "SELECT * FROM a, b FOR NO KEY UPDATE OF a, b FOR SHARE OF c",
                "SELECT * FROM a, b FOR NO KEY UPDATE OF a, b FOR SHARE OF c",
            ),
        ] {
            assert_eq!(round_trip(sql), back);
        }
        assert!(weaken_text("SELECT * FROM t FOR UPDATE").is_none());
        assert!(weaken_text("SELECT * FROM t FOR UPDATE OF t").is_none());
        assert!(weaken_text("SELECT 'for key share' FROM t").is_none());
    }

    #[test]
    fn clauses_printed_otherwise_are_refused() {
        let clauses = [Clause {
            strength: Strength::NoKeyUpdate,
            more_of: String::new(),
        }];
        assert!(restore("SELECT * FROM t", &clauses).is_err());
        assert!(restore("SELECT * FROM t FOR SHARE", &clauses).is_err());
        assert!(restore("SELECT * FROM t FOR UPDATE FOR UPDATE", &clauses).is_err());
        let listed = [Clause {
            strength: Strength::AsRead,
            more_of: ", b".into(),
        }];
        assert!(restore("SELECT * FROM t FOR UPDATE", &listed).is_err());
    }
}
