//! The isolation oracle (docs: /work/shared/design.md, "Tests that matter").
//!
//! One throwaway cluster holds database `shared` with tenants A, B and C in
//! the same tables (the same primary keys for every tenant, different other
//! values) and `oracle_a` / `oracle_b` / `oracle_c` with one tenant each and
//! the identical schema. tenantgate serves `shared`. Then:
//!
//! * reads: every statement of the corpus (hand-written reads, SQLAlchemy
//!   SQL with literal binds and with `$n` parameters) runs through
//!   tenantgate as A — with each tenant source (bound user, startup
//!   options, SET) and each protocol (simple, extended with a named
//!   statement, extended unnamed with declared types) — and must return
//!   exactly what it returns directly on oracle_a; a subset also runs as B
//!   and C against their oracles;
//! * attacks: statements that try to reach B's or C's rows must be refused
//!   or return what oracle_a returns, and no value of B or C (every one of
//!   them carries `B-secret` / `C-secret`) may come back; plus attacks on
//!   the tenant context itself (switching tenants, search_path, prepared
//!   statements and cursors across a tenant switch) and COPY;
//! * writes: every write runs as A through tenantgate and directly on
//!   oracle_a; afterwards A's rows on `shared` equal oracle_a's, and B's and
//!   C's rows (and the tables without a tenant column) are byte-for-byte
//!   unchanged.
//!
//! Leaks and wrong results fail the test with the statement, the tenant
//! source, the protocol, and expected vs actual rows. Refusals of
//! legitimate statements are listed in the output (run with
//! `--nocapture`), not failed. The corpus lives in `tests/oracle/*.sql`;
//! `tests/oracle/orm/generate.py` regenerates the SQLAlchemy part.

mod oracle;
mod raw_client;
mod support;

use std::collections::HashMap;

use oracle::compare::{Outcome, Protocol, leaked_markers, protocols_for, run_entry, run_simple};
use oracle::corpus::{self, Entry, Kind};
use oracle::harness::{self, Oracle, TenantSource};
use oracle::report::{KnownIssue, Report, one_line};
use oracle::schema;
use raw_client::{Msg, RawClient};
use tokio_postgres::Client;

/// Problems found by this test that are described here and reported (printed)
/// without failing it. Each entry names the statement it matches.
const KNOWN_ISSUES: &[KnownIssue] = &[KnownIssue {
    // Not a leak: the values are right, their type is not.
    pattern: ":record]",
    why: "a whole-row reference to a tenant table (`SELECT c FROM customers c`) has type `record` \
          through tenantgate instead of the table's composite type (`customers`): the scoped \
          relation is a derived table, so drivers that decode composite types by OID see another type",
}];

// ------------------------------------------------------------------ helpers

/// Expected outcomes on the oracle databases, computed once per statement,
/// protocol and tenant.
#[derive(Default)]
struct Expected {
    cache: HashMap<(String, Protocol, String), Outcome>,
}

impl Expected {
    async fn get(&mut self, oracle: &Client, tenant: &str, e: &Entry, p: Protocol) -> Outcome {
        let key = (format!("{}\u{0}{}", e.name, e.sql), p, tenant.to_string());
        if let Some(o) = self.cache.get(&key) {
            return o.clone();
        }
        let o = run_entry(oracle, e, p).await;
        if o.is_err() {
            rollback(oracle).await;
        }
        self.cache.insert(key, o.clone());
        o
    }
}

/// Ends whatever transaction a failed multi-statement string left open.
async fn rollback(c: &Client) {
    let _ = c.simple_query("ROLLBACK").await;
}

fn ctx(tenant: &str, source: TenantSource, p: Protocol) -> String {
    format!(
        "tenant {tenant} via {}, {} protocol",
        source.label(),
        p.label()
    )
}

fn describe(e: &Entry, context: &str, expected: Option<&Outcome>, actual: &Outcome) -> String {
    let mut s = format!(
        "  statement [{}]: {}\n  {context}\n",
        e.name,
        one_line(&e.sql)
    );
    if let Some(p) = &e.params {
        let vals: Vec<String> = p
            .iter()
            .map(|p| format!("{}:{}", p.ty.name(), p.value.as_deref().unwrap_or("NULL")))
            .collect();
        s.push_str(&format!("  parameters: {}\n", vals.join(", ")));
    }
    if let Some(x) = expected {
        s.push_str(&format!(
            "  expected (directly on the oracle database):\n{}\n",
            x.show()
        ));
    }
    s.push_str(&format!(
        "  actual (through tenantgate):\n{}",
        actual.show()
    ));
    s
}

/// Judges one execution of a reading statement.
fn check_read(
    report: &mut Report,
    e: &Entry,
    context: &str,
    tenant: &str,
    expected: Option<&Outcome>,
    actual: &Outcome,
) {
    let leaked = leaked_markers(actual, &e.sql, &schema::foreign_markers(tenant));
    if !leaked.is_empty() {
        report.fail(
            KNOWN_ISSUES,
            format!(
                "LEAK: values of other tenants ({}) came back\n{}",
                leaked.join(", "),
                describe(e, context, expected, actual)
            ),
        );
        return;
    }
    if e.refuse {
        if !actual.is_err() {
            report.fail(
                KNOWN_ISSUES,
                format!(
                    "NOT REFUSED: tenantgate must refuse this statement\n{}",
                    describe(e, context, None, actual)
                ),
            );
        }
        return;
    }
    let Some(expected) = expected else { return };
    match (expected, actual) {
        (Outcome::Ok(_), Outcome::Ok(_)) => {
            report.compared += 1;
            if !actual.same_as(expected, e.ordered) {
                report.fail(
                    KNOWN_ISSUES,
                    format!(
                        "WRONG RESULT (possible leak): tenantgate's result differs from the oracle's{}\n{}",
                        if e.ordered { " (ordered comparison)" } else { "" },
                        describe(e, context, Some(expected), actual)
                    ),
                );
            }
        }
        (Outcome::Ok(_), Outcome::Err { code, .. }) if code.starts_with("22") => report.fail(
            KNOWN_ISSUES,
            format!(
                "SIDE CHANNEL (possible leak): a runtime error ({code}) that oracle_a does not raise: it was raised by rows of other tenants\n{}",
                describe(e, context, Some(expected), actual)
            ),
        ),
        (Outcome::Ok(_), Outcome::Err { code, message }) => {
            report.refusal(&e.sql, format!("{context}: {code} {message}"));
        }
        (Outcome::Err { .. }, Outcome::Ok(_)) => report.fail(
            KNOWN_ISSUES,
            format!(
                "WRONG RESULT: Postgres refuses this statement directly but tenantgate returned rows\n{}",
                describe(e, context, Some(expected), actual)
            ),
        ),
        (Outcome::Err { .. }, Outcome::Err { .. }) => report.compared += 1,
    }
}

/// Statements that change session state (run on a fresh connection).
fn is_session_command(sql: &str) -> bool {
    let first = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(first.as_str(), "set" | "reset")
}

/// After a session-changing attack that was not refused: the session must
/// still see exactly A's rows and the global plans.
async fn probe_session(
    report: &mut Report,
    expected: &mut Expected,
    oracle_a: &Client,
    client: &Client,
    why: &str,
) {
    for sql in [
        "SELECT * FROM plans ORDER BY id",
        "SELECT * FROM orders ORDER BY id",
        "SELECT * FROM customers ORDER BY id",
    ] {
        let e = probe_entry(sql);
        let want = expected.get(oracle_a, "A", &e, Protocol::Simple).await;
        let got = run_simple(client, sql).await;
        if got.is_err() {
            rollback(client).await;
        }
        check_read(report, &e, why, "A", Some(&want), &got);
    }
}

fn probe_entry(sql: &str) -> Entry {
    Entry {
        name: format!("probe {sql}"),
        origin: "probe",
        sql: sql.to_string(),
        kind: Kind::Read,
        params: None,
        ordered: corpus::has_top_level_order_by(sql),
        refuse: false,
        nocompare: false,
        simple_only: true,
    }
}

fn adhoc(name: &str, sql: &str, refuse: bool) -> Entry {
    Entry {
        name: name.to_string(),
        origin: "isolation_oracle.rs",
        sql: sql.to_string(),
        kind: Kind::Read,
        params: None,
        ordered: corpus::has_top_level_order_by(sql),
        refuse,
        nocompare: false,
        simple_only: true,
    }
}

// -------------------------------------------------------------------- reads

/// The read corpus as A through every tenant source and protocol, and as B
/// and C against their own oracles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_match_the_oracle() {
    let o = harness::start().await;
    let entries = corpus::reads();
    let mut report = Report::default();
    let mut expected = Expected::default();
    let mut oracles = HashMap::new();
    for t in schema::TENANTS {
        oracles.insert(t, o.direct(&harness::oracle_db(t)).await);
    }
    // Corpus sanity: every read runs directly on oracle_a.
    for e in &entries {
        for p in protocols_for(e) {
            let want = expected.get(&oracles["A"], "A", e, p).await;
            if let Outcome::Err { code, message } = &want {
                report.fail(
                    KNOWN_ISSUES,
                    format!(
                        "CORPUS ERROR: [{}] fails directly on oracle_a ({}): {code} {message}\n  {}",
                        e.name,
                        p.label(),
                        one_line(&e.sql)
                    ),
                );
            }
        }
    }
    let runs: [(&str, TenantSource, &[Protocol]); 5] = [
        ("A", TenantSource::Bound, &Protocol::ALL),
        ("A", TenantSource::Options, &Protocol::ALL),
        ("A", TenantSource::Set, &Protocol::ALL),
        ("B", TenantSource::Bound, &[Protocol::Simple]),
        ("C", TenantSource::Set, &[Protocol::Simple, Protocol::Named]),
    ];
    for (tenant, source, protocols) in runs {
        let client = o.client(source, tenant).await;
        for e in &entries {
            for p in protocols_for(e) {
                if !protocols.contains(&p) {
                    continue;
                }
                let want = expected.get(&oracles[tenant], tenant, e, p).await;
                let got = run_entry(&client, e, p).await;
                if got.is_err() {
                    rollback(&client).await;
                }
                check_read(
                    &mut report,
                    e,
                    &ctx(tenant, source, p),
                    tenant,
                    Some(&want),
                    &got,
                );
            }
        }
    }
    println!(
        "read corpus: {} statements ({} hand-written, {} ORM with literals, {} ORM with parameters)",
        entries.len(),
        entries.iter().filter(|e| e.origin == "reads.sql").count(),
        entries
            .iter()
            .filter(|e| e.origin == "orm/sqlalchemy.sql")
            .count(),
        entries
            .iter()
            .filter(|e| e.origin == "orm/sqlalchemy_params.sql")
            .count(),
    );
    report.finish("isolation oracle: reads");
}

// ------------------------------------------------------------------ attacks

/// Read attacks through every tenant source and protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_reach_nothing_of_other_tenants() {
    let o = harness::start().await;
    let oracle_a = o.direct("oracle_a").await;
    let entries = corpus::attacks();
    let mut report = Report::default();
    let mut expected = Expected::default();
    server_statement_attacks(&o, &oracle_a, &mut report, &mut expected).await;
    for source in TenantSource::ALL {
        let shared_client = o.client(source, "A").await;
        for e in &entries {
            let session = is_session_command(&e.sql);
            for p in protocols_for(e) {
                let context = ctx("A", source, p);
                let want = if e.refuse || e.nocompare {
                    None
                } else {
                    Some(expected.get(&oracle_a, "A", e, p).await)
                };
                let fresh;
                let client = if session {
                    fresh = o.client(source, "A").await;
                    &fresh
                } else {
                    &shared_client
                };
                let got = run_entry(client, e, p).await;
                if got.is_err() {
                    rollback(client).await;
                }
                check_read(&mut report, e, &context, "A", want.as_ref(), &got);
                if session && !got.is_err() {
                    let why = format!("{context}, after `{}` was not refused", one_line(&e.sql));
                    probe_session(&mut report, &mut expected, &oracle_a, client, &why).await;
                }
            }
        }
    }
    println!("attack corpus: {} statements", entries.len());
    tenant_context_attacks(&o, &oracle_a, &mut report, &mut expected).await;
    tenant_switch_attacks(&o, &oracle_a, &mut report, &mut expected).await;
    copy_out_attacks(&o, &mut report).await;
    report.finish("isolation oracle: attacks");
}

/// What a bound session may not do to its tenant.
const BOUND_SWITCHES: &[&str] = &[
    "SET app.current_tenant = 'B'",
    "SET app.current_tenant TO 'B'",
    "SET SESSION app.current_tenant = 'B'",
    "set APP.CURRENT_TENANT = 'B'",
    "SET \"app.current_tenant\" = 'B'",
    "SET \"app\".current_tenant = 'B'",
    "SET app.\"current_tenant\" = 'B'",
    "SET \"APP\".\"CURRENT_TENANT\" = 'B'",
    "SET U&\"app\".current_tenant = 'B'",
    "RESET \"app\".current_tenant",
    "SET app.current_tenant = B",
    "SET /* c */ app.current_tenant = 'B'",
    "SET app.current_tenant = DEFAULT",
    "SET app.current_tenant TO DEFAULT",
    "RESET app.current_tenant",
    "SELECT 1; SET app.current_tenant = 'B'",
    "SET app.current_tenant = 'B'; SELECT * FROM orders",
    "BEGIN; SET LOCAL app.current_tenant = 'B'; SELECT * FROM orders; COMMIT",
    "SELECT set_config('app.current_tenant', 'B', false)",
    "SELECT set_config('app.current_tenant', 'B', true), * FROM orders",
    "SELECT pg_catalog.set_config('app.current_tenant', 'C', false)",
    "DO $$ BEGIN PERFORM set_config('app.current_tenant', 'B', false); END $$",
];

/// Statements a bound session may run that must not change its tenant.
const BOUND_HARMLESS: &[&str] = &[
    "SET app.current_tenant = 'A'",
    "RESET ALL",
    "DISCARD ALL",
    "SHOW app.current_tenant",
    "BEGIN; SET LOCAL app.current_tenant = 'A'; COMMIT",
];

async fn tenant_context_attacks(
    o: &Oracle,
    oracle_a: &Client,
    report: &mut Report,
    expected: &mut Expected,
) {
    // A bound session cannot switch tenants, whatever the spelling.
    for sql in BOUND_SWITCHES {
        let e = adhoc("bound switch", sql, true);
        let c = o.client(TenantSource::Bound, "A").await;
        let context = "tenant A via bound user, simple protocol";
        let got = run_simple(&c, sql).await;
        rollback(&c).await;
        check_read(report, &e, context, "A", None, &got);
        probe_session(
            report,
            expected,
            oracle_a,
            &c,
            &format!("{context}, after `{sql}`"),
        )
        .await;
        if corpus::statement_count(sql) == 1 {
            let got = oracle::compare::run_extended(&c, sql, &[], Protocol::Named).await;
            check_read(
                report,
                &e,
                "tenant A via bound user, extended protocol",
                "A",
                None,
                &got,
            );
            probe_session(
                report,
                expected,
                oracle_a,
                &c,
                &format!("after extended `{sql}`"),
            )
            .await;
        }
    }
    for sql in BOUND_HARMLESS {
        let c = o.client(TenantSource::Bound, "A").await;
        let got = run_simple(&c, sql).await;
        if let Outcome::Err { code, message } = &got {
            report.note(format!("bound session: `{sql}` refused: {code} {message}"));
            rollback(&c).await;
        }
        probe_session(
            report,
            expected,
            oracle_a,
            &c,
            &format!("bound session after `{sql}`"),
        )
        .await;
    }
    // SHOW reports the bound tenant, however it is spelled (empty statements
    // before it, upper case).
    let c = o.client(TenantSource::Bound, "A").await;
    for sql in [
        "SHOW app.current_tenant",
        ";SHOW app.current_tenant",
        " ; ;\n show APP.CURRENT_TENANT",
    ] {
        let v = match run_simple(&c, sql).await {
            Outcome::Ok(sets) => sets
                .iter()
                .find_map(|s| s.rows.first())
                .and_then(|r| r[0].clone()),
            other => Some(format!("{other:?}")),
        };
        if v.as_deref() != Some("A") {
            report.fail(
                KNOWN_ISSUES,
                format!("WRONG RESULT: `{sql}` in a bound session of A says {v:?}"),
            );
        }
    }

    // Startup options cannot override a bound tenant.
    let mut cfg = support::client_config(
        o.proxy.port,
        &harness::bound_user("A"),
        harness::PASSWORD,
        "app",
    );
    cfg.options("-c app.current_tenant=B");
    match support::try_connect_config(&cfg).await {
        Err(_) => {}
        Ok(c) => {
            let got = run_simple(&c, "SELECT * FROM orders ORDER BY id").await;
            report.fail(
                KNOWN_ISSUES,
                format!(
                    "NOT REFUSED: a bound user of A connected with options -c app.current_tenant=B\n  SELECT * FROM orders returned:\n{}",
                    got.show()
                ),
            );
        }
    }
    let mut cfg = support::client_config(
        o.proxy.port,
        &harness::bound_user("A"),
        harness::PASSWORD,
        "app",
    );
    cfg.options("-c app.current_tenant=A");
    match support::try_connect_config(&cfg).await {
        Ok(c) => {
            probe_session(
                report,
                expected,
                oracle_a,
                &c,
                "bound user with options naming its own tenant",
            )
            .await
        }
        Err(e) => report.note(format!(
            "a bound user of A connecting with options -c app.current_tenant=A is refused: {}",
            support::error_chain(&e)
        )),
    }

    // search_path from the startup packet: `plans` must still be the global
    // table, not archive.plans (a tenant table holding every tenant's rows).
    for (user, options) in [
        (
            harness::bound_user("A"),
            "-c search_path=archive,public".to_string(),
        ),
        (
            "app".to_string(),
            "-c app.current_tenant=A -c search_path=archive,public".to_string(),
        ),
        (
            harness::bound_user("A"),
            "-csearch_path=archive".to_string(),
        ),
    ] {
        let mut cfg = support::client_config(o.proxy.port, &user, harness::PASSWORD, "app");
        cfg.options(&options);
        match support::try_connect_config(&cfg).await {
            Err(_) => {}
            Ok(c) => {
                probe_session(
                    report,
                    expected,
                    oracle_a,
                    &c,
                    &format!("user {user} connected with options {options}"),
                )
                .await
            }
        }
    }

    // A trusted session cannot change tenants inside a transaction, whether
    // the transaction began in an earlier Query or in the same one.
    for (setup, sql) in [
        ("BEGIN", "SET app.current_tenant = 'B'"),
        (
            "BEGIN; SELECT count(*) FROM orders",
            "SET app.current_tenant = 'B'",
        ),
        (
            "",
            "BEGIN; SELECT count(*) FROM orders; SET app.current_tenant = 'B'; SELECT note FROM orders",
        ),
        (
            "",
            "BEGIN; SELECT note FROM orders WHERE id = 1; SET app.current_tenant = 'B'; COMMIT",
        ),
    ] {
        let c = o.client(TenantSource::Options, "A").await;
        if !setup.is_empty() {
            let _ = run_simple(&c, setup).await;
        }
        let got = run_simple(&c, sql).await;
        rollback(&c).await;
        if !got.is_err() {
            report.fail(
                KNOWN_ISSUES,
                format!(
                    "NOT REFUSED: a trusted session of A changed its tenant inside an open transaction (design.md: refused)\n  after `{setup}`: `{sql}`\n  result:\n{}",
                    got.show()
                ),
            );
        }
    }
    let c = o.client(TenantSource::Options, "A").await;
    let got = run_simple(
        &c,
        "BEGIN; SELECT count(*) FROM orders; SET LOCAL app.current_tenant = 'B'; SELECT count(*) FROM orders",
    )
    .await;
    rollback(&c).await;
    if !got.is_err() {
        report.note(format!(
            "a trusted session of A may `SET LOCAL app.current_tenant = 'B'` after a statement ran as A in the same transaction (design.md: changing the tenant inside an open transaction is refused); result:\n{}",
            got.show()
        ));
    }
    // Statements before a SET in the same Query string still run as the
    // tenant chosen before it.
    for sql in [
        "SELECT name FROM customers WHERE id = 1; SET app.current_tenant = 'B'",
        "SELECT name FROM customers WHERE id = 1; SET app.current_tenant = 'B'; SELECT name FROM customers WHERE id = 1",
    ] {
        let c = o.client(TenantSource::Set, "A").await;
        let got = run_simple(&c, sql).await;
        rollback(&c).await;
        let first = match &got {
            Outcome::Ok(sets) => sets
                .first()
                .and_then(|s| s.rows.first())
                .and_then(|r| r[0].clone()),
            Outcome::Err { .. } => continue,
        };
        if first.as_deref() != Some("A-secret-cust-1") {
            report.fail(
                KNOWN_ISSUES,
                format!(
                    "WRONG TENANT: in a trusted session of A, `{sql}`: the SELECT before the SET ran as another tenant (name {first:?}, expected \"A-secret-cust-1\")\n  result:\n{}",
                    got.show()
                ),
            );
        }
    }
    // An injected tenant id is a literal, never SQL.
    let c = o.trusted().await;
    let inj = run_simple(
        &c,
        "SET app.current_tenant = 'A'' OR ''1''=''1'; SELECT * FROM orders",
    )
    .await;
    rollback(&c).await;
    let e = adhoc(
        "tenant id injection",
        "SET app.current_tenant = 'A'' OR ''1''=''1'; SELECT * FROM orders",
        false,
    );
    check_read(report, &e, "trusted session", "A", None, &inj);
    if let Outcome::Ok(sets) = &inj
        && sets.iter().any(|s| !s.rows.is_empty())
    {
        report.fail(
            KNOWN_ISSUES,
            format!(
                "LEAK: tenant id `A' OR '1'='1` returned rows\n{}",
                inj.show()
            ),
        );
    }
    // No tenant chosen: tenant tables are refused.
    let c = o.trusted().await;
    for sql in [
        "SELECT * FROM orders",
        "SELECT count(*) FROM customers",
        "UPDATE orders SET note = 'x'",
        "TABLE orders",
    ] {
        let got = run_simple(&c, sql).await;
        rollback(&c).await;
        let e = adhoc("no tenant chosen", sql, true);
        check_read(
            report,
            &e,
            "trusted session with no tenant",
            "A",
            None,
            &got,
        );
    }
}

/// State that outlives a tenant switch in a trusted session must not carry
/// one tenant's rows into another tenant's statements.
async fn tenant_switch_attacks(
    o: &Oracle,
    oracle_a: &Client,
    report: &mut Report,
    expected: &mut Expected,
) {
    let want = expected
        .get(
            oracle_a,
            "A",
            &probe_entry("SELECT id, name FROM customers ORDER BY id"),
            Protocol::Simple,
        )
        .await;

    // SQL-level PREPARE while B, EXECUTE after switching to A.
    let c = o.client(TenantSource::Set, "B").await;
    let mut steps = Vec::new();
    for sql in [
        "PREPARE by_b AS SELECT id, name FROM customers ORDER BY id",
        "SET app.current_tenant = 'A'",
    ] {
        steps.push((sql, run_simple(&c, sql).await));
    }
    let got = run_simple(&c, "EXECUTE by_b").await;
    judge_switch(
        report,
        "PREPARE by_b AS SELECT id, name FROM customers ORDER BY id (as B); SET app.current_tenant = 'A'; EXECUTE by_b",
        &steps,
        &want,
        &got,
    );

    // A WITH HOLD cursor declared while B, fetched after switching to A.
    let c = o.client(TenantSource::Set, "B").await;
    let mut steps = Vec::new();
    for sql in [
        "DECLARE held CURSOR WITH HOLD FOR SELECT id, name FROM customers ORDER BY id",
        "SET app.current_tenant = 'A'",
    ] {
        steps.push((sql, run_simple(&c, sql).await));
    }
    let got = run_simple(&c, "FETCH ALL FROM held").await;
    judge_switch(
        report,
        "DECLARE held CURSOR WITH HOLD FOR SELECT id, name FROM customers ORDER BY id (as B); SET app.current_tenant = 'A'; FETCH ALL FROM held",
        &steps,
        &want,
        &got,
    );

    // An extended-protocol statement prepared while B, executed as A.
    let c = o.client(TenantSource::Set, "B").await;
    match c
        .prepare("SELECT id, name FROM customers ORDER BY id")
        .await
    {
        Ok(stmt) => {
            let _ = c.simple_query("SET app.current_tenant = 'A'").await;
            let got = match c.query(&stmt, &[]).await {
                Ok(rows) => Outcome::Ok(vec![oracle::compare::ResultSet {
                    columns: vec!["id".into(), "name".into()],
                    rows: rows
                        .iter()
                        .map(|r| {
                            vec![
                                Some(r.get::<_, i32>(0).to_string()),
                                Some(r.get::<_, String>(1)),
                            ]
                        })
                        .collect(),
                    count: rows.len() as u64,
                }]),
                Err(e) => Outcome::Err {
                    code: support::sqlstate(&e).unwrap_or_default(),
                    message: support::error_chain(&e),
                },
            };
            judge_switch(
                report,
                "Parse SELECT id, name FROM customers ORDER BY id (as B); SET app.current_tenant = 'A'; Bind/Execute",
                &[],
                &want,
                &got,
            );
        }
        Err(e) => report.note(format!("prepare as B failed: {}", support::error_chain(&e))),
    }

    // Another client of A on the pooled connection a B client used.
    let b = o.client(TenantSource::Bound, "B").await;
    let _ = b
        .simple_query("PREPARE pooled AS SELECT id, name FROM customers ORDER BY id")
        .await;
    drop(b);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for _ in 0..3 {
        let a = o.client(TenantSource::Bound, "A").await;
        let got = run_simple(&a, "EXECUTE pooled").await;
        judge_switch(
            report,
            "client of B: PREPARE pooled AS SELECT … FROM customers, disconnect; client of A: EXECUTE pooled",
            &[],
            &want,
            &got,
        );
    }
}

fn judge_switch(
    report: &mut Report,
    what: &str,
    steps: &[(&str, Outcome)],
    want: &Outcome,
    got: &Outcome,
) {
    let mut setup = String::new();
    for (sql, out) in steps {
        setup.push_str(&format!("  step `{sql}`: {}\n", one_line(&out.show())));
    }
    let leaked = leaked_markers(got, "", &schema::foreign_markers("A"));
    if !leaked.is_empty() {
        report.fail(
            KNOWN_ISSUES,
            format!(
                "LEAK: {what}\n{setup}  the session's tenant is A, but the result holds values of {}:\n{}\n  expected (oracle_a) or a refusal:\n{}",
                leaked.join(", "),
                got.show(),
                want.show()
            ),
        );
    } else if !got.is_err() && !got.same_as(want, true) {
        report.fail(
            KNOWN_ISSUES,
            format!(
                "WRONG RESULT: {what}\n{setup}  got:\n{}\n  expected:\n{}",
                got.show(),
                want.show()
            ),
        );
    }
}

/// tenantgate prepares rewritten extended-protocol statements on servers as
/// `_tg_<id>` with the tenant as a parameter: SQL EXECUTE of such a name
/// with another tenant's value must not run, whatever the protocol or
/// spelling. Runs first, while statement ids are small.
async fn server_statement_attacks(
    o: &Oracle,
    oracle_a: &Client,
    report: &mut Report,
    expected: &mut Expected,
) {
    let want = expected
        .get(
            oracle_a,
            "A",
            &probe_entry("SELECT id, name FROM customers ORDER BY id"),
            Protocol::Simple,
        )
        .await;
    let c = o.client(TenantSource::Bound, "A").await;
    let _ = c.simple_query("BEGIN").await;
    let stmt = match c
        .prepare("SELECT id, name FROM customers ORDER BY id")
        .await
    {
        Ok(s) => s,
        Err(e) => {
            report.note(format!("prepare as A failed: {}", support::error_chain(&e)));
            return;
        }
    };
    let _ = c.query(&stmt, &[]).await;
    let mut tried = 0;
    let mut reported = std::collections::HashSet::new();
    for id in 0..24 {
        for (text, protocol) in [
            (format!("EXECUTE _tg_{id}('B')"), Protocol::Simple),
            (format!("EXECUTE/**/_tg_{id}('B')"), Protocol::Simple),
            (format!("EXECUTE \"_tg_{id}\"('B')"), Protocol::Simple),
            (format!("EXECUTE _tg_{id}('B')"), Protocol::Named),
            (format!("EXECUTE _tg_{id}('B')"), Protocol::Unnamed),
        ] {
            tried += 1;
            let _ = c.simple_query("SAVEPOINT probe").await;
            let got = match protocol {
                Protocol::Simple => run_simple(&c, &text).await,
                p => oracle::compare::run_extended(&c, &text, &[], p).await,
            };
            if got.is_err() {
                let _ = c.simple_query("ROLLBACK TO SAVEPOINT probe").await;
                continue;
            }
            // One report per protocol is enough.
            if !reported.insert(protocol) {
                continue;
            }
            judge_switch(
                report,
                &format!(
                    "bound session of A: BEGIN; Parse/Bind/Execute `SELECT id, name FROM customers ORDER BY id`; `{text}` ({} protocol)",
                    protocol.label()
                ),
                &[],
                &want,
                &got,
            );
        }
    }
    rollback(&c).await;
    println!("server statement names: {tried} EXECUTE attempts");

    // A PREPARE sent with the extended protocol: its tenant hole must not
    // become a parameter of the SQL-level statement.
    let c = o.client(TenantSource::Bound, "A").await;
    let prep = oracle::compare::run_extended(
        &c,
        "PREPARE xp AS SELECT id, name FROM customers ORDER BY id",
        &[],
        Protocol::Named,
    )
    .await;
    for sql in ["EXECUTE xp('B')", "EXECUTE xp"] {
        let got = run_simple(&c, sql).await;
        rollback(&c).await;
        judge_switch(
            report,
            &format!(
                "bound session of A: PREPARE xp AS SELECT id, name FROM customers ORDER BY id (extended protocol); `{sql}`"
            ),
            &[("PREPARE xp … (extended)", prep.clone())],
            &want,
            &got,
        );
    }

    // Statement texts of other tenants' sessions on a pooled server
    // connection (pg_prepared_statement() is what pg_prepared_statements
    // shows).
    let b = o.client(TenantSource::Bound, "B").await;
    let _ = b
        .query(
            "SELECT id FROM customers WHERE name = 'B-secret-cust-1'",
            &[],
        )
        .await;
    for _ in 0..3 {
        let a = o.client(TenantSource::Bound, "A").await;
        let e = adhoc(
            "other sessions' statement texts",
            "SELECT name, statement FROM pg_prepared_statement()",
            true,
        );
        let got = run_simple(&a, &e.sql).await;
        check_read(
            report,
            &e,
            "tenant A via bound user, simple protocol (after a client of B prepared a statement with B's values)",
            "A",
            None,
            &got,
        );
    }
}

/// COPY … TO STDOUT of tenant tables is scoped (equal to oracle_a's output)
/// or refused; COPY of a non-global plain table is refused.
async fn copy_out_attacks(o: &Oracle, report: &mut Report) {
    let user = harness::bound_user("A");
    let others = Others::take(&o.shared).await;
    for (sql, must_refuse) in [
        ("COPY customers TO STDOUT", false),
        ("COPY public.orders TO STDOUT", false),
        ("COPY orders (id, note) TO STDOUT", false),
        (
            "COPY (SELECT * FROM orders WHERE tenant_id = 'B') TO STDOUT",
            false,
        ),
        (
            "COPY (SELECT name FROM customers UNION ALL SELECT note FROM orders) TO STDOUT",
            false,
        ),
        ("COPY archive.plans TO STDOUT WITH (FORMAT csv)", false),
        ("COPY plans TO STDOUT", false),
        ("COPY internal_audit TO STDOUT", true),
        ("COPY order_stats TO STDOUT", true),
        ("COPY (SELECT * FROM internal_audit) TO STDOUT", true),
        (
            "COPY (SELECT query_to_xml('select * from orders', true, false, '')) TO STDOUT",
            true,
        ),
        // Writes another tenant's rows unless the tenant column is checked.
        (
            "COPY (INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) \
             VALUES ('B', 9901, 1, 'paid', '2024-05-07 00:00+00', 1.00) RETURNING id) TO STDOUT",
            true,
        ),
        (
            "COPY (WITH w AS (INSERT INTO orders (id, customer_id, status, ordered_at, total, tenant_id) \
             VALUES (9902, 1, 'paid', '2024-05-07 00:00+00', 1.00, 'B') RETURNING *) SELECT id FROM w) TO STDOUT",
            true,
        ),
    ] {
        let mut via = RawClient::login(o.proxy.port, &user, harness::PASSWORD, "app").await;
        let got = copy_out(&mut via, sql).await;
        let mut direct = RawClient::login(o.cluster.port(), "postgres", "", "oracle_a").await;
        let want = copy_out(&mut direct, sql).await;
        let context = "tenant A via bound user, simple protocol COPY";
        let leaked: Vec<String> = schema::foreign_markers("A")
            .into_iter()
            .filter(|m| !sql.contains(m.as_str()))
            .filter(|m| matches!(&got, Ok(d) if d.contains(m.as_str())))
            .collect();
        if !leaked.is_empty() {
            report.fail(
                KNOWN_ISSUES,
                format!(
                    "LEAK: {sql} ({context}) returned values of {}:\n{}",
                    leaked.join(", "),
                    got.as_ref().map(String::as_str).unwrap_or("")
                ),
            );
            continue;
        }
        match (&want, &got, must_refuse) {
            (_, Ok(data), true) => report.fail(
                KNOWN_ISSUES,
                format!("NOT REFUSED: {sql} ({context}) returned:\n{data}"),
            ),
            (_, Err(_), true) => {}
            (Ok(w), Ok(g), false) => {
                report.compared += 1;
                let mut wl: Vec<&str> = w.lines().collect();
                let mut gl: Vec<&str> = g.lines().collect();
                wl.sort();
                gl.sort();
                if wl != gl {
                    report.fail(
                        KNOWN_ISSUES,
                        format!(
                            "WRONG RESULT: {sql} ({context})\n  expected (oracle_a):\n{w}\n  actual:\n{g}"
                        ),
                    );
                }
            }
            (Ok(_), Err(e), false) => report.refusal(sql, format!("{context}: {e}")),
            (Err(_), Ok(g), false) => report.fail(
                KNOWN_ISSUES,
                format!("WRONG RESULT: {sql} fails directly but tenantgate returned:\n{g}"),
            ),
            (Err(_), Err(_), false) => report.compared += 1,
        }
    }
    for d in others.check(o).await {
        report.fail(KNOWN_ISSUES, format!("COPY as A changed others' rows: {d}"));
    }
}

/// Runs a COPY … TO STDOUT with the simple protocol; the data, or the error.
async fn copy_out(c: &mut RawClient, sql: &str) -> Result<String, String> {
    let msgs = c.query(sql).await;
    if let Some(e) = msgs.iter().find(|m| m.is_error()) {
        return Err(format!("{} {}", e.code().unwrap_or_default(), e.message()));
    }
    Ok(msgs
        .iter()
        .filter(|m| m.tag == b'd')
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect())
}

// ------------------------------------------------------------------- writes

/// Writes as A: oracle_a and A's rows on `shared` stay equal; B, C and the
/// tables without a tenant column stay byte-for-byte unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_match_the_oracle_and_spare_other_tenants() {
    let o = harness::start().await;
    let oracle_a = o.direct("oracle_a").await;
    let mut report = Report::default();
    let others = Others::take(&o.shared).await;
    let writes = corpus::writes();
    let param_writes = corpus::param_writes();
    let passes: [(TenantSource, Protocol, &[Entry]); 6] = [
        (TenantSource::Bound, Protocol::Simple, &writes),
        (TenantSource::Bound, Protocol::Named, &writes),
        (TenantSource::Options, Protocol::Unnamed, &writes),
        (TenantSource::Set, Protocol::Simple, &writes),
        (TenantSource::Bound, Protocol::Named, &param_writes),
        (TenantSource::Set, Protocol::Unnamed, &param_writes),
    ];
    for (source, protocol, entries) in passes {
        reset_a(&o, &oracle_a).await;
        let client = o.client(source, "A").await;
        let context = ctx("A", source, protocol);
        for e in entries.iter() {
            if !protocols_for(e).contains(&protocol) {
                continue;
            }
            run_write(
                &o,
                &oracle_a,
                &client,
                &others,
                e,
                protocol,
                &context,
                &mut report,
            )
            .await;
        }
    }
    reset_a(&o, &oracle_a).await;
    copy_in_attacks(&o, &oracle_a, &others, &mut report).await;
    prepared_write_attacks(&o, &oracle_a, &others, &mut report).await;
    println!(
        "write corpus: {} statements ({} hand-written, {} ORM with literals, {} ORM with parameters)",
        writes.len() + param_writes.len(),
        writes.iter().filter(|e| e.origin == "writes.sql").count(),
        writes.iter().filter(|e| e.origin != "writes.sql").count(),
        param_writes.len()
    );
    report.finish("isolation oracle: writes");
}

/// Snapshots of the rows a session of A must never change.
struct Others {
    tenants: Vec<(&'static str, harness::Snapshot)>,
    plain: harness::Snapshot,
}

impl Others {
    async fn take(shared: &Client) -> Others {
        let mut tenants = Vec::new();
        for t in ["B", "C"] {
            tenants.push((t, harness::tenant_state(shared, Some(t)).await));
        }
        Others {
            tenants,
            plain: harness::other_state(shared).await,
        }
    }

    /// Differences from the snapshot (restoring what changed).
    async fn check(&self, o: &Oracle) -> Vec<String> {
        let mut out = Vec::new();
        for (t, before) in &self.tenants {
            let now = harness::tenant_state(&o.shared, Some(t)).await;
            if let Some(d) = harness::state_diff(before, &now) {
                out.push(format!("tenant {t}'s rows changed:\n{d}"));
                let mut sql = schema::delete_tenant(t);
                sql.push_str(&schema::tenant_data(t));
                support::exec(&o.cluster, "shared", &sql).await;
            }
        }
        let now = harness::other_state(&o.shared).await;
        if let Some(d) = harness::state_diff(&self.plain, &now) {
            out.push(format!("tables without a tenant column changed:\n{d}"));
            support::exec(
                &o.cluster,
                "shared",
                &format!(
                    "DELETE FROM plans; DELETE FROM internal_audit; {}",
                    schema::GLOBAL_DATA
                ),
            )
            .await;
        }
        out
    }
}

/// Puts A's rows back to the initial data, on `shared` and on oracle_a.
async fn reset_a(o: &Oracle, oracle_a: &Client) {
    rollback(oracle_a).await;
    let mut sql = schema::delete_tenant("A");
    sql.push_str(&schema::tenant_data("A"));
    support::exec(&o.cluster, "shared", &format!("BEGIN; {sql} COMMIT;")).await;
    support::exec(
        &o.cluster,
        &harness::oracle_db("A"),
        &format!("BEGIN; {sql} COMMIT;"),
    )
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn run_write(
    o: &Oracle,
    oracle_a: &Client,
    client: &Client,
    others: &Others,
    e: &Entry,
    protocol: Protocol,
    context: &str,
    report: &mut Report,
) {
    let got = run_entry(client, e, protocol).await;
    if got.is_err() {
        rollback(client).await;
    }
    let leaked = leaked_markers(&got, &e.sql, &schema::foreign_markers("A"));
    if !leaked.is_empty() {
        report.fail(
            KNOWN_ISSUES,
            format!(
                "LEAK: values of other tenants ({}) came back from a write\n{}",
                leaked.join(", "),
                describe(e, context, None, &got)
            ),
        );
    }
    let attack = e.refuse || e.nocompare;
    let mut resync = false;
    if attack {
        if e.refuse && !got.is_err() {
            report.fail(
                KNOWN_ISSUES,
                format!(
                    "NOT REFUSED: tenantgate must refuse this write\n{}",
                    describe(e, context, None, &got)
                ),
            );
        }
    } else {
        let want = run_entry(oracle_a, e, protocol).await;
        if want.is_err() {
            rollback(oracle_a).await;
        }
        match (&want, &got) {
            (Outcome::Ok(_), Outcome::Ok(_)) => {
                report.compared += 1;
                if !got.same_as(&want, e.ordered) {
                    report.fail(
                        KNOWN_ISSUES,
                        format!(
                            "WRONG RESULT: the write's result differs from the oracle's\n{}",
                            describe(e, context, Some(&want), &got)
                        ),
                    );
                }
            }
            (Outcome::Ok(_), Outcome::Err { code, message }) => {
                report.refusal(&e.sql, format!("{context}: {code} {message}"));
                resync = true;
            }
            (Outcome::Err { .. }, Outcome::Ok(_)) => {
                report.fail(
                    KNOWN_ISSUES,
                    format!(
                        "WRONG RESULT: Postgres refuses this write directly but tenantgate ran it\n{}",
                        describe(e, context, Some(&want), &got)
                    ),
                );
                resync = true;
            }
            (Outcome::Err { .. }, Outcome::Err { .. }) => report.compared += 1,
        }
    }
    if !resync {
        let mine = harness::tenant_state(&o.shared, Some("A")).await;
        let oracle = harness::tenant_state(oracle_a, None).await;
        if let Some(d) = harness::state_diff(&oracle, &mine) {
            report.fail(
                KNOWN_ISSUES,
                format!(
                    "WRONG STATE: after this write A's rows on shared differ from oracle_a{}\n{}\n  differences (expected = oracle_a, present = shared):\n{d}",
                    if attack { " (an attack that must change nothing)" } else { "" },
                    describe(e, context, None, &got)
                ),
            );
            resync = true;
        }
    }
    for d in others.check(o).await {
        report.fail(
            KNOWN_ISSUES,
            format!(
                "LEAK (write): a write as A changed rows it must not touch: {d}\n{}",
                describe(e, context, None, &got)
            ),
        );
    }
    if resync {
        reset_a(o, oracle_a).await;
    }
}

/// COPY … FROM STDIN into tenant and plain tables: refused, or (if ever
/// allowed) scoped to A.
async fn copy_in_attacks(o: &Oracle, oracle_a: &Client, others: &Others, report: &mut Report) {
    let user = harness::bound_user("A");
    for (sql, data) in [
        (
            "COPY orders FROM STDIN",
            "B\t900\t1\tnew\t2024-01-01 00:00:00+00\t\\N\t1.00\tB-secret-copied\n",
        ),
        (
            "COPY orders (id, customer_id, status, ordered_at, total) FROM STDIN",
            "901\t1\tnew\t2024-01-01 00:00:00+00\t1.00\n",
        ),
        (
            "COPY public.orders (tenant_id, id, customer_id, status, ordered_at, total) FROM STDIN WITH (FORMAT csv)",
            "C,902,1,new,2024-01-01 00:00:00+00,1.00\n",
        ),
        ("COPY plans FROM STDIN", "98\tcopied\t0\t{}\n"),
        ("COPY internal_audit FROM STDIN", "97\tcopied\n"),
    ] {
        let mut c = RawClient::login(o.proxy.port, &user, harness::PASSWORD, "app").await;
        c.send(&raw_client::query_msg(sql)).await;
        let mut msgs: Vec<Msg> = Vec::new();
        loop {
            let m = c.expect_msg().await;
            let tag = m.tag;
            msgs.push(m);
            if tag == b'G' {
                c.send(&raw_client::copy_data(data.as_bytes())).await;
                c.send(&raw_client::copy_done()).await;
                msgs.extend(c.until_ready().await);
                break;
            }
            if tag == b'Z' {
                break;
            }
        }
        let accepted = !msgs.iter().any(Msg::is_error);
        if accepted {
            report.note(format!("tenantgate accepted `{sql}` for tenant A"));
        }
        let mine = harness::tenant_state(&o.shared, Some("A")).await;
        let oracle = harness::tenant_state(oracle_a, None).await;
        if let Some(d) = harness::state_diff(&oracle, &mine) {
            report.note(format!(
                "after `{sql}` (accepted: {accepted}) A's rows changed:\n{d}"
            ));
            reset_a(o, oracle_a).await;
        }
        for d in others.check(o).await {
            report.fail(
                KNOWN_ISSUES,
                format!("LEAK (COPY FROM): `{sql}` as tenant A via bound user changed rows it must not touch: {d}"),
            );
        }
    }
}

/// A PREPARE sent with the extended protocol, then SQL EXECUTE with another
/// tenant's value for the tenant hole.
async fn prepared_write_attacks(
    o: &Oracle,
    oracle_a: &Client,
    others: &Others,
    report: &mut Report,
) {
    let c = o.client(TenantSource::Bound, "A").await;
    let prep = oracle::compare::run_extended(
        &c,
        "PREPARE xw AS UPDATE orders SET note = 'A-w-prepared' WHERE id = 1",
        &[],
        Protocol::Named,
    )
    .await;
    for sql in ["EXECUTE xw('B')", "EXECUTE xw"] {
        let got = run_simple(&c, sql).await;
        rollback(&c).await;
        for d in others.check(o).await {
            report.fail(
                KNOWN_ISSUES,
                format!(
                    "LEAK (write): bound session of A: PREPARE xw AS UPDATE orders SET note = 'A-w-prepared' WHERE id = 1 (extended protocol: {}); `{sql}` ({}) changed rows it must not touch: {d}",
                    one_line(&prep.show()),
                    one_line(&got.show())
                ),
            );
        }
    }
    reset_a(o, oracle_a).await;
}
