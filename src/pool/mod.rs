//! Per-shard pools of server connections: FIFO-fair checkout with a wait
//! timeout, connections that return themselves, idle reaping.

mod checkout;
mod shard_pool;

pub use checkout::Checkout;
pub use shard_pool::{Pool, PoolSettings, PoolStats};
