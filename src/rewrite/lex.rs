//! A fast lexer for the plain SQL of typical OLTP statements. sqlparser's
//! own tokenizer is about half of the time it takes to parse such a
//! statement (it walks a char iterator, allocates twice per word and looks
//! each word up in the keyword list through an upper-cased copy).
//!
//! [`tokenize`] produces exactly the tokens (and spans) sqlparser's
//! tokenizer produces for the PostgreSQL dialect, but only for a small,
//! unambiguous subset of SQL: ASCII words, quoted identifiers and strings
//! without escapes, integers and simple decimals, `$n`, and the common
//! punctuation and comparison operators. At anything else (comments,
//! escapes, other operators, non-ASCII text, …) it gives up and the caller
//! uses sqlparser's tokenizer, so nothing it does not know is guessed.
//! The tests compare the two token for token.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

use sqlparser::keywords::{ALL_KEYWORDS, ALL_KEYWORDS_INDEX, Keyword};
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Whitespace, Word};

/// Longest keyword sqlparser knows is far shorter (checked in the tests).
const MAX_KEYWORD: usize = 64;

/// The tokens of `sql`, or `None` when it uses anything outside the subset.
pub(crate) fn tokenize(sql: &str) -> Option<Vec<TokenWithSpan>> {
    let mut out = Vec::with_capacity(sql.len() / 3 + 4);
    let (mut line, mut col) = (1u64, 1u64);
    scan(sql, |lexeme, range| {
        let start = Location::new(line, col);
        // Only a newline ends a line: no other lexeme spans lines (strings
        // with newlines are refused).
        if matches!(lexeme, Lexeme::Fixed(Fixed::Newline)) {
            line += 1;
            col = 1;
        } else {
            col += range.len() as u64;
        }
        let span = Span::new(start, Location::new(line, col));
        out.push(TokenWithSpan::new(lexeme.into_token(&sql[range]), span));
    })?;
    Some(out)
}

/// Byte ranges of the number literals of `sql`, in order, read exactly as
/// [`tokenize`] (and so sqlparser) reads them, or `None` when it uses
/// anything outside the subset. Allocates nothing but the answer.
pub(crate) fn number_spans(sql: &str) -> Option<Vec<Range<usize>>> {
    let mut out = Vec::new();
    scan(sql, |lexeme, range| {
        if matches!(lexeme, Lexeme::Number) {
            out.push(range);
        }
    })?;
    Some(out)
}

/// What the scanner found, before anything is allocated for it.
#[derive(Clone, Copy)]
enum Lexeme {
    /// A token that owns no text (punctuation, whitespace).
    Fixed(Fixed),
    /// An unquoted word.
    Word,
    /// A double-quoted identifier (the range includes the quotes).
    QuotedWord,
    /// An unsigned number.
    Number,
    /// `$n`.
    Placeholder,
    /// A single-quoted string (the range includes the quotes).
    String,
}

/// The tokens that own no text, as the scanner names them (building the
/// token itself is left to [`tokenize`]).
#[derive(Clone, Copy)]
enum Fixed {
    Space,
    Tab,
    Newline,
    LParen,
    RParen,
    Comma,
    SemiColon,
    LBracket,
    RBracket,
    Mul,
    Plus,
    Period,
    DoubleColon,
    Neq,
    Eq,
    Minus,
    Div,
    Lt,
    Gt,
    LtEq,
    GtEq,
}

impl Fixed {
    /// sqlparser's token.
    fn token(self) -> Token {
        match self {
            Fixed::Space => Token::Whitespace(Whitespace::Space),
            Fixed::Tab => Token::Whitespace(Whitespace::Tab),
            Fixed::Newline => Token::Whitespace(Whitespace::Newline),
            Fixed::LParen => Token::LParen,
            Fixed::RParen => Token::RParen,
            Fixed::Comma => Token::Comma,
            Fixed::SemiColon => Token::SemiColon,
            Fixed::LBracket => Token::LBracket,
            Fixed::RBracket => Token::RBracket,
            Fixed::Mul => Token::Mul,
            Fixed::Plus => Token::Plus,
            Fixed::Period => Token::Period,
            Fixed::DoubleColon => Token::DoubleColon,
            Fixed::Neq => Token::Neq,
            Fixed::Eq => Token::Eq,
            Fixed::Minus => Token::Minus,
            Fixed::Div => Token::Div,
            Fixed::Lt => Token::Lt,
            Fixed::Gt => Token::Gt,
            Fixed::LtEq => Token::LtEq,
            Fixed::GtEq => Token::GtEq,
        }
    }
}

impl Lexeme {
    /// The token, given the text the lexeme spans.
    fn into_token(self, text: &str) -> Token {
        let inner = || {
            text.get(1..text.len().saturating_sub(1))
                .unwrap_or_default()
        };
        match self {
            Lexeme::Fixed(f) => f.token(),
            Lexeme::Word => word(text),
            Lexeme::QuotedWord => Token::Word(Word {
                value: inner().to_string(),
                quote_style: Some('"'),
                keyword: Keyword::NoKeyword,
            }),
            Lexeme::Number => Token::Number(text.to_string(), false),
            Lexeme::Placeholder => Token::Placeholder(text.to_string()),
            Lexeme::String => Token::SingleQuotedString(inner().to_string()),
        }
    }
}

/// Walks `sql`, handing each lexeme and its byte range to `emit`; `None`
/// (at once) when the text uses anything outside the subset.
fn scan(sql: &str, mut emit: impl FnMut(Lexeme, Range<usize>)) -> Option<()> {
    if !sql.is_ascii() {
        return None;
    }
    let b = sql.as_bytes();
    let mut i = 0usize;
    while i < b.len() {
        let start = i;
        let next = b.get(i + 1).copied();
        let (lexeme, len) = match b[i] {
            b' ' => (Lexeme::Fixed(Fixed::Space), 1),
            b'\t' => (Lexeme::Fixed(Fixed::Tab), 1),
            b'\n' => (Lexeme::Fixed(Fixed::Newline), 1),
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let end = run_end(b, i + 1, WORD_PART);
                // `e'…'`, `x'…'`, `u&'…'` and the like are strings.
                if matches!(b.get(end), Some(b'\'' | b'"' | b'&')) {
                    return None;
                }
                (Lexeme::Word, end - i)
            }
            b'0'..=b'9' => {
                let mut end = run_end(b, i, DIGIT);
                if b.get(end) == Some(&b'.') {
                    end += 1;
                    end = run_end(b, end, DIGIT);
                }
                // Exponents, `0x…`, `1_000`, a second period: not here.
                if b.get(end).is_some_and(|&c| word_part(c) || c == b'.') {
                    return None;
                }
                (Lexeme::Number, end - i)
            }
            b'$' => {
                let end = run_end(b, i + 1, DIGIT);
                let digits = end - (i + 1);
                if digits == 0 || b.get(end).is_some_and(|&c| word_part(c)) {
                    return None;
                }
                (Lexeme::Placeholder, end - i)
            }
            b'\'' => {
                // After another string and a line break, Postgres goes on
                // with that string (`'a'⏎'b'` is `'ab'`).
                let gap = b[..i]
                    .iter()
                    .rev()
                    .take_while(|&&c| matches!(c, b' ' | b'\t' | b'\n'))
                    .count();
                if b[..i - gap].ends_with(b"'") && b[i - gap..i].contains(&b'\n') {
                    return None;
                }
                let len = b[i + 1..].iter().position(|&c| c == b'\'')?;
                let body = &b[i + 1..i + 1 + len];
                let end = i + len + 2;
                if body.iter().any(|&c| c == b'\\' || c == b'\n' || c == b'\r')
                    || b.get(end) == Some(&b'\'')
                {
                    return None;
                }
                (Lexeme::String, end - i)
            }
            b'"' => {
                let len = b[i + 1..].iter().position(|&c| c == b'"')?;
                let body = &b[i + 1..i + 1 + len];
                let end = i + len + 2;
                if len == 0
                    || body.iter().any(|&c| c == b'\n' || c == b'\r')
                    || b.get(end) == Some(&b'"')
                {
                    return None;
                }
                (Lexeme::QuotedWord, end - i)
            }
            b'(' => (Lexeme::Fixed(Fixed::LParen), 1),
            b')' => (Lexeme::Fixed(Fixed::RParen), 1),
            b',' => (Lexeme::Fixed(Fixed::Comma), 1),
            b';' => (Lexeme::Fixed(Fixed::SemiColon), 1),
            b'[' => (Lexeme::Fixed(Fixed::LBracket), 1),
            b']' => (Lexeme::Fixed(Fixed::RBracket), 1),
            b'*' => (Lexeme::Fixed(Fixed::Mul), 1),
            b'+' => (Lexeme::Fixed(Fixed::Plus), 1),
            // A period not starting a number.
            b'.' if next.is_some_and(|c| c.is_ascii_alphabetic() || c == b'"' || c == b'*') => {
                (Lexeme::Fixed(Fixed::Period), 1)
            }
            b':' if next == Some(b':') => (Lexeme::Fixed(Fixed::DoubleColon), 2),
            b'!' if next == Some(b'=') => (Lexeme::Fixed(Fixed::Neq), 2),
            b'=' if operand_follows(next) => (Lexeme::Fixed(Fixed::Eq), 1),
            b'-' if operand_follows(next) => (Lexeme::Fixed(Fixed::Minus), 1),
            b'/' if operand_follows(next) => (Lexeme::Fixed(Fixed::Div), 1),
            b'<' if operand_follows(next) => (Lexeme::Fixed(Fixed::Lt), 1),
            b'>' if operand_follows(next) => (Lexeme::Fixed(Fixed::Gt), 1),
            b'<' if next == Some(b'=') && operand_follows(b.get(i + 2).copied()) => {
                (Lexeme::Fixed(Fixed::LtEq), 2)
            }
            b'<' if next == Some(b'>') && operand_follows(b.get(i + 2).copied()) => {
                (Lexeme::Fixed(Fixed::Neq), 2)
            }
            b'>' if next == Some(b'=') && operand_follows(b.get(i + 2).copied()) => {
                (Lexeme::Fixed(Fixed::GtEq), 2)
            }
            _ => return None,
        };
        i = start + len;
        emit(lexeme, start..i);
    }
    Some(())
}

/// A character of an unquoted identifier after the first (PostgreSQL
/// dialect, ASCII).
fn word_part(c: u8) -> bool {
    CLASSES[c as usize] & WORD_PART != 0
}

/// Class bit of the characters of an unquoted identifier after the first.
const WORD_PART: u8 = 1;
/// Class bit of the ASCII digits.
const DIGIT: u8 = 2;

/// Class bits by byte: a table lookup per character in the loops over
/// words and numbers.
static CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' {
            t[c] |= WORD_PART;
        }
        if b.is_ascii_digit() {
            t[c] |= DIGIT;
        }
        c += 1;
    }
    t
};

/// Where the run of bytes of `class` that starts at `from` ends.
fn run_end(b: &[u8], from: usize, class: u8) -> usize {
    let rest = b.get(from..).unwrap_or_default();
    from + rest
        .iter()
        .position(|&c| CLASSES[c as usize] & class == 0)
        .unwrap_or(rest.len())
}

/// Whether an operator is certainly complete before `next`: sqlparser joins
/// a following operator character into a longer (custom) operator, and
/// `--`, `/*`, `=>`, `->` mean other things.
fn operand_follows(next: Option<u8>) -> bool {
    match next {
        None => true,
        Some(c) => {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b' ' | b'\t' | b'\n' | b'_' | b'(' | b')' | b'$' | b'\'' | b'"' | b',' | b';'
                )
        }
    }
}

/// sqlparser's keywords by their (upper-case) text: one hash lookup per word
/// instead of a binary search of some 900 strings.
fn keywords() -> &'static HashMap<&'static str, Keyword> {
    static KEYWORDS: OnceLock<HashMap<&'static str, Keyword>> = OnceLock::new();
    KEYWORDS.get_or_init(|| {
        ALL_KEYWORDS
            .iter()
            .copied()
            .zip(ALL_KEYWORDS_INDEX.iter().copied())
            .collect()
    })
}

/// An unquoted word, with its keyword as sqlparser looks it up (the
/// upper-cased word, exactly).
fn word(w: &str) -> Token {
    let mut buf = [0u8; MAX_KEYWORD];
    let keyword = match buf.get_mut(..w.len()) {
        Some(upper) => {
            upper.copy_from_slice(w.as_bytes());
            upper.make_ascii_uppercase();
            std::str::from_utf8(upper)
                .ok()
                .and_then(|u| keywords().get(u).copied())
                .unwrap_or(Keyword::NoKeyword)
        }
        None => Keyword::NoKeyword,
    };
    Token::Word(Word {
        value: w.to_string(),
        quote_style: None,
        keyword,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    fn reference(sql: &str) -> Option<Vec<TokenWithSpan>> {
        Tokenizer::new(&PostgreSqlDialect {}, sql)
            .with_unescape(true)
            .tokenize_with_location()
            .ok()
    }

    /// Where the fast lexer answers, it answers exactly as sqlparser does
    /// (spans included); returns whether it answered.
    fn same(sql: &str) -> bool {
        match tokenize(sql) {
            Some(fast) => {
                // The spans of its numbers are those of the Number tokens.
                let numbers: Vec<&str> = fast
                    .iter()
                    .filter_map(|t| match &t.token {
                        Token::Number(n, _) => Some(n.as_str()),
                        _ => None,
                    })
                    .collect();
                let spans = number_spans(sql).unwrap_or_else(|| panic!("no spans for {sql:?}"));
                let spanned: Vec<&str> = spans.into_iter().map(|r| &sql[r]).collect();
                assert_eq!(spanned, numbers, "number spans differ for {sql:?}");
                let slow = reference(sql)
                    .unwrap_or_else(|| panic!("sqlparser refuses what we lexed: {sql:?}"));
                assert_eq!(
                    format!("{fast:?}"),
                    format!("{slow:?}"),
                    "tokens differ for {sql:?}"
                );
                true
            }
            None => {
                assert!(number_spans(sql).is_none(), "spans without tokens: {sql:?}");
                false
            }
        }
    }

    #[test]
    fn keywords_fit_the_buffer() {
        assert!(ALL_KEYWORDS.iter().all(|k| k.len() <= MAX_KEYWORD));
        assert_eq!(ALL_KEYWORDS.len(), ALL_KEYWORDS_INDEX.len());
        // Every keyword and a few non-keywords, looked up as sqlparser does.
        for k in ALL_KEYWORDS
            .iter()
            .chain(&["id", "customer_id", "Select", "x$1"])
        {
            let lower = k.to_ascii_lowercase();
            assert_eq!(
                format!("{:?}", word(&lower)),
                format!("{:?}", Token::make_word(&lower, None)),
            );
        }
    }

    #[test]
    fn oltp_statements_take_the_fast_path() {
        for sql in [
            "SELECT id, customer_id, total, note FROM orders WHERE id = $1",
            "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = $1",
            "INSERT INTO orders (id, customer_id, total, note, created_at) VALUES ($1, $2, $3, $4, $5)",
            "UPDATE orders SET total = $1 WHERE id = $2",
            "SELECT * FROM \"Events\" WHERE kind = 'click' AND n >= 10 AND x <> 1.5 AND y::text != 'a'",
            "DELETE FROM items\n\tWHERE id IN (1, 2, 3) AND total <= -4 / 2",
        ] {
            assert!(same(sql), "slow path for {sql:?}");
        }
    }

    #[test]
    fn gives_up_on_what_it_does_not_know() {
        for sql in [
            "SELECT 'it''s'",
            "SELECT E'a\\nb'",
            "SELECT x'ff', b'01', n'x', u&'d'",
            "SELECT 1e5, 0x1f, 1_000, 1.2.3, .5",
            "SELECT $$body$$, $tag$x$tag$",
            "SELECT a -- comment",
            "SELECT /* c */ 1",
            "SELECT a->>'k', a @> b, a || b, a ~ b, a % b, a#b",
            "SELECT a <-> b, a <=> b, a >>= b, a => b, a == b, a =- 1",
            "SELECT 'é'",
            "SELECT \"\"",
            "SELECT \"a\"\"b\"",
            "SELECT 'a\nb'",
            "SELECT 1\r\n",
            "SELECT :a",
        ] {
            // Either not lexed, or lexed exactly as sqlparser does.
            same(sql);
        }
        assert!(tokenize("SELECT 'it''s'").is_none());
        assert!(tokenize("SELECT a -- c").is_none());
    }

    #[test]
    fn agrees_with_sqlparser_on_the_golden_corpus() {
        let golden = include_str!("../../tests/golden/rewrite.txt");
        let mut texts: Vec<String> = Vec::new();
        for line in golden.lines() {
            if let Some(sql) = line
                .strip_prefix("SQL: ")
                .or_else(|| line.strip_prefix("OUT: "))
            {
                texts.push(sql.to_string());
            } else if let Some(more) = line.strip_prefix("... ")
                && let Some(last) = texts.last_mut()
            {
                last.push('\n');
                last.push_str(more);
            }
        }
        assert!(texts.len() > 500);
        let lexed = texts.iter().filter(|t| same(t)).count();
        // Most of the corpus is plain SQL.
        assert!(lexed * 2 > texts.len(), "only {lexed} of {}", texts.len());
    }

    #[test]
    fn agrees_with_sqlparser_on_random_text() {
        const PIECES: &[&str] = &[
            " ", "  ", "\t", "\n", "\r\n", "a", "Ab", "_x", "x$1", "select", "FROM", "e", "E", "x",
            "b", "n", "u", "0", "12", "1.", ".", "5", "e5", "$", "$1", "$12", "'", "''", "'s'",
            "\"", "\"Q\"", "(", ")", ",", ";", "[", "]", "*", "+", "-", "/", "%", ":", "::", "!",
            "!=", "=", "==", "<", ">", "<=", ">=", "<>", "&", "|", "@", "#", "?", "~", "^", "\\",
            "é", "_", "--", "/*", "*/",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut lexed = 0;
        for _ in 0..100_000 {
            let n = 1 + (rand() % 10) as usize;
            let sql: String = (0..n)
                .map(|_| PIECES[(rand() % PIECES.len() as u64) as usize])
                .collect();
            if same(&sql) {
                lexed += 1;
            }
        }
        assert!(lexed > 1_000, "only {lexed} lexed");
    }
}
