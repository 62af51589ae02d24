//! Prints what tenantgate's rewriter makes of each SQL statement given on the
//! command line (or stdin, one per line), against a small sample catalog:
//! `customers`, `orders` (tenant tables) and `plans` (global).

use std::collections::HashSet;
use std::io::BufRead;

use tenantgate::catalog::{Catalog, RelationKind};
use tenantgate::rewrite::{RewriteRules, Rewritten, rewrite};

fn main() {
    let catalog = Catalog::new(
        [
            (
                "public".into(),
                "customers".into(),
                RelationKind::Tenant("text".into()),
            ),
            (
                "public".into(),
                "orders".into(),
                RelationKind::Tenant("text".into()),
            ),
            (
                "public".into(),
                "items".into(),
                RelationKind::Tenant("bigint".into()),
            ),
            ("public".into(), "plans".into(), RelationKind::Plain),
            ("public".into(), "audit".into(), RelationKind::Plain),
        ],
        [
            "pg_class".to_string(),
            "pg_type".to_string(),
            "pg_stats".to_string(),
            "pg_stat_activity".to_string(),
        ],
        vec!["public".into()],
        ["my_udf".to_string()],
    );
    let globals: HashSet<String> = ["plans".to_string()].into();
    let empty = HashSet::new();
    let rules = RewriteRules {
        catalog: &catalog,
        column: "tenant_id",
        global_tables: &globals,
        allowed_functions: &empty,
        tenant_schemas: &empty,
        own_schema: None,
        strict: true,
        fence: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let inputs: Vec<String> = if args.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .collect()
    } else {
        args
    };
    for sql in inputs {
        println!("IN   {sql}");
        match rewrite(&sql, &rules) {
            Ok(Rewritten::Unchanged) => println!("SAME"),
            Ok(Rewritten::Template(t)) => {
                println!("OUT  {}", t.render_literal("acme"));
                if !t.checks.is_empty() {
                    println!("CHK  {:?}", t.checks);
                }
            }
            Err(e) => println!("ERR  {} {}", e.code, e.message),
        }
    }
}
