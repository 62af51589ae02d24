//! A light lexer that finds, in each statement of a query string, what matters
//! for pooling: session settings (`SET`/`RESET`), statements that tie a client
//! to its server connection (LISTEN, session advisory locks, temporary tables,
//! `DECLARE … WITH HOLD`, SQL `PREPARE`), and statements that drop state
//! (`DISCARD ALL`, `DEALLOCATE ALL`). It understands quotes, dollar quotes and
//! comments, so keywords inside literals are never mistaken for statements.

/// What one statement does to session state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `SET [SESSION] name …` or `RESET name`: the setting's name (lower
    /// case) and the statement text to replay it elsewhere.
    Setting {
        /// Parameter name, lower case.
        name: String,
        /// The statement as written (to replay), without trailing `;`.
        statement: String,
    },
    /// `RESET ALL`.
    ResetAll,
    /// `DISCARD ALL`: everything the session had is gone.
    DiscardAll,
    /// `DEALLOCATE [PREPARE] ALL`: every prepared statement is gone.
    DeallocateAll,
    /// `DEALLOCATE [PREPARE] name`: the statement of that name (folded as
    /// Postgres folds it) is gone.
    Deallocate(String),
    /// The statement leaves state only its server connection holds.
    Pins(&'static str),
    /// `ROLLBACK TO [SAVEPOINT]`: settings changed since the savepoint revert.
    /// Answered with the tag `ROLLBACK`, but the transaction goes on.
    RollbackToSavepoint,
    /// `COMMIT` or `END` (not `COMMIT PREPARED`): answered `COMMIT`, or
    /// `ROLLBACK` when the transaction had failed.
    Commit,
    /// `ROLLBACK` or `ABORT` (not `TO` a savepoint, not `PREPARED`).
    Rollback,
    /// `set_config(…)` of these settings (named by plain literals): their
    /// values are read back from the server connection before it is given
    /// back, as the proxy cannot tell what the calls set them to.
    ConfigCall(Vec<String>),
}

/// The reason an SQL `PREPARE` pins ([`Effect::Pins`]): sessions that
/// sent one may hold statements under the client's own names.
pub const SQL_PREPARE: &str = "PREPARE";

/// Effects of every statement in `sql`, in order. Plain statements with no
/// session effect produce nothing; the common case allocates nothing.
pub fn classify(sql: &str) -> Vec<Effect> {
    if plainly_without_effect(sql.as_bytes()) {
        return Vec::new();
    }
    classify_each(sql)
}

/// [`classify`] of SQL text as it comes off the wire: `None` when it has
/// no session effect (or is not UTF-8, which the server refuses).
pub fn effects_of(sql: &[u8]) -> Option<std::sync::Arc<[Effect]>> {
    use std::sync::{Arc, LazyLock};
    // Drivers parse these at every transaction end: no allocation for them.
    static COMMIT: LazyLock<Arc<[Effect]>> = LazyLock::new(|| Arc::new([Effect::Commit]));
    static ROLLBACK: LazyLock<Arc<[Effect]>> = LazyLock::new(|| Arc::new([Effect::Rollback]));
    if plainly_without_effect(sql) {
        return None;
    }
    match bare_transaction_end(sql) {
        Some(Effect::Commit) => return Some(COMMIT.clone()),
        Some(_) => return Some(ROLLBACK.clone()),
        None => {}
    }
    let effects = classify_each(std::str::from_utf8(sql).ok()?);
    (!effects.is_empty()).then(|| effects.into())
}

/// A query string that is exactly one `COMMIT`, `END` ([`Effect::Commit`]),
/// `ROLLBACK` or `ABORT` ([`Effect::Rollback`]), in any case, with blanks
/// and one `;` around it: what [`classify`] finds, without its work.
pub fn bare_transaction_end(sql: &[u8]) -> Option<Effect> {
    let word = sql.trim_ascii();
    let word = word.strip_suffix(b";").unwrap_or(word).trim_ascii_end();
    if word.eq_ignore_ascii_case(b"commit") || word.eq_ignore_ascii_case(b"end") {
        Some(Effect::Commit)
    } else if word.eq_ignore_ascii_case(b"rollback") || word.eq_ignore_ascii_case(b"abort") {
        Some(Effect::Rollback)
    } else {
        None
    }
}

/// [`classify`], statement by statement, without the quick test.
fn classify_each(sql: &str) -> Vec<Effect> {
    let mut out = Vec::new();
    for stmt in split_statements(sql) {
        if let Some(e) = classify_one(stmt) {
            out.push(e);
        }
    }
    out
}

/// A quick, conservative test for the common case: one statement that
/// starts with a word no session effect starts with, and that mentions none
/// of the functions and keywords an effect needs further in, nor `_tg`
/// (the start of the proxy's reserved names, which the session checks for
/// only when this test fails). `true` proves that [`classify`] finds
/// nothing; `false` only means: look closer.
///
/// It reads the text once, looking only at the bytes the needles start
/// with, instead of lexing it.
pub fn plainly_without_effect(sql: &[u8]) -> bool {
    let start = sql
        .iter()
        .position(|c| !(c.is_ascii_whitespace() || *c == b'('))
        .unwrap_or(sql.len());
    if !sql.get(start).is_some_and(u8::is_ascii_alphabetic) {
        return false;
    }
    let end = sql[start..]
        .iter()
        .position(|&c| !WORD_CONT[c as usize])
        .map_or(sql.len(), |n| start + n);
    const EFFECT_STARTS: &[&[u8]] = &[
        b"set",
        b"reset",
        b"discard",
        b"deallocate",
        b"rollback",
        b"abort",
        b"commit",
        b"end",
        b"do",
        b"listen",
        b"prepare",
        b"declare",
        b"create",
    ];
    let first = &sql[start..end];
    for k in EFFECT_STARTS {
        if first.len() == k.len() && first.eq_ignore_ascii_case(k) {
            return false;
        }
    }
    // Further in, an effect needs `pg_[try_]advisory_lock…`, `set_config…`,
    // `pg_settings` or `INTO TEMP[ORARY]`; and one statement means no `;` but a
    // trailing one. (`_tg`: see above.)
    let follows = |i: usize, rest: &[u8]| {
        sql.get(i + 1..i + 1 + rest.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(rest))
    };
    let needs_a_look = |i: usize| match NEEDLE[sql[i] as usize] {
        0 => false,
        UNDERSCORE => {
            follows(i, b"advisory_lock")
                || follows(i, b"config")
                || follows(i, b"settings")
                || follows(i, b"tg")
        }
        LETTER_T => follows(i, b"emp"),
        // `U&"…"`: a name in Unicode escapes could spell any of them.
        AMPERSAND => follows(i, b"\"") && i > 0 && sql[i - 1] | 0x20 == b'u',
        _ => !sql[i + 1..].iter().all(u8::is_ascii_whitespace),
    };
    // Eight bytes at a time: only words holding a needle byte are looked
    // at byte by byte.
    let mut i = 0;
    while let Some(word) = sql[i..].first_chunk::<8>() {
        let mut hits = needle_bytes(u64::from_le_bytes(*word));
        while hits != 0 {
            if needs_a_look(i + (hits.trailing_zeros() / 8) as usize) {
                return false;
            }
            hits &= hits - 1;
        }
        i += 8;
    }
    for j in i..sql.len() {
        if needs_a_look(j) {
            return false;
        }
    }
    true
}

/// The bytes of `w` (eight, little-endian) that may be `_`, `;`, `&`, `t`
/// or `T`, as the high bit of each such byte (a byte `b` with
/// `b | 0x20 == b't'` is one of the last two). Every such byte is marked;
/// a byte right after one may be marked too, which only costs a look.
#[inline]
fn needle_bytes(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    zero_bytes(w ^ (ONES * u64::from(b'_')))
        | zero_bytes(w ^ (ONES * u64::from(b';')))
        | zero_bytes(w ^ (ONES * u64::from(b'&')))
        | zero_bytes((w | (ONES * 0x20)) ^ (ONES * u64::from(b't')))
}

/// [`NEEDLE`]: `_`.
const UNDERSCORE: u8 = 1;
/// [`NEEDLE`]: `t` or `T`.
const LETTER_T: u8 = 2;
/// [`NEEDLE`]: `;`.
const SEMICOLON: u8 = 3;
/// [`NEEDLE`]: `&`.
const AMPERSAND: u8 = 4;

/// Whether any statement in `sql` may read or write table rows, or opens a
/// savepoint (a variable set inside it would be undone by rolling back to
/// it): the statements row-level security needs the tenant variable set in
/// front of. Session and transaction control (`SET`, `SHOW`, `BEGIN`,
/// `SET TRANSACTION`, `COMMIT`, `DISCARD ALL`, …) is not: some of it may not
/// run inside a transaction block at all, and `SET TRANSACTION ISOLATION
/// LEVEL` (also in `BEGIN ISOLATION LEVEL …`) must come before any query,
/// which the extended protocol's `SELECT set_config(…)` would be.
pub fn touches_rows(sql: &str) -> bool {
    const ROW_STATEMENTS: &[&str] = &[
        "select",
        "with",
        "insert",
        "update",
        "delete",
        "merge",
        "table",
        "values",
        "copy",
        "savepoint",
        "declare",
        "execute",
        "call",
        "do",
        "explain",
        "lock",
    ];
    split_statements(sql).any(|stmt| {
        Words::new(stmt)
            .next()
            .is_some_and(|w| ROW_STATEMENTS.iter().any(|k| w.eq_ignore_ascii_case(k)))
    })
}

/// The text of `raw` when it is one statement that opens a transaction
/// block and does nothing else (`BEGIN …`, `START TRANSACTION …`). Looked
/// at for every simple Query an isolated session sends while idle, so the
/// common case is settled by its first bytes, before the text is read as
/// UTF-8.
pub fn lone_begin(raw: &[u8]) -> Option<&str> {
    let head = raw.trim_ascii_start();
    let starts = |w: &[u8]| head.len() >= w.len() && head[..w.len()].eq_ignore_ascii_case(w);
    if !starts(b"begin") && !starts(b"start") {
        return None;
    }
    let sql = std::str::from_utf8(raw).ok()?;
    let mut statements = split_statements(sql);
    let (Some(only), None) = (statements.next(), statements.next()) else {
        return None;
    };
    let mut words = Words::new(only);
    let opens = match words.next() {
        Some(w) if w.eq_ignore_ascii_case("begin") => true,
        Some(w) if w.eq_ignore_ascii_case("start") => words
            .next()
            .is_some_and(|t| t.eq_ignore_ascii_case("transaction")),
        _ => false,
    };
    opens.then_some(sql)
}

/// Whether `sql` is a single statement that Postgres runs only inside a
/// transaction block: `DECLARE … CURSOR` without `WITH HOLD`, and `LOCK`.
/// Sent alone outside one, Postgres refuses it (25P01); with a statement of
/// the proxy's in front of it in the same query string (an implicit
/// block) it would run, and the cursor be gone at once.
pub fn wants_transaction_block(sql: &str) -> bool {
    let mut statements = split_statements(sql).filter(|s| Words::new(s).next().is_some());
    let (Some(stmt), None) = (statements.next(), statements.next()) else {
        return false;
    };
    let mut words = Words::new(stmt);
    match words.next() {
        Some(w) if w.eq_ignore_ascii_case("lock") => true,
        Some(w) if w.eq_ignore_ascii_case("declare") => {
            let mut last_with = false;
            for w in words {
                if w.eq_ignore_ascii_case("for") {
                    return true;
                }
                if last_with && w.eq_ignore_ascii_case("hold") {
                    return false;
                }
                last_with = w.eq_ignore_ascii_case("with");
            }
            true
        }
        _ => false,
    }
}

fn classify_one(stmt: &str) -> Option<Effect> {
    let words = Words::new(stmt);
    let mut w = words.clone();
    let first = w.next()?;
    let kw = |s: &str, k: &str| s.eq_ignore_ascii_case(k);
    // A function named in Unicode escapes (`U&"set\005fconfig"`) could
    // be any of the ones below; a SET or RESET names its setting as
    // written, and is replayed as written.
    if !kw(first, "set") && !kw(first, "reset") && unicode_escaped_name(stmt.as_bytes()) {
        return Some(Effect::Pins("a name in Unicode escapes (U&\"…\")"));
    }
    if kw(first, "set") {
        let mut second = w.next()?;
        if kw(second, "local") || kw(second, "transaction") || kw(second, "constraints") {
            return None;
        }
        if kw(second, "session") {
            second = w.next()?;
            if kw(second, "characteristics") {
                return Some(Effect::Pins("SET SESSION CHARACTERISTICS"));
            }
            if kw(second, "authorization") {
                return Some(Effect::Pins("SET SESSION AUTHORIZATION"));
            }
        }
        let name = match second.to_ascii_lowercase().as_str() {
            "time" => "timezone".to_string(),
            "schema" => "search_path".to_string(),
            "names" => "client_encoding".to_string(),
            "xml" => "xmloption".to_string(),
            other => unquote(other),
        };
        return Some(Effect::Setting {
            name,
            statement: pg_trim(stmt).to_string(),
        });
    }
    if kw(first, "reset") {
        let second = w.next()?;
        if kw(second, "all") {
            return Some(Effect::ResetAll);
        }
        if kw(second, "session") {
            return Some(Effect::Pins("RESET SESSION AUTHORIZATION"));
        }
        let name = match second.to_ascii_lowercase().as_str() {
            "time" => "timezone".to_string(),
            other => unquote(other),
        };
        return Some(Effect::Setting {
            name,
            statement: pg_trim(stmt).to_string(),
        });
    }
    if kw(first, "discard") {
        return match w.next() {
            Some(s) if kw(s, "all") => Some(Effect::DiscardAll),
            _ => None,
        };
    }
    if kw(first, "deallocate") {
        let mut second = w.next()?;
        if kw(second, "prepare") {
            second = w.next()?;
        }
        if kw(second, "all") {
            return Some(Effect::DeallocateAll);
        }
        return deallocate_target(stmt).map(Effect::Deallocate);
    }
    if kw(first, "rollback") || kw(first, "abort") {
        return match after_work(w) {
            Some(s) if kw(s, "to") => Some(Effect::RollbackToSavepoint),
            Some(s) if kw(s, "prepared") => None,
            _ => Some(Effect::Rollback),
        };
    }
    if kw(first, "commit") || kw(first, "end") {
        return match w.next() {
            Some(s) if kw(s, "prepared") => None,
            _ => Some(Effect::Commit),
        };
    }
    if kw(first, "listen") {
        return Some(Effect::Pins("LISTEN"));
    }
    if kw(first, "prepare") {
        let second = w.next()?;
        if kw(second, "transaction") {
            return None;
        }
        return Some(Effect::Pins(SQL_PREPARE));
    }
    if kw(first, "declare") {
        // DECLARE name [BINARY] [ASENSITIVE|INSENSITIVE] [[NO] SCROLL] CURSOR { WITH | WITHOUT } HOLD FOR …
        let mut prev_with = false;
        for word in w {
            if kw(word, "for") {
                break;
            }
            if prev_with && kw(word, "hold") {
                return Some(Effect::Pins("DECLARE … WITH HOLD"));
            }
            prev_with = kw(word, "with");
        }
        // The cursor's query runs at FETCH and MOVE, after the statement:
        // a setting it changes cannot be read back after this one.
        return match calls(stmt, words, false) {
            Some(Effect::ConfigCall(_)) => Some(Effect::Pins("set_config() in a cursor")),
            other => other,
        };
    }
    if kw(first, "explain") {
        // `EXPLAIN ANALYZE CREATE TEMP TABLE …` runs what it explains.
        return match explained(stmt, w) {
            Some(inner) => classify_one(inner),
            None => calls(stmt, words, false),
        };
    }
    if kw(first, "create") {
        // `CREATE TABLE pg_temp.t`, `CREATE VIEW pg_temp.v`, … are
        // temporary objects too.
        if mentions(stmt.as_bytes(), "pg_temp") {
            return Some(Effect::Pins("temporary objects"));
        }
        for word in w.take(4) {
            if kw(word, "temp") || kw(word, "temporary") {
                return Some(Effect::Pins("temporary objects"));
            }
            if kw(word, "table") || kw(word, "view") || kw(word, "sequence") || kw(word, "as") {
                break;
            }
        }
        // `CREATE TABLE … AS SELECT set_config(…)`, a partition bound, a
        // default evaluated as it runs: calls like any statement's.
        return calls(stmt, words, false);
    }
    if kw(first, "do") {
        // Its body is code the proxy does not read: it may SET, call
        // set_config or take advisory locks. (Refused in tenant sessions.)
        return Some(Effect::Pins("DO block"));
    }
    calls(stmt, words, kw(first, "update"))
}

/// The statement `EXPLAIN` (whose words after `EXPLAIN` are `w`) explains:
/// its text from the first word that starts a statement, past the options.
fn explained<'a>(stmt: &'a str, w: Words<'a>) -> Option<&'a str> {
    const STARTS: &[&str] = &[
        "select", "insert", "update", "delete", "merge", "with", "values", "table", "execute",
        "declare", "create",
    ];
    let word = w
        .into_iter()
        .find(|word| STARTS.iter().any(|s| word.eq_ignore_ascii_case(s)))?;
    let at = (word.as_ptr() as usize).checked_sub(stmt.as_ptr() as usize)?;
    stmt.get(at..)
}

/// What a statement other than the ones [`classify_one`] knows by their
/// first word (SELECT, INSERT, …; `words` are its words, `updates` whether
/// it is an UPDATE) does to the session: it may still call a
/// session-level function or create a temporary table with `SELECT … INTO
/// TEMP`. Calls of set_config that name their settings plainly are read
/// back, unless something further in pins.
fn calls(stmt: &str, words: Words<'_>, updates: bool) -> Option<Effect> {
    let kw = |s: &str, k: &str| s.eq_ignore_ascii_case(k);
    let mut prev_into = false;
    let mut config_call = None;
    for word in words {
        // `pg_catalog.set_config` is `set_config`: look at the last segment.
        let name = last_segment(word);
        // Only names starting with `p` or `s` can be the functions below.
        if matches!(name.as_bytes().first(), Some(b'p' | b'P' | b's' | b'S')) {
            // Bytes, not characters: a name may hold multi-byte text where
            // a prefix of `p`'s length ends.
            let lower_starts = |p: &str| {
                name.as_bytes()
                    .get(..p.len())
                    .is_some_and(|b| b.eq_ignore_ascii_case(p.as_bytes()))
            };
            if lower_starts("pg_advisory_lock") || lower_starts("pg_try_advisory_lock") {
                return Some(Effect::Pins("session advisory locks"));
            }
            if lower_starts("set_config") && config_call.is_none() {
                match set_config_names(stmt) {
                    // `RESET ALL` between clients leaves the role as it is.
                    Some(names)
                        if names
                            .iter()
                            .any(|n| matches!(n.as_str(), "role" | "session_authorization")) =>
                    {
                        return Some(Effect::Pins("set_config() of the role"));
                    }
                    Some(names) if !names.is_empty() => {
                        config_call = Some(Effect::ConfigCall(names));
                    }
                    _ => return Some(Effect::Pins("set_config()")),
                }
            }
            // `UPDATE pg_settings SET setting = …` is a SET.
            if updates && name.eq_ignore_ascii_case("pg_settings") {
                return Some(Effect::Pins("UPDATE pg_settings"));
            }
        }
        let pg_temp = word
            .trim_start_matches('"')
            .as_bytes()
            .get(..7)
            .is_some_and(|b| b.eq_ignore_ascii_case(b"pg_temp"));
        if prev_into && (kw(word, "temp") || kw(word, "temporary") || pg_temp) {
            return Some(Effect::Pins("temporary objects"));
        }
        prev_into = kw(word, "into");
    }
    config_call
}

/// The settings the `set_config(…)` calls in `stmt` change, lower-cased,
/// when each call names its setting with a plain string literal as its
/// whole first argument (asyncpg's `set_config('jit', 'off', false)`).
/// `None` when one names it any other way (a parameter, an expression, an
/// escape string) or the name is not called: then the setting cannot be
/// told. Empty when there is no call at all.
pub fn set_config_names(stmt: &str) -> Option<Vec<String>> {
    let b = stmt.as_bytes();
    let blanks = |mut i: usize| {
        while i < b.len() {
            if b[i].is_ascii_whitespace() {
                i += 1;
            } else if b[i..].starts_with(b"--") || b[i..].starts_with(b"/*") {
                i = skip_token(b, i);
            } else {
                break;
            }
        }
        i
    };
    let mut names = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        i = if CLASS[b[start] as usize] == WORD {
            // A name, qualified or not (`pg_catalog.set_config`).
            start
                + b[start..]
                    .iter()
                    .take_while(|&&c| WORD_CONT[c as usize])
                    .count()
        } else {
            skip_token(b, i).max(i + 1)
        };
        let token = stmt.get(start..i).unwrap_or_default();
        let is_name = match CLASS[b[start] as usize] {
            WORD => last_segment(token).eq_ignore_ascii_case("set_config"),
            QUOTED => token == "\"set_config\"",
            _ => false,
        };
        if !is_name {
            continue;
        }
        let open = blanks(i);
        if b.get(open) != Some(&b'(') {
            return None;
        }
        let quote = blanks(open + 1);
        if b.get(quote) != Some(&b'\'') {
            return None;
        }
        let end = skip_token(b, quote);
        if end <= quote + 1 || b.get(end - 1) != Some(&b'\'') || b.get(blanks(end)) != Some(&b',') {
            return None;
        }
        names.push(
            stmt.get(quote + 1..end - 1)?
                .replace("''", "'")
                .to_ascii_lowercase(),
        );
        i = end;
    }
    Some(names)
}

/// The part of a (possibly qualified) name after its last `.`, without
/// surrounding double quotes.
fn last_segment(word: &str) -> &str {
    let b = word.as_bytes();
    let name = match b.iter().rposition(|&c| c == b'.') {
        Some(dot) => &word[dot + 1..],
        None => word,
    };
    if name.starts_with('"') || name.ends_with('"') {
        name.trim_matches('"')
    } else {
        name
    }
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

/// The first statement name in `sql` that `PREPARE`, `EXECUTE` or
/// `DEALLOCATE` would use and that starts with `prefix` (the proxy's own
/// server-side statement names, which clients may not touch), folded as
/// Postgres folds it.
pub fn names_with_prefix(sql: &str, prefix: &str) -> Option<String> {
    // Fast path: the prefix does not occur at all (nearly every statement).
    if !mentions(sql.as_bytes(), prefix) {
        return None;
    }
    for stmt in split_statements(sql) {
        let mut w = Words::new(stmt);
        let Some(first) = w.next() else { continue };
        let kw = |s: &str, k: &str| s.eq_ignore_ascii_case(k);
        if !(kw(first, "prepare") || kw(first, "execute") || kw(first, "deallocate")) {
            continue;
        }
        let mut name = w.next();
        if kw(first, "deallocate") && name.is_some_and(|n| kw(n, "prepare")) {
            name = w.next();
        }
        if let Some(n) = name.map(fold_name)
            && n.starts_with(prefix)
        {
            return Some(n);
        }
    }
    None
}

/// A name as Postgres reads it: a quoted one as written (its doubled
/// quotes single), an unquoted one in lower case; cut to 63 bytes (on a
/// character boundary), as Postgres cuts identifiers.
fn fold_name(word: &str) -> String {
    let mut name = match word.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => word.to_ascii_lowercase(),
    };
    if name.len() > MAX_IDENTIFIER_BYTES {
        let mut end = MAX_IDENTIFIER_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// The longest identifier Postgres keeps (NAMEDATALEN - 1); also the
/// most bytes of a statement or portal name it tells apart.
pub(super) const MAX_IDENTIFIER_BYTES: usize = 63;

/// Whether `sql` holds a `LISTEN` on the channel the proxy's stand-in for
/// `DEALLOCATE` unlistens (see `frontend::deallocate`), which clients may
/// not use.
pub fn listens_to_reserved_channel(sql: &str, channel: &str) -> bool {
    mentions(sql.as_bytes(), channel)
        && split_statements(sql).any(|stmt| {
            let mut w = Words::new(stmt);
            w.next().is_some_and(|f| f.eq_ignore_ascii_case("listen"))
                && w.next().is_some_and(|n| fold_name(n) == channel)
        })
}

/// Whether `b` holds only names (plain or quoted), blanks and comments.
fn words_and_blanks(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_whitespace() => i += 1,
            b'-' | b'/' if matches!(b.get(i + 1), Some(b'-' | b'*')) => i = skip_token(b, i),
            b'"' => i = skip_token(b, i),
            c if WORD_CONT[c as usize] => i += 1,
            _ => return false,
        }
    }
    true
}

/// Whether one statement ends the transaction it runs in: COMMIT, END,
/// ROLLBACK, ABORT (with or without AND CHAIN) and PREPARE TRANSACTION; not
/// ROLLBACK TO SAVEPOINT, nor COMMIT/ROLLBACK PREPARED (another one's).
pub fn ends_transaction(stmt: &str) -> bool {
    let mut w = Words::new(stmt);
    let kw = |s: Option<&str>, k: &str| s.is_some_and(|s| s.eq_ignore_ascii_case(k));
    let first = w.next();
    if kw(first, "end") {
        return true;
    }
    if kw(first, "commit") || kw(first, "rollback") || kw(first, "abort") {
        let next = after_work(w);
        return !kw(next, "prepared") && !kw(next, "to");
    }
    kw(first, "prepare") && kw(w.next(), "transaction")
}

/// The word after `ROLLBACK`/`ABORT`/`COMMIT`'s optional `WORK` or
/// `TRANSACTION` (`ROLLBACK WORK TO SAVEPOINT s` is a savepoint rollback).
fn after_work(mut w: Words<'_>) -> Option<&str> {
    let next = w.next()?;
    if next.eq_ignore_ascii_case("work") || next.eq_ignore_ascii_case("transaction") {
        w.next()
    } else {
        Some(next)
    }
}

/// The name a query string that is exactly one `DEALLOCATE [PREPARE] name`
/// (not `ALL`) releases, folded as Postgres folds it (unquoted: lower case).
pub fn deallocated_name(sql: &str) -> Option<String> {
    let mut statements = split_statements(sql);
    let stmt = statements.next()?;
    if statements.next().is_some() {
        return None;
    }
    deallocate_target(stmt)
}

/// The name statement `stmt`, a `DEALLOCATE [PREPARE] name` (not `ALL`),
/// releases, folded as Postgres folds it (unquoted: lower case).
pub fn deallocate_target(stmt: &str) -> Option<String> {
    let kw = |s: &str, k: &str| s.eq_ignore_ascii_case(k);
    let mut w = Words::new(stmt);
    if !kw(w.next()?, "deallocate") {
        return None;
    }
    let mut name = w.next()?;
    if kw(name, "prepare") {
        name = w.next()?;
    }
    // `ALL`, or a dotted name (a syntax error to Postgres).
    if kw(name, "all") || (!name.starts_with('"') && name.contains('.')) {
        return None;
    }
    // Nothing but the words, blanks and comments (`Words` skips other
    // characters): `DEALLOCATE *a1` is a syntax error, not a release.
    if !words_and_blanks(stmt.as_bytes()) || w.next().is_some() {
        return None;
    }
    Some(fold_name(name))
}

/// The name statement `stmt`, a `PREPARE name …` (not `PREPARE
/// TRANSACTION`), gives what it prepares, folded as Postgres folds it.
pub fn prepare_target(stmt: &str) -> Option<String> {
    let kw = |s: &str, k: &str| s.eq_ignore_ascii_case(k);
    let mut w = Words::new(stmt);
    if !kw(w.next()?, "prepare") {
        return None;
    }
    let name = w.next()?;
    (!kw(name, "transaction")).then(|| fold_name(name))
}

/// The statement name `stmt` runs with SQL `EXECUTE name`, on its own or
/// explained (`EXPLAIN [options] EXECUTE name`), folded as Postgres folds
/// it.
pub fn execute_target(stmt: &str) -> Option<String> {
    let kw = |s: &str, k: &str| s.eq_ignore_ascii_case(k);
    let mut w = Words::new(stmt);
    let first = w.next()?;
    if kw(first, "execute") {
        return w.next().map(fold_name);
    }
    if !kw(first, "explain") {
        return None;
    }
    // Only options come between EXPLAIN and the statement it explains.
    const STATEMENTS: &[&str] = &[
        "select", "insert", "update", "delete", "merge", "with", "values", "table", "create",
        "declare",
    ];
    while let Some(word) = w.next() {
        if kw(word, "execute") {
            return w.next().map(fold_name);
        }
        if STATEMENTS.iter().any(|s| kw(word, s)) {
            return None;
        }
    }
    None
}

/// Whether `needle` occurs anywhere in `text`, ignoring ASCII case.
///
/// The search jumps (with `memchr`) between occurrences of the needle's
/// first byte that is not a letter (`.` in `app.current_tenant`, `_` in
/// `set_config`), which SQL text holds far fewer of than letters; a needle
/// of letters only is found by its first letter in either case.
pub fn mentions(text: &[u8], needle: &str) -> bool {
    let p = needle.as_bytes();
    if p.is_empty() {
        return true;
    }
    let at = |i: usize, k: usize| {
        i.checked_sub(k)
            .and_then(|start| text.get(start..start + p.len()))
            .is_some_and(|w| w.eq_ignore_ascii_case(p))
    };
    match p.iter().position(|b| !b.is_ascii_alphabetic()) {
        Some(k) => memchr::memchr_iter(p[k], text).any(|i| at(i, k)),
        None => memchr::memchr2_iter(p[0].to_ascii_lowercase(), p[0].to_ascii_uppercase(), text)
            .any(|i| at(i, 0)),
    }
}

/// The highest `$n` parameter in `sql`, outside strings and comments.
pub fn max_placeholder(sql: &str) -> usize {
    let b = sql.as_bytes();
    let (mut i, mut max) = (0, 0);
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let end = b[i + 1..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map_or(b.len(), |p| i + 1 + p);
            if let Ok(n) = sql[i + 1..end].parse::<usize>() {
                max = max.max(n);
            }
            i = end;
        } else {
            i = skip_token(b, i);
        }
    }
    max
}

/// Whether `c` is whitespace to Postgres's lexer: space, tab, line feed,
/// carriage return, form feed. Other Unicode spaces (a no-break space) are
/// characters of names to it, so text is never trimmed of them.
pub fn is_pg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// `s` without Postgres whitespace at either end.
pub fn pg_trim(s: &str) -> &str {
    s.trim_matches(is_pg_space)
}

/// Splits a query string into statements at top-level semicolons. Pieces
/// with nothing but whitespace and comments are left out: Postgres runs
/// nothing for them (`RESET ALL; -- done` ends with the `RESET ALL`).
pub fn split_statements(sql: &str) -> impl Iterator<Item = &str> {
    let bytes = sql.as_bytes();
    let mut start = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut i = start;
        while i < bytes.len() {
            match bytes[i] {
                b';' => {
                    let s = &sql[start..i];
                    start = i + 1;
                    return Some(s);
                }
                c if matches!(CLASS[c as usize], LONG | QUOTED) => i = skip_token(bytes, i),
                _ => i += 1,
            }
        }
        done = true;
        Some(&sql[start..])
    })
    .filter(|s| holds_sql(s))
}

/// Whether `s` holds anything but whitespace and comments. Any other byte
/// counts, so nothing Postgres could run is taken for blank (an unclosed
/// `/*` is blank here and an error there).
fn holds_sql(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => i = skip_token(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_token(b, i),
            _ => return true,
        }
    }
    false
}

/// A table of `$value` (an expression of the byte `$b`) for each of the
/// 256 byte values, built at compile time; `$init` only fills it first.
macro_rules! byte_table {
    ($init:expr, |$b:ident| $value:expr) => {{
        let mut t = [$init; 256];
        let mut c = 0;
        while c < 256 {
            let $b = c as u8;
            t[c] = $value;
            c += 1;
        }
        t
    }};
}

// Byte classes for the word scanner (see [`CLASS`]).
/// Any other byte: a token of one byte.
const OTHER: u8 = 0;
/// Starts a bare word: a letter or `_`.
const WORD: u8 = 1;
/// A `"`: starts a quoted identifier, which is a word too.
const QUOTED: u8 = 2;
/// A digit or a non-ASCII byte: starts a number or a non-ASCII name,
/// skipped as one unit.
const UNIT: u8 = 3;
/// `'`, `-`, `/` or `$`: may start a string, a comment or a dollar quote.
const LONG: u8 = 4;

/// The bytes the quick test stops at.
const NEEDLE: [u8; 256] = byte_table!(0, |b| match b {
    b'_' => UNDERSCORE,
    b't' | b'T' => LETTER_T,
    b';' => SEMICOLON,
    b'&' => AMPERSAND,
    _ => 0,
});

/// The class of each byte value.
const CLASS: [u8; 256] = byte_table!(OTHER, |b| if b.is_ascii_alphabetic() || b == b'_' {
    WORD
} else if b == b'"' {
    QUOTED
} else if b.is_ascii_digit() || b >= 0x80 {
    UNIT
} else if matches!(b, b'\'' | b'-' | b'/' | b'$') {
    LONG
} else {
    OTHER
});

/// Bytes that continue a bare word: letters, digits, `_`, `.` (qualified
/// names are one word) and non-ASCII bytes.
const WORD_CONT: [bool; 256] = byte_table!(false, |b| b.is_ascii_alphanumeric()
    || b == b'_'
    || b == b'.'
    || b >= 0x80);

/// Bytes that continue a number or a non-ASCII name.
const UNIT_CONT: [bool; 256] = byte_table!(false, |b| b.is_ascii_alphanumeric()
    || b == b'_'
    || b >= 0x80);

/// Whether `sql` names something in Unicode escapes (`U&"…"`) outside
/// strings and comments. Postgres decodes such a name (`U&"set\005fconfig"`
/// is `set_config`); sqlparser reads it as `U & "set\005fconfig"`, so the
/// rewriter would check the wrong name. Any `u&"` counts, whatever comes
/// before it (`1u&"x"` is `1 AS x` to Postgres 15).
pub(crate) fn unicode_escaped_name(sql: &[u8]) -> bool {
    let mut i = 0;
    while i < sql.len() {
        match sql[i] {
            b'u' | b'U' if sql.get(i + 1) == Some(&b'&') && sql.get(i + 2) == Some(&b'"') => {
                return true;
            }
            b'\'' | b'"' | b'-' | b'/' | b'$' => i = skip_token(sql, i),
            _ => i += 1,
        }
    }
    false
}

/// Returns the index after the token starting at `i` (quoted strings,
/// identifiers, dollar quotes and comments are one token each).
///
/// A string goes on past its closing quote where Postgres continues it:
/// after whitespace holding a line break (comments ended by a line break
/// included), another quote goes on with the same string, in the same
/// mode (`E'a'⏎'\''` is one escape string).
pub(crate) fn skip_token(b: &[u8], i: usize) -> usize {
    match b[i] {
        b'\'' | b'"' => {
            let q = b[i];
            let prefix = (q == b'\'').then(|| quote_prefix(b, i)).flatten();
            // In a bit string (`X'…'`, `B'…'`) two quotes are two strings;
            // in an `E'…'` string a backslash escapes the next byte.
            let doubles = !matches!(prefix, Some(b'x' | b'b'));
            let escapes = prefix == Some(b'e');
            let mut j = i + 1;
            while j < b.len() {
                if b[j] == q {
                    if doubles && j + 1 < b.len() && b[j + 1] == q {
                        j += 2;
                        continue;
                    }
                    if q == b'\''
                        && let Some(next) = string_continues(b, j + 1)
                    {
                        j = next;
                        continue;
                    }
                    return j + 1;
                }
                // E'' strings: a backslash escapes the next byte.
                if b[j] == b'\\' && escapes {
                    j += 2;
                    continue;
                }
                j += 1;
            }
            b.len()
        }
        // Postgres ends a `--` comment at a newline or a carriage return.
        b'-' if b.get(i + 1) == Some(&b'-') => b[i..]
            .iter()
            .position(|&c| c == b'\n' || c == b'\r')
            .map_or(b.len(), |p| i + p + 1),
        b'/' if b.get(i + 1) == Some(&b'*') => {
            let mut depth = 1;
            let mut j = i + 2;
            while j < b.len() && depth > 0 {
                if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            j
        }
        // Inside an identifier (`x$`, `a$$b`) a `$` is one of its
        // characters: the rest of the name is skipped with it, so a long run
        // of `$` is walked once, not once per `$`.
        b'$' if in_identifier(b, i) => {
            i + 1
                + b[i + 1..]
                    .iter()
                    .take_while(|&&c| identifier_part(c))
                    .count()
        }
        b'$' => match dollar_tag_end(b, i) {
            Some(e) => {
                let tag = &b[i..=e];
                let body = e + 1;
                match b[body..].windows(tag.len()).position(|w| w == tag) {
                    Some(p) => body + p + tag.len(),
                    None => b.len(),
                }
            }
            None => i + 1,
        },
        _ => i + 1,
    }
}

/// Where a string that closed right before `at` goes on, if it does: the
/// index after the opening quote of its continuation. Postgres continues
/// a string over whitespace that holds a line break: spaces, tabs, form
/// feeds and `--` comments, a line break, then any whitespace and `--`
/// comments each ended by a line break (not `/* */` comments), then a
/// quote.
fn string_continues(b: &[u8], at: usize) -> Option<usize> {
    let mut k = at;
    let mut broken = false;
    loop {
        match b.get(k)? {
            b' ' | b'\t' | 0x0c => k += 1,
            b'\n' | b'\r' => {
                broken = true;
                k += 1;
            }
            // To the end of its line: the line break is read next.
            b'-' if b.get(k + 1) == Some(&b'-') => {
                k += 2 + b[k + 2..].iter().position(|&c| c == b'\n' || c == b'\r')?;
            }
            b'\'' if broken => return Some(k + 1),
            _ => return None,
        }
    }
}

/// Where the first comment (`--` or `/*` outside strings, quoted names
/// and dollar quotes, as Postgres reads them) in `sql` starts.
pub fn comment_start(sql: &str) -> Option<usize> {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => return Some(i),
            b'/' if b.get(i + 1) == Some(&b'*') => return Some(i),
            b'\'' | b'"' | b'$' => i = skip_token(b, i),
            _ => i += 1,
        }
    }
    None
}

/// Whether `sql` holds a vertical tab outside strings, quoted names,
/// dollar quotes and comments. Postgres 16 and later read it as a space,
/// Postgres 15 as a character of its own; between two strings, one
/// version continues the first string where the other starts a new one.
pub fn vertical_tab_between_tokens(sql: &str) -> bool {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            0x0b => return true,
            b'\'' | b'"' | b'-' | b'/' | b'$' => i = skip_token(b, i),
            _ => i += 1,
        }
    }
    false
}

/// The prefix of the quote at `i`, lower-cased, if it has one: `e`, `x`,
/// `b` or `n` for `E'…'` and the like, `u` for `U&'…'` and `U&"…"` (a
/// letter that ends a longer name is no prefix: `max'x'` is a typed
/// string).
fn quote_prefix(b: &[u8], i: usize) -> Option<u8> {
    let alone = |at: usize| at == 0 || !identifier_part(b[at - 1]);
    match i.checked_sub(1).map(|p| b[p]) {
        Some(b'&') if i >= 2 && b[i - 2].eq_ignore_ascii_case(&b'u') && alone(i - 2) => Some(b'u'),
        Some(p) if p.is_ascii_alphabetic() && alone(i - 1) => Some(p.to_ascii_lowercase()),
        _ => None,
    }
}

/// Where the tag of a dollar quote opened by the `$` at `i` ends (the
/// index of its closing `$`), if one opens there: `$tag$` (a bare `$1`
/// parameter is not a quote). Tags are made of identifier characters,
/// bytes above 0x7F included, and do not start with a digit.
pub(crate) fn dollar_tag_end(b: &[u8], i: usize) -> Option<usize> {
    let e = b[i + 1..]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80))
        .map(|p| i + 1 + p)?;
    (b[e] == b'$' && !b[i + 1..e].first().is_some_and(u8::is_ascii_digit)).then_some(e)
}

/// Whether the `$` at `i` continues an identifier: the run of identifier
/// characters (letters, digits, `_`, `$`, bytes above 0x7F) before it
/// starts with a letter, `_` or a byte above 0x7F, as Postgres reads `x$$`
/// as one name (a run starting with a digit is a number, after which `$`
/// starts a dollar quote or a parameter).
fn in_identifier(b: &[u8], i: usize) -> bool {
    let start = b[..i]
        .iter()
        .rposition(|&c| !identifier_part(c))
        .map_or(0, |p| p + 1);
    b[start..i]
        .first()
        .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_' || c >= 0x80)
}

/// A character of an unquoted identifier after its first (bytes above 0x7F
/// included, as Postgres reads them).
pub(crate) fn identifier_part(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Iterator over the bare words of a statement (identifiers and keywords),
/// skipping literals, comments and punctuation.
#[derive(Clone)]
struct Words<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Words<'a> {
    fn new(s: &'a str) -> Self {
        Words { s, pos: 0 }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let b = self.s.as_bytes();
        while let Some(&c) = b.get(self.pos) {
            match CLASS[c as usize] {
                WORD => {
                    let start = self.pos;
                    self.pos += 1;
                    while b.get(self.pos).is_some_and(|&c| WORD_CONT[c as usize]) {
                        self.pos += 1;
                    }
                    return Some(&self.s[start..self.pos]);
                }
                QUOTED => {
                    let start = self.pos;
                    self.pos = skip_token(b, self.pos);
                    return Some(&self.s[start..self.pos]);
                }
                UNIT => {
                    self.pos += 1;
                    while b.get(self.pos).is_some_and(|&c| UNIT_CONT[c as usize]) {
                        self.pos += 1;
                    }
                }
                LONG => self.pos = skip_token(b, self.pos),
                _ => self.pos += 1,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ends_are_told_from_other_control() {
        for sql in [
            "COMMIT",
            "commit and chain",
            "END",
            "ROLLBACK",
            "rollback work",
            "ABORT",
            "/* c */ COMMIT",
            "PREPARE TRANSACTION 'x'",
        ] {
            assert!(ends_transaction(sql), "{sql}");
        }
        for sql in [
            "ROLLBACK TO SAVEPOINT s",
            "rollback to s",
            "COMMIT PREPARED 'x'",
            "ROLLBACK PREPARED 'x'",
            "BEGIN",
            "SAVEPOINT s",
            "PREPARE p AS SELECT 1",
            "SELECT 'commit'",
        ] {
            assert!(!ends_transaction(sql), "{sql}");
        }
    }

    #[test]
    fn a_deallocate_of_one_name_is_recognised() {
        // Cut as Postgres cuts identifiers.
        let long = "x".repeat(70);
        assert_eq!(
            deallocated_name(&format!("DEALLOCATE {long}")),
            Some("x".repeat(63))
        );
        let wide = "é".repeat(40);
        assert_eq!(
            deallocated_name(&format!("DEALLOCATE \"{wide}\"")),
            Some("é".repeat(31))
        );
        assert_eq!(deallocated_name("DEALLOCATE a1").as_deref(), Some("a1"));
        assert_eq!(
            deallocated_name("deallocate prepare A1;").as_deref(),
            Some("a1")
        );
        assert_eq!(
            deallocated_name("DEALLOCATE \"My \"\"S\"\"\" -- bye").as_deref(),
            Some("My \"S\"")
        );
        assert_eq!(
            deallocated_name("/* c */ DEALLOCATE a1 /* d */").as_deref(),
            Some("a1")
        );
        for sql in [
            "DEALLOCATE ALL",
            "DEALLOCATE PREPARE ALL",
            "DEALLOCATE a1; SELECT 1",
            "SELECT 1; DEALLOCATE a1",
            "DEALLOCATE a1 a2",
            "DEALLOCATE a1 + 1",
            "DEALLOCATE *a1",
            "DEALLOCATE a1.b",
            "DEALLOCATE",
            "EXECUTE a1",
        ] {
            assert_eq!(deallocated_name(sql), None, "{sql}");
        }
    }

    #[test]
    fn cursors_explained_statements_and_role_changes_pin() {
        for sql in [
            // A cursor's query runs at FETCH/MOVE: its settings cannot be
            // read back after the DECLARE, nor its locks seen.
            "DECLARE c CURSOR FOR SELECT set_config('TimeZone', 'Asia/Tokyo', false)",
            "declare c no scroll cursor without hold for select pg_advisory_lock(1)",
            // EXPLAIN ANALYZE runs what it explains.
            "EXPLAIN ANALYZE CREATE TEMP TABLE customers AS SELECT 1",
            "EXPLAIN (ANALYZE true) CREATE TABLE pg_temp.t AS SELECT 1",
            "explain analyze select pg_try_advisory_lock(1)",
            // `RESET ALL` leaves the role as it is.
            "SELECT set_config('role', 'other', false)",
            // Calls a CREATE runs.
            "CREATE TABLE t AS SELECT pg_advisory_lock(4242)",
            "create table t as select set_config(lower('X'), 'on', false)",
            "SELECT pg_catalog.set_config('SESSION_AUTHORIZATION', 'x', false)",
        ] {
            assert!(
                matches!(classify(sql).as_slice(), [Effect::Pins(_)]),
                "{sql}: {:?}",
                classify(sql)
            );
        }
        assert!(classify("DECLARE c CURSOR FOR SELECT * FROM t").is_empty());
        assert!(classify("EXPLAIN SELECT 1").is_empty());
        assert!(matches!(
            classify("EXPLAIN ANALYZE SELECT set_config('jit', 'off', false)").as_slice(),
            [Effect::ConfigCall(_)]
        ));
    }

    #[test]
    fn names_in_unicode_escapes_are_found_outside_strings_and_pin() {
        for sql in [
            r#"SELECT U&"set\005fconfig"('search_path', 'x', false)"#,
            r#"select u&"pg\005fadvisory\005flock"(1)"#,
            r#"SELECT 1u&"x""#,
            r#"SELECT 'a' || U&"f"()"#,
        ] {
            assert!(unicode_escaped_name(sql.as_bytes()), "{sql}");
            assert!(!plainly_without_effect(sql.as_bytes()), "{sql}");
            assert!(
                matches!(classify(sql).as_slice(), [Effect::Pins(_)]),
                "{sql}"
            );
        }
        for sql in [
            r#"SELECT 'U&"x"', "U&""y" FROM t -- U&"z""#,
            r#"SELECT $$U&"x"$$, U&'\0041' /* U&"y" */"#,
            r#"SELECT a & "b" FROM t"#,
        ] {
            assert!(!unicode_escaped_name(sql.as_bytes()), "{sql}");
            assert!(classify(sql).is_empty(), "{sql}");
        }
        // A setting named in escapes is replayed as written.
        assert!(matches!(
            classify(r#"SET U&"work\005fmem" = '1MB'"#).as_slice(),
            [Effect::Setting { .. }]
        ));
    }

    #[test]
    fn statements_that_want_a_transaction_block() {
        for sql in [
            "DECLARE c CURSOR FOR SELECT 1",
            "declare c no scroll cursor without hold for select 1;",
            "LOCK TABLE t",
            "-- c\nlock t in share mode",
        ] {
            assert!(wants_transaction_block(sql), "{sql}");
        }
        for sql in [
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "DECLARE c CURSOR FOR SELECT 1; FETCH ALL FROM c",
            "SELECT 1",
            "BEGIN; DECLARE c CURSOR FOR SELECT 1",
            "",
        ] {
            assert!(!wants_transaction_block(sql), "{sql}");
        }
    }

    #[test]
    fn row_statements_are_told_apart_from_control() {
        for sql in [
            "SELECT 1",
            "  -- c\n(SELECT 1)",
            "with x as (select 1) select * from x",
            "INSERT INTO t VALUES (1)",
            "SAVEPOINT s",
            "BEGIN; SELECT 1",
            "SET x = 1; SELECT 2",
            "TABLE t",
            "COPY t FROM STDIN",
        ] {
            assert!(touches_rows(sql), "{sql}");
        }
        for sql in [
            "SET x = 1",
            "SHOW x",
            "BEGIN",
            "start transaction isolation level serializable",
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "COMMIT",
            "DISCARD ALL",
            "RESET ALL",
            "DEALLOCATE ALL",
            "-- select\n",
            "/* select */ ROLLBACK",
            "VACUUM t",
            "",
        ] {
            assert!(!touches_rows(sql), "{sql}");
        }
    }

    fn setting(name: &str, stmt: &str) -> Effect {
        Effect::Setting {
            name: name.into(),
            statement: stmt.into(),
        }
    }

    #[test]
    fn bare_transaction_ends_agree_with_classify() {
        for sql in [
            "COMMIT",
            " end ;",
            "rollback;",
            "Abort",
            "COMMIT AND CHAIN",
            "commit; select 1",
            "ROLLBACK TO s",
            "select 1",
            "",
        ] {
            if let Some(bare) = bare_transaction_end(sql.as_bytes()) {
                assert_eq!(vec![bare], classify(sql), "{sql}");
            }
        }
        assert_eq!(bare_transaction_end(b" end ;"), Some(Effect::Commit));
        assert_eq!(bare_transaction_end(b"Abort"), Some(Effect::Rollback));
        assert_eq!(bare_transaction_end(b"COMMIT AND CHAIN"), None);
        assert_eq!(bare_transaction_end(b"commit; select 1"), None);
        let commit = effects_of(b"commit").expect("an effect");
        assert_eq!(&*commit, &[Effect::Commit]);
    }

    #[test]
    fn plain_statements_have_no_effect() {
        assert!(classify("SELECT abalance FROM pgbench_accounts WHERE aid = 42;").is_empty());
        assert_eq!(
            classify("BEGIN; UPDATE t SET a = 1; COMMIT"),
            vec![Effect::Commit]
        );
        assert!(classify("SET LOCAL statement_timeout = 5").is_empty());
        assert!(classify("").is_empty());
    }

    #[test]
    fn settings_are_found() {
        assert_eq!(
            classify("SET statement_timeout = 5"),
            vec![setting("statement_timeout", "SET statement_timeout = 5")]
        );
        assert_eq!(
            classify("set session TIME ZONE 'UTC';"),
            vec![setting("timezone", "set session TIME ZONE 'UTC'")]
        );
        assert_eq!(
            classify("RESET search_path"),
            vec![setting("search_path", "RESET search_path")]
        );
        assert_eq!(classify("reset all"), vec![Effect::ResetAll]);
        assert_eq!(
            classify("SELECT 1; SET a.b TO 'x;y'"),
            vec![setting("a.b", "SET a.b TO 'x;y'")]
        );
    }

    #[test]
    fn pins_are_found() {
        assert_eq!(classify("LISTEN chan"), vec![Effect::Pins("LISTEN")]);
        assert_eq!(
            classify("select pg_advisory_lock(1)"),
            vec![Effect::Pins("session advisory locks")]
        );
        assert!(classify("select pg_advisory_xact_lock(1)").is_empty());
        assert_eq!(
            classify("CREATE TEMP TABLE x (a int)"),
            vec![Effect::Pins("temporary objects")]
        );
        assert_eq!(
            classify("create global temporary table x (a int)"),
            vec![Effect::Pins("temporary objects")]
        );
        assert!(classify("CREATE TABLE temp (a int)").is_empty());
        for sql in [
            "CREATE TABLE pg_temp.customers (LIKE public.customers)",
            "create view PG_TEMP.v as select 1",
            "CREATE TABLE \"pg_temp\".t AS SELECT 1",
            "SELECT 1 AS a INTO pg_temp.t",
        ] {
            assert_eq!(
                classify(sql),
                vec![Effect::Pins("temporary objects")],
                "{sql}"
            );
        }
        assert_eq!(
            classify("SELECT 1 INTO TEMP t"),
            vec![Effect::Pins("temporary objects")]
        );
        assert_eq!(
            classify("DECLARE c CURSOR WITH HOLD FOR SELECT 1"),
            vec![Effect::Pins("DECLARE … WITH HOLD")]
        );
        assert!(classify("DECLARE c CURSOR FOR SELECT 'with hold'").is_empty());
        assert_eq!(
            classify("DO $$BEGIN PERFORM set_config('a.b', 'c', false); END$$"),
            vec![Effect::Pins("DO block")]
        );
        assert_eq!(
            classify("UPDATE pg_catalog.pg_settings SET setting = '50' WHERE name = 'work_mem'"),
            vec![Effect::Pins("UPDATE pg_settings")]
        );
        assert!(classify("SELECT setting FROM pg_settings WHERE name = 'work_mem'").is_empty());
        assert_eq!(
            classify("PREPARE p AS SELECT 1"),
            vec![Effect::Pins("PREPARE")]
        );
        assert!(classify("PREPARE TRANSACTION 'x'").is_empty());
        assert_eq!(
            classify("select set_config('a.b','c',false)"),
            vec![Effect::ConfigCall(vec!["a.b".into()])]
        );
        assert_eq!(
            classify(
                "SELECT current_setting('jit'), pg_catalog.set_config('JIT', 'off', false), \
                 \"set_config\"('statement_timeout', $1, false)"
            ),
            vec![Effect::ConfigCall(vec![
                "jit".into(),
                "statement_timeout".into()
            ])]
        );
        // Named any other way, the setting cannot be told: pinned.
        for sql in [
            "SELECT set_config($1, 'off', false)",
            "SELECT set_config('ji' || 't', 'off', false)",
            "SELECT set_config(E'jit', 'off', false)",
            "SELECT set_config((SELECT 'jit'), 'off', false)",
            "SELECT set_config",
        ] {
            assert_eq!(classify(sql), vec![Effect::Pins("set_config()")], "{sql}");
        }
        // A pin further in still pins.
        assert_eq!(
            classify("SELECT set_config('jit', 'off', false), pg_advisory_lock(1)"),
            vec![Effect::Pins("session advisory locks")]
        );
        assert_eq!(
            classify("SELECT \"pg_catalog\".pg_advisory_lock(1)"),
            vec![Effect::Pins("session advisory locks")]
        );
        assert_eq!(
            classify("ROLLBACK TO SAVEPOINT s"),
            vec![Effect::RollbackToSavepoint]
        );
        assert_eq!(classify("rollback to s"), vec![Effect::RollbackToSavepoint]);
        assert_eq!(classify("ROLLBACK"), vec![Effect::Rollback]);
        assert_eq!(
            classify("rollback work to savepoint s"),
            vec![Effect::RollbackToSavepoint]
        );
        assert_eq!(
            classify("ROLLBACK TRANSACTION TO s"),
            vec![Effect::RollbackToSavepoint]
        );
        assert_eq!(classify("ROLLBACK AND CHAIN"), vec![Effect::Rollback]);
        assert!(classify("ROLLBACK PREPARED 'x'").is_empty());
        assert_eq!(classify("end"), vec![Effect::Commit]);
        assert_eq!(classify("COMMIT WORK"), vec![Effect::Commit]);
        assert!(classify("COMMIT PREPARED 'x'").is_empty());
        assert!(!ends_transaction("ROLLBACK TRANSACTION TO SAVEPOINT s"));
        assert!(ends_transaction("ROLLBACK TRANSACTION"));
        assert!(ends_transaction("ABORT"));
    }

    #[test]
    fn state_drops_are_found() {
        assert_eq!(classify("DISCARD ALL"), vec![Effect::DiscardAll]);
        assert!(classify("DISCARD PLANS").is_empty());
        assert_eq!(
            classify("DEALLOCATE PREPARE ALL"),
            vec![Effect::DeallocateAll]
        );
        assert_eq!(classify("deallocate all"), vec![Effect::DeallocateAll]);
        assert_eq!(
            classify("deallocate p1; DEALLOCATE PREPARE \"P 2\""),
            vec![
                Effect::Deallocate("p1".into()),
                Effect::Deallocate("P 2".into())
            ]
        );
        assert!(classify("deallocate p1 p2").is_empty());
    }

    #[test]
    fn literals_and_comments_hide_keywords() {
        assert!(classify("SELECT 'LISTEN x; SET a=1'").is_empty());
        assert!(classify("SELECT $$; LISTEN x;$$").is_empty());
        assert!(classify("SELECT $tag$ ; pg_advisory_lock( $tag$").is_empty());
        assert!(classify("-- LISTEN x\nSELECT 1").is_empty());
        assert!(classify("/* LISTEN /* nested */ x; */ SELECT 1").is_empty());
        assert!(classify("SELECT \"listen\" FROM t").is_empty());
        assert_eq!(classify("/* c */ LISTEN x"), vec![Effect::Pins("LISTEN")]);
        assert!(classify("SELECT $1::int; SELECT E'\\';listen'").is_empty());
    }

    /// A small deterministic pseudo-random sequence for the tests.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    #[test]
    fn the_quick_test_never_hides_an_effect() {
        let cases = [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
            "select pg_advisory_lock(1)",
            "SELECT pg_catalog.PG_TRY_ADVISORY_LOCK(1)",
            "select set_config('a','b',false)",
            "SELECT 1 INTO TEMP t",
            "select 1 into temporary t",
            "  (SELECT 1)",
            "SET x = 1",
            "set local x = 1",
            "Reset all",
            "LISTEN c",
            "create temp table t (a int)",
            "SELECT 1; LISTEN c",
            "SELECT 'a;b'",
            "/* c */ LISTEN c",
            "DISCARD ALL ;  ",
            "update t set a = 1",
            "",
        ];
        for sql in cases {
            if plainly_without_effect(sql.as_bytes()) {
                assert!(classify_each(sql).is_empty(), "{sql}");
            }
        }
        // Random texts made of pieces that matter to either path.
        const PIECES: &[&str] = &[
            "select",
            "SET",
            "reset",
            "listen",
            "create",
            "temp",
            "TEMPORARY",
            "into",
            "INTO",
            "pg_advisory_lock",
            "pg_try_advisory_lock_shared",
            "set_config",
            "pg_catalog.",
            "\"",
            "'",
            "$$",
            "--",
            "\n",
            "/*",
            "*/",
            ";",
            "(",
            ")",
            " ",
            " ",
            "1",
            "x",
            "_",
            "discard all",
            "deallocate",
            "prepare",
            "declare c cursor with hold for",
        ];
        let mut next = xorshift(0x5eed_cafe);
        let mut quick = 0;
        for _ in 0..50_000 {
            let n = 1 + next() % 8;
            let sql: String = (0..n)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            if plainly_without_effect(sql.as_bytes()) {
                quick += 1;
                assert!(classify_each(&sql).is_empty(), "{sql:?}");
            }
        }
        assert!(quick > 1_000, "the quick test passed only {quick} texts");
        assert!(plainly_without_effect(cases[0].as_bytes()));
        assert!(plainly_without_effect(b"update t set a = 1"));
        assert!(!plainly_without_effect(b"select pg_advisory_lock(1)"));
        assert!(!plainly_without_effect(b"SELECT 1 INTO TEMP t"));
        assert!(!plainly_without_effect(b"SELECT 1; LISTEN c"));
        assert!(!plainly_without_effect(b"/* c */ LISTEN c"));
        // Needles at every offset of the eight-byte words, and in the tail.
        for pad in 0..20 {
            let p = " ".repeat(pad);
            for needle in [
                "pg_advisory_lock(1)",
                "into temp t",
                "x; listen c",
                "set_config('a','b',false)",
                "x from _tg_1",
                "1; listen _TG",
            ] {
                let sql = format!("select {p}{needle}");
                assert!(!plainly_without_effect(sql.as_bytes()), "{sql:?}");
            }
        }
    }

    #[test]
    fn eight_byte_needle_test_matches_the_bytes() {
        let mut next = xorshift(0x1234_5678_9abc_def1);
        for _ in 0..200_000 {
            let seed = next();
            let bytes = seed.to_le_bytes();
            let marked = needle_bytes(seed);
            for (k, &b) in bytes.iter().enumerate() {
                if NEEDLE[b as usize] != 0 {
                    assert!(marked & (0x80 << (8 * k)) != 0, "{bytes:?} byte {k}");
                }
            }
        }
        assert_eq!(needle_bytes(u64::from_le_bytes(*b"FROM abc")), 0);
        assert_eq!(needle_bytes(u64::from_le_bytes(*b"abc_defg")), 0x80 << 24);
        assert_eq!(needle_bytes(u64::from_le_bytes(*b"xxxxxxxT")), 0x80 << 56);
    }

    #[test]
    fn mentions_finds_needles_in_any_case() {
        let naive = |text: &[u8], needle: &str| {
            text.windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        };
        assert!(mentions(b"SHOW App.Current_Tenant", "app.current_tenant"));
        assert!(mentions(b"select SET_CONFIG('x')", "set_config"));
        assert!(mentions(b"_TG_1", "_tg_"));
        assert!(mentions(b"abc", ""));
        assert!(mentions(b"xSELECT", "select"));
        assert!(!mentions(b"app.current_tenan", "app.current_tenant"));
        assert!(!mentions(b".current_tenant", "app.current_tenant"));
        // Random texts over a small alphabet, so needles occur often.
        let alphabet = b"aApP._tT gG";
        let needles = ["app.t", "_tg_", "pat", ".", "a_p"];
        let mut next = xorshift(0x0bad_5eed_0123_4567);
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            for n in needles {
                assert_eq!(mentions(&text, n), naive(&text, n), "{text:?} {n}");
            }
        }
    }

    #[test]
    fn proxy_names() {
        let found = |sql: &str| names_with_prefix(sql, "_tg_");
        assert_eq!(found("DEALLOCATE _tg_1").as_deref(), Some("_tg_1"));
        assert_eq!(
            found("deallocate prepare \"_tg_2\"").as_deref(),
            Some("_tg_2")
        );
        assert_eq!(
            found("SELECT 1; EXECUTE _TG_3(1)").as_deref(),
            Some("_tg_3")
        );
        // Quoted upper case is another name.
        assert_eq!(found("EXECUTE \"_TG_3\"(1)"), None);
        for sql in ["LISTEN _tg", "select 1; listen \"_tg\"", "LISTEN _TG"] {
            assert!(listens_to_reserved_channel(sql, "_tg"), "{sql}");
        }
        for sql in [
            "LISTEN _tg2",
            "UNLISTEN _tg",
            "LISTEN \"_TG\"",
            "SELECT 'LISTEN _tg'",
        ] {
            assert!(!listens_to_reserved_channel(sql, "_tg"), "{sql}");
        }
        assert_eq!(names_with_prefix("PREPARE mine AS SELECT 1", "_tg_"), None);
        assert_eq!(names_with_prefix("SELECT '_tg_1'", "_tg_"), None);
    }

    #[test]
    fn typed_literals_are_not_escape_strings() {
        let v: Vec<_> = split_statements("SELECT name'\\'; SELECT 1").collect();
        assert_eq!(v, vec!["SELECT name'\\'", " SELECT 1"]);
        let v: Vec<_> = split_statements("SELECT E'\\'; x'; SELECT 1").collect();
        assert_eq!(v, vec!["SELECT E'\\'; x'", " SELECT 1"]);
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            max_placeholder("SELECT $1, $12 FROM t TABLESAMPLE SYSTEM (10) REPEATABLE ($3)"),
            12
        );
        assert_eq!(
            max_placeholder("SELECT '$9', $$ $8 $$ /* $7 */ -- $6\n, $2"),
            2
        );
        assert_eq!(max_placeholder("SELECT 1"), 0);
    }

    #[test]
    fn bit_strings_end_at_a_doubled_quote() {
        // Checked against Postgres 15: `X'41''abc'` is `X'41'` then `'abc'`.
        assert_eq!(skip_token(b"X'41''abc'", 1), 5);
        assert_eq!(skip_token(b"b'1''; x'", 1), 4);
        assert_eq!(skip_token(b"N'a''b'", 1), 7);
        assert_eq!(skip_token(b"max'a''b'", 3), 9);
    }

    #[test]
    fn strings_continue_over_line_breaks_as_in_postgres() {
        // The continuation of an `E''` string is read with escapes: `\'`
        // is a quote there, and the string ends after ` `.
        let v: Vec<_> = split_statements("SET a = E'a'\n'\\' '; SELECT 2; --'").collect();
        assert_eq!(v, vec!["SET a = E'a'\n'\\' '", " SELECT 2", " --'"][..2]);
        for (sql, n) in [
            ("SELECT 'a'\r'b;'; SELECT 2", 2),
            ("SELECT 'a' \t\n -- c\n\n '; x'; SELECT 2", 2),
            // No line break, or a `/* */` comment: two strings.
            ("SELECT 'a' 'b;'; SELECT 2", 2),
            ("SELECT 'a'\n/* c */'; x'; SELECT 2 --'", 2),
            ("SELECT 'a' -- c", 1),
            // Checked against Postgres 15: `a'; SELECT 2; --`, one string.
            ("SELECT E'a' -- c\n'\\'; SELECT 2; --'", 1),
            ("SELECT E'a'\n'\\'; SELECT 2; --'", 1),
        ] {
            assert_eq!(split_statements(sql).count(), n, "{sql:?}");
        }
        assert!(vertical_tab_between_tokens("SELECT 'a'\n\u{b}'b'"));
        assert!(!vertical_tab_between_tokens(
            "SELECT '\u{b}', \"\u{b}\" -- \u{b}"
        ));
    }

    #[test]
    fn comments_are_found_outside_quotes() {
        assert_eq!(comment_start("SELECT --1 AS a"), Some(7));
        assert_eq!(comment_start("SELECT 1 /* x */"), Some(9));
        assert_eq!(comment_start("SELECT '--' -- x"), Some(12));
        for none in [
            "SELECT '--', \"a--b\", $$ /* $$, E'\\' --'",
            "SELECT 1 - -1, 2 / *x",
        ] {
            assert_eq!(comment_start(none), None, "{none:?}");
        }
    }

    #[test]
    fn lone_begins() {
        for yes in [
            "BEGIN",
            "begin;",
            "  BEGIN ISOLATION LEVEL SERIALIZABLE",
            "START TRANSACTION READ ONLY; -- x",
            "begin work",
        ] {
            assert_eq!(lone_begin(yes.as_bytes()), Some(yes), "{yes}");
        }
        for no in [
            "BEGIN; SELECT 1",
            "SELECT 1",
            "/* x */ BEGIN",
            "beginx",
            "START",
            "start_thing()",
            "BEGIN; COMMIT",
        ] {
            assert_eq!(lone_begin(no.as_bytes()), None, "{no}");
        }
    }

    #[test]
    fn splitting() {
        let v: Vec<_> = split_statements("a; b ;; 'c;d'; $$e;f$$").collect();
        assert_eq!(v, vec!["a", " b ", " 'c;d'", " $$e;f$$"]);
        let v: Vec<_> =
            split_statements("a; -- done\n; /* x /* y */ ; */\t; b -- c\n; /* open").collect();
        assert_eq!(v, vec!["a", " b -- c\n"]);
        // Not blank: anything but whitespace and comments.
        let v: Vec<_> = split_statements("a; -- x\n\u{a0}; - -1; /* */ (").collect();
        assert_eq!(v, vec!["a", " -- x\n\u{a0}", " - -1", " /* */ ("]);
    }
}
