//! The oracle schema and its data. Database `shared` holds tenants A, B and C
//! in the same tables; `oracle_a` / `oracle_b` / `oracle_c` hold one tenant
//! each with the identical schema (tenant column included, so rows compare
//! equal). Every tenant uses the same primary keys with different other
//! values, and every text value of tenant X contains the marker `X-secret`,
//! so a value of another tenant is recognisable wherever it shows up.

/// The tenants, in the order their data is generated.
pub const TENANTS: [&str; 3] = ["A", "B", "C"];

/// Tenant tables and the columns that order their rows (a unique key), for
/// state snapshots.
pub const TENANT_TABLES: &[(&str, &str)] = &[
    ("customers", "id"),
    ("products", "id"),
    ("orders", "id"),
    ("order_items", "order_id, line_no"),
    ("accounts", "id"),
    ("archive.orders", "id"),
    ("archive.plans", "id"),
];

/// Tables without the tenant column (global or not), for state snapshots:
/// tenant sessions must never change them.
pub const OTHER_TABLES: &[(&str, &str)] = &[("plans", "id"), ("internal_audit", "id")];

/// The marker every text value of `tenant` carries.
pub fn marker(tenant: &str) -> String {
    format!("{tenant}-secret")
}

/// Markers of every tenant but `tenant`.
pub fn foreign_markers(tenant: &str) -> Vec<String> {
    TENANTS
        .iter()
        .filter(|t| **t != tenant)
        .map(|t| marker(t))
        .collect()
}

/// The schema. `default_tenant` gives the tenant column a default (the
/// single-tenant oracle databases use it, so statements that omit the
/// column behave there as tenantgate makes them behave on `shared`).
pub fn ddl(default_tenant: Option<&str>) -> String {
    let tenant_col = match default_tenant {
        Some(t) => format!("tenant_id text NOT NULL DEFAULT '{t}'"),
        None => "tenant_id text NOT NULL".to_string(),
    };
    format!(
        r#"
CREATE TABLE plans (
    id int PRIMARY KEY,
    name text NOT NULL,
    monthly_price numeric(10,2) NOT NULL,
    features jsonb NOT NULL
);
CREATE TABLE customers (
    {tenant_col},
    id int NOT NULL,
    name text NOT NULL,
    email text,
    tier text,
    plan_id int REFERENCES plans(id),
    active bool NOT NULL,
    created_at timestamptz NOT NULL,
    profile jsonb,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE products (
    {tenant_col},
    id int NOT NULL,
    sku text NOT NULL,
    name text NOT NULL,
    price numeric(10,2) NOT NULL,
    stock int NOT NULL,
    discontinued bool NOT NULL DEFAULT false,
    tags jsonb,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, sku)
);
CREATE TABLE orders (
    {tenant_col},
    id int NOT NULL,
    customer_id int NOT NULL,
    status text NOT NULL,
    ordered_at timestamptz NOT NULL,
    shipped_at timestamptz,
    total numeric(12,2) NOT NULL,
    note text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)
);
CREATE TABLE order_items (
    {tenant_col},
    order_id int NOT NULL,
    line_no int NOT NULL,
    product_id int NOT NULL,
    quantity int NOT NULL,
    unit_price numeric(10,2) NOT NULL,
    discount numeric(4,2),
    PRIMARY KEY (tenant_id, order_id, line_no),
    FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);
-- A unique key that does not include the tenant column.
CREATE TABLE accounts (
    {tenant_col},
    id int NOT NULL,
    email text NOT NULL UNIQUE,
    display_name text NOT NULL,
    login_count int NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id)
);
-- No tenant column and not global: tenant sessions may not touch it.
CREATE TABLE internal_audit (
    id int PRIMARY KEY,
    what text NOT NULL
);
-- A second schema: a tenant table of the same name as a public one, and a
-- tenant table named like the global `plans`.
CREATE SCHEMA archive;
CREATE TABLE archive.orders (
    {tenant_col},
    id int NOT NULL,
    status text NOT NULL,
    total numeric(12,2) NOT NULL,
    note text,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE archive.plans (
    {tenant_col},
    id int NOT NULL,
    name text NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- A view with the tenant column (a tenant relation) and one without.
CREATE VIEW customer_spend AS
    SELECT tenant_id, customer_id, sum(total) AS spent, count(*) AS n
      FROM orders GROUP BY tenant_id, customer_id;
CREATE VIEW order_stats AS
    SELECT status, count(*) AS n FROM orders GROUP BY status;
-- User-defined functions that read across tenants.
CREATE FUNCTION count_all_orders() RETURNS bigint LANGUAGE sql
    AS $$ SELECT count(*) FROM orders $$;
CREATE FUNCTION orders_of(t text) RETURNS SETOF orders LANGUAGE sql
    AS $$ SELECT * FROM orders WHERE tenant_id = t $$;
"#
    )
}

/// Rows of the tables without a tenant column (identical everywhere).
pub const GLOBAL_DATA: &str = r#"
INSERT INTO plans (id, name, monthly_price, features) VALUES
    (1, 'free', 0, '{"seats": 1}'),
    (2, 'starter', 9.99, '{"seats": 5}'),
    (3, 'pro', 49.00, '{"seats": 25, "sso": true}'),
    (4, 'enterprise', 499.00, '{"seats": null, "sso": true}');
INSERT INTO internal_audit (id, what) VALUES
    (1, 'B-secret-audit-1'), (2, 'C-secret-audit-2'), (3, 'A-secret-audit-3');
"#;

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn money(cents: u32) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// INSERT statements for `tenant`'s rows.
pub fn tenant_data(tenant: &str) -> String {
    let ti = TENANTS
        .iter()
        .position(|t| *t == tenant)
        .expect("a known tenant") as u32;
    let m = marker(tenant);
    let lower = tenant.to_lowercase();
    let mut sql = String::new();

    let mut rows = Vec::new();
    for id in 1..=12u32 {
        let email = if id.is_multiple_of(5) {
            "NULL".to_string()
        } else {
            q(&format!("cust{id}@{m}.example"))
        };
        let tier = if (id + ti).is_multiple_of(4) {
            "NULL".to_string()
        } else {
            q(["gold", "silver", "bronze"][((id + ti) % 3) as usize])
        };
        let plan = if id.is_multiple_of(6) {
            "NULL".to_string()
        } else {
            ((id + ti) % 4 + 1).to_string()
        };
        let active = !(id + ti).is_multiple_of(3);
        let days = (id * 11 + ti * 5) % 150;
        let profile = if id == 7 {
            "NULL".to_string()
        } else {
            let source = ["web", "ads", "referral"][((id * 2 + ti) % 3) as usize];
            let vip = (id + ti) % 4 == 1;
            q(&format!(
                r#"{{"vip": {vip}, "source": "{source}", "label": "{m}-label-{id}"}}"#
            ))
        };
        rows.push(format!(
            "({t}, {id}, {name}, {email}, {tier}, {plan}, {active}, \
             timestamptz '2024-01-01 00:00:00+00' + interval '{days} days', {profile})",
            t = q(tenant),
            name = q(&format!("{m}-cust-{id}")),
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO customers (tenant_id, id, name, email, tier, plan_id, active, created_at, profile) VALUES\n{};\n",
        rows.join(",\n")
    ));

    let price = |id: u32| id * 350 + ti * 125;
    let mut rows = Vec::new();
    for id in 1..=10u32 {
        let tags = if id.is_multiple_of(5) {
            "NULL".to_string()
        } else {
            q(&format!(r#"["t{}", "{m}-tag"]"#, (id + ti) % 3))
        };
        rows.push(format!(
            "({t}, {id}, {sku}, {name}, {price}, {stock}, {disc}, {tags})",
            t = q(tenant),
            sku = q(&format!("{m}-SKU-{id:03}")),
            name = q(&format!("{m}-prod-{id}")),
            price = money(price(id)),
            stock = (id * 7 + ti * 5) % 20,
            disc = (id + ti).is_multiple_of(4),
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO products (tenant_id, id, sku, name, price, stock, discontinued, tags) VALUES\n{};\n",
        rows.join(",\n")
    ));

    let mut rows = Vec::new();
    let mut items = Vec::new();
    for id in 1..=30u32 {
        let status = ["new", "paid", "shipped", "cancelled"][((id + ti) % 4) as usize];
        let at = format!(
            "timestamptz '2024-02-01 10:00:00+00' + interval '{} days {} hours'",
            id + ti * 2,
            id % 5
        );
        let shipped = if status == "shipped" {
            format!("{at} + interval '2 days'")
        } else {
            "NULL".to_string()
        };
        let note = if id.is_multiple_of(3) {
            "NULL".to_string()
        } else {
            q(&format!("{m}-note-{id}"))
        };
        rows.push(format!(
            "({t}, {id}, {cust}, {st}, {at}, {shipped}, {total}, {note})",
            t = q(tenant),
            cust = (id * 5 + ti) % 12 + 1,
            st = q(status),
            total = money(id * 1000 + ti * 333 + 50),
        ));
        for line in 1..=(1 + (id + ti) % 3) {
            let product = (id * 3 + line + ti) % 10 + 1;
            let discount = if line == 2 {
                "NULL".to_string()
            } else {
                format!("0.{:02}", ((id + ti) % 3) * 5)
            };
            items.push(format!(
                "({t}, {id}, {line}, {product}, {qty}, {price}, {discount})",
                t = q(tenant),
                qty = (id + line * 2 + ti) % 5 + 1,
                price = money(price(product)),
            ));
        }
    }
    sql.push_str(&format!(
        "INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, shipped_at, total, note) VALUES\n{};\n",
        rows.join(",\n")
    ));
    sql.push_str(&format!(
        "INSERT INTO order_items (tenant_id, order_id, line_no, product_id, quantity, unit_price, discount) VALUES\n{};\n",
        items.join(",\n")
    ));

    let mut rows = Vec::new();
    for id in 1..=5u32 {
        rows.push(format!(
            "({t}, {id}, {email}, {name}, {count})",
            t = q(tenant),
            email = q(&format!("acct{id}@tenant-{lower}.example")),
            name = q(&format!("{m}-acct-{id}")),
            count = id * 3 + ti,
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO accounts (tenant_id, id, email, display_name, login_count) VALUES\n{};\n",
        rows.join(",\n")
    ));

    let mut rows = Vec::new();
    for id in 1..=5u32 {
        rows.push(format!(
            "({t}, {id}, {st}, {total}, {note})",
            t = q(tenant),
            st = q(["archived", "purged"][((id + ti) % 2) as usize]),
            total = money(id * 700 + ti * 11),
            note = q(&format!("{m}-archived-{id}")),
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO archive.orders (tenant_id, id, status, total, note) VALUES\n{};\n",
        rows.join(",\n")
    ));
    let rows: Vec<String> = (1..=3u32)
        .map(|id| {
            format!(
                "({}, {id}, {})",
                q(tenant),
                q(&format!("{m}-archplan-{id}"))
            )
        })
        .collect();
    sql.push_str(&format!(
        "INSERT INTO archive.plans (tenant_id, id, name) VALUES\n{};\n",
        rows.join(",\n")
    ));
    sql
}

/// Removes `tenant`'s rows (children first).
pub fn delete_tenant(tenant: &str) -> String {
    let mut sql = String::new();
    for table in [
        "order_items",
        "orders",
        "customers",
        "products",
        "accounts",
        "archive.orders",
        "archive.plans",
    ] {
        sql.push_str(&format!(
            "DELETE FROM {table} WHERE tenant_id = {};\n",
            q(tenant)
        ));
    }
    sql
}
