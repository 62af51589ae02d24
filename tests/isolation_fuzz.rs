//! Property test for tenant isolation: random SELECTs over the oracle schema
//! (tests/oracle) run through tenantgate as tenant A and directly on
//! oracle_a; both must return the same rows, or both must fail.
//!
//! The queries combine tenant tables and the global `plans` with inner,
//! left, right and full joins on id columns, WHERE predicates (AND / OR /
//! NOT, comparisons with constants that occur in every tenant's data, NULL
//! tests, IN lists), subqueries (IN, EXISTS, correlated and scalar),
//! aggregates with GROUP BY / HAVING, UNION / INTERSECT / EXCEPT (also with
//! parenthesised operands), ORDER BY every output column and LIMIT.
//!
//! * `TENANTGATE_FUZZ_SEED`    — seed (decimal or 0x-hex; default fixed, printed);
//! * `TENANTGATE_FUZZ_SECONDS` — how long to generate (default 20);
//! * `TENANTGATE_FUZZ_COUNT`   — stop after this many queries instead.
//!
//! A query tenantgate refuses that Postgres accepts is counted and reported,
//! not failed; a different result, rows where Postgres fails, or a value of
//! another tenant in the result fails the test, with the seed and the query.

mod oracle;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use oracle::compare::{Outcome, Protocol, leaked_markers, run_extended, run_simple};
use oracle::harness::{self, TenantSource};
use oracle::report::one_line;
use oracle::schema;

const DEFAULT_SEED: u64 = 0x7e4a_9a7e_2025_0001;
/// Failures printed per query shape.
const MAX_REPORTED: usize = 10;

// --------------------------------------------------------------------- PRNG

/// xorshift64*: small, deterministic, good enough for choosing SQL.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 0..n
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// true with probability `pct`%.
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

// ------------------------------------------------------------------- schema

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ty {
    Int,
    Text,
    Num,
    Bool,
    Ts,
}

struct Table {
    name: &'static str,
    cols: &'static [(&'static str, Ty)],
}

const TABLES: &[Table] = &[
    Table {
        name: "customers",
        cols: &[
            ("id", Ty::Int),
            ("name", Ty::Text),
            ("email", Ty::Text),
            ("tier", Ty::Text),
            ("plan_id", Ty::Int),
            ("active", Ty::Bool),
            ("created_at", Ty::Ts),
            ("tenant_id", Ty::Text),
        ],
    },
    Table {
        name: "products",
        cols: &[
            ("id", Ty::Int),
            ("sku", Ty::Text),
            ("name", Ty::Text),
            ("price", Ty::Num),
            ("stock", Ty::Int),
            ("discontinued", Ty::Bool),
        ],
    },
    Table {
        name: "orders",
        cols: &[
            ("id", Ty::Int),
            ("customer_id", Ty::Int),
            ("status", Ty::Text),
            ("ordered_at", Ty::Ts),
            ("shipped_at", Ty::Ts),
            ("total", Ty::Num),
            ("note", Ty::Text),
            ("tenant_id", Ty::Text),
        ],
    },
    Table {
        name: "order_items",
        cols: &[
            ("order_id", Ty::Int),
            ("line_no", Ty::Int),
            ("product_id", Ty::Int),
            ("quantity", Ty::Int),
            ("unit_price", Ty::Num),
            ("discount", Ty::Num),
        ],
    },
    Table {
        name: "accounts",
        cols: &[
            ("id", Ty::Int),
            ("email", Ty::Text),
            ("display_name", Ty::Text),
            ("login_count", Ty::Int),
        ],
    },
    Table {
        name: "plans",
        cols: &[
            ("id", Ty::Int),
            ("name", Ty::Text),
            ("monthly_price", Ty::Num),
        ],
    },
    Table {
        name: "archive.orders",
        cols: &[
            ("id", Ty::Int),
            ("status", Ty::Text),
            ("total", Ty::Num),
            ("note", Ty::Text),
        ],
    },
];

/// Constants that occur in every tenant's data (and a few that occur in only
/// one tenant's, including other tenants' markers: through tenantgate they
/// must match nothing that oracle_a does not match).
fn constant(rng: &mut Rng, ty: Ty) -> String {
    match ty {
        Ty::Int => rng.below(16).to_string(),
        Ty::Text => rng
            .pick(&[
                "'new'",
                "'paid'",
                "'shipped'",
                "'cancelled'",
                "'gold'",
                "'silver'",
                "'bronze'",
                "'archived'",
                "'A'",
                "'B'",
                "'free'",
                "'A-secret-cust-3'",
                "'B-secret-cust-3'",
                "'C-secret-note-4'",
                "'A-secret-prod-2'",
            ])
            .to_string(),
        Ty::Num => rng
            .pick(&["0", "10", "25.5", "50", "100.50", "150", "200", "300"])
            .to_string(),
        Ty::Bool => rng.pick(&["true", "false"]).to_string(),
        Ty::Ts => rng
            .pick(&[
                "'2024-01-20 00:00:00+00'",
                "'2024-02-10 00:00:00+00'",
                "'2024-02-20 12:00:00+00'",
                "'2024-03-01 00:00:00+00'",
            ])
            .to_string(),
    }
}

// ---------------------------------------------------------------- generator

struct Gen {
    rng: Rng,
    aliases: usize,
    /// CTEs of the current query: name and the table whose columns it has.
    ctes: Vec<(String, &'static Table)>,
}

/// A FROM item in scope: its alias and table.
#[derive(Clone, Copy)]
struct Scope {
    alias: usize,
    table: &'static Table,
}

impl Scope {
    fn col(&self, rng: &mut Rng) -> (String, Ty) {
        let (c, t) = *rng.pick(self.table.cols);
        (format!("t{}.{c}", self.alias), t)
    }

    fn col_of(&self, rng: &mut Rng, ty: Ty) -> Option<String> {
        let cols: Vec<&(&str, Ty)> = self.table.cols.iter().filter(|(_, t)| *t == ty).collect();
        if cols.is_empty() {
            return None;
        }
        let (c, _) = rng.pick(&cols);
        Some(format!("t{}.{c}", self.alias))
    }
}

impl Gen {
    fn table(&mut self) -> Scope {
        let t = self.rng.pick(TABLES);
        self.table_of(t)
    }

    fn table_of(&mut self, table: &'static Table) -> Scope {
        self.aliases += 1;
        Scope {
            alias: self.aliases,
            table,
        }
    }

    /// A boolean expression over `scopes` (`depth` bounds nesting).
    fn predicate(&mut self, scopes: &[Scope], depth: usize) -> String {
        let choice = if depth == 0 {
            self.rng.below(4)
        } else {
            self.rng.below(10)
        };
        match choice {
            0 | 1 => {
                let s = *self.rng.pick(scopes);
                let (col, ty) = s.col(&mut self.rng);
                let op = if ty == Ty::Bool {
                    *self.rng.pick(&["=", "<>"])
                } else {
                    *self.rng.pick(&["=", "<>", "<", "<=", ">", ">="])
                };
                format!("{col} {op} {}", constant(&mut self.rng, ty))
            }
            2 => {
                let s = *self.rng.pick(scopes);
                let (col, _) = s.col(&mut self.rng);
                format!(
                    "{col} IS {}NULL",
                    if self.rng.chance(50) { "NOT " } else { "" }
                )
            }
            3 => {
                let s = *self.rng.pick(scopes);
                let (col, ty) = s.col(&mut self.rng);
                let n = 1 + self.rng.below(3);
                let vals: Vec<String> = (0..n).map(|_| constant(&mut self.rng, ty)).collect();
                format!("{col} IN ({})", vals.join(", "))
            }
            4 | 5 => {
                let a = self.predicate(scopes, depth - 1);
                let b = self.predicate(scopes, depth - 1);
                let op = if self.rng.chance(50) { "AND" } else { "OR" };
                format!("({a} {op} {b})")
            }
            6 => format!("NOT ({})", self.predicate(scopes, depth - 1)),
            7 => {
                // IN (subquery)
                let s = *self.rng.pick(scopes);
                let Some(col) = s.col_of(&mut self.rng, Ty::Int) else {
                    return self.predicate(scopes, depth - 1);
                };
                let inner = self.table();
                let Some(icol) = inner.col_of(&mut self.rng, Ty::Int) else {
                    return self.predicate(scopes, depth - 1);
                };
                let pred = self.predicate(&[inner], depth - 1);
                let mut sub = format!(
                    "SELECT {icol} FROM {} t{} WHERE {pred}",
                    inner.table.name, inner.alias
                );
                if self.rng.chance(25) {
                    let other = self.table();
                    if let Some(ocol) = other.col_of(&mut self.rng, Ty::Int) {
                        let op = *self
                            .rng
                            .pick(&["UNION", "INTERSECT", "EXCEPT", "UNION ALL"]);
                        sub.push_str(&format!(
                            " {op} SELECT {ocol} FROM {} t{}",
                            other.table.name, other.alias
                        ));
                    }
                }
                format!(
                    "{col} {}IN ({sub})",
                    if self.rng.chance(25) { "NOT " } else { "" }
                )
            }
            8 => {
                // correlated EXISTS
                let s = *self.rng.pick(scopes);
                let inner = self.table();
                let (Some(ocol), Some(icol)) = (
                    s.col_of(&mut self.rng, Ty::Int),
                    inner.col_of(&mut self.rng, Ty::Int),
                ) else {
                    return self.predicate(scopes, depth - 1);
                };
                let mut both = scopes.to_vec();
                both.push(inner);
                let pred = self.predicate(&both, depth - 1);
                format!(
                    "{}EXISTS (SELECT 1 FROM {} t{} WHERE {icol} = {ocol} AND {pred})",
                    if self.rng.chance(30) { "NOT " } else { "" },
                    inner.table.name,
                    inner.alias
                )
            }
            _ => {
                // comparison with a scalar subquery
                let s = *self.rng.pick(scopes);
                let ty = *self.rng.pick(&[Ty::Int, Ty::Num]);
                let Some(col) = s.col_of(&mut self.rng, ty) else {
                    return self.predicate(scopes, depth - 1);
                };
                let inner = self.table();
                let Some(icol) = inner.col_of(&mut self.rng, ty) else {
                    return self.predicate(scopes, depth - 1);
                };
                let agg = *self.rng.pick(&["max", "min", "avg", "count", "sum"]);
                let pred = self.predicate(&[inner], 0);
                format!(
                    "{col} {} (SELECT {agg}({icol}) FROM {} t{} WHERE {pred})",
                    self.rng.pick(&["<", ">", "=", ">="]),
                    inner.table.name,
                    inner.alias
                )
            }
        }
    }

    /// How a FROM item over `s`'s table is written: the table (in several
    /// spellings), a derived table over it, or a CTE with its columns.
    fn item_for(&mut self, s: Scope) -> String {
        let name = s.table.name;
        let a = s.alias;
        let plain = !name.contains('.');
        match self.rng.below(12) {
            0 | 1 => {
                self.aliases += 1;
                let inner = Scope {
                    alias: self.aliases,
                    table: s.table,
                };
                let pred = self.predicate(&[inner], 1);
                format!("(SELECT * FROM {name} t{} WHERE {pred}) t{a}", inner.alias)
            }
            2 if plain => format!("public.{name} t{a}"),
            3 if plain => format!("\"{name}\" t{a}"),
            4 if plain && self.rng.chance(25) => format!("ONLY {name} t{a}"),
            5 | 6 => {
                let ctes: Vec<String> = self
                    .ctes
                    .iter()
                    .filter(|(_, t)| t.name == name)
                    .map(|(n, _)| n.clone())
                    .collect();
                if ctes.is_empty() {
                    format!("{name} t{a}")
                } else {
                    format!("{} t{a}", self.rng.pick(&ctes))
                }
            }
            _ => format!("{name} t{a}"),
        }
    }

    /// FROM with 1–3 joined items; returns (sql, scopes).
    fn from(&mut self) -> (String, Vec<Scope>) {
        let first = self.table();
        let mut sql = self.item_for(first);
        let mut scopes = vec![first];
        let joins = self.rng.below(3);
        for _ in 0..joins {
            let next = self.table();
            let prev = *self.rng.pick(&scopes);
            let (Some(a), Some(b)) = (
                prev.col_of(&mut self.rng, Ty::Int),
                next.col_of(&mut self.rng, Ty::Int),
            ) else {
                continue;
            };
            if self.rng.chance(15) {
                // LATERAL subquery correlated with an earlier item.
                let kind = *self.rng.pick(&["JOIN", "LEFT JOIN"]);
                let pred = self.predicate(&[next], 1);
                self.aliases += 1;
                let outer_alias = self.aliases;
                sql.push_str(&format!(
                    " {kind} LATERAL (SELECT * FROM {} t{} WHERE {b} = {a} AND {pred}) t{outer_alias} ON true",
                    next.table.name, next.alias
                ));
                scopes.push(Scope {
                    alias: outer_alias,
                    table: next.table,
                });
                continue;
            }
            let kind = *self.rng.pick(&[
                "JOIN",
                "LEFT JOIN",
                "RIGHT JOIN",
                "FULL JOIN",
                "LEFT OUTER JOIN",
            ]);
            let mut on = format!("{a} = {b}");
            if kind != "FULL JOIN" && self.rng.chance(30) {
                let p = self.predicate(&[next], 0);
                on = format!("{on} AND {p}");
            }
            let item = self.item_for(next);
            sql.push_str(&format!(" {kind} {item} ON {on}"));
            scopes.push(next);
        }
        (sql, scopes)
    }

    /// A SELECT without ORDER BY; returns (sql, number of output columns,
    /// type of the first column).
    fn select(&mut self, want: Option<Ty>) -> (String, usize, Ty) {
        let (from, scopes) = self.from();
        let where_ = if self.rng.chance(80) {
            format!(" WHERE {}", self.predicate(&scopes, 2))
        } else {
            String::new()
        };
        if want.is_none() && self.rng.chance(30) {
            // Aggregate with GROUP BY.
            let s = *self.rng.pick(&scopes);
            let (g, gty) = s.col(&mut self.rng);
            let s2 = *self.rng.pick(&scopes);
            let num = s2
                .col_of(&mut self.rng, Ty::Num)
                .or_else(|| s2.col_of(&mut self.rng, Ty::Int))
                .unwrap_or_else(|| "1".into());
            let having = if self.rng.chance(40) {
                format!(" HAVING count(*) > {}", self.rng.below(3))
            } else {
                String::new()
            };
            return (
                format!(
                    "SELECT {g} AS c1, count(*) AS c2, sum({num}) AS c3, max({num}) AS c4 FROM {from}{where_} GROUP BY {g}{having}"
                ),
                4,
                gty,
            );
        }
        let mut cols = Vec::new();
        let mut first_ty = Ty::Int;
        match want {
            Some(ty) => {
                let s = *self.rng.pick(&scopes);
                let c = s
                    .col_of(&mut self.rng, ty)
                    .unwrap_or_else(|| constant(&mut self.rng, ty));
                cols.push(format!("{c} AS c1"));
                first_ty = ty;
            }
            None => {
                let n = 1 + self.rng.below(4);
                for i in 0..n {
                    let s = *self.rng.pick(&scopes);
                    let (c, t) = s.col(&mut self.rng);
                    if i == 0 {
                        first_ty = t;
                    }
                    cols.push(format!("{c} AS c{}", i + 1));
                }
                if self.rng.chance(15) {
                    let inner = self.table();
                    let s = *self.rng.pick(&scopes);
                    if let (Some(o), Some(i)) = (
                        s.col_of(&mut self.rng, Ty::Int),
                        inner.col_of(&mut self.rng, Ty::Int),
                    ) {
                        cols.push(format!(
                            "(SELECT count(*) FROM {} t{} WHERE {i} = {o}) AS c{}",
                            inner.table.name,
                            inner.alias,
                            cols.len() + 1
                        ));
                    }
                }
            }
        }
        let distinct = if self.rng.chance(15) { "DISTINCT " } else { "" };
        (
            format!("SELECT {distinct}{} FROM {from}{where_}", cols.join(", ")),
            cols.len(),
            first_ty,
        )
    }

    /// A whole query, ORDER BY every output column, maybe LIMIT.
    fn query(&mut self) -> String {
        self.aliases = 0;
        self.ctes.clear();
        let mut with = String::new();
        if self.rng.chance(20) {
            let mut parts = Vec::new();
            for i in 0..1 + self.rng.below(2) {
                let t = self.rng.pick(TABLES);
                // Sometimes named like a table: it hides the table outside
                // its own body.
                let name = if !t.name.contains('.') && self.rng.chance(40) {
                    t.name.to_string()
                } else {
                    format!("cte{i}")
                };
                if self.ctes.iter().any(|(n, _)| *n == name) {
                    continue;
                }
                let inner = self.table_of(t);
                let pred = self.predicate(&[inner], 1);
                parts.push(format!(
                    "{name} AS (SELECT * FROM {} t{} WHERE {pred})",
                    t.name, inner.alias
                ));
                self.ctes.push((name, t));
            }
            with = format!("WITH {} ", parts.join(", "));
        }
        let (body, n) = if self.rng.chance(20) {
            let ty = *self.rng.pick(&[Ty::Int, Ty::Text, Ty::Num]);
            let (a, _, _) = self.select(Some(ty));
            let (b, _, _) = self.select(Some(ty));
            let op = *self.rng.pick(&[
                "UNION",
                "UNION ALL",
                "INTERSECT",
                "INTERSECT ALL",
                "EXCEPT",
                "EXCEPT ALL",
            ]);
            if self.rng.chance(30) {
                (format!("({a}) {op} ({b})"), 1)
            } else {
                (format!("{a} {op} {b}"), 1)
            }
        } else {
            let (s, n, _) = self.select(None);
            (s, n)
        };
        let order: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        let limit = if self.rng.chance(25) {
            format!(" LIMIT {}", 1 + self.rng.below(10))
        } else {
            String::new()
        };
        format!("{with}{body} ORDER BY {}{limit}", order.join(", "))
    }
}

// --------------------------------------------------------------------- test

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_selects_match_the_oracle() {
    let seed = env_u64("TENANTGATE_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let seconds = env_u64("TENANTGATE_FUZZ_SECONDS").unwrap_or(20);
    let count = env_u64("TENANTGATE_FUZZ_COUNT");
    println!(
        "isolation fuzz: seed {seed:#x} (TENANTGATE_FUZZ_SEED), {} ",
        match count {
            Some(n) => format!("{n} queries (TENANTGATE_FUZZ_COUNT)"),
            None => format!("{seconds} s (TENANTGATE_FUZZ_SECONDS)"),
        }
    );
    let o = harness::start().await;
    let oracle_a = o.direct("oracle_a").await;
    let clients = [
        (
            TenantSource::Bound,
            o.client(TenantSource::Bound, "A").await,
        ),
        (
            TenantSource::Options,
            o.client(TenantSource::Options, "A").await,
        ),
        (TenantSource::Set, o.client(TenantSource::Set, "A").await),
    ];
    let foreign = schema::foreign_markers("A");
    let mut g = Gen {
        rng: Rng::new(seed),
        aliases: 0,
        ctes: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut generated, mut compared, mut refused, mut both_failed) = (0u64, 0u64, 0u64, 0u64);
    let mut refusals: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut slowest: Vec<(Duration, String)> = Vec::new();
    let mut failures: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    loop {
        match count {
            Some(n) if generated >= n => break,
            None if Instant::now() >= deadline => break,
            _ => {}
        }
        let sql = g.query();
        let protocol = if generated % 4 == 3 {
            Protocol::Named
        } else {
            Protocol::Simple
        };
        let (source, client) = &clients[(generated % 3) as usize];
        generated += 1;
        let started = Instant::now();
        let want = exec(&oracle_a, &sql, protocol).await;
        let got = exec(client, &sql, protocol).await;
        slowest.push((started.elapsed(), sql.clone()));
        slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
        slowest.truncate(3);
        let context = format!(
            "query #{generated} (seed {seed:#x}), tenant A via {}, {} protocol",
            source.label(),
            protocol.label()
        );
        let leaked = leaked_markers(&got, &sql, &foreign);
        let problem = if !leaked.is_empty() {
            Some(format!("LEAK: values of {} came back", leaked.join(", ")))
        } else {
            match (&want, &got) {
                (Outcome::Ok(_), Outcome::Ok(_)) => {
                    compared += 1;
                    // Row sets, not row order: ORDER BY over generated
                    // columns leaves ties (0 and 0.00 sort equal) in any order.
                    (!got.same_as(&want, false))
                        .then(|| "WRONG RESULT (possible leak): results differ".to_string())
                }
                (Outcome::Ok(_), Outcome::Err { code, message }) => {
                    refused += 1;
                    // Grouped by the message up to its first detail.
                    let key = format!("{code} {}", message.split(" at Line").next().unwrap_or(""));
                    let key: String = key.split(", found:").next().unwrap_or("").to_string();
                    let entry = refusals.entry(key).or_insert((0, sql.clone()));
                    entry.0 += 1;
                    None
                }
                (Outcome::Err { .. }, Outcome::Ok(_)) => Some(
                    "WRONG RESULT: Postgres fails directly but tenantgate returned rows"
                        .to_string(),
                ),
                (Outcome::Err { .. }, Outcome::Err { .. }) => {
                    both_failed += 1;
                    None
                }
            }
        };
        if let Some(p) = problem {
            // Grouped by the shape of the query, so that one bug does not
            // hide the others.
            let shape = if sql.starts_with('(') {
                "starts with a parenthesis"
            } else {
                "other"
            };
            let list = failures.entry(shape).or_default();
            list.push(format!(
                "{p}\n  {context}\n  query: {sql}\n  expected (oracle_a):\n{}\n  actual (tenantgate):\n{}",
                want.show(),
                got.show()
            ));
        }
    }
    let total_failures: usize = failures.values().map(Vec::len).sum();
    println!(
        "isolation fuzz: {generated} queries generated, {compared} compared equal or checked, \
         {refused} refused by tenantgate although Postgres accepts them, \
         {both_failed} invalid (Postgres and tenantgate both fail), {total_failures} failures"
    );
    for (why, (n, example)) in &refusals {
        println!("  refused {n}×: {why}\n      e.g. {}", one_line(example));
    }
    for (d, q) in &slowest {
        println!("  slowest: {d:?} {}", one_line(q));
    }
    for (shape, list) in &failures {
        println!(
            "{} failing queries that {shape} (the first {} follow)",
            list.len(),
            list.len().min(MAX_REPORTED)
        );
        for f in list.iter().take(MAX_REPORTED) {
            println!("FAILURE:\n{f}\n");
        }
    }
    assert!(
        failures.is_empty(),
        "isolation fuzz: {total_failures} failure(s) with seed {seed:#x} (listed above; rerun with TENANTGATE_FUZZ_SEED={seed:#x})"
    );
    assert!(
        compared > generated / 2,
        "isolation fuzz: only {compared} of {generated} queries could be compared: the generator or tenantgate refuses too much"
    );
}

async fn exec(c: &tokio_postgres::Client, sql: &str, protocol: Protocol) -> Outcome {
    match protocol {
        Protocol::Simple => run_simple(c, sql).await,
        p => run_extended(c, sql, &[], p).await,
    }
}
