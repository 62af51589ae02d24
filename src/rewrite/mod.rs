//! SQL analysis and rewriting for tenant isolation. Every statement a session
//! sends to a shared shard passes through [`rewrite`]: references to tenant
//! relations are scoped to the session's tenant, INSERTs get the tenant's
//! value, and anything that cannot be made safe is refused with a SQLSTATE.
//! The output is a [`Template`] with holes for the tenant value, identical
//! for every tenant, cached by statement text and by statement shape (the
//! text with its numbers taken out, see `shape`).

mod cache;
mod dml;
mod leak;
mod lex;
mod like_pattern;
mod lock_strength;
pub mod policy;
mod print_check;
mod row_locks;
mod scope;
mod shape;
pub mod template;
mod token_agreement;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use sqlparser::ast::{CopySource, CopyTarget, Ident, Query, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

pub use cache::{CacheStats, Key as CacheKey, RewriteCache};
pub use like_pattern::dangling as like_pattern_dangles;
pub use template::{Template, TenantCheck, TenantType};

use crate::catalog::Catalog;
use crate::error::ProxyError;
use crate::frontend::classify::{is_pg_space, pg_trim, split_statements};

/// The cache key for `sql` under the given session rules.
pub fn cache_key(strict: bool, schema: Option<Arc<str>>, sql: &str) -> cache::Key {
    cache::Key {
        strict,
        schema,
        text: sql.into(),
        fence: false,
    }
}

/// Statements longer than this are refused before parsing.
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;
/// The parser's own limit, far above what the pre-parse bounds allow.
const PARSER_RECURSION_LIMIT: usize = 20_000;

/// Deepest nesting (parentheses) accepted before parsing.
pub const MAX_NESTING: usize = 200;

/// What the rewriter needs to know about the session's shard and config.
#[derive(Debug, Clone)]
pub struct RewriteRules<'a> {
    /// The shard's catalog.
    pub catalog: &'a Catalog,
    /// Tenant column (folded).
    pub column: &'a str,
    /// Global tables, folded, as `name` or `schema.name`.
    pub global_tables: &'a HashSet<String>,
    /// User-defined functions tenant sessions may call (folded names).
    pub allowed_functions: &'a HashSet<String>,
    /// Schemas that belong to schema-per-tenant tenants.
    pub tenant_schemas: &'a HashSet<String>,
    /// The session tenant's own schema, for schema-per-tenant tenants.
    pub own_schema: Option<&'a str>,
    /// A tenant session (refuse what is not provably safe) rather than a
    /// trusted session that has not chosen a tenant (only tenant data is off
    /// limits).
    pub strict: bool,
    /// Fence every statement's tenant relations: the Parse declared a type
    /// for a parameter the statement casts (`$1::int` with `$1` declared
    /// text), so the cast runs, and can fail, where the qualifier is
    /// evaluated (see `rewrite::leak`).
    pub fence: bool,
}

/// The result of rewriting one query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewritten {
    /// Forward the client's text unchanged.
    Unchanged,
    /// Forward this instead.
    Template(Arc<Template>),
}

/// The walker's state for one statement.
pub(crate) struct Rewriter<'a> {
    catalog: &'a Catalog,
    column: String,
    column_ident: Ident,
    global_tables: &'a HashSet<String>,
    allowed_functions: &'a HashSet<String>,
    tenant_schemas: &'a HashSet<String>,
    own_schema: Option<&'a str>,
    strict: bool,
    /// CTE names visible, innermost last.
    ctes: Vec<Vec<String>>,
    /// Cast of each tenant hole created so far.
    casts: Vec<Option<String>>,
    checks: Vec<TenantCheck>,
    /// Cast of the tenant column each value in `checks` goes into.
    check_casts: Vec<Option<String>>,
    max_param: usize,
    /// A schema tenant's search_path may be reset by the statement at hand:
    /// it is the last of its query string and no transaction control came
    /// before it (the session then waits for its reply and gives the server
    /// connection back, and the next one gets the search_path pinned again).
    path_reset_ok: bool,
    /// A statement so far began, ended or split a transaction.
    transaction_control: bool,
    /// The statement at hand has an expression that could show another
    /// tenant's values if evaluated before the tenant predicate: fence the
    /// tenant relations (see [`leak`]).
    barrier: bool,
    /// The statement at hand's relation names, for the leak check.
    leak: leak::LeakCheck,
    /// What the lock clauses of the query level at hand reach.
    lock_scope: row_locks::LockScope,
    /// A lock of the level being walked reaches the query about to be
    /// entered whole (taken by [`Rewriter::query`] as it enters).
    inherit_lock: bool,
    /// The names of the statement's `OF` lists after the first of each
    /// (which sqlparser does not keep); `None` if one could not be read.
    more_of: Option<Vec<String>>,
    /// From the rules: fence every statement.
    fence_all: bool,
    /// Parameters under a cast in statements left unfenced.
    cast_params: Vec<usize>,
}

/// Rewrites a query string (one or more statements).
pub fn rewrite(sql: &str, rules: &RewriteRules<'_>) -> Result<Rewritten, ProxyError> {
    let measure = precheck(sql)?;
    if measure.is_small(sql.len()) {
        return rewrite_checked(sql, rules);
    }
    // Parsing, rewriting, printing and dropping a large tree recurse deeply:
    // do it on a thread whose stack cannot run out (a stack overflow would
    // abort the whole proxy). Rare (large statements) and cached.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("tenantgate-rewrite".into())
            .stack_size(BIG_STACK)
            .spawn_scoped(scope, || rewrite_checked(sql, rules))
            .map_err(|_| ProxyError::internal())?
            .join()
            .map_err(|_| ProxyError::internal())?
    })
}

fn rewrite_checked(sql: &str, rules: &RewriteRules<'_>) -> Result<Rewritten, ProxyError> {
    let mut rw = Rewriter::new(rules);
    let mut pieces: Vec<String> = Vec::new();
    let mut changed = false;
    let mut statements = split_statements(sql).peekable();
    while let Some(stmt) = statements.next() {
        rw.path_reset_ok = statements.peek().is_none() && !rw.transaction_control;
        match rw.statement_text(stmt)? {
            Some(printed) => {
                // sqlparser prints no comments; one in its output is text
                // that reads otherwise than what was parsed (`- -1` is
                // printed `--1`, which Postgres takes for a comment that
                // hides the rest of the line, the tenant filter included).
                if crate::frontend::classify::comment_start(&printed).is_some() {
                    return Err(ProxyError::construct_unsupported(
                        "this statement (its rewritten text would not read as it was written; \
                         write `- -x` as `-(-x)`)",
                    ));
                }
                changed = true;
                pieces.push(printed);
            }
            None => pieces.push(pg_trim(stmt).to_string()),
        }
        // A piece ending in a `--` comment (as sent, or cut from the client's
        // text, such as `TABLE t -- c`) would, trimmed, lose the line break
        // that ends it and run over the statements joined after it (hiding
        // them, or ending inside a string of one of them, so that the rest
        // of that string runs as SQL). Between statements a line break
        // changes nothing.
        if let Some(last) = pieces.last_mut()
            && last.contains("--")
        {
            last.push('\n');
        }
    }
    if !changed {
        return Ok(Rewritten::Unchanged);
    }
    let joined = pieces.join("; ");
    let check_type = TenantType::of_casts(&rw.check_casts);
    let mut cast_params = std::mem::take(&mut rw.cast_params);
    cast_params.sort_unstable();
    cast_params.dedup();
    Ok(Rewritten::Template(Arc::new(
        Template::from_printed(&joined, rw.casts, rw.max_param, rw.checks)?
            .with_check_type(check_type)
            .with_cast_params(cast_params),
    )))
}

/// Cheap checks before the parser sees anything: size, nesting depth (a very
/// deep expression would overflow the stack while parsing or dropping), and
/// the hole marker.
fn precheck(sql: &str) -> Result<Measure, ProxyError> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(ProxyError::statement_too_large(
            sql.len(),
            MAX_STATEMENT_BYTES,
        ));
    }
    if sql.contains(template::MARK) {
        return Err(ProxyError::construct_unsupported(
            "the control character U+0001",
        ));
    }
    if crate::frontend::classify::vertical_tab_between_tokens(sql) {
        return Err(ProxyError::construct_unsupported(
            "a vertical tab outside strings (Postgres 15 reads it as a character, later \
             versions as a space)",
        ));
    }
    let measure = Measure::of(sql);
    // Every construct that makes the parser recurse is bounded here, so it
    // never reaches its own recursion limit (where it may silently give up
    // on part of a statement instead of failing).
    if measure.depth > MAX_NESTING
        || measure.nesting_keywords > MAX_NESTING
        || measure.signs > MAX_SIGNS
        || measure.name_parts > MAX_NESTING
    {
        return Err(ProxyError::statement_too_deep(MAX_NESTING));
    }
    // Long operator chains build deep trees, deep to drop and to print.
    if measure.operators > MAX_OPERATORS {
        return Err(ProxyError::statement_too_deep(MAX_NESTING));
    }
    Ok(measure)
}

/// What the pre-parse scan measured.
#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    /// Deepest bracket nesting.
    depth: usize,
    /// CASE and NOT keywords (each nests the parser).
    nesting_keywords: usize,
    /// `+` and `-` signs (unary ones nest the parser).
    signs: usize,
    /// Operators (casts and `IS`, `AT`, `COLLATE` included) and
    /// set-operation keywords (each adds a tree level).
    operators: usize,
    /// Longest dotted name (`a.b.c` is 3).
    name_parts: usize,
}

impl Measure {
    fn of(sql: &str) -> Measure {
        let mut s = Measure::default();
        let mut depth = 0usize;
        let b = sql.as_bytes();
        let mut i = 0;
        // Parts of the dotted name being read, if any.
        let mut chain = 0usize;
        while i < b.len() {
            let c = b[i];
            match c {
                b'(' | b'[' => {
                    depth += 1;
                    s.depth = s.depth.max(depth);
                }
                b')' | b']' => depth = depth.saturating_sub(1),
                b'+' | b'-' if !(c == b'-' && b.get(i + 1) == Some(&b'-')) => {
                    s.signs += 1;
                    s.operators += 1;
                }
                b'*' | b'/' | b'%' | b'|' | b'&' | b'^' | b'=' | b'<' | b'>' | b'~' | b'!'
                    if !(c == b'/' && b.get(i + 1) == Some(&b'*')) =>
                {
                    s.operators += 1
                }
                // A `::` cast is a postfix operator: a chain of them is one
                // tree level each (sqlparser reads it in a loop, so its own
                // recursion limit never sees it).
                b':' if b.get(i + 1) == Some(&b':') => {
                    s.operators += 1;
                    i += 2;
                    continue;
                }
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    let end = b[i..]
                        .iter()
                        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$'))
                        .map_or(b.len(), |p| i + p);
                    let w = &sql[i..end];
                    if w.eq_ignore_ascii_case("case") || w.eq_ignore_ascii_case("not") {
                        s.nesting_keywords += 1;
                    } else if [
                        "and",
                        "or",
                        "union",
                        "intersect",
                        "except",
                        "when",
                        // Postfix operators, chained like casts.
                        "is",
                        "at",
                        "collate",
                    ]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k))
                    {
                        s.operators += 1;
                    }
                    chain += 1;
                    s.name_parts = s.name_parts.max(chain);
                    if b.get(end) == Some(&b'.') {
                        i = end + 1;
                    } else {
                        chain = 0;
                        i = end;
                    }
                    continue;
                }
                _ => {
                    chain = 0;
                    // Strings, quoted identifiers, dollar quotes and comments
                    // are skipped whole.
                    i = crate::frontend::classify::skip_token(b, i);
                    continue;
                }
            }
            i += 1;
        }
        s
    }

    /// Small enough to parse and drop on a runtime worker's stack.
    fn is_small(&self, len: usize) -> bool {
        len <= SMALL_STATEMENT_BYTES
            && self.depth <= 16
            && self.nesting_keywords <= 16
            && self.signs <= 64
            && self.operators <= 256
    }
}

/// Longest statement text rewritten where it arrives, on the session's
/// runtime worker. A longer one may take a parse of many milliseconds, so a
/// session that misses the cache with one rewrites it on a blocking thread
/// (`Isolation::rewritten`), and the worker's other sessions keep going.
pub const SMALL_STATEMENT_BYTES: usize = 2048;

/// Most `+`/`-` signs in one statement.
pub const MAX_SIGNS: usize = 1_000;

/// Stack for parsing statements that are not small.
const BIG_STACK: usize = 256 * 1024 * 1024;

/// Most operators and set-operation keywords in one statement.
pub const MAX_OPERATORS: usize = 20_000;

/// Parses text that must be exactly one query.
pub(crate) fn parse_query(sql: &str) -> Result<Query, ProxyError> {
    match parse(sql)?.pop() {
        Some(Statement::Query(q)) => Ok(*q),
        _ => Err(ProxyError::internal()),
    }
}

/// A query from fixed text, parsed once per process: each use gets a clone,
/// far cheaper than lexing and parsing the text again.
pub(crate) struct FixedQuery {
    sql: &'static str,
    parsed: OnceLock<Option<Query>>,
}

impl FixedQuery {
    pub(crate) const fn new(sql: &'static str) -> FixedQuery {
        FixedQuery {
            sql,
            parsed: OnceLock::new(),
        }
    }

    /// A fresh copy of the parsed query.
    pub(crate) fn get(&self) -> Result<Query, ProxyError> {
        self.parsed
            .get_or_init(|| parse_query(self.sql).ok())
            .clone()
            .ok_or_else(ProxyError::internal)
    }
}

fn parse(sql: &str) -> Result<Vec<Statement>, ProxyError> {
    // Plain SQL is lexed by the fast lexer (the same tokens); the rest by
    // sqlparser's tokenizer.
    parse_tokens(tokens(sql, false)?)
}

/// The tokens of `sql`: the fast lexer's for plain SQL, else sqlparser's,
/// checked to read the text as Postgres does if `checked` (a tenant
/// session's statements; a trusted session without a tenant is trusted
/// not to write text that reads two ways).
fn tokens(
    sql: &str,
    checked: bool,
) -> Result<Vec<sqlparser::tokenizer::TokenWithSpan>, ProxyError> {
    match lex::tokenize(sql) {
        Some(tokens) => Ok(tokens),
        None if checked => token_agreement::tokenize(sql),
        None => token_agreement::tokenize_unchecked(sql),
    }
}

/// The statements of tokens already read.
fn parse_tokens(
    tokens: Vec<sqlparser::tokenizer::TokenWithSpan>,
) -> Result<Vec<Statement>, ProxyError> {
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| ProxyError::unparsable(&e.to_string()))
}

/// The text of a rewritten statement, checked to read back as the
/// statement (see [`print_check`]).
fn checked_print(statement: &Statement) -> Result<String, ProxyError> {
    let printed = statement.to_string();
    print_check::check(statement, &printed)?;
    Ok(printed)
}

/// Folds an identifier as Postgres does: unquoted names are lower-cased.
pub(crate) fn fold(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// Which statement resetting the search_path (`RESET ALL`, `DISCARD ALL`)
/// one statement is, read as the rewriter reads it.
fn path_reset_of(words: &[String]) -> Option<&'static str> {
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match w(0) {
        "discard" if w(1) == "all" => Some("DISCARD ALL"),
        "reset" => {
            let name = if matches!(w(1), "session" | "local") {
                w(2)
            } else {
                w(1)
            };
            (name.trim_matches('"') == "all").then_some("RESET ALL")
        }
        _ => None,
    }
}

/// The first statement of `sql` that would reset a schema tenant's
/// search_path, as the rewriter reads it: the session lets such a query
/// string through only where nothing can run after the reset on the same
/// server connection (see [`ProxyError::search_path_reset_refused`]).
pub fn path_reset_in(sql: &str) -> Option<&'static str> {
    path_reset_then(sql).map(|(what, _)| what)
}

/// The first statement of `sql` that resets every setting (`RESET ALL`,
/// `DISCARD ALL`), with the text after it.
pub fn path_reset_then(sql: &str) -> Option<(&'static str, &str)> {
    split_statements(sql).find_map(|stmt| {
        let what = path_reset_of(&first_words(stmt, 3))?;
        let end = stmt.as_ptr() as usize - sql.as_ptr() as usize + stmt.len();
        Some((what, &sql[end..]))
    })
}

/// The first `n` words of `stmt`, lower case, comments skipped.
pub(crate) fn first_words(stmt: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut rest = stmt;
    while out.len() < n {
        // Comments may stand between words too (`SET /**/ search_path`).
        rest = strip_comments(rest);
        // A word: letters, digits, `_`, dots and quoted parts; a quote right
        // after a bare word's character starts the next word (Postgres reads
        // `SET"search_path"` as `SET "search_path"`).
        let mut quoted = false;
        let mut prev_bare = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    if !quoted && prev_bare {
                        return true;
                    }
                    quoted = !quoted;
                    prev_bare = false;
                    return false;
                }
                if quoted {
                    return false;
                }
                prev_bare = c.is_alphanumeric() || c == '_';
                !(prev_bare || c == '.')
            })
            .map_or(rest.len(), |(i, _)| i);
        if end == 0 {
            break;
        }
        out.push(rest[..end].to_ascii_lowercase());
        rest = &rest[end..];
    }
    out
}

/// Skips leading whitespace and comments (`/* */` comments nest, as in
/// Postgres).
fn strip_comments(s: &str) -> &str {
    let mut s = s.trim_start_matches(is_pg_space);
    loop {
        if let Some(r) = s.strip_prefix("--") {
            // Postgres ends a `--` comment at a newline or a carriage return.
            s = r
                .find(['\n', '\r'])
                .map_or("", |i| &r[i + 1..])
                .trim_start_matches(is_pg_space);
        } else if s.starts_with("/*") {
            let b = s.as_bytes();
            let (mut depth, mut i) = (0usize, 0usize);
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            s = if depth == 0 {
                s[i..].trim_start_matches(is_pg_space)
            } else {
                ""
            };
        } else {
            return s;
        }
    }
}

/// First words of maintenance and DDL statements (some of them beyond the
/// SQL parser: `CHECKPOINT`, `LOCK`, `REINDEX`, `CLUSTER`, `REFRESH
/// MATERIALIZED VIEW`, `DROP INDEX CONCURRENTLY IF EXISTS`, `ALTER SYSTEM`,
/// `SECURITY LABEL`) that a trusted session without a tenant may send
/// unparsed; tenant sessions get them refused as not allowed (42501).
const UNPARSED_UTILITY: &[&str] = &[
    "checkpoint",
    "lock",
    "reindex",
    "cluster",
    "refresh",
    "drop",
    "alter",
    "security",
    "vacuum",
    "analyze",
    "analyse",
    "comment",
    "grant",
    "revoke",
    "reassign",
];

impl<'a> Rewriter<'a> {
    fn new(rules: &RewriteRules<'a>) -> Rewriter<'a> {
        let column = rules.column.to_string();
        let simple = column
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !column.starts_with(|c: char| c.is_ascii_digit());
        let column_ident = if simple {
            Ident::new(&column)
        } else {
            Ident::with_quote('"', &column)
        };
        Rewriter {
            catalog: rules.catalog,
            column,
            column_ident,
            global_tables: rules.global_tables,
            allowed_functions: rules.allowed_functions,
            tenant_schemas: rules.tenant_schemas,
            own_schema: rules.own_schema,
            strict: rules.strict,
            ctes: Vec::new(),
            casts: Vec::new(),
            checks: Vec::new(),
            check_casts: Vec::new(),
            max_param: 0,
            path_reset_ok: false,
            transaction_control: false,
            barrier: false,
            leak: leak::LeakCheck::default(),
            fence_all: rules.fence,
            cast_params: Vec::new(),
            lock_scope: row_locks::LockScope::default(),
            inherit_lock: false,
            more_of: Some(Vec::new()),
        }
    }

    /// One statement's text: `None` to forward it as written, or the
    /// rewritten text (with hole markers).
    fn statement_text(&mut self, stmt: &str) -> Result<Option<String>, ProxyError> {
        // sqlparser reads `U&"set\005fconfig"(…)` as `U & "set\005fconfig"(…)`:
        // every check would see another name than the one Postgres runs.
        if self.strict && crate::frontend::classify::unicode_escaped_name(stmt.as_bytes()) {
            return Err(ProxyError::construct_unsupported(
                "names in Unicode escapes (U&\"…\")",
            ));
        }
        let words = first_words(stmt, 3);
        let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
        match w(0) {
            // Only a statement that is nothing but comments and whitespace is
            // forwarded without parsing; anything else whose first word the
            // quick look cannot tell (`(SELECT …)`) goes to the parser.
            "" if pg_trim(strip_comments(stmt)).is_empty() => return Ok(None),
            "begin" | "start" | "commit" | "end" | "rollback" | "abort" | "savepoint"
            | "release" => {
                self.transaction_control = true;
                if w(1) == "prepared" && self.strict {
                    return Err(ProxyError::statement_refused("two-phase commit"));
                }
                return Ok(None);
            }
            "prepare" if w(1) == "transaction" => {
                self.transaction_control = true;
                return if self.strict {
                    Err(ProxyError::statement_refused("two-phase commit"))
                } else {
                    Ok(None)
                };
            }
            // A schema tenant is confined by the server's search_path,
            // which these put back to its default for the rest of the
            // transaction (or of the pipeline): unqualified names would
            // then reach the shared tables unscoped. Only as the last
            // statement of a query string outside a transaction block (the
            // session checks the rest, see `path_reset_ok`).
            "discard" | "reset" if self.own_schema.is_some() && !self.path_reset_ok => {
                if let Some(what) = path_reset_of(&words) {
                    return Err(ProxyError::search_path_reset_refused(what));
                }
            }
            _ => {}
        }
        match w(0) {
            "show" | "discard" | "deallocate" | "fetch" | "move" | "close" | "unlisten" => {
                return Ok(None);
            }
            // SQL-level prepared statements would turn the tenant into a
            // parameter the caller supplies at EXECUTE.
            "execute" | "prepare" if self.strict => {
                return Err(ProxyError::statement_refused("SQL-level PREPARE/EXECUTE"));
            }
            "execute" => return Ok(None),
            "set" | "reset" => {
                let name = if matches!(w(1), "session" | "local") {
                    w(2)
                } else {
                    w(1)
                };
                // A name in Unicode escapes (`U&"…"`) could spell anything,
                // the tenant variable included.
                if crate::frontend::classify::mentions(stmt.as_bytes(), "u&\"") {
                    return Err(ProxyError::statement_refused(&format!(
                        "{} of a setting named in Unicode escapes",
                        w(0).to_uppercase()
                    )));
                }
                // Name resolution and identity must not change under the
                // rewriter, in any isolated session.
                let name = name.trim_matches('"');
                if w(0) == "set" && matches!(name, "client_encoding" | "names") {
                    // The whole value, as Postgres reads an encoding name
                    // (letters and digits only, `'s j i s'` is SJIS): an
                    // encoding whose characters can hide a quote is refused.
                    // Cut from the statement as written (lower-casing
                    // ASCII keeps byte offsets), for the message.
                    let lower = stmt.to_ascii_lowercase();
                    let rest = lower
                        .find(name)
                        .map_or(stmt, |i| stmt[i + name.len()..].trim_start_matches('"'));
                    crate::tenant::check_client_encoding_set(rest)?;
                }
                if self.strict && w(0) == "set" && name == "seed" {
                    // Seeds the server connection's random generator, which
                    // other tenants' sessions use next.
                    return Err(ProxyError::statement_refused("SET seed"));
                }
                if matches!(
                    name,
                    "role"
                        | "session"
                        | "authorization"
                        | "session_authorization"
                        | "search_path"
                        | "schema"
                        | "standard_conforming_strings"
                ) {
                    return Err(ProxyError::statement_refused(&format!(
                        "{} {name}",
                        w(0).to_uppercase()
                    )));
                }
                return Ok(None);
            }
            "table" => {
                // `TABLE t` is `SELECT * FROM t`; sqlparser does not read it.
                let rest = pg_trim(&strip_comments(stmt)[5..]);
                // Only a name can follow; a comment after it goes (the text
                // goes out as written here, where a comment has no place).
                let rest = crate::frontend::classify::comment_start(rest)
                    .map_or(rest, |at| rest[..at].trim_end_matches(is_pg_space));
                return self
                    .statement_text(&format!("SELECT * FROM {rest}"))
                    .map(|r| r.or_else(|| Some(format!("SELECT * FROM {rest}"))));
            }
            "copy" => return self.copy_text(stmt),
            "listen" | "notify" if self.strict => {
                return Err(ProxyError::statement_refused("LISTEN/NOTIFY"));
            }
            // Opaque procedural code: trusted sessions only.
            "do" | "call" => {
                return if self.strict {
                    Err(ProxyError::statement_refused(&w(0).to_uppercase()))
                } else {
                    Ok(None)
                };
            }
            _ => {}
        }
        // `FOR NO KEY UPDATE` / `FOR KEY SHARE` and `OF a, b`: parsed as
        // sqlparser reads lock clauses, given back in the rewritten text.
        let mentions = |w: &str| crate::frontend::classify::mentions(stmt.as_bytes(), w);
        let lock_clauses =
            mentions("key") || mentions("of") && (mentions("update") || mentions("share"));
        let (parsed, lock_clauses) = match tokens(stmt, self.strict) {
            Err(e) => (Err(e), None),
            Ok(tokens) => match lock_clauses
                .then(|| lock_strength::weaken(stmt, &tokens))
                .flatten()
            {
                Some((tokens, clauses)) => (parse_tokens(tokens), Some(clauses)),
                None => (parse_tokens(tokens), None),
            },
        };
        self.more_of = match &lock_clauses {
            Some(clauses) => clauses
                .iter()
                .map(|c| row_locks::of_names(&c.more_of))
                .collect::<Option<Vec<_>>>()
                .map(|names| names.concat()),
            None => Some(Vec::new()),
        };
        let mut parsed = match parsed {
            Ok(parsed) => parsed,
            // Maintenance and DDL the parser does not read return no rows
            // and write none a tenant owns: a trusted session without a
            // tenant runs them as written, as it runs the ones it reads; a
            // tenant session is told it may not run them (not that they
            // cannot be parsed).
            Err(_) if UNPARSED_UTILITY.contains(&w(0)) => {
                return if self.strict {
                    Err(ProxyError::statement_refused(&w(0).to_uppercase()))
                } else {
                    Ok(None)
                };
            }
            Err(e) => return Err(e),
        };
        if parsed.len() != 1 {
            return Err(ProxyError::unparsable("expected one statement"));
        }
        let mut statement = parsed.remove(0);
        // Checked before scoping, so a refused pattern is refused in any
        // position; the parameters are checked at Bind if the statement
        // reads tenant relations (it has holes then).
        let patterns = if self.strict {
            like_pattern::bound_patterns(&statement)?
        } else {
            Vec::new()
        };
        self.leak = leak::LeakCheck::of(&statement);
        self.barrier = self.fence_all || self.leak.statement(&statement);
        if !self.barrier {
            self.cast_params.extend(leak::cast_params(&statement));
        }
        self.note_all_placeholders(&mut statement);
        self.max_param = self
            .max_param
            .max(crate::frontend::classify::max_placeholder(stmt));
        let before_holes = self.casts.len();
        let before_checks = self.checks.len();
        self.check_every_function(&statement)?;
        if !self.data_statement_top(&mut statement)? {
            return Ok(None);
        }
        if self.casts.len() == before_holes && self.checks.len() == before_checks {
            // Nothing to scope: forward the client's own text.
            return Ok(None);
        }
        if self.casts.len() > before_holes {
            self.checks.extend(
                patterns
                    .into_iter()
                    .map(|(param, escape)| TenantCheck::Pattern { param, escape }),
            );
        }
        match lock_clauses {
            Some(clauses) => {
                lock_strength::restore(&checked_print(&statement)?, &clauses).map(Some)
            }
            None => checked_print(&statement).map(Some),
        }
    }

    /// Every function call anywhere in the statement passes the function
    /// policy, also where the scoping walk does not look: a position it
    /// misses (as it once missed TABLESAMPLE's quantity) cannot hide a
    /// refused function.
    fn check_every_function(&mut self, s: &Statement) -> Result<(), ProxyError> {
        let flow = sqlparser::ast::visit_expressions(s, |e| match e {
            sqlparser::ast::Expr::Function(f) => match self.function_call(f) {
                Ok(()) => std::ops::ControlFlow::Continue(()),
                Err(e) => std::ops::ControlFlow::Break(e),
            },
            _ => std::ops::ControlFlow::Continue(()),
        });
        match flow {
            std::ops::ControlFlow::Break(e) => Err(e),
            std::ops::ControlFlow::Continue(()) => Ok(()),
        }
    }

    /// Rewrites a statement in place. Returns `false` for statements passed
    /// through as written (only in trusted sessions).
    fn data_statement_top(&mut self, s: &mut Statement) -> Result<bool, ProxyError> {
        match s {
            Statement::Query(q) => self.query(q).map(|_| true),
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                self.data_statement(s).map(|_| true)
            }
            Statement::Explain { statement, .. } => self.data_statement_top(statement),
            Statement::Declare { stmts } => {
                for d in stmts {
                    if d.hold == Some(true) && self.strict {
                        // It would outlive the transaction and its tenant.
                        return Err(ProxyError::statement_refused("DECLARE … WITH HOLD"));
                    }
                    if let Some(q) = &mut d.for_query {
                        self.query(q)?;
                    } else if self.strict {
                        return Err(ProxyError::construct_unsupported("this DECLARE"));
                    }
                }
                Ok(true)
            }
            Statement::Prepare { statement, .. } => self.data_statement_top(statement),
            // DDL that reads rows as it runs (a trusted session's; tenant
            // sessions may not run DDL): its query is scoped, so without a
            // tenant it is refused like the query alone would be.
            Statement::CreateTable(ct) if !self.strict && ct.query.is_some() => {
                if let Some(q) = &mut ct.query {
                    self.query(q)?;
                }
                Ok(true)
            }
            Statement::CreateView(cv) if !self.strict && cv.materialized => {
                self.query(&mut cv.query).map(|_| true)
            }
            Statement::Copy { .. } => Err(ProxyError::internal()),
            other => {
                if self.strict {
                    Err(ProxyError::statement_refused(statement_kind(other)))
                } else {
                    Ok(false)
                }
            }
        }
    }

    /// COPY: out of a tenant relation is scoped; into one is refused.
    fn copy_text(&mut self, stmt: &str) -> Result<Option<String>, ProxyError> {
        // sqlparser wants the data of COPY … FROM STDIN inline: give it an
        // empty data section so it can read the statement itself.
        let parse = |sql: &str| parse_tokens(tokens(sql, self.strict)?);
        let mut parsed = match parse(stmt) {
            Ok(p) => p,
            Err(e) => parse(&format!("{stmt};\n\\.\n")).map_err(|_| e)?,
        };
        if parsed.len() != 1 {
            return Err(ProxyError::unparsable("expected one COPY statement"));
        }
        if self.strict {
            // A COPY has no parameters: only literal patterns to refuse.
            like_pattern::bound_patterns(&parsed[0])?;
        }
        let Some(Statement::Copy {
            source, to, target, ..
        }) = parsed.first_mut()
        else {
            return Err(ProxyError::unparsable("expected one COPY statement"));
        };
        if !matches!(target, CopyTarget::Stdout | CopyTarget::Stdin) && self.strict {
            return Err(ProxyError::statement_refused(
                "COPY to or from a server file or program",
            ));
        }
        if !*to {
            if let CopySource::Table { table_name, .. } = source {
                let parts = scope::name_parts(table_name)?;
                return match self.classify_relation(&parts)? {
                    scope::Access::Tenant(_) => {
                        Err(ProxyError::copy_into_tenant_table(&parts.join(".")))
                    }
                    scope::Access::Free { writable: true } => Ok(None),
                    scope::Access::Free { writable: false } => {
                        Err(ProxyError::statement_refused("COPY FROM"))
                    }
                };
            }
            return Err(ProxyError::unparsable("COPY FROM needs a table"));
        }
        let before = (self.casts.len(), self.checks.len());
        // Nothing scoped and nothing to check against the tenant (a
        // `COPY (INSERT … RETURNING …)` writes the tenant column itself):
        // the client's text goes as written.
        let unchanged = |rw: &Self| (rw.casts.len(), rw.checks.len()) == before;
        match source {
            CopySource::Query(q) => {
                self.leak = leak::LeakCheck::of(&**q);
                self.barrier = self.leak.query(q);
                self.query(q)?
            }
            CopySource::Table {
                table_name,
                columns,
            } => {
                let cols = if columns.is_empty() {
                    "*".to_string()
                } else {
                    columns
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let mut q = parse_query(&format!("SELECT {cols} FROM {table_name}"))?;
                self.query(&mut q)?;
                if unchanged(self) {
                    return Ok(None);
                }
                *source = CopySource::Query(Box::new(q));
            }
        }
        if unchanged(self) {
            return Ok(None);
        }
        parsed.pop().map(|s| checked_print(&s)).transpose()
    }

    /// Refuses relations in another tenant's schema.
    pub(crate) fn check_schema(&self, schema: &str) -> Result<(), ProxyError> {
        if self.tenant_schemas.contains(schema) && self.own_schema != Some(schema) {
            return Err(ProxyError::schema_refused(schema));
        }
        Ok(())
    }

    /// Whether `schema.name` is configured as a global table.
    pub(crate) fn is_global(&self, schema: &str, name: &str) -> bool {
        self.global_tables.contains(name)
            || self.global_tables.contains(&format!("{schema}.{name}"))
    }

    /// Records every `$n` anywhere in a statement (some clauses, such as
    /// TABLESAMPLE, are not walked by the scoping pass).
    fn note_all_placeholders(&mut self, statement: &mut Statement) {
        let mut max = self.max_param;
        let _ = sqlparser::ast::visit_expressions_mut(statement, |e| {
            if let sqlparser::ast::Expr::Value(v) = e
                && let sqlparser::ast::Value::Placeholder(p) = &v.value
                && let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
            {
                max = max.max(n);
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        self.max_param = max;
    }

    /// Records a `$n` parameter reference.
    pub(crate) fn note_placeholder(&mut self, p: &str) {
        if let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            self.max_param = self.max_param.max(n);
        }
    }
}

/// A short name for a statement kind, for refusals.
fn statement_kind(s: &Statement) -> &'static str {
    match s {
        Statement::CreateTable(_)
        | Statement::CreateView { .. }
        | Statement::CreateIndex(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateFunction(_)
        | Statement::CreateSequence { .. }
        | Statement::CreateType { .. }
        | Statement::CreateExtension { .. }
        | Statement::CreateRole { .. }
        | Statement::CreateTrigger { .. }
        | Statement::AlterTable { .. }
        | Statement::AlterIndex { .. }
        | Statement::AlterView { .. }
        | Statement::AlterRole { .. }
        | Statement::Drop { .. }
        | Statement::DropFunction { .. } => "DDL",
        Statement::Truncate { .. } => "TRUNCATE",
        Statement::Grant { .. } | Statement::Revoke { .. } => "GRANT/REVOKE",
        Statement::Call(_) => "CALL",
        Statement::Merge(_) => "MERGE",
        Statement::LockTables { .. } => "LOCK",
        Statement::Vacuum(_) | Statement::Analyze { .. } => "VACUUM/ANALYZE",
        _ => "this statement",
    }
}

#[cfg(test)]
mod tests {
    use super::{path_reset_in, path_reset_then};

    #[test]
    fn path_resets_are_found_as_the_rewriter_reads_them() {
        for (sql, want) in [
            ("RESET ALL", Some("RESET ALL")),
            ("reset/* x */ALL;", Some("RESET ALL")),
            ("reset local all", Some("RESET ALL")),
            ("SELECT 1; Discard\n All", Some("DISCARD ALL")),
            ("RESET search_path", None),
            ("DISCARD PLANS", None),
            ("SELECT 'reset all'", None),
            ("-- reset all\nSELECT 1", None),
        ] {
            assert_eq!(path_reset_in(sql), want, "{sql}");
        }
    }

    #[test]
    fn resets_are_found_with_what_follows() {
        for (sql, want) in [
            ("RESET ALL", Some(("RESET ALL", ""))),
            (
                "SELECT 1; RESET ALL; -- done",
                Some(("RESET ALL", "; -- done")),
            ),
            ("reset all;(SELECT 1)", Some(("RESET ALL", ";(SELECT 1)"))),
            ("DISCARD ALL; SELECT 1", Some(("DISCARD ALL", "; SELECT 1"))),
            ("RESET search_path; SELECT 1", None),
            ("SELECT 'reset all;'; SELECT 1", None),
        ] {
            assert_eq!(path_reset_then(sql), want, "{sql}");
        }
    }
}
