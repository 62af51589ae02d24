//! Tenant to shard placement: explicit `[[tenants]]` entries first, then a
//! stable hash over `routing.hash_shards` for everyone else.

mod hash;

use std::collections::HashMap;
use std::sync::Arc;

pub use hash::{jump_consistent_hash, place, tenant_key};

use crate::config::Config;

/// Where one tenant (or an untenanted session) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Shard name (shared with the table: a route costs no allocation).
    pub shard: Arc<str>,
    /// Schema-per-tenant: the tenant's schema.
    pub schema: Option<Arc<str>>,
    /// The shard holds this tenant alone; statements pass through.
    pub dedicated: bool,
}

/// What of a route shapes a statement's rewrite: passed through (dedicated),
/// confined to a schema, or scoped on a shared shard (which shard does not
/// matter: the rewrite is the same text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteKey {
    /// Dedicated: statements pass through unrewritten.
    pub dedicated: bool,
    /// The tenant's own schema.
    pub schema: Option<Arc<str>>,
}

impl Route {
    /// What of this route shapes a rewrite.
    pub fn key(&self) -> RouteKey {
        RouteKey {
            dedicated: self.dedicated,
            schema: self.schema.clone(),
        }
    }
}

/// Why a tenant has no home.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Not listed and no hash shards configured.
    #[error("tenant \"{0}\" is not in the routing table and routing.hash_shards is empty")]
    Unroutable(String),
    /// No shard at all for an untenanted session.
    #[error("no shard is configured for sessions without a tenant")]
    NoDefaultShard,
}

/// The routing table built from a config; lookups are O(1).
#[derive(Debug, Clone, Default)]
pub struct Router {
    explicit: HashMap<String, (usize, Option<Arc<str>>)>,
    shards: Vec<(Arc<str>, bool)>,
    hash_shards: Vec<usize>,
}

impl Router {
    /// Builds the table. The config is assumed validated.
    pub fn new(config: &Config) -> Router {
        let shards: Vec<(Arc<str>, bool)> = config
            .shards
            .iter()
            .map(|s| (Arc::from(s.name.as_str()), s.dedicated))
            .collect();
        let index: HashMap<&str, usize> = shards
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (&**n, i))
            .collect();
        let explicit = config
            .tenants
            .iter()
            .filter_map(|t| {
                index
                    .get(t.shard.as_str())
                    .map(|&i| (t.id.clone(), (i, t.schema.as_deref().map(Arc::from))))
            })
            .collect();
        let hash_shards = config
            .routing
            .hash_shards
            .iter()
            .filter_map(|n| index.get(n.as_str()).copied())
            .collect();
        Router {
            explicit,
            shards,
            hash_shards,
        }
    }

    /// The home of `tenant`.
    pub fn route(&self, tenant: &str) -> Result<Route, RouteError> {
        if let Some((i, schema)) = self.explicit.get(tenant) {
            let (name, dedicated) = &self.shards[*i];
            return Ok(Route {
                shard: name.clone(),
                schema: schema.clone(),
                dedicated: *dedicated,
            });
        }
        let slot = place(tenant, self.hash_shards.len())
            .ok_or_else(|| RouteError::Unroutable(tenant.to_string()))?;
        let (name, dedicated) = &self.shards[self.hash_shards[slot]];
        Ok(Route {
            shard: name.clone(),
            schema: None,
            dedicated: *dedicated,
        })
    }

    /// The shard for a session that has not chosen a tenant: the first hash
    /// shard, else the first shared shard.
    pub fn default_route(&self) -> Result<Route, RouteError> {
        let i = self
            .hash_shards
            .first()
            .copied()
            .or_else(|| self.shards.iter().position(|(_, d)| !d))
            .ok_or(RouteError::NoDefaultShard)?;
        let (name, dedicated) = &self.shards[i];
        Ok(Route {
            shard: name.clone(),
            schema: None,
            dedicated: *dedicated,
        })
    }
}
