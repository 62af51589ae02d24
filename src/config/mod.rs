//! `routing.toml`: typed configuration, loading with line-numbered errors, and
//! whole-file validation. A config is built and validated whole before use.
//!
//! - [`load_file`] / [`load_str`] parse, read `routing.tenants_file`, validate,
//!   and return either a [`Config`] or [`ConfigErrors`] listing every problem
//!   with its file and line;
//! - [`ShardUrl`] parses a shard's `url` (the backend connects with it);
//! - [`summary`] is what `tenantgate check` prints;
//! - [`Config::restart_required`] tells a reload what it cannot apply.
//!
//! docs/configuration.md documents every key.

mod load;
mod locate;
mod reload;
mod shard_url;
mod summary;
mod tenants_file;
#[cfg(test)]
mod tests;
mod validate;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use load::{ConfigError, ConfigErrors, load_file, load_str, load_str_in};
pub use reload::RESTART_REQUIRED;
pub use shard_url::{ShardUrl, ShardUrlError, SslMode};
pub use summary::summary;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener, pool mode and timeouts.
    pub server: ServerConfig,
    /// Tenant isolation. Without a `[tenancy]` table tenantgate is a plain
    /// pooler: statements are not parsed or rewritten.
    #[serde(default)]
    pub tenancy: Option<TenancyConfig>,
    /// Who may connect.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Backend databases.
    #[serde(default)]
    pub shards: Vec<ShardConfig>,
    /// Placement of tenants not listed explicitly.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Explicit tenant placements: the inline `[[tenants]]`, then (after
    /// loading) those of `routing.tenants_file`.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
}

/// Transaction or session pooling.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A server connection is held for one transaction.
    #[default]
    Transaction,
    /// A server connection is held for the client's whole session.
    Session,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address Postgres clients connect to.
    pub listen: String,
    /// Address of the HTTP endpoint (/metrics, /healthz); none disables it.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// The database name clients ask for.
    #[serde(default = "defaults::database")]
    pub database: String,
    /// Transaction (default) or session pooling.
    #[serde(default)]
    pub pool_mode: PoolMode,
    /// Most client connections served at once; more are refused with 53300.
    #[serde(default = "defaults::max_client_conn")]
    pub max_client_conn: usize,
    /// How long a client waits for a server connection before 57014.
    #[serde(default = "defaults::query_wait_timeout", with = "humantime_serde")]
    pub query_wait_timeout: Duration,
    /// How long connecting and authenticating to a backend may take.
    #[serde(default = "defaults::server_connect_timeout", with = "humantime_serde")]
    pub server_connect_timeout: Duration,
    /// Idle server connections older than this are closed.
    #[serde(default = "defaults::server_idle_timeout", with = "humantime_serde")]
    pub server_idle_timeout: Duration,
    /// On SIGTERM/SIGINT, how long open transactions may run before the proxy exits.
    #[serde(default = "defaults::shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Largest protocol message accepted from a client, in bytes.
    #[serde(default = "defaults::max_message_size")]
    pub max_message_size: usize,
    /// Runtime worker threads (default: one per CPU core). Restart to change.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Database name of the admin console.
    #[serde(default = "defaults::admin_database")]
    pub admin_database: String,
    /// Tenants with their own metrics label; later ones are folded into `other`.
    #[serde(default = "defaults::metrics_tenant_labels")]
    pub metrics_tenant_labels: usize,
    /// Queries slower than this are logged (none: no slow-query log).
    #[serde(default, with = "humantime_serde")]
    pub slow_query_threshold: Option<Duration>,
    /// A client whose transaction waits on it longer than this is
    /// disconnected, so its server connection comes back (none: never).
    #[serde(default, with = "humantime_serde")]
    pub idle_transaction_timeout: Option<Duration>,
}

/// `[tenancy]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenancyConfig {
    /// Tenant key column.
    #[serde(default = "defaults::column")]
    pub column: String,
    /// Session variable naming the current tenant.
    #[serde(default = "defaults::session_variable")]
    pub session_variable: String,
    /// Tables without the column that tenant sessions may read.
    #[serde(default)]
    pub global_tables: Vec<String>,
    /// Also `SET LOCAL` the session variable on the server in every transaction.
    #[serde(default)]
    pub rls: bool,
    /// User-defined functions tenant sessions may call (all others are refused).
    #[serde(default)]
    pub allowed_functions: Vec<String>,
    /// Bytes of rewritten statements cached per shard.
    #[serde(default = "defaults::rewrite_cache_bytes")]
    pub rewrite_cache_bytes: usize,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        TenancyConfig {
            column: defaults::column(),
            session_variable: defaults::session_variable(),
            global_tables: Vec::new(),
            rls: false,
            allowed_functions: Vec::new(),
            rewrite_cache_bytes: defaults::rewrite_cache_bytes(),
        }
    }
}

/// How a client proves its password.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// SCRAM-SHA-256 (default).
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// MD5 challenge (needs a plain-text or md5-hashed password).
    #[serde(rename = "md5")]
    Md5,
}

/// `[[users]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name.
    pub name: String,
    /// Plain text, `SCRAM-SHA-256$…` verifier, or `md5…` hash.
    pub password: String,
    /// Tenant-bound credentials: this user is always this tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// May use the admin console.
    #[serde(default)]
    pub admin: bool,
    /// Authentication method offered to this user.
    #[serde(default)]
    pub auth: AuthMethod,
}

/// `[[shards]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// Shard name used by routing.
    pub name: String,
    /// `postgres://user[:password]@host[:port]/db` used to log in to the
    /// backend; see [`ShardUrl`] (validation checks that it parses).
    pub url: String,
    /// Server connections in this shard's pool.
    #[serde(default = "defaults::pool_size")]
    pub pool_size: usize,
    /// One tenant lives here alone; statements pass through unrewritten.
    #[serde(default)]
    pub dedicated: bool,
    /// Most server connections of this pool one tenant may hold pinned
    /// (LISTEN, session advisory locks, temporary tables, …). Default: half
    /// the pool (rounded up) on a shared shard, no limit on a dedicated one.
    #[serde(default)]
    pub max_pinned_per_tenant: Option<usize>,
}

impl ShardConfig {
    /// The effective `max_pinned_per_tenant` (0: no limit).
    pub fn pinned_per_tenant_limit(&self) -> usize {
        match self.max_pinned_per_tenant {
            Some(n) => n,
            None if self.dedicated => 0,
            None => self.pool_size.div_ceil(2),
        }
    }
}

/// `[routing]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Shards that unlisted tenants are hashed over.
    #[serde(default)]
    pub hash_shards: Vec<String>,
    /// Optional separate TOML file holding only `[[tenants]]` entries,
    /// relative to the config file. After loading, this is the resolved path
    /// and its tenants are in [`Config::tenants`].
    #[serde(default)]
    pub tenants_file: Option<PathBuf>,
}

/// `[[tenants]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant id as sessions name it.
    pub id: String,
    /// Shard holding this tenant.
    pub shard: String,
    /// Schema-per-tenant: the schema pinned as search_path.
    #[serde(default)]
    pub schema: Option<String>,
}

impl Config {
    /// The shard named `name`.
    pub fn shard(&self, name: &str) -> Option<&ShardConfig> {
        self.shards.iter().find(|s| s.name == name)
    }

    /// The user named `name`.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

impl ShardConfig {
    /// The parsed `url`. Always `Ok` for a config that passed validation.
    pub fn parsed_url(&self) -> Result<ShardUrl, ShardUrlError> {
        ShardUrl::parse(&self.url)
    }
}

mod defaults {
    use std::time::Duration;

    pub fn database() -> String {
        "app".into()
    }
    pub fn admin_database() -> String {
        "tenantgate".into()
    }
    pub fn max_client_conn() -> usize {
        10_000
    }
    pub fn query_wait_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn server_connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn server_idle_timeout() -> Duration {
        Duration::from_secs(600)
    }
    pub fn shutdown_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_message_size() -> usize {
        64 * 1024 * 1024
    }
    pub fn metrics_tenant_labels() -> usize {
        100
    }
    pub fn column() -> String {
        "tenant_id".into()
    }
    pub fn session_variable() -> String {
        "app.current_tenant".into()
    }
    pub fn rewrite_cache_bytes() -> usize {
        64 * 1024 * 1024
    }
    pub fn pool_size() -> usize {
        20
    }
}
