//! State shared by every session of one proxy: the loaded config, the routing
//! table, pools, prepared statements and cancel keys. Passed as `Arc`, never
//! global, so tests can run many proxies in one process.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::backend::BackendTarget;
use crate::catalog::Catalog;
use crate::config::{Config, ShardUrl};
use crate::error::ProxyError;
use crate::frontend::cancel::CancelRegistry;
use crate::frontend::prepared::StatementRegistry;
use crate::pool::{Pool, PoolSettings};
use crate::protocol::auth::StoredPassword;
use crate::rewrite::{RewriteCache, RewriteRules};
use crate::router::Router;

/// One loaded configuration with everything derived from it.
#[derive(Debug)]
pub struct Loaded {
    /// The config as validated.
    pub config: Config,
    /// Tenant placement.
    pub router: Router,
    /// Parsed passwords by user name (SCRAM verifiers derived once).
    pub passwords: HashMap<String, StoredPassword>,
    /// Increases by one on every successful reload.
    pub generation: u64,
    /// Isolation rules, when `[tenancy]` is configured.
    pub isolation: Option<Arc<IsolationRules>>,
}

/// `[tenancy]` in the form the rewriter uses (names folded).
#[derive(Debug, Clone)]
pub struct IsolationRules {
    /// Tenant column.
    pub column: String,
    /// Session variable naming the tenant.
    pub variable: String,
    /// Global tables (`name` or `schema.name`).
    pub global_tables: HashSet<String>,
    /// Allowed user-defined functions.
    pub allowed_functions: HashSet<String>,
    /// Schemas of schema-per-tenant tenants.
    pub tenant_schemas: HashSet<String>,
    /// Rewrite cache budget per shard.
    pub cache_bytes: usize,
    /// Keep the server's copy of the session variable set to the tenant (for
    /// row-level security policies).
    pub rls: bool,
}

impl IsolationRules {
    /// These rules as the rewriter takes them, for `catalog`; `own_schema`
    /// is the session tenant's schema, `strict` whether the session has a
    /// tenant (see [`RewriteRules`]).
    pub fn for_rewrite<'a>(
        &'a self,
        catalog: &'a Catalog,
        own_schema: Option<&'a str>,
        strict: bool,
    ) -> RewriteRules<'a> {
        RewriteRules {
            catalog,
            column: &self.column,
            global_tables: &self.global_tables,
            allowed_functions: &self.allowed_functions,
            tenant_schemas: &self.tenant_schemas,
            own_schema,
            strict,
            fence: false,
        }
    }
}

/// A shard's catalog and rewrite cache (replaced together on refresh).
#[derive(Debug)]
pub struct ShardIsolation {
    /// The catalog the rewriter resolves names with.
    pub catalog: Arc<Catalog>,
    /// Rewritten statements for this catalog.
    pub cache: RewriteCache,
    /// When the catalog was read.
    read_at: std::time::Instant,
}

/// How old a shard's catalog must be before a statement naming a relation
/// it does not know has it read again.
pub const CATALOG_REREAD_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Everything sessions share.
#[derive(Debug)]
pub struct ProxyState {
    loaded: ArcSwap<Loaded>,
    pools: ArcSwap<HashMap<String, Arc<Pool>>>,
    /// Distinct prepared statements.
    pub statements: StatementRegistry,
    /// Live sessions' cancel keys.
    pub cancels: Arc<CancelRegistry>,
    /// Cancelled when the proxy starts draining.
    pub shutdown: CancellationToken,
    /// Cancelled when draining time is up: every session closes at once.
    pub force_close: CancellationToken,
    /// Catalog and rewrite cache per shard, read on first use and on reload.
    isolation: DashMap<String, Arc<ShardIsolation>>,
    /// Catalogs of shards a reload removed, kept while connections of their
    /// retired pool live: the transactions and pinned sessions still on
    /// such a shard finish there, and their statements are rewritten with
    /// its catalog.
    retired_isolation: DashMap<String, (std::sync::Weak<Pool>, Arc<ShardIsolation>)>,
    /// Pools a reload retired, while sessions still hold their connections
    /// (`SHOW SERVERS` lists those).
    retired_pools: std::sync::Mutex<Vec<std::sync::Weak<Pool>>>,
    next_session: AtomicU64,
    /// Prometheus metrics and per-tenant counters.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Live client sessions (admin console: SHOW CLIENTS, KILL CLIENT).
    pub clients: crate::admin::ClientRegistry,
    /// Pauses set by the admin console.
    pub pauses: crate::admin::Pauses,
    /// The config file that RELOAD re-reads, when there is one.
    pub config_path: std::sync::OnceLock<std::path::PathBuf>,
    /// Permits for rewriting large statements on blocking threads: one per
    /// core, so a flood of them takes at most the machine's cores (and never
    /// a runtime worker).
    pub cold_rewrites: Arc<tokio::sync::Semaphore>,
    /// Held for the whole of a reload, so reloads never overlap.
    pub reload_lock: std::sync::Mutex<()>,
    /// One catalog read at a time for unknown relations.
    catalog_reread: tokio::sync::Mutex<()>,
}

/// Why a config could not be turned into running state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A user's password entry is malformed.
    #[error("user \"{user}\": {reason}")]
    Password {
        /// User name.
        user: String,
        /// What is wrong.
        reason: String,
    },
    /// A shard URL is malformed.
    #[error("shard \"{shard}\": {reason}")]
    ShardUrl {
        /// Shard name.
        shard: String,
        /// What is wrong.
        reason: String,
    },
}

impl ProxyState {
    /// Builds state from a validated config.
    pub fn new(config: Config) -> Result<Arc<ProxyState>, StateError> {
        let metrics = crate::metrics::Metrics::new(config.server.metrics_tenant_labels);
        let loaded = derive(config, 1)?;
        let pools = build_pools(&loaded.config, &HashMap::new())?;
        Ok(Arc::new(ProxyState {
            loaded: ArcSwap::from_pointee(loaded),
            pools: ArcSwap::from_pointee(pools),
            statements: StatementRegistry::default(),
            cancels: Arc::default(),
            shutdown: CancellationToken::new(),
            force_close: CancellationToken::new(),
            isolation: DashMap::new(),
            retired_isolation: DashMap::new(),
            retired_pools: std::sync::Mutex::new(Vec::new()),
            next_session: AtomicU64::new(1),
            metrics: Arc::new(metrics),
            clients: crate::admin::ClientRegistry::default(),
            pauses: crate::admin::Pauses::default(),
            config_path: std::sync::OnceLock::new(),
            reload_lock: std::sync::Mutex::new(()),
            catalog_reread: tokio::sync::Mutex::new(()),
            cold_rewrites: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
        }))
    }

    /// The current configuration snapshot.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded.load_full()
    }

    /// The pool of `shard` in the current configuration.
    pub fn pool(&self, shard: &str) -> Option<Arc<Pool>> {
        self.pools.load().get(shard).cloned()
    }

    /// Every pool, by shard name.
    pub fn pools(&self) -> Arc<HashMap<String, Arc<Pool>>> {
        self.pools.load_full()
    }

    /// Pools a reload retired whose connections sessions still hold.
    pub fn retired_pools(&self) -> Vec<Arc<Pool>> {
        self.retired_pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect()
    }

    /// The catalog and rewrite cache of `shard`, reading the catalog now if
    /// it has not been read yet.
    pub async fn shard_isolation(&self, shard: &str) -> Result<Arc<ShardIsolation>, ProxyError> {
        if let Some(s) = self.isolation.get(shard) {
            return Ok(s.clone());
        }
        if self.pool(shard).is_none()
            && let Some(retired) = self.retired_isolation.get(shard)
        {
            if retired.0.strong_count() > 0 {
                return Ok(retired.1.clone());
            }
            // Its last connection is gone: so is the need for its catalog.
            drop(retired);
            self.retired_isolation
                .remove_if(shard, |_, (pool, _)| pool.strong_count() == 0);
        }
        self.refresh_catalog(shard).await
    }

    /// Reads `shard`'s catalog again and starts a fresh rewrite cache for it.
    pub async fn refresh_catalog(&self, shard: &str) -> Result<Arc<ShardIsolation>, ProxyError> {
        let loaded = self.loaded();
        let (Some(rules), Some(pool)) = (&loaded.isolation, self.pool(shard)) else {
            return Err(ProxyError::catalog_unavailable(shard));
        };
        let catalog =
            crate::catalog::discover(&pool.target(), &rules.column, pool.connect_timeout())
                .await
                .map_err(|e| {
                    tracing::warn!(shard, error = %e, "cannot read the shard's catalog");
                    ProxyError::catalog_unavailable(shard)
                })?;
        tracing::info!(
            shard,
            relations = catalog.relation_count(),
            "catalog loaded"
        );
        let iso = Arc::new(ShardIsolation {
            catalog: Arc::new(catalog),
            cache: RewriteCache::new(rules.cache_bytes),
            read_at: std::time::Instant::now(),
        });
        // Not for a pool a reload replaced or removed while the catalog was
        // read: that shard's entry is the reload's to keep or retire.
        if self.pool(shard).is_some_and(|p| Arc::ptr_eq(&p, &pool)) {
            self.isolation.insert(shard.to_string(), iso.clone());
        }
        Ok(iso)
    }

    /// `shard`'s catalog read again after a statement named a relation
    /// `seen` (the catalog it was rewritten with) does not know, unless
    /// `seen` is younger than [`CATALOG_REREAD_AFTER`] or was replaced
    /// meanwhile (then the current one). One read at a time, proxy-wide: a
    /// burst of such statements costs one read.
    pub async fn reread_catalog(
        &self,
        shard: &str,
        seen: &Arc<ShardIsolation>,
    ) -> Result<Arc<ShardIsolation>, ProxyError> {
        let _one = self.catalog_reread.lock().await;
        if let Some(current) = self.isolation.get(shard).map(|c| c.clone())
            && !Arc::ptr_eq(&current, seen)
        {
            return Ok(current);
        }
        if seen.read_at.elapsed() < CATALOG_REREAD_AFTER || self.pool(shard).is_none() {
            return Ok(Arc::clone(seen));
        }
        tracing::info!(
            shard,
            "a statement names a relation the catalog does not know: reading it again"
        );
        self.refresh_catalog(shard).await
    }

    /// Re-reads every loaded shard's catalog (after a reload).
    pub async fn refresh_catalogs(&self) {
        let shards: Vec<String> = self.pools().keys().cloned().collect();
        self.isolation.retain(|k, _| shards.contains(k));
        for shard in shards {
            let _ = self.refresh_catalog(&shard).await;
        }
    }

    /// Rewrite-cache statistics summed over shards.
    pub fn rewrite_cache_stats(&self) -> crate::rewrite::CacheStats {
        let mut total = crate::rewrite::CacheStats::default();
        for e in self.isolation.iter() {
            let s = e.cache.stats();
            total.hits += s.hits;
            total.misses += s.misses;
            total.bytes += s.bytes;
            total.entries += s.entries;
        }
        total
    }

    /// A new session id.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Swaps in a new validated config. Each shard that stays keeps its pool,
    /// retuned in place (size, timeouts, server); removed shards' pools are
    /// retired: idle connections close now, busy ones when given back.
    pub fn reload(&self, config: Config) -> Result<u64, StateError> {
        let generation = self.loaded.load().generation + 1;
        let loaded = derive(config, generation)?;
        let old = self.pools.load_full();
        let pools = Arc::new(build_pools(&loaded.config, &old)?);
        self.metrics
            .tenants
            .set_cap(loaded.config.server.metrics_tenant_labels);
        self.pools.store(pools.clone());
        self.loaded.store(Arc::new(loaded));
        // Retired only once no new transaction can pick them up.
        self.retired_isolation
            .retain(|_, (pool, _)| pool.strong_count() > 0);
        for (name, pool) in old.iter() {
            if pools.get(name).is_none_or(|p| !Arc::ptr_eq(p, pool)) {
                pool.retire();
                let mut retired = self
                    .retired_pools
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                retired.retain(|p| p.strong_count() > 0);
                retired.push(Arc::downgrade(pool));
            }
            // Kept for the sessions still on it before it leaves the live
            // map, so that a lookup in between finds one or the other.
            if !pools.contains_key(name)
                && let Some(iso) = self.isolation.get(name).map(|i| i.clone())
            {
                self.retired_isolation
                    .insert(name.clone(), (Arc::downgrade(pool), iso));
                self.isolation.remove(name);
            }
        }
        Ok(generation)
    }
}

fn derive(config: Config, generation: u64) -> Result<Loaded, StateError> {
    let mut passwords = HashMap::with_capacity(config.users.len());
    for u in &config.users {
        let p = StoredPassword::parse(&u.password).map_err(|e| StateError::Password {
            user: u.name.clone(),
            reason: e.to_string(),
        })?;
        passwords.insert(u.name.clone(), p);
    }
    let isolation = config.tenancy.as_ref().map(|t| {
        let fold = |s: &String| s.trim().to_lowercase();
        Arc::new(IsolationRules {
            column: fold(&t.column),
            variable: fold(&t.session_variable),
            global_tables: t.global_tables.iter().map(fold).collect(),
            allowed_functions: t.allowed_functions.iter().map(fold).collect(),
            tenant_schemas: config
                .tenants
                .iter()
                .filter_map(|t| t.schema.clone())
                .collect(),
            cache_bytes: t.rewrite_cache_bytes,
            rls: t.rls,
        })
    });
    Ok(Loaded {
        isolation,
        router: Router::new(&config),
        config,
        passwords,
        generation,
    })
}

fn build_pools(
    config: &Config,
    old: &HashMap<String, Arc<Pool>>,
) -> Result<HashMap<String, Arc<Pool>>, StateError> {
    // Every shard's settings first: a file with a bad one changes no pool.
    let mut all = Vec::with_capacity(config.shards.len());
    for s in &config.shards {
        let url = ShardUrl::parse(&s.url).map_err(|e| StateError::ShardUrl {
            shard: s.name.clone(),
            reason: e.to_string(),
        })?;
        all.push(PoolSettings {
            shard: s.name.clone(),
            target: BackendTarget {
                host: url.host.clone(),
                port: url.port,
                user: url.user.clone(),
                password: url.password.clone(),
                dbname: url.dbname.clone(),
            },
            size: s.pool_size,
            connect_timeout: config.server.server_connect_timeout,
            idle_timeout: config.server.server_idle_timeout,
            max_pinned_per_tenant: s.pinned_per_tenant_limit(),
        });
    }
    let mut pools = HashMap::with_capacity(all.len());
    for settings in all {
        // A shard keeps its pool: a new size, timeout or server is applied
        // to it in place.
        let pool = match old.get(&settings.shard) {
            Some(p) => {
                p.retune(&settings);
                p.clone()
            }
            None => Pool::new(settings),
        };
        pools.insert(pool.shard().to_string(), pool);
    }
    Ok(pools)
}
