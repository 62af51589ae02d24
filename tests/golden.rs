//! Golden tests for the SQL rewriter: every case in `tests/golden/rewrite.txt`
//! is rewritten against a fixed sample catalog and compared exactly.
//!
//! File format (one case is a block of lines; blank lines separate nothing,
//! a new `SQL:` line starts a new case):
//!
//! ```text
//! # a comment
//! ## a section heading (printed with failures)
//! MODE: trusted                 optional: trusted session (strict = false)
//! MODE: schema=globex_schema    optional: the session's own tenant schema
//! MODE: fence                   optional: every tenant relation fenced (a
//!                               Parse declared a type for a cast parameter)
//! KNOWN-BUG: what is wrong      optional: reported, never fails the run
//! SQL: SELECT …                 the input (one line)
//! ...  more input               optional continuation, joined with "\n"
//! OUT: SELECT …                 rendered with render_literal("acme"), or
//! SAME                          forwarded unchanged (Rewritten::Unchanged), or
//! ERR: 42501                    refused with this SQLSTATE
//! ERR: 42501 ~ some text        … and a message containing "some text"
//! PARAM $3: SELECT …            optional: render_param(3) must be this, and 3
//!                               must be max_param + 1 (the tenant's parameter)
//! CHECKS: 'acme', $2            optional: the template's checks (none if absent);
//!                                 `pattern $1 escape '\'`: a LIKE pattern parameter
//! ```
//!
//! `GOLDEN_PRINT=1 cargo test --test golden -- --nocapture` prints what the
//! rewriter makes of every case, in the file's format.

use std::collections::HashSet;
use std::fmt::Write as _;

use tenantgate::catalog::{Catalog, RelationKind};
use tenantgate::rewrite::template::TenantType;
use tenantgate::rewrite::{RewriteCache, RewriteRules, Rewritten, TenantCheck, cache_key, rewrite};

const GOLDEN: &str = include_str!("golden/rewrite.txt");
const TENANT: &str = "acme";
const MIN_CASES: usize = 170;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Out(String),
    Same,
    Err {
        code: String,
        contains: Option<String>,
    },
}

#[derive(Debug, Clone, Default)]
struct Case {
    line: usize,
    section: String,
    trusted: bool,
    fence: bool,
    schema: Option<String>,
    known_bug: Option<String>,
    sql: String,
    expect: Option<Expect>,
    param: Option<(usize, String)>,
    checks: Option<String>,
}

/// What the rewriter did, in the file's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Actual {
    Out {
        literal: String,
        checks: String,
        template: std::sync::Arc<tenantgate::rewrite::Template>,
    },
    Same,
    Err {
        code: String,
        message: String,
    },
}

fn parse_file(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut section = String::new();
    // Modifiers seen since the last case, applied to the next SQL line.
    let mut pending = Case::default();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_end();
        if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().to_string();
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(m) = line.strip_prefix("MODE:") {
            for word in m.split_whitespace() {
                if word == "trusted" {
                    pending.trusted = true;
                } else if word == "fence" {
                    pending.fence = true;
                } else if let Some(s) = word.strip_prefix("schema=") {
                    pending.schema = Some(s.to_string());
                } else {
                    panic!("rewrite.txt:{n}: unknown MODE word {word:?}");
                }
            }
            continue;
        }
        if let Some(b) = line.strip_prefix("KNOWN-BUG:") {
            pending.known_bug = Some(b.trim().to_string());
            continue;
        }
        if let Some(sql) = line.strip_prefix("SQL:") {
            let mut case = std::mem::take(&mut pending);
            case.line = n;
            case.section = section.clone();
            case.sql = sql.strip_prefix(' ').unwrap_or(sql).to_string();
            cases.push(case);
            continue;
        }
        let Some(case) = cases.last_mut() else {
            panic!("rewrite.txt:{n}: {line:?} before any SQL: line");
        };
        if let Some(more) = line.strip_prefix("...") {
            assert!(
                case.expect.is_none(),
                "rewrite.txt:{n}: continuation after the expectation"
            );
            case.sql.push('\n');
            case.sql.push_str(more.strip_prefix(' ').unwrap_or(more));
        } else if let Some(out) = line.strip_prefix("OUT:") {
            set_expect(case, n, Expect::Out(out.trim().to_string()));
        } else if line == "SAME" {
            set_expect(case, n, Expect::Same);
        } else if let Some(err) = line.strip_prefix("ERR:") {
            let (code, contains) = match err.split_once(" ~ ") {
                Some((c, t)) => (c.trim().to_string(), Some(t.trim().to_string())),
                None => (err.trim().to_string(), None),
            };
            assert_eq!(
                code.len(),
                5,
                "rewrite.txt:{n}: SQLSTATE is five characters"
            );
            set_expect(case, n, Expect::Err { code, contains });
        } else if let Some(p) = line.strip_prefix("PARAM $") {
            let (k, text) = p
                .split_once(':')
                .unwrap_or_else(|| panic!("rewrite.txt:{n}: PARAM $k: text"));
            let k: usize = k
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("rewrite.txt:{n}: PARAM needs a number"));
            case.param = Some((k, text.trim().to_string()));
        } else if let Some(c) = line.strip_prefix("CHECKS:") {
            case.checks = Some(c.trim().to_string());
        } else {
            panic!("rewrite.txt:{n}: cannot read {line:?}");
        }
    }
    for c in &cases {
        assert!(
            c.expect.is_some(),
            "rewrite.txt:{}: case has no OUT/SAME/ERR",
            c.line
        );
        if c.param.is_some() || c.checks.is_some() {
            assert!(
                matches!(c.expect, Some(Expect::Out(_))),
                "rewrite.txt:{}: PARAM/CHECKS need an OUT case",
                c.line
            );
        }
    }
    cases
}

fn set_expect(case: &mut Case, n: usize, e: Expect) {
    assert!(
        case.expect.is_none(),
        "rewrite.txt:{n}: second expectation for the case at line {}",
        case.line
    );
    case.expect = Some(e);
}

/// The fixed sample catalog the golden file is written against.
fn sample_catalog() -> Catalog {
    let tenant = |s: &str, n: &str, ty: &str| {
        (
            s.to_string(),
            n.to_string(),
            RelationKind::Tenant(ty.into()),
        )
    };
    let plain = |s: &str, n: &str| (s.to_string(), n.to_string(), RelationKind::Plain);
    Catalog::new(
        [
            tenant("public", "customers", "text"),
            tenant("public", "orders", "text"),
            tenant("public", "items", "bigint"),
            tenant("public", "Events", "character varying(64)"),
            plain("public", "plans"),
            plain("public", "audit"),
            tenant("globex_schema", "orders", "text"),
            plain("globex_schema", "settings"),
            tenant("initech_schema", "orders", "text"),
        ],
        [
            "pg_class",
            "pg_type",
            "pg_namespace",
            "pg_attribute",
            "pg_proc",
            "pg_stats",
            "pg_stat_activity",
            "pg_locks",
            "pg_prepared_xacts",
            "pg_statistic",
            "pg_settings",
            "pg_sequences",
        ]
        .map(String::from),
        vec!["public".into()],
        ["my_udf".to_string(), "allowed_fn".to_string()],
    )
}

struct Rules {
    catalog: Catalog,
    globals: HashSet<String>,
    allowed: HashSet<String>,
    schemas: HashSet<String>,
}

impl Rules {
    fn new() -> Rules {
        Rules {
            catalog: sample_catalog(),
            globals: ["plans".to_string()].into(),
            allowed: ["allowed_fn".to_string()].into(),
            schemas: ["globex_schema".to_string(), "initech_schema".to_string()].into(),
        }
    }

    /// The rules `case` is rewritten under.
    fn rules<'a>(&'a self, case: &'a Case) -> RewriteRules<'a> {
        RewriteRules {
            catalog: &self.catalog,
            column: "tenant_id",
            global_tables: &self.globals,
            allowed_functions: &self.allowed,
            tenant_schemas: &self.schemas,
            own_schema: case.schema.as_deref(),
            strict: !case.trusted,
            fence: case.fence,
        }
    }

    fn run(&self, case: &Case) -> Actual {
        match rewrite(&case.sql, &self.rules(case)) {
            Ok(Rewritten::Unchanged) => Actual::Same,
            Ok(Rewritten::Template(t)) => Actual::Out {
                literal: t.render_literal(TENANT),
                checks: format_checks(&t.checks, t.check_type),
                template: t,
            },
            Err(e) => Actual::Err {
                code: e.code.code().to_string(),
                message: e.message,
            },
        }
    }
}

/// The checks as the file writes them; when parameters are checked as
/// another type than text (how a value sent in binary is read), the list
/// ends with `as <type>`.
fn format_checks(checks: &[TenantCheck], ty: TenantType) -> String {
    let list = checks
        .iter()
        .map(|c| match c {
            TenantCheck::Literal(v) => format!("'{v}'"),
            TenantCheck::Param(n) => format!("${n}"),
            TenantCheck::Pattern { param, escape } => {
                format!("pattern ${param} escape '{}'", char::from(*escape))
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let params = checks.iter().any(|c| matches!(c, TenantCheck::Param(_)));
    if params && ty != TenantType::Text {
        format!("{list} as {ty:?}")
    } else {
        list
    }
}

/// Every difference between what the case expects and what happened.
fn differences(case: &Case, actual: &Actual) -> Vec<String> {
    let mut out = Vec::new();
    let expect = case.expect.as_ref().expect("checked when parsing");
    match (expect, actual) {
        (Expect::Same, Actual::Same) => {}
        (
            Expect::Out(want),
            Actual::Out {
                literal,
                checks,
                template,
            },
        ) => {
            if want != literal {
                out.push(format!("expected: OUT: {want}\n  actual:   OUT: {literal}"));
            }
            let want_checks = case.checks.clone().unwrap_or_default();
            if &want_checks != checks {
                out.push(format!(
                    "expected: CHECKS: {want_checks}\n  actual:   CHECKS: {checks}"
                ));
            }
            if let Some((k, want_param)) = &case.param {
                // The proxy appends the tenant as the parameter after the
                // highest one the statement uses.
                let next = template.max_param + 1;
                if *k != next {
                    out.push(format!(
                        "expected the tenant parameter to be ${k}\n  actual:   ${next} (max_param {})",
                        template.max_param
                    ));
                }
                let got = template.render_param(*k);
                if &got != want_param {
                    out.push(format!(
                        "expected: PARAM ${k}: {want_param}\n  actual:   PARAM ${k}: {got}"
                    ));
                }
            }
        }
        (Expect::Err { code, contains }, Actual::Err { code: got, message }) => {
            if code != got {
                out.push(format!(
                    "expected: ERR: {code}\n  actual:   ERR: {got} ({message})"
                ));
            }
            if let Some(text) = contains
                && !message.contains(text.as_str())
            {
                out.push(format!(
                    "expected a message containing {text:?}\n  actual message: {message}"
                ));
            }
        }
        (want, got) => out.push(format!(
            "expected: {}\n  actual:   {}",
            describe_expect(want),
            describe_actual(got)
        )),
    }
    out
}

fn describe_expect(e: &Expect) -> String {
    match e {
        Expect::Out(s) => format!("OUT: {s}"),
        Expect::Same => "SAME".into(),
        Expect::Err { code, .. } => format!("ERR: {code}"),
    }
}

fn describe_actual(a: &Actual) -> String {
    match a {
        Actual::Out {
            literal, checks, ..
        } => {
            if checks.is_empty() {
                format!("OUT: {literal}")
            } else {
                format!("OUT: {literal}\n  CHECKS: {checks}")
            }
        }
        Actual::Same => "SAME".into(),
        Actual::Err { code, message } => format!("ERR: {code} ({message})"),
    }
}

/// The case as the file would spell what actually happened.
fn print_actual(case: &Case, actual: &Actual) -> String {
    let mut s = String::new();
    if case.trusted || case.schema.is_some() || case.fence {
        let mut words = Vec::new();
        if case.trusted {
            words.push("trusted".to_string());
        }
        if case.fence {
            words.push("fence".to_string());
        }
        if let Some(sc) = &case.schema {
            words.push(format!("schema={sc}"));
        }
        let _ = writeln!(s, "MODE: {}", words.join(" "));
    }
    let mut lines = case.sql.lines();
    let _ = writeln!(s, "SQL: {}", lines.next().unwrap_or_default());
    for l in lines {
        let _ = writeln!(s, "... {l}");
    }
    match actual {
        Actual::Out {
            literal,
            checks,
            template,
        } => {
            let _ = writeln!(s, "OUT: {literal}");
            let _ = writeln!(
                s,
                "PARAM ${}: {}",
                template.max_param + 1,
                template.render_param(template.max_param + 1)
            );
            if !checks.is_empty() {
                let _ = writeln!(s, "CHECKS: {checks}");
            }
        }
        Actual::Same => s.push_str("SAME\n"),
        Actual::Err { code, message } => {
            let _ = writeln!(s, "ERR: {code} ~ {message}");
        }
    }
    s
}

#[test]
fn golden_rewrites() {
    let cases = parse_file(GOLDEN);
    assert!(
        cases.len() >= MIN_CASES,
        "rewrite.txt has {} cases; expected at least {MIN_CASES}",
        cases.len()
    );
    let rules = Rules::new();
    let print = std::env::var_os("GOLDEN_PRINT").is_some();
    let mut failures = 0usize;
    let mut known = Vec::new();
    let mut fixed = Vec::new();
    let mut report = String::new();
    for case in &cases {
        let actual = rules.run(case);
        if print {
            println!("{}", print_actual(case, &actual));
        }
        let diffs = differences(case, &actual);
        match (&case.known_bug, diffs.is_empty()) {
            (None, true) => {}
            (None, false) => {
                failures += 1;
                let _ = writeln!(
                    report,
                    "\nrewrite.txt:{} [{}]\n  input:    {}\n  {}",
                    case.line,
                    case.section,
                    case.sql,
                    diffs.join("\n  ")
                );
            }
            (Some(bug), false) => known.push(format!(
                "rewrite.txt:{} KNOWN-BUG ({bug})\n  input:    {}\n  {}",
                case.line,
                case.sql,
                diffs.join("\n  ")
            )),
            (Some(bug), true) => fixed.push(format!(
                "rewrite.txt:{} KNOWN-BUG ({bug}) now passes: move it out of the known-bug section",
                case.line
            )),
        }
    }
    for k in &known {
        eprintln!("known rewriter bug (not failing the run):\n{k}\n");
    }
    for f in &fixed {
        eprintln!("{f}");
    }
    eprintln!(
        "golden: {} cases, {} failed, {} known bugs still present, {} known bugs fixed",
        cases.len(),
        failures,
        known.len(),
        fixed.len()
    );
    assert!(
        failures == 0,
        "{failures} of {} golden rewrite cases failed:{report}",
        cases.len()
    );
}

/// `sql` with every run of digits that stands alone (not part of a word, a
/// `$n` or a quoted name) replaced by a number drawn from `seed`; inside
/// strings too, where the text path is just as much the reference.
fn renumber(sql: &str, seed: &mut u64) -> String {
    const NUMBERS: [&str; 8] = ["0", "7", "42", "3", "1000000", "99", "12", "5"];
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut i = 0;
    while i < b.len() {
        let stands_alone =
            i == 0 || !(b[i - 1].is_ascii_alphanumeric() || matches!(b[i - 1], b'_' | b'$' | b'"'));
        if b[i].is_ascii_digit() && stands_alone {
            let end = i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.push_str(NUMBERS[(*seed >> 33) as usize % NUMBERS.len()]);
            i = end;
        } else {
            let ch = sql[i..].chars().next().unwrap_or_default();
            out.push(ch);
            i += ch.len_utf8().max(1);
        }
    }
    out
}

/// Outcomes compared: the same rewrite, or the same refusal.
fn same_outcome(
    a: &Result<Rewritten, tenantgate::error::ProxyError>,
    b: &Result<Rewritten, tenantgate::error::ProxyError>,
) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => x.code.code() == y.code.code() && x.message == y.message,
        _ => false,
    }
}

/// The rewrite cache answers a statement that differs from one it has seen
/// only in its numbers from that statement's shape, without parsing. Every
/// golden case is sent through one cache, then again with other numbers
/// (several times): each answer must be exactly what the text path gives
/// for that text, refusals and tenant checks included (`VALUES (1, 7)` into
/// a bigint tenant column checks `'7'`; with other numbers, other checks).
#[test]
fn shapes_rewrite_like_the_text_path() {
    let rules = Rules::new();
    let cache = RewriteCache::new(64 << 20);
    // The same lookups by text alone, to count what the shapes added.
    let by_text = RewriteCache::new(64 << 20);
    let mut seed = 0x7e57_5eed_u64;
    let (mut lookups, mut failures) = (0u64, Vec::new());
    for case in parse_file(GOLDEN) {
        let r = rules.rules(&case);
        let schema = case.schema.as_deref().map(std::sync::Arc::<str>::from);
        let mut texts = vec![case.sql.clone()];
        texts.extend((0..6).map(|_| renumber(&case.sql, &mut seed)));
        for text in texts {
            lookups += 1;
            let key = cache_key(!case.trusted, schema.clone(), &text);
            by_text.get_or_insert(key.clone(), || rewrite(&text, &r));
            let via_cache = cache.rewrite(key, &r);
            let direct = rewrite(&text, &r);
            if !same_outcome(&via_cache, &direct) {
                failures.push(format!(
                    "rewrite.txt:{}\n  text:   {text}\n  cache:  {via_cache:?}\n  direct: {direct:?}",
                    case.line
                ));
            }
        }
    }
    let (stats, text_only) = (cache.stats(), by_text.stats());
    eprintln!("shapes: {lookups} lookups, {stats:?}; by text alone: {text_only:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let by_shape = stats.hits - text_only.hits;
    assert!(
        by_shape >= 300,
        "only {by_shape} lookups answered by shape: too few for the test to mean anything"
    );
}

/// The runner itself: a wrong expectation must be reported, not passed.
#[test]
fn runner_reports_mismatches() {
    let rules = Rules::new();
    let text = "## self-test\nSQL: SELECT 1\nOUT: SELECT 2\n\nSQL: SELECT * FROM orders\nSAME\n\nSQL: SELECT * FROM pg_stats\nERR: 42P01\n\nSQL: SELECT * FROM orders\nOUT: SELECT * FROM (SELECT * FROM orders WHERE tenant_id = 'acme') AS orders\nCHECKS: 'acme'\n";
    let cases = parse_file(text);
    assert_eq!(cases.len(), 4);
    for case in &cases {
        let actual = rules.run(case);
        assert!(
            !differences(case, &actual).is_empty(),
            "rewrite.txt self-test at line {} should have failed: {actual:?}",
            case.line
        );
    }
    // And a right expectation passes, PARAM included.
    let ok = parse_file(
        "SQL: SELECT * FROM orders WHERE id = $1\nOUT: SELECT * FROM (SELECT * FROM orders WHERE tenant_id = 'acme') AS orders WHERE id = $1\nPARAM $2: SELECT * FROM (SELECT * FROM orders WHERE tenant_id = $2) AS orders WHERE id = $1\n",
    );
    let actual = rules.run(&ok[0]);
    assert_eq!(differences(&ok[0], &actual), Vec::<String>::new());
}

/// A parameter under a cast is left unfenced (untyped, it takes the cast's
/// type at Bind) and reported, so that a Parse declaring a type for it asks
/// for the fenced rewrite (the cast then runs where it is evaluated).
#[test]
fn cast_parameters_are_reported_for_the_fenced_rewrite() {
    let rules = Rules::new();
    let case = |fence: bool| Case {
        sql: "SELECT id FROM orders WHERE CASE WHEN note = 'x' THEN $1::int = 1 END".into(),
        fence,
        ..Case::default()
    };
    let Ok(Rewritten::Template(plain)) = rewrite(&case(false).sql, &rules.rules(&case(false)))
    else {
        panic!("rewritten");
    };
    assert_eq!(plain.cast_params, [1]);
    assert!(!plain.render_literal(TENANT).contains("OFFSET 0"));
    let Ok(Rewritten::Template(fenced)) = rewrite(&case(true).sql, &rules.rules(&case(true)))
    else {
        panic!("rewritten");
    };
    assert!(fenced.cast_params.is_empty());
    assert!(fenced.render_literal(TENANT).contains("OFFSET 0"));
}

/// Statements that Postgres splits or reads otherwise than a naive scan
/// would (a `--` comment ended by a carriage return, `$` inside a name, a
/// dollar quote with a non-ASCII tag, a comment between SET and its name):
/// each is scoped (the other tenant's rows filtered out) or refused, never
/// forwarded as it came. Control characters do not fit the golden file.
#[test]
fn statements_read_as_postgres_splits_them() {
    let rules = Rules::new();
    let case = |sql: &str| Case {
        line: 0,
        section: "differentials".into(),
        trusted: false,
        fence: false,
        schema: None,
        known_bug: None,
        sql: sql.to_string(),
        expect: None,
        param: None,
        checks: None,
    };
    // Every statement comes out as its own statement (as the proxy's
    // splitter, which follows Postgres on comments, reads the output), and
    // every one that reads customers is scoped.
    let scoped = |sql: &str, out: &str| {
        let ins = tenantgate::frontend::classify::split_statements(sql).count();
        let outs: Vec<&str> = tenantgate::frontend::classify::split_statements(out).collect();
        assert_eq!(outs.len(), ins, "{sql:?} came out as {out:?}");
        for piece in outs {
            assert!(
                !piece.contains("FROM customers") || piece.contains("'acme'"),
                "{sql:?}: {piece:?} went out unscoped"
            );
        }
    };
    for sql in [
        "SELECT 1 -- c\n; SELECT * FROM customers",
        "SELECT 1 -- c\r; SELECT count(*) FROM customers",
        "BEGIN -- c\n; UPDATE customers SET name = name; COMMIT",
        // A trailing comment, then a string holding a line break: with the
        // break lost, the comment ended inside the string and the rest of
        // it ran unscoped (and reset the tenant variable).
        "SELECT 1 -- c\n; SELECT '\n; SELECT set_config($q$app.current_$q$ || $q$tenant$q$, \
         $q$globex$q$, true); SELECT tenant_id, name FROM customers --' FROM customers",
    ] {
        match rules.run(&case(sql)) {
            Actual::Out { literal, .. } => scoped(sql, &literal),
            other => panic!("{sql:?}: {other:?}"),
        }
    }
    // `TABLE t` goes out as `SELECT * FROM t` cut from the client's text
    // (the trailing comment kept its line break only where the client's
    // text was sent whole).
    for sql in [
        "TABLE plans --\n; SELECT * FROM customers",
        "TABLE plans -- c\n; SELECT 'x\n; SELECT * FROM customers; --' FROM customers",
    ] {
        match rules.run(&case(sql)) {
            Actual::Out { literal, .. } => scoped(sql, &literal),
            other => panic!("{sql:?}: {other:?}"),
        }
    }
    // Dollar-quote tags that Postgres reads and sqlparser does not (it
    // takes `$€$` for a parameter and a name): the string sqlparser saw
    // held live SQL for Postgres, forwarded unscoped. Refused.
    for sql in [
        // Two unary minus signs print as `--`, a comment for Postgres that
        // took the rest of the line (the tenant filter) and, after a line
        // break in a string, let the string's remainder run as SQL.
        "SELECT - - 1 AS a, '\n1 AS a; SELECT * FROM customers; --' AS b FROM customers",
        "UPDATE customers SET name = name WHERE id = - - 1 AND name <> '\n0); \
         UPDATE customers SET email = $$x$$ WHERE id = 1; --'",
        "select - -1 as a, id from customers where id = 1",
        // An operator against a comment: Postgres reads `|` and a comment,
        // sqlparser the operator `|/*` and then a string to the last quote.
        "SELECT 2 |/* ' */ 3, (SELECT string_agg(tenant_id || name, ',') FROM customers) AS b --'",
        "SELECT 2 |-- '\n 3, (SELECT count(*) FROM customers) AS b --'",
        // X'', N'' and B'' strings are printed back without their quotes
        // doubled (and sqlparser takes a backslash in X'' for an escape).
        "SELECT X''', (SELECT string_agg(name, ',') FROM customers) AS b, X''' AS z FROM customers",
        "SELECT N''', (SELECT count(*) FROM customers) AS b, N''' AS z FROM customers",
        "SELECT X'\\', (SELECT count(*) FROM customers) AS b, X\\'' AS z FROM customers",
        "SELECT $€$, 1 AS h, '$€$ AS a, (SELECT string_agg(email, ',') FROM customers) AS b --'",
        "SELECT $\u{a0}$, '$\u{a0}$, (SELECT count(*) FROM customers) --'",
    ] {
        match rules.run(&case(sql)) {
            Actual::Err { code, .. } => assert_eq!(code, "0A000", "{sql:?}"),
            other => panic!("{sql:?} was not refused: {other:?}"),
        }
    }
    for sql in [
        "-- x\rSELECT * FROM customers",
        "BEGIN -- x\r; SELECT * FROM customers",
        "/* c */ -- x\rUPDATE customers SET name = 'y' WHERE tenant_id = 'globex'",
        "SET application_name = x$$; SELECT * FROM customers; -- $$",
        "SELECT a$$b FROM customers",
        "SET application_name = $é$'$é$; SELECT * FROM customers WHERE tenant_id <> 'acme'; -- '",
    ] {
        match rules.run(&case(sql)) {
            Actual::Out { literal, .. } => assert!(
                literal.contains("'acme'"),
                "{sql:?} went out unscoped: {literal}"
            ),
            Actual::Err { .. } => {}
            Actual::Same => panic!("{sql:?} was forwarded as it came"),
        }
    }
    for sql in [
        "SET /**/ standard_conforming_strings = off",
        "SET /* a */ /* b */ search_path = public",
        "RESET -- x\n search_path",
        "SET SESSION /**/ role postgres",
    ] {
        match rules.run(&case(sql)) {
            Actual::Err { code, .. } => assert_eq!(code, "42501", "{sql:?}"),
            other => panic!("{sql:?} was not refused: {other:?}"),
        }
    }
}
