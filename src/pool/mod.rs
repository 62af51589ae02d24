//! Per-shard pools of server connections.
