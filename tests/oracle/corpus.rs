//! The statement corpus: hand-written reads, writes and attacks
//! (`tests/oracle/*.sql`) and SQLAlchemy-generated SQL
//! (`tests/oracle/orm/*.sql`, see `orm/generate.py`).
//!
//! File format: entries are separated by blank lines. Leading lines of the
//! form `-- @directive [args]` describe the entry; other leading `--` lines
//! are comments; the rest is the statement (a trailing `;` is dropped; `;`
//! inside makes a multi-statement string, sent with the simple protocol
//! only). Directives:
//!
//! * `@name NAME` — label for reports (default: file and line);
//! * `@kind read|write` — ORM files; hand-written files imply it;
//! * `@params T:V …` — `$n` parameter values, in order: `int4:3`, `int8:3`,
//!   `text:'x y'`, `numeric:1.5`, `bool:true`, `timestamptz:'…'`,
//!   `jsonb:'…'`, `null` (all sent in text format);
//! * `@ordered` / `@unordered` — compare rows as a list / multiset (default:
//!   a list when the statement has a top-level ORDER BY);
//! * `@refuse` — tenantgate must refuse it (an ErrorResponse);
//! * `@nocompare` — do not compare with the oracle database: only check
//!   that nothing of another tenant comes back and (for writes) that no
//!   tenant's rows change;
//! * `@simple` — simple protocol only.

use tokio_postgres::types::Type;

/// What a statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads (compared with the oracle; attacks too).
    Read,
    /// Writes (run on both sides, then states compared).
    Write,
}

/// One bound parameter: its declared type and text value.
#[derive(Debug, Clone)]
pub struct Param {
    /// Type declared with the unnamed statement (`query_typed`).
    pub ty: Type,
    /// Text-format value; `None` is NULL.
    pub value: Option<String>,
}

/// One corpus statement.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Label for reports.
    pub name: String,
    /// Which corpus file it came from.
    pub origin: &'static str,
    /// The SQL text.
    pub sql: String,
    /// Read or write.
    pub kind: Kind,
    /// Bound parameters (extended protocol; the simple protocol gets them
    /// inlined as literals).
    pub params: Option<Vec<Param>>,
    /// Compare rows in order.
    pub ordered: bool,
    /// Must be refused by tenantgate.
    pub refuse: bool,
    /// No comparison with the oracle database.
    pub nocompare: bool,
    /// Simple protocol only (several statements, or session commands).
    pub simple_only: bool,
}

/// A corpus file's text, its label, and the kind of its entries.
pub struct Source {
    /// Label (file name).
    pub origin: &'static str,
    /// Contents.
    pub text: &'static str,
    /// Kind of entries without `@kind`.
    pub kind: Kind,
}

/// Hand-written reads.
pub const READS: Source = Source {
    origin: "reads.sql",
    text: include_str!("reads.sql"),
    kind: Kind::Read,
};
/// Hand-written attacks that read.
pub const ATTACKS: Source = Source {
    origin: "attacks.sql",
    text: include_str!("attacks.sql"),
    kind: Kind::Read,
};
/// Hand-written writes, including write attacks.
pub const WRITES: Source = Source {
    origin: "writes.sql",
    text: include_str!("writes.sql"),
    kind: Kind::Write,
};
/// SQLAlchemy, literal binds.
pub const ORM: Source = Source {
    origin: "orm/sqlalchemy.sql",
    text: include_str!("orm/sqlalchemy.sql"),
    kind: Kind::Read,
};
/// SQLAlchemy, `$n` parameters.
pub const ORM_PARAMS: Source = Source {
    origin: "orm/sqlalchemy_params.sql",
    text: include_str!("orm/sqlalchemy_params.sql"),
    kind: Kind::Read,
};

/// Parses a corpus file.
pub fn parse(src: &Source) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut block: Vec<&str> = Vec::new();
    let mut start = 1;
    for (i, line) in src.text.lines().chain(std::iter::once("")).enumerate() {
        if line.trim().is_empty() {
            if !block.is_empty() {
                if let Some(e) = parse_entry(src, start, &block) {
                    out.push(e);
                }
                block.clear();
            }
            start = i + 2;
        } else {
            block.push(line);
        }
    }
    out
}

fn parse_entry(src: &Source, line: usize, block: &[&str]) -> Option<Entry> {
    let mut e = Entry {
        name: format!("{}:{line}", src.origin),
        origin: src.origin,
        sql: String::new(),
        kind: src.kind,
        params: None,
        ordered: false,
        refuse: false,
        nocompare: false,
        simple_only: false,
    };
    let mut order: Option<bool> = None;
    let mut body = Vec::new();
    for l in block {
        let t = l.trim();
        if body.is_empty() && t.starts_with("--") {
            let d = t.trim_start_matches('-').trim();
            let Some(d) = d.strip_prefix('@') else {
                continue;
            };
            let (word, rest) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
            let rest = rest.trim();
            match word {
                "name" => e.name = format!("{}:{line} {rest}", src.origin),
                "kind" => {
                    e.kind = match rest {
                        "read" => Kind::Read,
                        "write" => Kind::Write,
                        k => panic!("{}:{line}: unknown @kind {k}", src.origin),
                    }
                }
                "params" => e.params = Some(parse_params(rest, src.origin, line)),
                "ordered" => order = Some(true),
                "unordered" => order = Some(false),
                "refuse" => e.refuse = true,
                "nocompare" => e.nocompare = true,
                "simple" => e.simple_only = true,
                other => panic!("{}:{line}: unknown directive @{other}", src.origin),
            }
            continue;
        }
        body.push(*l);
    }
    if body.is_empty() {
        return None;
    }
    let mut sql = body.join("\n").trim().to_string();
    while sql.ends_with(';') {
        sql.pop();
        sql = sql.trim_end().to_string();
    }
    if statement_count(&sql) > 1 {
        e.simple_only = true;
    }
    e.ordered = order.unwrap_or_else(|| has_top_level_order_by(&sql));
    e.sql = sql;
    Some(e)
}

fn parse_params(s: &str, origin: &str, line: usize) -> Vec<Param> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("null") {
            out.push(Param {
                ty: Type::TEXT,
                value: None,
            });
            rest = r.trim_start();
            continue;
        }
        let (ty, r) = rest
            .split_once(':')
            .unwrap_or_else(|| panic!("{origin}:{line}: bad @params near {rest:?}"));
        let ty = match ty {
            "int2" => Type::INT2,
            "int4" => Type::INT4,
            "int8" => Type::INT8,
            "text" => Type::TEXT,
            "numeric" => Type::NUMERIC,
            "bool" => Type::BOOL,
            "timestamptz" => Type::TIMESTAMPTZ,
            "jsonb" => Type::JSONB,
            t => panic!("{origin}:{line}: unknown parameter type {t}"),
        };
        let (value, r) = if let Some(q) = r.strip_prefix('\'') {
            // 'text' with '' for a quote.
            let mut v = String::new();
            let mut chars = q.char_indices().peekable();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().map(|(_, c)| *c) == Some('\'') {
                        v.push('\'');
                        chars.next();
                        continue;
                    }
                    end = i + 1;
                    break;
                }
                v.push(c);
            }
            (v, &q[end..])
        } else {
            let end = r.find(char::is_whitespace).unwrap_or(r.len());
            (r[..end].to_string(), &r[end..])
        };
        out.push(Param {
            ty,
            value: Some(value),
        });
        rest = r.trim_start();
    }
    out
}

/// Calls `f(index, byte)` for every byte of `sql` outside quotes, comments
/// and dollar quotes, with the parenthesis depth.
fn scan(sql: &str, mut f: impl FnMut(usize, usize)) {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'$' => {
                // $tag$ … $tag$ (not $1).
                let tag_end = sql[i + 1..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map(|n| i + 1 + n);
                match tag_end {
                    Some(e)
                        if b[e] == b'$'
                            && !sql[i + 1..e].starts_with(|c: char| c.is_ascii_digit()) =>
                    {
                        let tag = &sql[i..=e];
                        match sql[e + 1..].find(tag) {
                            Some(n) => i = e + 1 + n + tag.len(),
                            None => i = b.len(),
                        }
                    }
                    _ => {
                        f(i, depth);
                        i += 1;
                    }
                }
            }
            b'(' => {
                f(i, depth);
                depth += 1;
                i += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                f(i, depth);
                i += 1;
            }
            _ => {
                f(i, depth);
                i += 1;
            }
        }
    }
}

/// Number of statements in a query string.
pub fn statement_count(sql: &str) -> usize {
    let mut n = 1;
    let mut last = 0;
    scan(sql, |i, _| {
        if sql.as_bytes()[i] == b';' {
            n += 1;
            last = i;
        }
    });
    if n > 1 && sql[last + 1..].trim().is_empty() {
        n -= 1;
    }
    n
}

/// Whether `sql` has ORDER BY outside parentheses.
pub fn has_top_level_order_by(sql: &str) -> bool {
    let mut top = String::with_capacity(sql.len());
    scan(sql, |i, depth| {
        let c = sql.as_bytes()[i];
        top.push(if depth == 0 && c != b'(' {
            (c as char).to_ascii_lowercase()
        } else {
            ' '
        });
    });
    let words: Vec<&str> = top.split_whitespace().collect();
    words.windows(2).any(|w| w == ["order", "by"])
}

/// `sql` with `$n` replaced by the parameters as SQL literals (for running a
/// parameterised entry with the simple protocol).
pub fn inline_params(sql: &str, params: &[Param]) -> String {
    let b = sql.as_bytes();
    let mut spots: Vec<(usize, usize, usize)> = Vec::new();
    scan(sql, |i, _| {
        if b[i] == b'$' {
            let digits = sql[i + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(sql.len() - i - 1);
            if digits > 0
                && let Ok(n) = sql[i + 1..i + 1 + digits].parse::<usize>()
            {
                spots.push((i, i + 1 + digits, n));
            }
        }
    });
    let mut out = String::with_capacity(sql.len() + 32);
    let mut at = 0;
    for (start, end, n) in spots {
        out.push_str(&sql[at..start]);
        let p = &params[n - 1];
        match &p.value {
            None => out.push_str("NULL"),
            Some(v) => {
                let lit = format!("'{}'", v.replace('\'', "''"));
                out.push_str(&format!("CAST({lit} AS {})", p.ty.name()));
            }
        }
        at = end;
    }
    out.push_str(&sql[at..]);
    out
}

/// Every read entry (hand-written reads, ORM reads, attacks).
pub fn reads() -> Vec<Entry> {
    let mut out = parse(&READS);
    out.extend(parse(&ORM).into_iter().filter(|e| e.kind == Kind::Read));
    out.extend(
        parse(&ORM_PARAMS)
            .into_iter()
            .filter(|e| e.kind == Kind::Read),
    );
    out
}

/// Read attacks.
pub fn attacks() -> Vec<Entry> {
    parse(&ATTACKS)
}

/// Writes: hand-written first, then ORM (literal binds).
pub fn writes() -> Vec<Entry> {
    let mut out = parse(&WRITES);
    out.extend(parse(&ORM).into_iter().filter(|e| e.kind == Kind::Write));
    out
}

/// ORM writes with parameters.
pub fn param_writes() -> Vec<Entry> {
    parse(&ORM_PARAMS)
        .into_iter()
        .filter(|e| e.kind == Kind::Write)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert!(has_top_level_order_by("SELECT 1 ORDER BY 1"));
        assert!(!has_top_level_order_by(
            "SELECT row_number() OVER (ORDER BY x) FROM t"
        ));
        assert_eq!(statement_count("SELECT ';'; SELECT 2;"), 2);
        assert_eq!(statement_count("SELECT $$;$$"), 1);
    }
}
