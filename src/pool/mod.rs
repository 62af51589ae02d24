//! Per-shard pools of server connections: FIFO-fair checkout with a wait
//! timeout, connections that return themselves, idle reaping, and each
//! tenant's share of pinned connections.

mod checkout;
mod pin_quota;
mod shard_pool;

pub use checkout::Checkout;
pub use pin_quota::{PinLease, PinQuota};
pub use shard_pool::{Pool, PoolSettings, PoolStats};
