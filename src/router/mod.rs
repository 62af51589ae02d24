//! Tenant to shard placement.
