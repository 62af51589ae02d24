//! tenantgate: a Postgres wire-protocol proxy that makes one fleet of Postgres
//! servers safe to share between many tenants.
//!
//! Data flows one way: `protocol` → `frontend` → `router` → `pool` → `backend`,
//! with `config`, `admin` and `metrics` beside. `server` wires them together.

pub mod admin;
pub mod backend;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod error;
pub mod frontend;
pub mod localpg;
pub mod metrics;
pub mod pool;
pub mod protocol;
pub mod rewrite;
pub mod router;
pub mod server;
pub mod state;
pub mod tenant;
