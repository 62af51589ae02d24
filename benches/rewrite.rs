//! The rewriter's cost per statement, for typical OLTP statements:
//!
//! - `cold`: first time a text is seen: parse + scope + print + render
//!   (`rewrite()` then `render_literal`), design target ≤ 20 µs;
//! - `cached`: a cache hit as the proxy does it (build the key from the
//!   text, `RewriteCache::get_or_insert`, `render_literal`), target ≤ 1 µs;
//! - `by_shape`: a statement with its values written in as numbers, each
//!   time other ones (pgbench `-M simple`, ORMs): a miss by text, a hit by
//!   shape (`RewriteCache::rewrite`), then `render_literal`;
//! - `render_param`: the extended-protocol text from a cached template (kept
//!   after its first rendering).
//!
//! Run: `cargo bench --bench rewrite -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashSet;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group};
use tenantgate::catalog::{Catalog, RelationKind};
use tenantgate::rewrite::{RewriteCache, RewriteRules, Rewritten, cache_key, rewrite};

/// Statements with their values written in, `{}` for each number: (name,
/// SQL).
const WITH_NUMBERS: &[(&str, &str)] = &[
    (
        "point_select",
        "SELECT id, customer_id, total, note FROM orders WHERE id = {}",
    ),
    ("update_by_id", "UPDATE orders SET total = {} WHERE id = {}"),
    (
        "join_2_tables",
        "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id \
         WHERE o.id = {} AND o.total > {}",
    ),
];

/// The statements measured: (name, SQL).
const STATEMENTS: &[(&str, &str)] = &[
    (
        "point_select",
        "SELECT id, customer_id, total, note FROM orders WHERE id = $1",
    ),
    (
        "join_2_tables",
        "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id \
         WHERE o.id = $1",
    ),
    (
        "insert_5_columns",
        "INSERT INTO orders (id, customer_id, total, note, created_at) VALUES ($1, $2, $3, $4, $5)",
    ),
    ("update_by_id", "UPDATE orders SET total = $1 WHERE id = $2"),
    (
        "join_3_tables_subquery",
        "SELECT c.name, o.id, i.sku FROM customers c JOIN orders o ON o.customer_id = c.id \
         JOIN items i ON i.order_id = o.id WHERE c.id = $1 \
         AND o.total > (SELECT avg(total) FROM orders WHERE customer_id = c.id)",
    ),
];

fn catalog() -> Catalog {
    let tenant = |n: &str, ty: &str| {
        (
            "public".to_string(),
            n.to_string(),
            RelationKind::Tenant(ty.into()),
        )
    };
    Catalog::new(
        [
            tenant("customers", "text"),
            tenant("orders", "text"),
            tenant("items", "text"),
            ("public".into(), "plans".into(), RelationKind::Plain),
        ],
        ["pg_class".to_string(), "pg_type".to_string()],
        vec!["public".into()],
        Vec::<String>::new(),
    )
}

/// What the benchmark's rewrite rules borrow.
struct Setup {
    catalog: Catalog,
    globals: HashSet<String>,
    none: HashSet<String>,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            catalog: catalog(),
            globals: ["plans".to_string()].into(),
            none: HashSet::new(),
        }
    }

    /// A tenant session's rules on the benchmark catalog.
    fn rules(&self) -> RewriteRules<'_> {
        RewriteRules {
            catalog: &self.catalog,
            column: "tenant_id",
            global_tables: &self.globals,
            allowed_functions: &self.none,
            tenant_schemas: &self.none,
            own_schema: None,
            strict: true,
            fence: false,
        }
    }
}

fn benches(c: &mut Criterion) {
    let setup = Setup::new();
    let rules = setup.rules();

    // Every statement must be rewritten (not refused, not passed through),
    // or the figures would measure something else.
    let cache = RewriteCache::new(64 * 1024 * 1024);
    let mut templates = Vec::new();
    for (name, sql) in STATEMENTS {
        let outcome = cache.get_or_insert(cache_key(true, None, sql), || rewrite(sql, &rules));
        match outcome.as_ref() {
            Ok(Rewritten::Template(t)) if t.has_holes() => templates.push((*name, t.clone())),
            other => panic!("{name} is not rewritten with tenant holes: {other:?}"),
        }
    }

    let mut cold = c.benchmark_group("rewrite/cold");
    for (name, sql) in STATEMENTS {
        cold.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| match rewrite(black_box(sql), &rules) {
                Ok(Rewritten::Template(t)) => t.render_literal(black_box("acme")),
                _ => unreachable!("checked above"),
            })
        });
    }
    cold.finish();

    let mut cached = c.benchmark_group("rewrite/cached");
    for (name, sql) in STATEMENTS {
        cached.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| {
                let key = cache_key(true, None, black_box(sql));
                let outcome = cache.get_or_insert(key, || unreachable!("a cache hit"));
                match outcome.as_ref() {
                    Ok(Rewritten::Template(t)) => t.render_literal(black_box("acme")),
                    _ => unreachable!("checked above"),
                }
            })
        });
    }
    cached.finish();

    // 1,000 texts per statement, cycled: each is new to the text tier (a
    // hit by shape is not cached by text), so every lookup is a shape hit.
    let mut by_shape = c.benchmark_group("rewrite/by_shape");
    for (name, pattern) in WITH_NUMBERS {
        let texts: Vec<String> = (0..1000u64)
            .map(|i| {
                pattern
                    .split("{}")
                    .enumerate()
                    .map(|(k, part)| {
                        if k == 0 {
                            part.to_string()
                        } else {
                            format!("{}{part}", 7 + i * 13 + k as u64)
                        }
                    })
                    .collect()
            })
            .collect();
        for t in &texts[..2] {
            // The second statement of a shape builds it.
            assert!(matches!(
                cache.rewrite(cache_key(true, None, t), &rules),
                Ok(Rewritten::Template(_))
            ));
        }
        let before = cache.stats();
        let mut next = 0usize;
        by_shape.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                next = (next + 1) % texts.len();
                let key = cache_key(true, None, black_box(&texts[next]));
                match cache.rewrite(key, &rules) {
                    Ok(Rewritten::Template(t)) => t.render_literal(black_box("acme")),
                    other => unreachable!("{name}: {other:?}"),
                }
            })
        });
        let after = cache.stats();
        assert_eq!(after.misses, before.misses, "{name}: every lookup a hit");
    }
    by_shape.finish();

    let mut param = c.benchmark_group("rewrite/render_param");
    for (name, t) in &templates {
        let k = t.max_param + 1;
        param.bench_with_input(BenchmarkId::from_parameter(name), &k, |b, &k| {
            b.iter(|| t.render_param(black_box(k)))
        });
    }
    param.finish();

    // The floor under `cold`: sqlparser alone, parsing the client's text and
    // printing the parsed tree (no scoping, no template).
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    let mut parse = c.benchmark_group("sqlparser/parse");
    for (name, sql) in STATEMENTS {
        parse.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| sqlparser::parser::Parser::parse_sql(&dialect, black_box(sql)))
        });
    }
    parse.finish();
    let mut lex = c.benchmark_group("sqlparser/tokenize");
    for (name, sql) in STATEMENTS {
        lex.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| {
                sqlparser::tokenizer::Tokenizer::new(&dialect, black_box(sql))
                    .tokenize_with_location()
            })
        });
    }
    lex.finish();
    let mut print = c.benchmark_group("sqlparser/print");
    for (name, sql) in STATEMENTS {
        let parsed = sqlparser::parser::Parser::parse_sql(&dialect, sql).expect("parses");
        print.bench_with_input(BenchmarkId::from_parameter(name), &parsed, |b, parsed| {
            b.iter(|| {
                black_box(parsed)
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
            })
        });
    }
    print.finish();
}

/// This thread's time on a CPU so far, in ns (Linux).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `TG_BENCH_CPU=1`: instead of criterion, print the CPU time per cold
/// rewrite and per bare parse (median and best of 9 rounds). Steadier than
/// wall time while other processes compete for the cores.
fn cpu_report() {
    let setup = Setup::new();
    let rules = setup.rules();
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    // The clock may tick coarsely (4 ms): each round runs for 200 ms of CPU.
    let measure = |f: &dyn Fn()| {
        let mut rounds = Vec::new();
        for _ in 0..9 {
            let start = thread_cpu_ns().expect("schedstat");
            let mut n = 0u64;
            let mut end = start;
            while end - start < 200_000_000 {
                for _ in 0..100 {
                    f();
                }
                n += 100;
                end = thread_cpu_ns().expect("schedstat");
            }
            rounds.push((end - start) as f64 / n as f64 / 1000.0);
        }
        rounds.sort_by(f64::total_cmp);
        (rounds[rounds.len() / 2], rounds[0])
    };
    for (name, sql) in STATEMENTS {
        let (cold, cold_best) = measure(&|| {
            if let Ok(Rewritten::Template(t)) = rewrite(black_box(sql), &rules) {
                black_box(t.render_literal("acme"));
            }
        });
        let (parse, parse_best) = measure(&|| {
            let _ = black_box(sqlparser::parser::Parser::parse_sql(
                &dialect,
                black_box(sql),
            ));
        });
        println!(
            "{name:<24} cold {cold:6.2} µs (best {cold_best:6.2})   parse {parse:6.2} µs (best {parse_best:6.2})"
        );
    }
}

criterion_group!(rewrite_benches, benches);

fn main() {
    if std::env::var_os("TG_BENCH_CPU").is_some() {
        cpu_report();
        return;
    }
    rewrite_benches();
    Criterion::default().configure_from_args().final_summary();
}
