//! The pooling analysis every simple Query and Parse goes through on the
//! pass-through path (no tenant rewriting): [`effects_of`], whose quick
//! test settles statements without session effects, and the check for the
//! proxy's own statement names (`_tg_`). Typical statements: pgbench's
//! `-S` and TPC-B ones, a transaction's ends, an ORM's wider SELECT.
//!
//! Run: `cargo bench --bench pooling_analysis -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tenantgate::frontend::classify::{effects_of, mentions};

/// (name, SQL) as clients send them.
const STATEMENTS: &[(&str, &str)] = &[
    (
        "pgbench_select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 4518932;",
    ),
    (
        "pgbench_update",
        "UPDATE pgbench_accounts SET abalance = abalance + -2788 WHERE aid = 832911;",
    ),
    (
        "pgbench_insert",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 832911, -2788, CURRENT_TIMESTAMP);",
    ),
    ("begin", "BEGIN;"),
    ("end", "END;"),
    (
        "orm_select",
        "SELECT \"orders\".\"id\", \"orders\".\"customer_id\", \"orders\".\"status\", \
         \"orders\".\"total\", \"orders\".\"created_at\", \"orders\".\"updated_at\" \
         FROM \"orders\" WHERE \"orders\".\"customer_id\" = $1 AND \"orders\".\"status\" \
         IN ('open', 'paid') ORDER BY \"orders\".\"created_at\" DESC LIMIT 20",
    ),
];

fn benches(c: &mut Criterion) {
    let mut effects = c.benchmark_group("pooling_analysis/effects_of");
    for (name, sql) in STATEMENTS {
        effects.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| effects_of(black_box(sql.as_bytes())))
        });
    }
    effects.finish();
    let mut names = c.benchmark_group("pooling_analysis/proxy_names");
    for (name, sql) in STATEMENTS {
        names.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| mentions(black_box(sql.as_bytes()), "_tg_"))
        });
    }
    names.finish();
}

criterion_group!(pooling_benches, benches);
criterion_main!(pooling_benches);
