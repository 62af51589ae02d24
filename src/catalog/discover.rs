//! Reading a shard's catalog with tokio-postgres.

use std::time::Duration;

use tokio_postgres::NoTls;

use super::{Catalog, RelationKind};
use crate::backend::BackendTarget;

/// Why a catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Connecting or querying failed.
    #[error("reading the catalog of {addr}: {source}")]
    Postgres {
        /// host:port.
        addr: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// It took too long.
    #[error("reading the catalog of {0} timed out")]
    Timeout(String),
}

const RELATIONS: &str = "
SELECT n.nspname::text, c.relname::text,
       (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = c.oid AND a.attname = $1 AND a.attnum > 0 AND NOT a.attisdropped)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

const SYSTEM_RELATIONS: &str = "
SELECT c.relname::text FROM pg_catalog.pg_class c
 WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p')";

const USER_FUNCTIONS: &str = "
SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')";

/// Reads the catalog of the database `target` points at, for `tenant_column`.
pub async fn discover(
    target: &BackendTarget,
    tenant_column: &str,
    timeout: Duration,
) -> Result<Catalog, CatalogError> {
    let addr = format!("{}:{}", target.host, target.port);
    match tokio::time::timeout(timeout, read(target, tenant_column)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(source)) => Err(CatalogError::Postgres { addr, source }),
        Err(_) => Err(CatalogError::Timeout(addr)),
    }
}

/// The catalog, read on a connection that starts as the pool's do
/// (standard strings, whatever the server's defaults).
async fn read(
    target: &BackendTarget,
    tenant_column: &str,
) -> Result<Catalog, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(&target.user)
        .dbname(&target.dbname)
        .application_name("tenantgate catalog")
        .options("-c standard_conforming_strings=on");
    if let Some(p) = &target.password {
        config.password(p);
    }
    let (client, connection) = config.connect(NoTls).await?;
    let conn_task = tokio::spawn(connection);
    let relations = client.query(RELATIONS, &[&tenant_column]).await?;
    let system = client.query(SYSTEM_RELATIONS, &[]).await?;
    let functions = client.query(USER_FUNCTIONS, &[]).await?;
    let path = client
        .query_one("SELECT pg_catalog.current_schemas(false)::text[]", &[])
        .await?;
    drop(client);
    conn_task.abort();
    let relations = relations.into_iter().map(|r| {
        let kind = match r.get::<_, Option<String>>(2) {
            Some(t) => RelationKind::Tenant(t),
            None => RelationKind::Plain,
        };
        (r.get::<_, String>(0), r.get::<_, String>(1), kind)
    });
    Ok(Catalog::new(
        relations,
        system.into_iter().map(|r| r.get::<_, String>(0)),
        path.get::<_, Vec<String>>(0),
        functions.into_iter().map(|r| r.get::<_, String>(0)),
    ))
}
