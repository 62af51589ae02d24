-- Writes for the isolation oracle (format: see corpus.rs). Each runs as
-- tenant A through tenantgate on `shared` and directly on oracle_a, in this
-- order (later ones build on earlier ones); after each, A's rows on `shared`
-- must equal oracle_a's and B's and C's rows must be unchanged.
-- `@nocompare`: an attack that runs through tenantgate only; it must be
-- refused or change nothing, for any tenant.

-- ---------------------------------------------------------------- INSERT
INSERT INTO customers (id, name, email, tier, plan_id, active, created_at, profile) VALUES (201, 'A-w-1', 'w1@x.example', 'gold', 1, true, '2024-05-01 00:00+00', '{"vip": false}')

INSERT INTO customers (id, name, active, created_at) VALUES (202, 'A-w-2', true, '2024-05-02 00:00+00'), (203, 'A-w-3', false, '2024-05-03 00:00+00')

INSERT INTO customers (name, id, active, created_at) VALUES ('A-w-4', 204, true, '2024-05-04 00:00+00') RETURNING *

INSERT INTO customers (tenant_id, id, name, active, created_at) VALUES ('A', 205, 'A-w-5', true, '2024-05-05 00:00+00')

INSERT INTO public.customers AS c (id, name, active, created_at) VALUES (206, 'A-w-6', true, '2024-05-06 00:00+00') RETURNING c.id, c.tenant_id

INSERT INTO "customers" ("id", "name", "active", "created_at") VALUES (207, 'A-w-7', DEFAULT, '2024-05-07 00:00+00')

INSERT INTO customers (id, name, active, created_at) SELECT id + 300, name || '-copy', active, created_at FROM customers WHERE id <= 3

INSERT INTO products (id, sku, name, price, stock) SELECT 200 + id, sku || '-v2', name, price * 2, 0 FROM products WHERE discontinued RETURNING id, sku

INSERT INTO products (id, sku, name, price, stock) VALUES (210, 'A-w-sku', 'A-w-prod', 1.5, 3) ON CONFLICT ON CONSTRAINT products_pkey DO NOTHING RETURNING id

INSERT INTO orders (id, customer_id, status, ordered_at, total) VALUES (201, 201, 'new', '2024-05-06 12:00+00', 99.99)

INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price) VALUES (201, 1, 1, 3, 3.50), (201, 2, 2, 1, 7.00)

INSERT INTO orders (id, customer_id, status, ordered_at, total) VALUES (1, 1, 'new', '2024-05-07 00:00+00', 0) ON CONFLICT DO NOTHING

INSERT INTO orders (id, customer_id, status, ordered_at, total, note) VALUES (2, 1, 'paid', '2024-05-07 00:00+00', 1.00, 'A-w-upsert') ON CONFLICT (tenant_id, id) DO UPDATE SET note = EXCLUDED.note, total = orders.total + EXCLUDED.total

INSERT INTO orders AS o (id, customer_id, status, ordered_at, total) VALUES (3, 1, 'paid', '2024-05-07 00:00+00', 1.00) ON CONFLICT (tenant_id, id) DO UPDATE SET note = 'A-w-upsert-where' WHERE o.status = 'paid' RETURNING id, note

INSERT INTO orders (id, customer_id, status, ordered_at, total) VALUES (4, 1, 'new', '2024-05-07 00:00+00', 1), (202, 2, 'new', '2024-05-07 00:00+00', 2) ON CONFLICT ON CONSTRAINT orders_pkey DO UPDATE SET status = EXCLUDED.status RETURNING id, status, total

INSERT INTO accounts (id, email, display_name) VALUES (6, 'acct6@tenant-a.example', 'A-w-acct') ON CONFLICT (email) DO UPDATE SET display_name = EXCLUDED.display_name

INSERT INTO accounts (id, email, display_name) VALUES (7, 'acct1@tenant-a.example', 'A-w-acct-7') ON CONFLICT (email) DO UPDATE SET login_count = accounts.login_count + 100 RETURNING id, login_count

INSERT INTO archive.orders (id, status, total, note) VALUES (100, 'archived', 5, 'A-w-arch')

INSERT INTO archive.plans (id, name) VALUES (10, 'A-w-archplan')

INSERT INTO orders (id, customer_id, status, ordered_at, total) SELECT id + 700, customer_id, status, ordered_at, total FROM public.orders WHERE tenant_id = 'B'

INSERT INTO orders (id, customer_id, status, ordered_at, total) VALUES (203, 1, 'new', '2024-05-08 00:00+00', 5) RETURNING (SELECT count(*) FROM orders)

WITH src AS (SELECT id, name FROM customers WHERE id BETWEEN 4 AND 5) INSERT INTO accounts (id, email, display_name) SELECT id + 20, 'cte' || id || '@tenant-a.example', name FROM src

INSERT INTO customers (id, name, active, created_at) VALUES (208, 'dup', true, '2024-05-09 00:00+00'), (208, 'dup', true, '2024-05-09 00:00+00')

-- ---------------------------------------------------------------- UPDATE
UPDATE customers SET tier = 'platinum' WHERE id = 1

-- an ORM writing every column back, the tenant's own id included
UPDATE customers SET tenant_id = 'A', name = 'A-w-save', tier = 'gold' WHERE id = 2

UPDATE customers SET tier = NULL, active = false WHERE tier = 'bronze' RETURNING id, tier

UPDATE customers SET email = lower(name) || '@example.com' WHERE email IS NULL

UPDATE products SET price = price * 1.1, stock = stock + 1 WHERE id IN (SELECT product_id FROM order_items WHERE quantity >= 4)

UPDATE orders SET total = (SELECT sum(quantity * unit_price) FROM order_items i WHERE i.order_id = orders.id) WHERE EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = orders.id)

UPDATE orders o SET note = c.name FROM customers c WHERE c.id = o.customer_id AND c.tier = 'gold'

UPDATE orders SET note = 'A-w-bulk' WHERE id = 1 OR 1 = 1

UPDATE orders SET note = 'x' WHERE tenant_id = 'B'

UPDATE orders SET status = 'cancelled' WHERE customer_id IN (SELECT id FROM customers WHERE NOT active) RETURNING id, status

UPDATE order_items SET discount = 0.5 FROM orders, products WHERE orders.id = order_items.order_id AND products.id = order_items.product_id AND orders.status = 'new'

UPDATE products p SET stock = 0 FROM (SELECT product_id FROM order_items GROUP BY product_id HAVING sum(quantity) > 5) hot WHERE hot.product_id = p.id

UPDATE accounts SET login_count = login_count + 1 RETURNING id, login_count

UPDATE ONLY orders SET note = 'only' WHERE id = 3

UPDATE public.orders SET note = 'qualified' WHERE id = 4

UPDATE "orders" SET note = 'quoted' WHERE id = 5

UPDATE customers SET profile = jsonb_set(coalesce(profile, '{}'), '{vip}', 'true') WHERE id = 2

UPDATE orders SET (status, note) = ('paid', 'tuple') WHERE id = 6

UPDATE orders SET (status, note) = (SELECT 'shipped', name FROM customers WHERE customers.id = orders.customer_id) WHERE id = 7

UPDATE orders SET note = (SELECT string_agg(name, ',') FROM customers WHERE tenant_id = 'B') WHERE id = 8

UPDATE orders SET note = 'A-w-ret' WHERE id = 9 RETURNING (SELECT string_agg(note, ',') FROM orders o2 WHERE o2.tenant_id <> 'A')

UPDATE orders SET note = 'A-w-cte' FROM (WITH x AS (SELECT id FROM customers WHERE tier = 'silver') SELECT id FROM x) s WHERE s.id = orders.customer_id

UPDATE archive.orders SET total = total + 1 WHERE status = 'archived'

UPDATE customer_spend SET spent = 0

UPDATE orders SET total = -1 WHERE id = 10 AND total < 0 OR id = 11

-- ---------------------------------------------------------------- DELETE
DELETE FROM order_items WHERE order_id = 1 AND line_no = 1

DELETE FROM order_items WHERE quantity = 1 RETURNING order_id, line_no, product_id

DELETE FROM orders WHERE status = 'cancelled' AND id > 25

DELETE FROM orders o USING customers c WHERE c.id = o.customer_id AND c.tier IS NULL AND o.status = 'new'

DELETE FROM order_items i USING orders o WHERE o.id = i.order_id AND o.total < 50 RETURNING i.order_id

DELETE FROM orders o USING orders b WHERE b.tenant_id = 'B' AND b.id = o.id

DELETE FROM accounts WHERE id = 5

DELETE FROM order_items WHERE tenant_id = 'B'

DELETE FROM orders WHERE tenant_id = 'C' RETURNING *

DELETE FROM archive.orders WHERE id = 1

DELETE FROM ONLY archive.plans WHERE id = 3

DELETE FROM order_items WHERE order_id IN (SELECT id FROM orders WHERE customer_id = 3) OR true AND false

-- ---------------------------------------------------------------- data-modifying CTEs
WITH moved AS (DELETE FROM orders WHERE status = 'cancelled' AND id BETWEEN 10 AND 20 RETURNING id, status, total, note) INSERT INTO archive.orders (id, status, total, note) SELECT id, status, total, note FROM moved

WITH upd AS (UPDATE products SET stock = stock - 1 WHERE stock > 0 RETURNING id) SELECT count(*) FROM upd

WITH ins AS (INSERT INTO customers (id, name, active, created_at) VALUES (220, 'A-w-cte', true, '2024-05-10 00:00+00') RETURNING id) INSERT INTO orders (id, customer_id, status, ordered_at, total) SELECT 220, id, 'new', '2024-05-10 00:00+00', 1 FROM ins

WITH d AS (DELETE FROM order_items WHERE line_no = 3 RETURNING *) SELECT order_id, line_no FROM d

WITH x AS (SELECT id FROM customers WHERE tier = 'gold') UPDATE orders SET note = 'gold' WHERE customer_id IN (SELECT id FROM x)

WITH a AS (UPDATE accounts SET login_count = 0 WHERE id = 1 RETURNING id), b AS (DELETE FROM accounts WHERE id = 2 RETURNING id) SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)

WITH orders AS (SELECT 1 AS id) UPDATE orders SET note = 'shadow' WHERE id IN (SELECT id FROM orders)

WITH order_items AS (SELECT * FROM public.order_items WHERE tenant_id = 'B') DELETE FROM order_items WHERE order_id = 2

-- ---------------------------------------------------------------- transactions
BEGIN; UPDATE orders SET note = 'tx' WHERE id = 8; UPDATE customers SET tier = 'tx' WHERE id = 8; COMMIT

BEGIN; DELETE FROM order_items; DELETE FROM orders; ROLLBACK

BEGIN; INSERT INTO customers (id, name, active, created_at) VALUES (230, 'A-w-tx', true, '2024-05-11 00:00+00'); SAVEPOINT s; DELETE FROM customers WHERE id = 230; ROLLBACK TO SAVEPOINT s; COMMIT

BEGIN; UPDATE products SET stock = 99 WHERE id = 1; SELECT 1/0; COMMIT

-- ---------------------------------------------------------------- parameters
-- @params int4:240 text:'A-w-param' bool:true timestamptz:'2024-05-12 00:00:00+00'
INSERT INTO customers (id, name, active, created_at) VALUES ($1, $2, $3, $4)

-- @params text:'A' int4:241 text:'A-w-param-tenant'
INSERT INTO customers (tenant_id, id, name, active, created_at) VALUES ($1, $2, $3, true, '2024-05-12 00:00+00')

-- @params text:'A-w-param-upd' int4:12
UPDATE orders SET note = $1 WHERE id = $2 RETURNING id, note

-- @params int4:5
DELETE FROM order_items WHERE order_id = $1

-- @params text:'B'
UPDATE orders SET note = 'A-w-param-b' WHERE tenant_id = $1

-- ---------------------------------------------------------------- attacks (tenantgate only)
-- @nocompare
UPDATE orders SET tenant_id = 'B' WHERE id = 1

-- @nocompare
UPDATE customers SET tenant_id = 'B', name = 'A-w-moved' WHERE id = 3

-- @nocompare
UPDATE orders SET tenant_id = 'A' WHERE tenant_id = 'B'

-- @nocompare
UPDATE orders SET (tenant_id, note) = ('B', 'x') WHERE id = 2

-- @nocompare
UPDATE orders o SET "tenant_id" = 'B'

-- @nocompare
UPDATE orders SET tenant_id = DEFAULT

-- @nocompare
UPDATE public.orders SET note = 'pwned' FROM customers WHERE orders.tenant_id = 'B'

-- @nocompare
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES ('B', 500, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
INSERT INTO orders (id, customer_id, status, ordered_at, total, tenant_id) VALUES (501, 1, 'new', '2024-01-01 00:00+00', 1, 'A'), (502, 1, 'new', '2024-01-01 00:00+00', 1, 'B')

-- @nocompare
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) SELECT 'B', 503, 1, 'new', '2024-01-01 00:00+00', 1

-- @nocompare
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES (lower('B'), 504, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES ('B'::text, 505, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES (E'B', 506, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES ((SELECT 'B'), 507, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES ('B ', 508, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES (U&'\0042', 509, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES ($$B$$, 510, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES ('A' || 'B', 511, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
INSERT INTO orders (TENANT_ID, id, customer_id, status, ordered_at, total) VALUES ('B', 512, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
INSERT INTO orders ("tenant_id", id, customer_id, status, ordered_at, total) VALUES ('C', 513, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
INSERT INTO orders VALUES ('B', 514, 1, 'new', '2024-01-01 00:00+00', NULL, 1, NULL)

-- @nocompare
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES (DEFAULT, 515, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
INSERT INTO orders (id, customer_id, status, ordered_at, total) VALUES (1, 1, 'new', '2024-01-01 00:00+00', 1) ON CONFLICT (tenant_id, id) DO UPDATE SET tenant_id = 'B'

-- @nocompare
INSERT INTO orders (id, customer_id, status, ordered_at, total) VALUES (1, 1, 'new', '2024-01-01 00:00+00', 1) ON CONFLICT (tenant_id, id) DO UPDATE SET (tenant_id, note) = ('B', 'x')

-- @nocompare
INSERT INTO accounts (id, email, display_name) VALUES (30, 'acct1@tenant-b.example', 'A-w-steal') ON CONFLICT (email) DO UPDATE SET display_name = EXCLUDED.display_name || accounts.display_name RETURNING *

-- @nocompare
INSERT INTO accounts (id, email, display_name) VALUES (31, 'acct2@tenant-c.example', 'A-w-x') ON CONFLICT (email) DO UPDATE SET login_count = 999 RETURNING display_name, login_count

-- @nocompare
INSERT INTO accounts AS a (id, email, display_name) VALUES (32, 'acct3@tenant-b.example', 'A-w-y') ON CONFLICT (email) DO UPDATE SET display_name = a.display_name || '-seen' WHERE a.tenant_id = 'B' RETURNING a.display_name

-- @nocompare
INSERT INTO accounts (id, email, display_name) VALUES (33, 'acct1@tenant-b.example', 'x') ON CONFLICT DO NOTHING RETURNING *

-- @nocompare
INSERT INTO accounts (id, email, display_name) VALUES (34, 'acct4@tenant-c.example', 'x') ON CONFLICT (email) DO UPDATE SET id = 99

-- @nocompare
UPDATE accounts SET email = 'acct1@tenant-b.example' WHERE id = 1

-- @nocompare
WITH x AS (UPDATE orders SET tenant_id = 'B' RETURNING *) SELECT * FROM x

-- @nocompare
WITH x AS (INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES ('B', 600, 1, 'new', '2024-01-01 00:00+00', 1) RETURNING *) SELECT * FROM x


-- @nocompare
/* /* */ */ DELETE FROM order_items WHERE tenant_id = 'B' AND order_id = 1

-- A nested comment hides nothing: this updates A's own row, as directly.
/* /* */ */ UPDATE orders SET note = 'A-w-nested-comment' WHERE id = 2

-- @nocompare
/* /* */ */ INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES ('C', 530, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
UPDATE plans SET monthly_price = 0

-- @nocompare
DELETE FROM plans WHERE id = 4

-- @nocompare
INSERT INTO plans (id, name, monthly_price, features) VALUES (99, 'x', 0, '{}')

-- @nocompare
UPDATE internal_audit SET what = 'x'

-- @nocompare
DELETE FROM internal_audit

-- @nocompare
TRUNCATE order_items

-- @nocompare
TRUNCATE ONLY accounts CASCADE

-- @nocompare
DELETE FROM order_stats

-- @nocompare
MERGE INTO orders o USING (SELECT 1 AS id) s ON o.id = s.id WHEN MATCHED THEN UPDATE SET note = 'merged'

-- @nocompare
COPY orders FROM '/etc/hostname'

-- @nocompare
SELECT * FROM orders_of('B')

-- @nocompare
DO $$ BEGIN UPDATE orders SET note = 'do' WHERE tenant_id = 'B'; END $$

-- @nocompare
PREPARE w AS UPDATE orders SET note = 'prep' WHERE tenant_id = $1; EXECUTE w('B'); DEALLOCATE w

-- @nocompare
-- @params text:'B' int4:520
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES ($1, $2, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
-- @params text:'A' text:'B'
INSERT INTO orders (tenant_id, id, customer_id, status, ordered_at, total) VALUES ($1, 521, 1, 'new', '2024-01-01 00:00+00', 1), ($2, 522, 1, 'new', '2024-01-01 00:00+00', 1)

-- @nocompare
-- @params text:'B'
UPDATE orders SET tenant_id = $1 WHERE id = 1
