//! Operating tenantgate: the admin console (`SHOW POOLS / CLIENTS / SERVERS /
//! SHARDS / TENANTS / STATS / CONFIG / VERSION`, `RELOAD`, `PAUSE`, `RESUME`,
//! `KILL CLIENT`), the registry of live sessions it reads, pauses, and the
//! HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
//! docs/observability.md documents every command and column.

pub mod clients;
pub mod command;
pub mod console;
pub mod health;
pub mod http;
pub mod pause;
pub mod show;
pub mod show_config;
pub mod show_traffic;
pub mod table;

pub use clients::{ClientEntry, ClientGuard, ClientInfo, ClientRegistry, ClientState};
pub use pause::{PauseSet, Pauses, Scope};
