//! Whether sqlparser's tokenizer reads a text as Postgres does.
//!
//! A statement that needs no scoping goes to the server as the client wrote
//! it, on the strength of what sqlparser read in it. Where the two read the
//! text differently (where a string, a quoted name or a comment ends, or
//! where a name is), SQL that sqlparser took for the inside of a string or
//! a comment runs unscoped on the server. Every such spot found so far
//! (`|/*` read as one operator, `$€$` as a parameter and a name) came down
//! to the same thing, so the general check is made here, on every text of
//! a tenant session that sqlparser's own tokenizer reads (the fast lexer,
//! `lex.rs`, reads only a subset where the two cannot differ):
//!
//! * the strings, quoted names, dollar quotes and comments, as Postgres
//!   reads them (`frontend::classify::skip_token`), must be exactly those
//!   sqlparser read, each from its opening quote to its end;
//! * the bare words (names and keywords) must be exactly the words
//!   sqlparser read, each with the same start and end;
//! * a number or a parameter may not run into a name (`1abc`, `0x1F`,
//!   `$1abc`): Postgres 15 reads `1abc` as `1 AS abc`, newer versions as an
//!   error or a hexadecimal number; sqlparser as one token.
//!
//! A statement where they differ is refused (0A000): nothing Postgres would
//! run is hidden from the rewriter.

use std::ops::Range;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::ParserError;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::error::ProxyError;
use crate::frontend::classify::{dollar_tag_end, identifier_part, skip_token};

/// sqlparser's tokens of `sql`, after checking that they read `sql` as
/// Postgres does (see the module documentation).
pub(super) fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, ProxyError> {
    let tokens = tokenize_unchecked(sql)?;
    let theirs = sqlparser_reading(sql, &tokens).ok_or_else(|| disagreement(sql, 0))?;
    let ours = postgres_reading(sql)?;
    if let Some(at) = first_difference(&ours, &theirs) {
        return Err(disagreement(sql, at));
    }
    Ok(tokens)
}

/// sqlparser's tokens of `sql`, as they are.
pub(super) fn tokenize_unchecked(sql: &str) -> Result<Vec<TokenWithSpan>, ProxyError> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| ProxyError::unparsable(&ParserError::from(e).to_string()))
}

/// Where a text's words and its opaque pieces (strings, quoted names,
/// dollar quotes, comments) are, as byte ranges in text order.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reading {
    /// Bare words.
    words: Vec<Range<usize>>,
    /// Strings (from their opening quote, after any prefix such as `E`),
    /// quoted names, dollar quotes and comments.
    opaque: Vec<Range<usize>>,
}

/// The refusal, naming the spot where the readings part.
fn disagreement(sql: &str, at: usize) -> ProxyError {
    let from = floor_char_boundary(sql, at);
    let to = floor_char_boundary(sql, from.saturating_add(20).min(sql.len()));
    ProxyError::construct_unsupported(&format!(
        "this statement (its text near \"{}\" reads otherwise to tenantgate's parser than to \
         Postgres; write names, numbers and comments apart, with spaces)",
        &sql[from..to]
    ))
}

/// The largest char boundary at or below `at`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The first byte where the two readings differ, if they do.
fn first_difference(ours: &Reading, theirs: &Reading) -> Option<usize> {
    let first = |a: &[Range<usize>], b: &[Range<usize>]| {
        a.iter()
            .zip(b)
            .find(|(x, y)| x != y)
            .map(|(x, y)| x.start.min(y.start))
            .or_else(|| {
                (a.len() != b.len()).then(|| {
                    let n = a.len().min(b.len());
                    a.get(n).or(b.get(n)).map_or(0, |r| r.start)
                })
            })
    };
    match (
        first(&ours.words, &theirs.words),
        first(&ours.opaque, &theirs.opaque),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What sqlparser read: `None` if a token's place cannot be found in the
/// text (then nothing is assumed).
fn sqlparser_reading(sql: &str, tokens: &[TokenWithSpan]) -> Option<Reading> {
    let mut at = Offsets::new(sql);
    let mut starts = Vec::with_capacity(tokens.len() + 1);
    for t in tokens {
        starts.push(at.byte_of(t.span.start)?);
    }
    starts.push(sql.len());
    let mut r = Reading::default();
    for (t, w) in tokens.iter().zip(starts.windows(2)) {
        let (start, end) = (w[0], w[1]);
        match &t.token {
            Token::Word(word) if word.quote_style.is_none() => r.words.push(start..end),
            Token::Word(_)
            | Token::Whitespace(Whitespace::SingleLineComment { .. })
            | Token::Whitespace(Whitespace::MultiLineComment(_)) => r.opaque.push(start..end),
            t if is_string(t) => {
                // From the opening quote on: `E'…'`, `U&'…'`.
                let text = sql.get(start..end)?;
                let quote = text.find(['\'', '"', '$'])?;
                r.opaque.push(start + quote..end);
            }
            _ => {}
        }
    }
    Some(r)
}

/// Whether a token is a string of any kind.
fn is_string(t: &Token) -> bool {
    matches!(
        t,
        Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}

/// Byte offsets of sqlparser's locations (lines counted by `\n`, columns
/// in characters from 1), for locations in text order.
pub(super) struct Offsets<'a> {
    sql: &'a str,
    line: u64,
    column: u64,
    byte: usize,
}

impl<'a> Offsets<'a> {
    /// Offsets into `sql`, from its start.
    pub(super) fn new(sql: &'a str) -> Offsets<'a> {
        Offsets {
            sql,
            line: 1,
            column: 1,
            byte: 0,
        }
    }

    /// The byte offset of `at`, walking on from the last one asked for
    /// (the end of the text is an offset too).
    pub(super) fn byte_of(&mut self, at: Location) -> Option<usize> {
        while (self.line, self.column) < (at.line, at.column) {
            let c = self.sql.get(self.byte..)?.chars().next()?;
            self.byte += c.len_utf8();
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        ((self.line, self.column) == (at.line, at.column)).then_some(self.byte)
    }
}

/// What Postgres reads, or the refusal of a number or parameter run into a
/// name.
fn postgres_reading(sql: &str) -> Result<Reading, ProxyError> {
    let b = sql.as_bytes();
    let mut r = Reading::default();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match c {
            b'\'' | b'"' => {
                let end = skip_token(b, i);
                r.opaque.push(i..end);
                i = end;
            }
            b'-' if next == Some(b'-') => {
                let end = skip_token(b, i);
                r.opaque.push(i..end);
                i = end;
            }
            b'/' if next == Some(b'*') => {
                let end = skip_token(b, i);
                r.opaque.push(i..end);
                i = end;
            }
            // Not inside a name here (names are read whole below).
            b'$' => {
                if dollar_tag_end(b, i).is_some() {
                    let end = skip_token(b, i);
                    r.opaque.push(i..end);
                    i = end;
                } else {
                    let end = digits_end(b, i + 1);
                    if end > i + 1 && b.get(end).is_some_and(|&c| identifier_part(c)) {
                        return Err(disagreement(sql, i));
                    }
                    i = end.max(i + 1);
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let end = i
                    + 1
                    + b[i + 1..]
                        .iter()
                        .take_while(|&&c| identifier_part(c))
                        .count();
                let word = &b[i..end];
                let prefix = match b.get(end) {
                    // `E'…'`, `X'…'`, `B'…'`, `N'…'`: one string.
                    Some(b'\'') => word.len() == 1 && matches!(c | 0x20, b'e' | b'x' | b'b' | b'n'),
                    // `U&'…'`, `U&"…"`.
                    Some(b'&') => {
                        word.len() == 1
                            && c | 0x20 == b'u'
                            && matches!(b.get(end + 1), Some(b'\'' | b'"'))
                    }
                    _ => false,
                };
                if prefix {
                    i = if b[end] == b'&' { end + 1 } else { end };
                } else {
                    r.words.push(i..end);
                    i = end;
                }
            }
            c if c.is_ascii_digit() || (c == b'.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let end = number_end(b, i);
                if b.get(end).is_some_and(|&c| identifier_part(c)) {
                    return Err(disagreement(sql, i));
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    Ok(r)
}

/// Where the run of ASCII digits from `i` ends.
fn digits_end(b: &[u8], i: usize) -> usize {
    i + b.get(i..).map_or(0, |rest| {
        rest.iter().take_while(|c| c.is_ascii_digit()).count()
    })
}

/// Where the number starting at `i` ends, as Postgres reads numbers:
/// digits, a fraction (`1.5`, `1.`, `.5`; not the `1` of `1..2`), an
/// exponent only with its digits (`1e5`; in `1e` or `1e+` the number is
/// `1`).
fn number_end(b: &[u8], i: usize) -> usize {
    let mut j = digits_end(b, i);
    if b.get(j) == Some(&b'.') && b.get(j + 1) != Some(&b'.') {
        j = digits_end(b, j + 1);
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(b.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        let digits = digits_end(b, k);
        if digits > k {
            j = digits;
        }
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refused by this check (0A000), not for failing to tokenize.
    fn refused(sql: &str) -> bool {
        tokenize(sql).is_err_and(|e| e.code.code() == "0A000")
    }

    #[test]
    fn ordinary_text_reads_alike() {
        for sql in [
            "SELECT * FROM t WHERE a = 'x' -- c\nAND b = E'it\\'s' /* c /* nested */ */",
            "SELECT $$a 'b' c$$, $t$x$t$, $1, x$1, \"Q\"\"d\" FROM t",
            "SELECT U&'d\\0061t' UESCAPE '\\', X'1F', B'101', N'n', e'\\n'",
            "SELECT 1.5, .5, 1e5, 1.5E-3, 1..2, a.b, t.\"c\" FROM s.t",
            "SELECT 'é', \"nämé\", naïve, a\u{a0}b FROM t\r\nWHERE x <> 1 -- tail\r",
            "SELECT a||b, a->>'k', a @> b, x::int FROM t",
            "SELECT 1 -- comment |/* '\n, 2 /* |/* */ */ + 2, a - -1, b --> c",
            "SELECT '|/*', $$ <-- $$, \"a|--b\", a /* c */ - b",
            "SELECT $é$ x $é$, $$ $€$ $$, x$€$, \"$€$\", $tag_1$ a $tag_1$ FROM t",
        ] {
            assert!(tokenize(sql).is_ok(), "{sql}: {:?}", tokenize(sql).err());
        }
    }

    #[test]
    fn text_read_otherwise_is_refused() {
        for sql in [
            // An operator against a comment: sqlparser reads `|/*` as one
            // operator, Postgres `|` and a comment.
            "SELECT 2 |/* x */ 3 FROM t",
            "SELECT 2 |/* ' */ 3, x --'",
            "SELECT 2 |-- '\n 3 --'",
            "SELECT 1 <--1",
            // Two quotes end a bit string (two strings to Postgres, one
            // to sqlparser).
            "SELECT X''', y, X''' FROM t",
            "SELECT b'0''1'",
            // A dollar-quote tag Postgres reads whole, sqlparser not.
            "SELECT $€$ x $€$",
            "SELECT $\u{a0}$ x $\u{a0}$",
            "SELECT $a€b$, '$€$'",
            // Numbers and parameters run into names.
            "SELECT 1abc",
            "SELECT 0x1F",
            "SELECT 1_000",
            "SELECT 1e",
            "SELECT * FROM t WHERE a = $1abc",
        ] {
            assert!(refused(sql), "{sql}: {:?}", tokenize(sql).map(|_| ()));
        }
    }

    #[test]
    fn locations_become_byte_offsets() {
        let sql = "SELECT 'é'\n, \"ü\" -- c\n";
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .unwrap();
        let r = sqlparser_reading(sql, &tokens).unwrap();
        assert_eq!(r.words, vec![0..6]);
        assert_eq!(
            r.opaque.iter().map(|x| &sql[x.clone()]).collect::<Vec<_>>(),
            vec!["'é'", "\"ü\"", "-- c\n"]
        );
        assert_eq!(r, postgres_reading(sql).unwrap());
    }
}
