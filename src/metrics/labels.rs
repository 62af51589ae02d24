//! The fixed label sets of tenantgate's metrics. Every family has one of
//! these types, so a series can only be created with the labels it declares.

use prometheus_client::encoding::EncodeLabelSet;

/// `{tenant, shard}`: traffic of one tenant on one shard.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantShard {
    /// Tenant id, `other` past the label cap, `none` without a tenant.
    pub tenant: String,
    /// Shard name.
    pub shard: String,
}

/// `{tenant, class}`: errors by SQLSTATE class (the first two characters).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantClass {
    /// Tenant label as in [`TenantShard`].
    pub tenant: String,
    /// SQLSTATE class, e.g. `42`.
    pub class: String,
}

/// `{tenant, sqlstate}`: isolation refusals by their SQLSTATE.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantSqlstate {
    /// Tenant label as in [`TenantShard`].
    pub tenant: String,
    /// Full SQLSTATE, e.g. `42501`.
    pub sqlstate: String,
}

/// `{reason}`: why a client connection was refused.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// One of the reasons listed in docs/observability.md.
    pub reason: &'static str,
}

/// `{outcome}`: `success` or `failure`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `success` or `failure`.
    pub outcome: &'static str,
}

/// `{shard}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Shard {
    /// Shard name.
    pub shard: String,
}

/// `{shard, state}`: server connections by state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardState {
    /// Shard name.
    pub shard: String,
    /// `active`, `idle` or `connecting`.
    pub state: &'static str,
}

/// `{scope, name}`: a pause in force.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PauseScope {
    /// `all`, `shard` or `tenant`.
    pub scope: &'static str,
    /// The shard or tenant (empty for `all`).
    pub name: String,
}

/// `{version}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Version {
    /// The crate version.
    pub version: &'static str,
}
