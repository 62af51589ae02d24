//! Hostile SQL: statements built to exhaust the rewriter (very long operator
//! chains, deep nesting, huge texts, tens of thousands of set-operation arms)
//! and invalid UTF-8 on the wire.
//!
//! The rewriter runs on tokio worker threads, whose stacks are 2 MiB, and a
//! stack overflow aborts the whole proxy. So every statement is rewritten on
//! a thread with exactly that stack and must come back promptly with a
//! rewrite or a clean refusal (54000 / 54001 / 42601), never a crash; a
//! statement that names a tenant table must never come back unchanged.
//!
//! The statements the brief names (50,000-term OR chain, 10,000 nested
//! parentheses, 1,000 nested subqueries, 5 MB, 100,000 UNION ALL arms) are
//! refused by the rewriter's cheap pre-checks and run in this process. The
//! ones that stay under those limits reach the parser; each runs in a child
//! process (this test binary, re-run for one case), so that a stack overflow
//! is reported as that case's failure instead of killing the test run.
//! Cases listed with `known` recorded rewriter bugs, now fixed: they fail the
//! run if they come back (set `HOSTILE_LENIENT=1` to only report them).
//!
//! Then the same kind of statements, and raw invalid UTF-8, go through a real
//! proxy: each gets an answer, the session (or at least the proxy) stays up,
//! and another client keeps working. A statement that overflows the stack is
//! sent to the proxy binary in a child process, to see whether it survives.

mod raw_client;
mod support;

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use raw_client::{RawClient, ReadEnd};
use tenantgate::catalog::{Catalog, RelationKind};
use tenantgate::rewrite::{RewriteRules, Rewritten, rewrite};

/// A tokio worker thread's stack.
const TOKIO_STACK: usize = 2 * 1024 * 1024;
/// SQLSTATEs that count as a clean refusal of a hostile statement.
const CLEAN_CODES: &[&str] = &["54000", "54001", "42601"];
/// The environment variable that selects a case in a child process.
const CHILD_ENV: &str = "TENANTGATE_HOSTILE_CASE";
/// What a child prints when its case passed.
const CHILD_OK: &str = "HOSTILE-CASE-OK";

// ------------------------------------------------------------ statements

fn repeat_join(unit: &str, n: usize, sep: &str) -> String {
    let mut s = String::with_capacity((unit.len() + sep.len()) * n);
    for i in 0..n {
        if i > 0 {
            s.push_str(sep);
        }
        s.push_str(unit);
    }
    s
}

fn or_chain(n: usize) -> String {
    format!(
        "SELECT * FROM orders WHERE {}",
        repeat_join("flag", n, " OR ")
    )
}

fn nested_parens(n: usize) -> String {
    format!("SELECT {}1{} FROM orders", "(".repeat(n), ")".repeat(n))
}

fn nested_subqueries(n: usize) -> String {
    format!(
        "SELECT * FROM orders WHERE id IN {}(1){}",
        "(SELECT id FROM orders WHERE id IN ".repeat(n),
        ")".repeat(n)
    )
}

fn union_all(n: usize) -> String {
    repeat_join("SELECT id FROM orders", n, " UNION ALL ")
}

fn nested_case(n: usize) -> String {
    format!(
        "SELECT {} tenant_id {} AS t FROM orders",
        "CASE WHEN true THEN ".repeat(n),
        " END".repeat(n)
    )
}

fn five_mb() -> String {
    format!(
        "SELECT * FROM orders WHERE note = '{}'",
        "x".repeat(5 * 1024 * 1024)
    )
}

/// One hostile statement for the rewriter.
struct Case {
    name: &'static str,
    build: fn() -> String,
    /// Whether the statement names the tenant table (so an unchanged
    /// result would be a leak).
    tenant: bool,
    /// How long the rewrite may take (debug builds, a shared machine).
    limit: Duration,
    /// A known rewriter bug this case shows, if any.
    known: Option<&'static str>,
}

const QUICK: Duration = Duration::from_secs(10);
const SLOW: Duration = Duration::from_secs(60);

/// The statements the pre-checks refuse: run in this process.
fn refused_cases() -> Vec<Case> {
    vec![
        Case {
            name: "or_chain_50000",
            build: || or_chain(50_000),
            tenant: true,
            limit: QUICK,
            known: None,
        },
        Case {
            name: "nested_parentheses_10000",
            build: || nested_parens(10_000),
            tenant: true,
            limit: QUICK,
            known: None,
        },
        Case {
            name: "nested_subqueries_1000",
            build: || nested_subqueries(1_000),
            tenant: true,
            limit: QUICK,
            known: None,
        },
        Case {
            name: "statement_5_mb",
            build: five_mb,
            tenant: true,
            limit: QUICK,
            known: None,
        },
        Case {
            name: "union_all_100000_arms",
            build: || union_all(100_000),
            tenant: true,
            limit: QUICK,
            known: None,
        },
    ]
}

const STACK_BUG: &str = "stack overflow on a 2 MiB stack: the pre-check counts only = < > AND OR \
     and brackets, and a left-deep chain of other operators or set operations is dropped \
     (and printed, walked) recursively";
const DEBUG_STACK_BUG: &str = "stack overflow on a 2 MiB stack in debug builds: \
     MAX_NESTING (200) lets the parser recurse deeper than a debug-build stack allows";

/// Statements under the pre-check limits: each runs in a child process.
fn parsed_cases() -> Vec<Case> {
    vec![
        Case {
            name: "or_chain_4999",
            build: || or_chain(4_999),
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "and_chain_4999",
            build: || {
                format!(
                    "SELECT * FROM orders WHERE {}",
                    repeat_join("flag", 4_999, " AND ")
                )
            },
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "nested_parentheses_60",
            build: || nested_parens(60),
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "nested_parentheses_150",
            build: || nested_parens(150),
            tenant: true,
            limit: SLOW,
            known: Some(DEBUG_STACK_BUG),
        },
        Case {
            name: "nested_subqueries_60",
            build: || nested_subqueries(60),
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "nested_subqueries_199",
            build: || nested_subqueries(199),
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "nested_derived_tables_199",
            build: || {
                format!(
                    "SELECT * FROM {}orders{}",
                    "(SELECT * FROM ".repeat(199),
                    ") s".repeat(199)
                )
            },
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "nested_case_20",
            build: || nested_case(20),
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "nested_case_100",
            build: || nested_case(100),
            tenant: true,
            limit: SLOW,
            known: Some(DEBUG_STACK_BUG),
        },
        Case {
            name: "in_list_100000",
            build: || {
                format!(
                    "SELECT * FROM orders WHERE id IN ({})",
                    repeat_join("1", 100_000, ",")
                )
            },
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "insert_100000_rows",
            build: || {
                format!(
                    "INSERT INTO orders (id) VALUES {}",
                    repeat_join("(1)", 100_000, ",")
                )
            },
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "function_100000_arguments",
            build: || {
                format!(
                    "SELECT coalesce({}) FROM orders",
                    repeat_join("1", 100_000, ",")
                )
            },
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "cast_chain_20000",
            build: || format!("SELECT 1{} FROM orders", "::int".repeat(20_000)),
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "is_null_chain_20000",
            build: || {
                format!(
                    "SELECT 1 FROM orders WHERE flag{}",
                    " IS NULL".repeat(20_000)
                )
            },
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "statements_50000",
            build: || repeat_join("SELECT 1", 50_000, "; "),
            tenant: false,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "tenant_statements_20000",
            build: || repeat_join("SELECT * FROM orders", 20_000, "; "),
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "joins_3000",
            build: || {
                let joins: Vec<String> = (1..3_000)
                    .map(|i| format!("JOIN orders o{i} ON true"))
                    .collect();
                format!("SELECT 1 FROM orders o0 {}", joins.join(" "))
            },
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "ctes_5000",
            build: || {
                let ctes: Vec<String> = (0..5_000)
                    .map(|i| match i {
                        0 => "c0 AS (SELECT * FROM orders)".to_string(),
                        i => format!("c{i} AS (SELECT * FROM c{})", i - 1),
                    })
                    .collect();
                format!("WITH {} SELECT * FROM c4999", ctes.join(", "))
            },
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "plus_chain_100000",
            build: || format!("SELECT {} FROM orders", repeat_join("1", 100_000, "+")),
            tenant: true,
            limit: SLOW,
            known: Some(STACK_BUG),
        },
        Case {
            name: "minus_chain_100000",
            build: || format!("SELECT {} FROM orders", repeat_join("1", 100_000, "-")),
            tenant: true,
            limit: SLOW,
            known: Some(STACK_BUG),
        },
        Case {
            name: "concat_chain_50000",
            build: || format!("SELECT {} FROM orders", repeat_join("'a'", 50_000, " || ")),
            tenant: true,
            limit: SLOW,
            known: Some(STACK_BUG),
        },
        Case {
            name: "union_all_30000_arms",
            build: || union_all(30_000),
            tenant: true,
            limit: SLOW,
            known: Some(STACK_BUG),
        },
        Case {
            name: "unary_minus_5000",
            build: || format!("SELECT {}1 FROM orders", "- ".repeat(5_000)),
            tenant: true,
            limit: SLOW,
            known: Some(DEBUG_STACK_BUG),
        },
        Case {
            name: "not_chain_5000",
            build: || format!("SELECT 1 FROM orders WHERE {} true", "NOT ".repeat(5_000)),
            tenant: true,
            limit: SLOW,
            known: Some(DEBUG_STACK_BUG),
        },
        Case {
            name: "compound_identifier_50000",
            build: || format!("SELECT {}b FROM orders", "a.".repeat(50_000)),
            tenant: true,
            limit: SLOW,
            known: Some(DEBUG_STACK_BUG),
        },
        // Postfix chains: sqlparser builds them in a loop (its recursion
        // limit never fires), one tree level each, close to 1 MiB of text.
        Case {
            name: "cast_chain_300000",
            build: || format!("SELECT 1{} FROM orders", "::t".repeat(300_000)),
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "is_null_chain_120000",
            build: || format!("SELECT 1{} FROM orders", " IS NULL".repeat(120_000)),
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "collate_chain_80000",
            build: || format!("SELECT 'a'{} FROM orders", " COLLATE \"C\"".repeat(80_000)),
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            // `$` inside a name is part of it: a long run is walked once.
            name: "dollar_run_in_a_name_900000",
            build: || format!("SELECT x{} FROM orders", "$".repeat(900_000)),
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "subscript_chain_300000",
            build: || format!("SELECT a{} FROM orders", "[1]".repeat(300_000)),
            tenant: true,
            limit: SLOW,
            known: None,
        },
        Case {
            name: "at_time_zone_chain_60000",
            build: || {
                format!(
                    "SELECT now(){} FROM orders",
                    " AT TIME ZONE 'a'".repeat(60_000)
                )
            },
            tenant: true,
            limit: SLOW,
            known: None,
        },
    ]
}

// ------------------------------------------------------------- rewriting

fn sample_catalog() -> Catalog {
    Catalog::new(
        [
            (
                "public".to_string(),
                "orders".to_string(),
                RelationKind::Tenant("text".into()),
            ),
            (
                "public".to_string(),
                "plans".to_string(),
                RelationKind::Plain,
            ),
        ],
        ["pg_class".to_string(), "pg_type".to_string()],
        vec!["public".into()],
        Vec::<String>::new(),
    )
}

/// What the rewriter did with a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Unchanged,
    Rewritten { bytes: usize, scoped: bool },
    Refused { code: String, message: String },
}

/// Rewrites `sql` for tenant `acme` on a thread with `stack` bytes of stack;
/// the result (and everything the rewriter parsed) is dropped on that thread.
fn rewrite_on_stack(sql: String, stack: usize) -> (Outcome, Duration) {
    let handle = std::thread::Builder::new()
        .name("hostile-rewrite".into())
        .stack_size(stack)
        .spawn(move || {
            let catalog = sample_catalog();
            let globals: HashSet<String> = ["plans".to_string()].into();
            let none = HashSet::new();
            let rules = RewriteRules {
                catalog: &catalog,
                column: "tenant_id",
                global_tables: &globals,
                allowed_functions: &none,
                tenant_schemas: &none,
                own_schema: None,
                strict: true,
                fence: false,
            };
            let started = Instant::now();
            let result = rewrite(&sql, &rules);
            let outcome = match &result {
                Ok(Rewritten::Unchanged) => Outcome::Unchanged,
                Ok(Rewritten::Template(t)) => {
                    let text = t.render_literal("acme");
                    let _ = t.render_param(t.max_param + 1);
                    Outcome::Rewritten {
                        bytes: text.len(),
                        // The source never says 'acme': only a filled
                        // tenant hole puts it there.
                        scoped: t.has_holes() && text.contains("'acme'"),
                    }
                }
                Err(e) => Outcome::Refused {
                    code: e.code.code().to_string(),
                    message: e.message.clone(),
                },
            };
            // Dropping the result must not overflow either.
            drop(result);
            drop(sql);
            (outcome, started.elapsed())
        })
        .expect("spawn a rewrite thread");
    match handle.join() {
        Ok(r) => r,
        Err(_) => panic!("the rewrite thread panicked"),
    }
}

/// The problems with a case's outcome (empty when it is fine).
fn problems(case: &Case, outcome: &Outcome, took: Duration) -> Vec<String> {
    let mut out = Vec::new();
    if took > case.limit {
        out.push(format!(
            "took {took:?}, more than {:?}: not a prompt answer",
            case.limit
        ));
    }
    match outcome {
        Outcome::Unchanged if case.tenant => {
            out.push("came back unchanged although it names the tenant table (a leak)".to_string())
        }
        Outcome::Rewritten { scoped: false, .. } if case.tenant => {
            out.push("was rewritten without the tenant predicate (a leak)".to_string())
        }
        Outcome::Refused { code, message } if !CLEAN_CODES.contains(&code.as_str()) => out.push(
            format!("was refused with {code} ({message}), not one of {CLEAN_CODES:?}"),
        ),
        _ => {}
    }
    out
}

/// Known-bug cases fail the run unless `HOSTILE_LENIENT` is set (all the
/// bugs these cases recorded are fixed; they stay as regressions).
fn strict() -> bool {
    std::env::var_os("HOSTILE_LENIENT").is_none()
}

/// The statements the brief names, on a tokio-sized stack, in this process.
#[test]
fn named_hostile_statements_are_answered_promptly_without_overflow() {
    for case in refused_cases() {
        let sql = (case.build)();
        let bytes = sql.len();
        let (outcome, took) = rewrite_on_stack(sql, TOKIO_STACK);
        eprintln!("{}: {bytes} bytes -> {outcome:?} in {took:?}", case.name);
        let p = problems(&case, &outcome, took);
        assert!(
            p.is_empty(),
            "{} ({bytes} bytes): {}",
            case.name,
            p.join("; ")
        );
    }
}

/// The pre-checks: sizes and depths just past the limits are refused with
/// the documented SQLSTATEs, before the parser sees them.
#[test]
fn limits_are_refused_with_their_sqlstates() {
    let cases = [
        (
            "a statement one byte over the size limit",
            format!(
                "SELECT * FROM orders WHERE note = '{}'",
                "x".repeat(tenantgate::rewrite::MAX_STATEMENT_BYTES)
            ),
            "54000",
        ),
        (
            "nesting one past the limit",
            nested_parens(tenantgate::rewrite::MAX_NESTING + 1),
            "54001",
        ),
        (
            "one operator past the limit",
            or_chain(tenantgate::rewrite::MAX_OPERATORS + 2),
            "54001",
        ),
    ];
    for (what, sql, code) in cases {
        let (outcome, took) = rewrite_on_stack(sql, TOKIO_STACK);
        match outcome {
            Outcome::Refused { code: got, .. } => {
                assert_eq!(got, code, "{what}: wrong SQLSTATE")
            }
            other => panic!("{what}: expected a {code} refusal, got {other:?}"),
        }
        assert!(took < QUICK, "{what}: the pre-check took {took:?}");
    }
}

/// Runs one case (named by the environment) in a child process; the parent
/// test below starts it. Ignored in normal runs.
#[test]
#[ignore = "a child process of parsed_hostile_statements_do_not_crash_or_leak runs this"]
fn hostile_child_case() {
    let name = std::env::var(CHILD_ENV)
        .expect("run by parsed_hostile_statements_do_not_crash_or_leak, which sets the case");
    let case = parsed_cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no hostile case named {name}"));
    let sql = (case.build)();
    let bytes = sql.len();
    let (outcome, took) = rewrite_on_stack(sql, TOKIO_STACK);
    let p = problems(&case, &outcome, took);
    assert!(p.is_empty(), "{name} ({bytes} bytes): {}", p.join("; "));
    println!("{CHILD_OK} {name}: {bytes} bytes -> {outcome:?} in {took:?}");
}

/// How a child process ended.
enum ChildEnd {
    Passed(String),
    Overflowed,
    Failed(String),
}

fn run_child(name: &str) -> ChildEnd {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([
            "hostile_child_case",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, name)
        .stdin(Stdio::null())
        .output()
        .expect("run the test binary for one case");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() {
        match stdout
            .lines()
            .find_map(|l| l.find(CHILD_OK).map(|i| &l[i + CHILD_OK.len()..]))
        {
            Some(line) => ChildEnd::Passed(line.trim().to_string()),
            None => ChildEnd::Failed(format!(
                "the child exited 0 without running the case\n{stdout}"
            )),
        }
    } else if stderr.contains("has overflowed its stack") {
        ChildEnd::Overflowed
    } else {
        let tail: String = stderr
            .lines()
            .filter(|l| !l.trim_start().starts_with("at ") && !l.contains("::"))
            .take(12)
            .collect::<Vec<_>>()
            .join("\n");
        ChildEnd::Failed(format!("exit {:?}\n{tail}", out.status.code()))
    }
}

/// Statements under the pre-check limits reach the parser: each must come
/// back promptly, cleanly, scoped, on a 2 MiB stack.
#[test]
fn parsed_hostile_statements_do_not_crash_or_leak() {
    let mut failures = Vec::new();
    let mut known = Vec::new();
    let mut fixed = Vec::new();
    for case in parsed_cases() {
        let end = run_child(case.name);
        let bad = match &end {
            ChildEnd::Passed(line) => {
                eprintln!("{line}");
                if let Some(bug) = case.known {
                    fixed.push(format!(
                        "{}: known bug not reproduced in this build ({bug})",
                        case.name
                    ));
                }
                continue;
            }
            ChildEnd::Overflowed => "overflowed a 2 MiB stack (this aborts the proxy)".to_string(),
            ChildEnd::Failed(why) => why.clone(),
        };
        match case.known {
            Some(bug) if !strict() => known.push(format!("{}: {bad}\n  known: {bug}", case.name)),
            _ => failures.push(format!("{}: {bad}", case.name)),
        }
    }
    for k in &known {
        eprintln!("KNOWN BUG (not failing the run): {k}");
    }
    for f in &fixed {
        eprintln!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} hostile statements failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Deeply nested CASE (no parentheses, so the nesting pre-check does not
/// see it): at the parser's recursion limit sqlparser returns a statement
/// without the FROM clause instead of an error, and the client's text is
/// forwarded unscoped. Run on a large stack to look at the result only.
#[test]
fn nested_case_at_the_recursion_limit_is_scoped_or_refused() {
    let big = 256 * 1024 * 1024;
    let (shallow, _) = rewrite_on_stack(nested_case(150), big);
    assert!(
        matches!(shallow, Outcome::Rewritten { scoped: true, .. }),
        "150 nested CASE: {shallow:?}"
    );
    for depth in [198, 199] {
        let (outcome, _) = rewrite_on_stack(nested_case(depth), big);
        let ok = match &outcome {
            Outcome::Rewritten { scoped, .. } => *scoped,
            Outcome::Refused { code, .. } => CLEAN_CODES.contains(&code.as_str()),
            Outcome::Unchanged => false,
        };
        if ok {
            eprintln!("{depth} nested CASE: {outcome:?} (the known leak is fixed)");
        } else if strict() {
            panic!("{depth} nested CASE: {outcome:?}: the tenant table is not scoped");
        } else {
            eprintln!(
                "KNOWN BUG (not failing the run): LEAK: {depth} nested CASE expressions over \
                 `FROM orders` come back {outcome:?}: sqlparser drops the FROM clause at its \
                 recursion limit and the original text is forwarded unscoped"
            );
        }
    }
}

// ------------------------------------------------------- through a proxy

/// What a client got back for one request.
#[derive(Debug, Default)]
struct Answer {
    errors: Vec<String>,
    rows: usize,
    ready: bool,
    closed: bool,
}

async fn answer(c: &mut RawClient, timeout: Duration) -> Answer {
    let mut a = Answer::default();
    loop {
        match c.read_msg_within(timeout).await {
            Ok(m) if m.is_error() => a.errors.push(m.code().unwrap_or_default()),
            Ok(m) if m.tag == b'D' => a.rows += 1,
            Ok(m) if m.tag == b'Z' => {
                a.ready = true;
                return a;
            }
            Ok(_) => {}
            Err(ReadEnd::Closed) => {
                a.closed = true;
                return a;
            }
            Err(ReadEnd::TimedOut) => panic!("no answer within {timeout:?}; so far {a:?}"),
        }
    }
}

/// Creates the tenant table (t1: 2 rows, t2: 3 rows) and the global table.
async fn load_tables(cluster: &tenantgate::localpg::Cluster) {
    support::exec(
        cluster,
        "app",
        "CREATE TABLE orders (id int, tenant_id text NOT NULL, flag bool, note text);
         CREATE TABLE plans (id int);
         INSERT INTO orders VALUES (1, 't1', true, 'a'), (2, 't1', false, 'b'),
           (3, 't2', true, 'c'), (4, 't2', true, 'd'), (5, 't2', false, 'e');
         INSERT INTO plans VALUES (1);",
    )
    .await;
}

/// The tenant's own row count, through `c`: the session works and is scoped.
async fn own_count(c: &mut RawClient) -> Vec<Option<String>> {
    c.query_values("SELECT count(*) FROM orders").await
}

fn query_bytes(sql: &[u8]) -> Vec<u8> {
    let mut body = sql.to_vec();
    body.push(0);
    raw_client::message(b'Q', &body)
}

fn parse_bytes(sql: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    body.extend_from_slice(sql);
    body.extend_from_slice(&[0, 0, 0]);
    raw_client::message(b'P', &body)
}

/// Hostile statements and invalid UTF-8 through a proxy: every request gets
/// an ErrorResponse or a result, the session stays usable (or, if the proxy
/// closes it, the proxy still serves), and the tenant still sees only its
/// own rows; another client keeps working.
#[tokio::test]
async fn hostile_statements_through_the_proxy_get_answers() {
    let cluster = support::start_app_cluster().await;
    load_tables(&cluster).await;
    let proxy = support::start_proxy(support::standard_config(&cluster)).await;
    let login = || RawClient::login(proxy.port, "t1user", "t1-secret", "app");
    let mut c = login().await;
    assert_eq!(own_count(&mut c).await, vec![Some("2".to_string())]);

    let mut requests: Vec<(String, Vec<u8>)> = refused_cases()
        .into_iter()
        .map(|case| {
            (
                case.name.to_string(),
                query_bytes((case.build)().as_bytes()),
            )
        })
        .collect();
    // Statements that reach the parser but are safe on a debug build's
    // 2 MiB stack (the in-process proxy runs on this test's thread).
    for (name, sql) in [
        ("or_chain_4999", or_chain(4_999)),
        ("nested_subqueries_5", nested_subqueries(5)),
        (
            "in_list_100000",
            format!(
                "SELECT * FROM orders WHERE id IN ({})",
                repeat_join("1", 100_000, ",")
            ),
        ),
    ] {
        requests.push((name.to_string(), query_bytes(sql.as_bytes())));
    }
    requests.push((
        "invalid UTF-8 in a Query".into(),
        query_bytes(b"SELECT '\xff\xfe' FROM orders"),
    ));
    requests.push((
        "invalid UTF-8 in a Query, cut in the middle of a character".into(),
        query_bytes(b"SELECT * FROM orders WHERE note = '\xe2\x82'"),
    ));
    let mut extended = parse_bytes(b"SELECT '\xc3\x28' FROM orders");
    extended.extend_from_slice(&raw_client::sync());
    requests.push(("invalid UTF-8 in a Parse".into(), extended));

    for (name, bytes) in requests {
        if let Err(e) = c.try_send(&bytes).await {
            eprintln!("{name}: the proxy closed the session while it was sent ({e})");
            c = login().await;
            assert_eq!(own_count(&mut c).await, vec![Some("2".to_string())]);
            continue;
        }
        let a = answer(&mut c, Duration::from_secs(60)).await;
        eprintln!("{name}: {a:?}");
        if a.closed {
            // The proxy may end a session over an oversized message; it must
            // say why first, and keep serving.
            assert!(
                !a.errors.is_empty(),
                "{name}: closed without an ErrorResponse"
            );
            c = login().await;
        } else {
            assert!(
                !a.errors.is_empty() || a.rows > 0,
                "{name}: neither an error nor a result: {a:?}"
            );
            if name.contains("UTF-8") {
                assert!(!a.errors.is_empty(), "{name}: invalid UTF-8 was accepted");
            }
        }
        assert_eq!(
            own_count(&mut c).await,
            vec![Some("2".to_string())],
            "after {name}: the session is not usable or not scoped"
        );
    }
    let mut other = login().await;
    assert_eq!(own_count(&mut other).await, vec![Some("2".to_string())]);
    other.terminate().await;
    c.terminate().await;
    proxy.shutdown().await.expect("proxy shuts down cleanly");
}

/// A free TCP port on 127.0.0.1 (released before it is returned).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A proxy binary in a child process.
struct ProxyProcess {
    child: std::process::Child,
    port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl ProxyProcess {
    /// The binary serving the standard config, with `server_lines` added
    /// to its `[server]` table.
    async fn start(cluster: &tenantgate::localpg::Cluster, server_lines: &str) -> ProxyProcess {
        let port = free_port();
        let text = support::standard_config_text(cluster).replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\"\n{server_lines}"),
        );
        assert!(text.contains(&port.to_string()), "listen address not set");
        let stem = format!("tenantgate-hostile-{}-{port}", std::process::id());
        let dir = std::env::temp_dir();
        let config = dir.join(format!("{stem}.toml"));
        let log = dir.join(format!("{stem}.log"));
        std::fs::File::create(&config)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("write the proxy's config");
        let log_file = std::fs::File::create(&log).expect("create the proxy's log");
        let child = Command::new(env!("CARGO_BIN_EXE_tenantgate"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start the tenantgate binary");
        let mut p = ProxyProcess {
            child,
            port,
            config,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return p;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("the proxy exited at start ({status}):\n{}", p.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not listen within 60 s:\n{}",
                p.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, if the process has ended (waits up to `wait`).
    async fn exited(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A 200 KB statement that overflows a 2 MiB stack, sent to the proxy binary
/// (tokio's default 2 MiB worker stacks): the proxy must answer it and keep
/// serving (it used to abort the whole process).
#[tokio::test]
async fn stack_hungry_statement_does_not_kill_the_proxy_process() {
    let cluster = support::start_app_cluster().await;
    load_tables(&cluster).await;
    let mut proxy = ProxyProcess::start(&cluster, "").await;
    let mut c = RawClient::login(proxy.port, "t1user", "t1-secret", "app").await;
    assert_eq!(own_count(&mut c).await, vec![Some("2".to_string())]);

    let sql = format!("SELECT {} FROM orders", repeat_join("1", 100_000, "+"));
    let sent = c.try_send(&raw_client::query_msg(&sql)).await;
    let a = match sent {
        Ok(()) => answer(&mut c, Duration::from_secs(60)).await,
        Err(_) => Answer {
            closed: true,
            ..Answer::default()
        },
    };
    if let Some(status) = proxy.exited(Duration::from_secs(2)).await {
        let log = proxy.log_text();
        let overflow = log.contains("has overflowed its stack");
        let msg = format!(
            "the proxy process died ({status}) on a {} byte `SELECT 1+1+...+1 FROM orders`{}",
            sql.len(),
            if overflow {
                ": stack overflow in a tokio worker"
            } else {
                ""
            }
        );
        if strict() || !overflow {
            panic!("{msg}\n{log}");
        }
        eprintln!("KNOWN BUG (not failing the run): {msg}");
        return;
    }
    eprintln!("the proxy survived: {a:?}");
    assert!(
        !a.errors.is_empty() || a.rows > 0,
        "neither an error nor a result: {a:?}"
    );
    let mut other = RawClient::login(proxy.port, "t1user", "t1-secret", "app").await;
    assert_eq!(own_count(&mut other).await, vec![Some("2".to_string())]);
    // Logging to a file, not a terminal: no colour codes in it.
    let log = proxy.log_text();
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
}

/// A large statement the rewrite cache does not hold is parsed off the
/// runtime: while one session's statement takes long to parse (about two
/// seconds in a debug build), another session on the same worker is answered
/// at once. The proxy binary runs with one worker (a single-threaded
/// runtime), where a parse on the worker used to hold up every session.
#[tokio::test]
async fn a_slow_rewrite_does_not_hold_up_other_sessions() {
    let cluster = support::start_app_cluster().await;
    load_tables(&cluster).await;
    let proxy = ProxyProcess::start(&cluster, "workers = 1").await;
    let login = || RawClient::login(proxy.port, "t1user", "t1-secret", "app");
    let mut slow = login().await;
    let mut other = login().await;
    // Catalog read and a server connection open before the clock starts.
    assert_eq!(own_count(&mut other).await, vec![Some("2".to_string())]);

    // Parsed whole before the rewriter finds the relation unknown: refused
    // by the proxy itself, so its answer time is the parse's.
    let sql = format!("SELECT a{} FROM nosuch", "[1]".repeat(300_000));
    let sent = Instant::now();
    slow.send(&raw_client::query_msg(&sql)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    assert_eq!(own_count(&mut other).await, vec![Some("2".to_string())]);
    let other_took = asked.elapsed();
    let a = answer(&mut slow, Duration::from_secs(120)).await;
    let slow_took = sent.elapsed();
    eprintln!(
        "slow statement answered in {slow_took:?}: {a:?}; the other session's query took {other_took:?}"
    );
    assert!(a.ready, "no ReadyForQuery for the slow statement: {a:?}");
    assert_eq!(a.errors, vec!["42P01".to_string()]);
    assert!(
        other_took * 4 < slow_took,
        "the other session waited {other_took:?} while a statement was rewritten for {slow_took:?}"
    );
    // The slow session is usable afterwards, and the statement is cached.
    assert_eq!(own_count(&mut slow).await, vec![Some("2".to_string())]);
    slow.terminate().await;
    other.terminate().await;
}
