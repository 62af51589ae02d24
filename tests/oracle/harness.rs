//! One throwaway cluster with the shared database and the per-tenant oracle
//! databases, a proxy in front of `shared`, and clients for each way a
//! session can get its tenant.

use tenantgate::localpg::Cluster;
use tokio_postgres::Client;

use super::schema;
use crate::support;

/// Password of every proxy user.
pub const PASSWORD: &str = "oracle-secret";

/// Where a session's tenant comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantSource {
    /// A user with `tenant = "X"` in `[[users]]`.
    Bound,
    /// Trusted user `app` with startup `options=-c app.current_tenant=X`.
    Options,
    /// Trusted user `app` running `SET app.current_tenant = 'X'`.
    Set,
}

impl TenantSource {
    /// All sources.
    pub const ALL: [TenantSource; 3] = [
        TenantSource::Bound,
        TenantSource::Options,
        TenantSource::Set,
    ];

    /// Short label.
    pub fn label(self) -> &'static str {
        match self {
            TenantSource::Bound => "bound user",
            TenantSource::Options => "startup options",
            TenantSource::Set => "SET app.current_tenant",
        }
    }
}

/// The bound user of `tenant` (`a_bound` for A).
pub fn bound_user(tenant: &str) -> String {
    format!("{}_bound", tenant.to_lowercase())
}

/// The oracle database of `tenant`.
pub fn oracle_db(tenant: &str) -> String {
    format!("oracle_{}", tenant.to_lowercase())
}

/// The cluster, the proxy and direct clients.
pub struct Oracle {
    /// The cluster (dropped last: removed with its files).
    pub cluster: Cluster,
    /// The proxy.
    pub proxy: support::ProxyHandle,
    /// Direct superuser client of `shared`.
    pub shared: Client,
}

/// Config text: shard `s0` is `shared`; `plans` is global; users `app`
/// (trusted) and `a_bound` / `b_bound` / `c_bound`.
pub fn config_text(cluster: &Cluster) -> String {
    let mut rest = String::from(
        "\n[tenancy]\nglobal_tables = [\"plans\"]\n\n[routing]\nhash_shards = [\"s0\"]\n",
    );
    rest.push_str(&format!(
        "\n[[users]]\nname = \"app\"\npassword = \"{PASSWORD}\"\n"
    ));
    for t in schema::TENANTS {
        rest.push_str(&format!(
            "\n[[users]]\nname = \"{}\"\npassword = \"{PASSWORD}\"\ntenant = \"{t}\"\n",
            bound_user(t)
        ));
    }
    support::config_text_for(&[("s0", cluster, "shared")], &rest)
}

/// Loads `db` from scratch: schema, global rows, and `tenants`' rows.
pub async fn load(cluster: &Cluster, db: &str, default_tenant: Option<&str>, tenants: &[&str]) {
    support::create_database(cluster, db).await;
    let mut sql = schema::ddl(default_tenant);
    sql.push_str(schema::GLOBAL_DATA);
    for t in tenants {
        sql.push_str(&schema::tenant_data(t));
    }
    support::exec(cluster, db, &sql).await;
}

/// Starts a cluster, loads `shared` and the oracle databases, then the proxy
/// (after the schema exists: the proxy reads the catalog at first use).
pub async fn start() -> Oracle {
    let cluster = support::start_cluster().await;
    load(&cluster, "shared", None, &schema::TENANTS).await;
    for t in schema::TENANTS {
        load(&cluster, &oracle_db(t), Some(t), &[t]).await;
    }
    let proxy = support::start_proxy(support::load_config(&config_text(&cluster))).await;
    let shared = support::connect_direct(&cluster, "shared").await;
    Oracle {
        cluster,
        proxy,
        shared,
    }
}

impl Oracle {
    /// A direct client of `db`.
    pub async fn direct(&self, db: &str) -> Client {
        support::connect_direct(&self.cluster, db).await
    }

    /// A proxy client whose tenant is `tenant`, set up through `source`.
    pub async fn client(&self, source: TenantSource, tenant: &str) -> Client {
        let port = self.proxy.port;
        match source {
            TenantSource::Bound => {
                support::connect(port, &bound_user(tenant), PASSWORD, "app").await
            }
            TenantSource::Options => {
                support::connect_with_options(
                    port,
                    "app",
                    PASSWORD,
                    "app",
                    &format!("-c app.current_tenant={tenant}"),
                )
                .await
            }
            TenantSource::Set => {
                let c = support::connect(port, "app", PASSWORD, "app").await;
                if let Err(e) = c
                    .simple_query(&format!("SET app.current_tenant = '{tenant}'"))
                    .await
                {
                    panic!(
                        "SET app.current_tenant = '{tenant}' through the proxy failed: {}",
                        support::error_chain(&e)
                    );
                }
                c
            }
        }
    }

    /// A trusted proxy client with no tenant chosen.
    pub async fn trusted(&self) -> Client {
        support::connect(self.proxy.port, "app", PASSWORD, "app").await
    }
}

/// A snapshot: for each table, its rows as text.
pub type Snapshot = Vec<(String, Vec<String>)>;

/// Every row of `table` (as row text), ordered by `order`, optionally only
/// `tenant`'s rows.
pub async fn table_rows(
    client: &Client,
    table: &str,
    order: &str,
    tenant: Option<&str>,
) -> Vec<String> {
    let filter = match tenant {
        Some(t) => format!(" WHERE tenant_id = '{t}'"),
        None => String::new(),
    };
    let sql = format!("SELECT r::text FROM {table} r{filter} ORDER BY {order}");
    let msgs = client
        .simple_query(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", support::error_chain(&e)));
    msgs.into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .collect()
}

/// Snapshot of `tenant`'s rows in every tenant table of `client`'s database
/// (all rows when `tenant` is `None`).
pub async fn tenant_state(client: &Client, tenant: Option<&str>) -> Snapshot {
    let mut out = Vec::new();
    for (table, order) in schema::TENANT_TABLES {
        out.push((
            table.to_string(),
            table_rows(client, table, order, tenant).await,
        ));
    }
    out
}

/// Snapshot of the tables without a tenant column.
pub async fn other_state(client: &Client) -> Snapshot {
    let mut out = Vec::new();
    for (table, order) in schema::OTHER_TABLES {
        out.push((
            table.to_string(),
            table_rows(client, table, order, None).await,
        ));
    }
    out
}

/// The differences between two snapshots, readable.
pub fn state_diff(
    expected: &[(String, Vec<String>)],
    actual: &[(String, Vec<String>)],
) -> Option<String> {
    let mut out = String::new();
    for ((table, e), (_, a)) in expected.iter().zip(actual) {
        if e == a {
            continue;
        }
        out.push_str(&format!("  table {table}:\n"));
        for row in e.iter().filter(|r| !a.contains(r)).take(10) {
            out.push_str(&format!("    expected, missing: {row}\n"));
        }
        for row in a.iter().filter(|r| !e.contains(r)).take(10) {
            out.push_str(&format!("    present, unexpected: {row}\n"));
        }
        if e.len() != a.len() {
            out.push_str(&format!(
                "    {} rows expected, {} present\n",
                e.len(),
                a.len()
            ));
        }
    }
    (!out.is_empty()).then_some(out)
}
