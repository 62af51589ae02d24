//! The isolation oracle, shared by `tests/isolation_oracle.rs` and
//! `tests/isolation_fuzz.rs` (use with `mod support; mod oracle;`).
//!
//! A cluster holds database `shared` with tenants A, B and C in the same
//! tables, and `oracle_a` / `oracle_b` / `oracle_c` with one tenant each.
//! Whatever runs through tenantgate as tenant X on `shared` must behave
//! exactly as it does directly on `oracle_x`, and must leave the other
//! tenants' rows byte-for-byte unchanged.
//!
//! * `schema`  — tables, data (every text of tenant X carries `X-secret`);
//! * `corpus`  — the statement files (`*.sql`, `orm/*.sql`) and their format;
//! * `compare` — running a statement with each protocol, comparing outcomes;
//! * `harness` — cluster, databases, proxy config, tenant sources, snapshots;
//! * `report`  — failures, known issues, refusals; printed at the end.
#![allow(dead_code)]

pub mod compare;
pub mod corpus;
pub mod harness;
pub mod report;
pub mod schema;
