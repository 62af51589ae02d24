-- Hand-written reads for the isolation oracle (format: see corpus.rs).
-- Every statement is legitimate application SQL: through tenantgate as
-- tenant A it must return exactly what it returns directly on oracle_a.

-- ---------------------------------------------------------------- basics
SELECT * FROM customers ORDER BY id

SELECT * FROM customers

SELECT id, name FROM customers WHERE id = 1

SELECT id, name, email FROM customers WHERE email IS NULL

SELECT * FROM products ORDER BY id

SELECT * FROM orders ORDER BY id

SELECT * FROM order_items ORDER BY order_id, line_no

SELECT * FROM accounts ORDER BY id

SELECT * FROM plans ORDER BY id

SELECT * FROM archive.orders ORDER BY id

SELECT * FROM archive.plans ORDER BY id

SELECT count(*) FROM customers

SELECT count(*) FROM orders

SELECT count(*), sum(total), avg(total), min(total), max(total) FROM orders

SELECT count(*) FROM order_items

SELECT count(DISTINCT customer_id) FROM orders

SELECT count(*) FROM plans

SELECT status, count(*) FROM orders GROUP BY status ORDER BY status

SELECT tier, count(*) FROM customers GROUP BY tier ORDER BY tier NULLS FIRST

SELECT c.tier, sum(o.total) FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.tier

SELECT tenant_id, count(*) FROM orders GROUP BY tenant_id

SELECT DISTINCT tenant_id FROM order_items

SELECT * FROM orders WHERE tenant_id = 'A' ORDER BY id

SELECT * FROM customers WHERE active ORDER BY id

SELECT * FROM customers WHERE NOT active

SELECT * FROM customers WHERE tier = 'gold' OR tier = 'silver'

SELECT * FROM customers WHERE tier = 'gold' OR tier IS NULL AND active

SELECT id FROM customers WHERE (tier = 'gold' OR tier = 'bronze') AND active

SELECT id FROM customers WHERE tier IN ('gold', 'silver') AND plan_id IS NOT NULL

SELECT id FROM customers WHERE id > 3 OR id < 2 AND NOT active OR tier IS NULL

-- ---------------------------------------------------------------- jsonb, text, numbers, time
SELECT id, profile->>'source' AS source FROM customers WHERE profile->>'source' = 'web'

SELECT id, profile FROM customers WHERE profile @> '{"vip": true}'

SELECT id, jsonb_typeof(profile) FROM customers

SELECT id, profile->'vip' FROM customers WHERE profile ? 'label' ORDER BY id

SELECT id, tags FROM products WHERE tags ? 't1'

SELECT id, jsonb_array_length(tags) FROM products WHERE tags IS NOT NULL

SELECT p.id, t.tag FROM products p CROSS JOIN LATERAL jsonb_array_elements_text(p.tags) AS t(tag) ORDER BY p.id, t.tag

SELECT id, name FROM products WHERE price BETWEEN 5 AND 20 ORDER BY price, id

SELECT id, price * stock AS value FROM products ORDER BY value DESC, id

SELECT id, round(price * 1.2, 2) FROM products

SELECT sum(price * stock) FROM products WHERE NOT discontinued

SELECT id FROM orders WHERE ordered_at >= '2024-02-10' AND ordered_at < '2024-02-20'

SELECT id, ordered_at::date, shipped_at - ordered_at FROM orders WHERE shipped_at IS NOT NULL

SELECT date_trunc('week', ordered_at) AS wk, count(*) FROM orders GROUP BY wk ORDER BY wk

SELECT extract(dow FROM ordered_at) AS dow, count(*) FROM orders GROUP BY 1

SELECT to_char(ordered_at, 'YYYY-MM-DD HH24') FROM orders WHERE id < 5

SELECT id, note FROM orders WHERE note LIKE '%note-1%'

SELECT id, coalesce(note, '(none)') FROM orders

SELECT id, length(name), upper(name) FROM customers

SELECT id, split_part(email, '@', 2) FROM customers WHERE email IS NOT NULL

SELECT string_agg(name, ',' ORDER BY id) FROM customers

SELECT array_agg(id ORDER BY id) FROM orders WHERE status = 'paid'

SELECT json_agg(o ORDER BY o.id) FROM orders o WHERE o.id <= 3

SELECT to_jsonb(c) FROM customers c WHERE c.id = 2

SELECT row_to_json(p) FROM products p WHERE id = 4

SELECT c FROM customers c WHERE c.id = 5

SELECT customers FROM customers WHERE id = 6

SELECT orders::text FROM orders WHERE id = 7

SELECT id, total::int, total::text, total::float8 FROM orders WHERE id < 4

SELECT sum(quantity * unit_price * (1 - coalesce(discount, 0))) FROM order_items

SELECT EXISTS (SELECT 1 FROM orders WHERE total > 1000)

SELECT CASE WHEN count(*) > 10 THEN 'many' ELSE 'few' END FROM orders

-- ---------------------------------------------------------------- windows, grouping, paging
SELECT id, total, rank() OVER (ORDER BY total DESC) FROM orders

SELECT id, customer_id, sum(total) OVER (PARTITION BY customer_id ORDER BY id) FROM orders

SELECT id, lag(total) OVER w, lead(total) OVER w FROM orders WINDOW w AS (ORDER BY id)

SELECT customer_id, count(*) FILTER (WHERE status = 'paid') AS paid, count(*) FROM orders GROUP BY customer_id

SELECT status, percentile_cont(0.5) WITHIN GROUP (ORDER BY total) FROM orders GROUP BY status

SELECT customer_id, max(total) FROM orders GROUP BY customer_id HAVING count(*) > 2

SELECT tier, active, count(*) FROM customers GROUP BY ROLLUP (tier, active)

SELECT tier, active, count(*) FROM customers GROUP BY CUBE (tier, active)

SELECT tier, plan_id, count(*) FROM customers GROUP BY GROUPING SETS ((tier), (plan_id), ())

SELECT * FROM orders ORDER BY total DESC, id LIMIT 5

SELECT * FROM orders ORDER BY id LIMIT 5 OFFSET 5

SELECT * FROM orders ORDER BY id OFFSET 25

SELECT * FROM orders ORDER BY id FETCH FIRST 3 ROWS ONLY

SELECT DISTINCT ON (customer_id) customer_id, id, total FROM orders ORDER BY customer_id, total DESC, id

SELECT DISTINCT status FROM orders

-- ---------------------------------------------------------------- joins
SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id

SELECT o.id, c.name FROM orders o, customers c WHERE c.id = o.customer_id

SELECT o.id, c.name FROM orders AS o INNER JOIN customers AS c ON o.customer_id = c.id WHERE c.tier = 'gold'

SELECT c.id, o.id FROM customers c LEFT JOIN orders o ON o.customer_id = c.id

SELECT c.id, count(o.id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id ORDER BY c.id

SELECT c.id, o.id FROM orders o RIGHT JOIN customers c ON o.customer_id = c.id

SELECT c.id, o.id FROM customers c FULL JOIN orders o ON o.customer_id = c.id AND o.status = 'new'

SELECT c.id, o.id FROM customers c LEFT JOIN orders o ON o.customer_id = c.id AND o.total > 200 WHERE o.id IS NULL

SELECT p.id, oi.order_id FROM products p LEFT OUTER JOIN order_items oi ON oi.product_id = p.id AND oi.quantity > 4

SELECT * FROM order_items JOIN products ON products.id = order_items.product_id ORDER BY order_id, line_no

SELECT * FROM order_items i JOIN orders o USING (tenant_id) WHERE o.id = 1 AND i.order_id = 2

SELECT * FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id WHERE o.id = 3

SELECT count(*) FROM orders NATURAL JOIN customers

SELECT c.id, p.name FROM customers c CROSS JOIN plans p WHERE p.id = c.plan_id

SELECT c.name, pl.name, pl.monthly_price FROM customers c JOIN plans pl ON pl.id = c.plan_id ORDER BY c.id

SELECT pl.name, count(c.id) FROM plans pl LEFT JOIN customers c ON c.plan_id = pl.id GROUP BY pl.name ORDER BY pl.name

SELECT pl.id, c.id FROM customers c RIGHT JOIN plans pl ON pl.id = c.plan_id AND c.active

SELECT a.id, b.id FROM orders a JOIN orders b ON a.customer_id = b.customer_id AND a.id < b.id

SELECT * FROM (customers c JOIN orders o ON o.customer_id = c.id) LEFT JOIN order_items i ON i.order_id = o.id WHERE c.id = 2

SELECT c.id, x.n FROM customers c JOIN LATERAL (SELECT count(*) AS n FROM orders o WHERE o.customer_id = c.id) x ON true ORDER BY c.id

SELECT c.id, x.id FROM customers c LEFT JOIN LATERAL (SELECT id FROM orders o WHERE o.customer_id = c.id ORDER BY total DESC, id LIMIT 1) x ON true ORDER BY c.id

SELECT c.id, x.total FROM customers c, LATERAL (SELECT sum(total) AS total FROM orders WHERE customer_id = c.id) x

SELECT o.id, a.id FROM orders o JOIN archive.orders a ON a.id = o.id

SELECT * FROM unnest(ARRAY[1, 2, 3]) AS u(x) JOIN customers c ON c.id = u.x

SELECT * FROM (VALUES (1), (4)) v(x) JOIN orders ON orders.id = v.x

-- ---------------------------------------------------------------- subqueries
SELECT * FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE status = 'cancelled')

SELECT * FROM customers WHERE id NOT IN (SELECT customer_id FROM orders)

SELECT * FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.total > 250)

SELECT * FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)

SELECT id, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) FROM customers c ORDER BY id

SELECT id, (SELECT max(total) FROM orders) FROM customers

SELECT (SELECT count(*) FROM orders) AS o, (SELECT count(*) FROM customers) AS c, (SELECT count(*) FROM plans) AS p

SELECT * FROM orders WHERE total > (SELECT avg(total) FROM orders)

SELECT * FROM orders WHERE total >= ALL (SELECT total FROM orders)

SELECT * FROM orders WHERE customer_id = ANY (SELECT id FROM customers WHERE tier = 'gold')

SELECT * FROM products WHERE id = ANY (ARRAY[1, 2, 3])

SELECT * FROM (SELECT * FROM orders WHERE status = 'paid') AS p

SELECT x.status, x.n FROM (SELECT status, count(*) AS n FROM orders GROUP BY status) x ORDER BY x.status

SELECT * FROM (SELECT o.*, row_number() OVER (PARTITION BY customer_id ORDER BY total DESC, id) AS rn FROM orders o) t WHERE rn = 1

SELECT count(*) FROM (SELECT DISTINCT customer_id FROM orders) s

SELECT * FROM order_items WHERE (order_id, line_no) IN (SELECT id, 1 FROM orders WHERE status = 'new')

SELECT id FROM products p WHERE price > (SELECT avg(unit_price) FROM order_items i WHERE i.product_id = p.id)

SELECT c.id FROM customers c WHERE (SELECT sum(total) FROM orders o WHERE o.customer_id = c.id) > 300

SELECT id FROM customers ORDER BY (SELECT count(*) FROM orders o WHERE o.customer_id = customers.id), id

SELECT id FROM customers GROUP BY id HAVING (SELECT count(*) FROM orders WHERE customer_id = customers.id) > 2

SELECT 1 AS one WHERE (SELECT count(*) FROM orders) > 50

SELECT id FROM customers ORDER BY id LIMIT (SELECT count(*) FROM plans)

SELECT id FROM plans WHERE id IN (SELECT plan_id FROM customers)

SELECT id, (SELECT count(*) FROM customers c WHERE c.plan_id = plans.id) FROM plans ORDER BY id

SELECT * FROM plans JOIN LATERAL (SELECT count(*) AS n FROM orders) x ON true

SELECT id, total, (SELECT count(*) FROM orders o2 WHERE o2.total > o.total) FROM orders o ORDER BY id

VALUES ((SELECT count(*) FROM orders), (SELECT count(*) FROM products))

SELECT * FROM orders WHERE customer_id IN (VALUES (1), (2))

-- ---------------------------------------------------------------- CTEs
WITH paid AS (SELECT * FROM orders WHERE status = 'paid') SELECT count(*), sum(total) FROM paid

WITH spend AS (SELECT customer_id, sum(total) AS s FROM orders GROUP BY customer_id) SELECT c.name, spend.s FROM customers c JOIN spend ON spend.customer_id = c.id ORDER BY c.id

WITH a AS (SELECT id FROM customers WHERE active), b AS (SELECT customer_id FROM orders WHERE customer_id IN (SELECT id FROM a)) SELECT count(*) FROM b

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT i, (SELECT count(*) FROM orders WHERE customer_id = i) FROM n

WITH RECURSIVE chain AS (SELECT id, customer_id FROM orders WHERE id = 1 UNION SELECT o.id, o.customer_id FROM orders o JOIN chain ON o.customer_id = chain.customer_id) SELECT * FROM chain

WITH x AS MATERIALIZED (SELECT * FROM products) SELECT count(*) FROM x

WITH x AS NOT MATERIALIZED (SELECT * FROM products) SELECT id FROM x WHERE stock > 10

WITH customers AS (SELECT * FROM customers WHERE active) SELECT count(*) FROM customers

WITH t AS (SELECT * FROM orders) SELECT t.id, u.name FROM t JOIN (WITH t AS (SELECT * FROM customers) SELECT * FROM t) u ON u.id = t.customer_id

-- ---------------------------------------------------------------- set operations
SELECT id FROM customers UNION SELECT customer_id FROM orders

SELECT id FROM customers UNION ALL SELECT customer_id FROM orders

SELECT id FROM customers INTERSECT SELECT customer_id FROM orders

SELECT id FROM customers EXCEPT SELECT customer_id FROM orders

SELECT id FROM customers EXCEPT ALL SELECT customer_id FROM orders WHERE status = 'new'

(SELECT id, 'c' AS k FROM customers) UNION (SELECT id, 'p' FROM products) ORDER BY 2, 1

SELECT name FROM customers UNION SELECT name FROM products UNION SELECT name FROM plans

SELECT id FROM orders WHERE status = 'new' UNION SELECT id FROM archive.orders

(SELECT id FROM orders ORDER BY total DESC, id LIMIT 3) UNION ALL (SELECT id FROM products ORDER BY id LIMIT 2)

-- ---------------------------------------------------------------- names, quoting, relation forms
SELECT * FROM public.customers ORDER BY id

SELECT * FROM "customers" ORDER BY id

SELECT * FROM public."orders" WHERE id < 4

SELECT "Customers".id FROM customers AS "Customers"

SELECT * FROM CUSTOMERS WHERE ID = 3

SELECT * FROM Public.Orders WHERE Id = 1

SELECT * FROM ONLY customers

SELECT * FROM ONLY public.orders o WHERE o.id = 2

SELECT * FROM customer_spend ORDER BY customer_id

SELECT c.name, s.spent FROM customers c JOIN customer_spend s ON s.customer_id = c.id

SELECT * FROM customers AS c(t, i, n) WHERE i < 3

TABLE customers

TABLE plans

SELECT * FROM orders TABLESAMPLE SYSTEM (100) WHERE id < 5

SELECT * FROM orders FOR UPDATE

SELECT * FROM orders WHERE id = 1 FOR SHARE

SELECT o.id FROM orders o WHERE o.id = 2 FOR UPDATE OF o

SELECT tableoid::regclass, id FROM orders WHERE id = 1

-- ---------------------------------------------------------------- no tenant tables, catalogs
VALUES (1, 'x'), (2, 'y')

SELECT 1

SELECT * FROM generate_series(1, 3) g

SELECT g, (SELECT count(*) FROM orders WHERE customer_id = g) FROM generate_series(1, 12) g

SELECT c.id FROM customers c WHERE c.id = ANY('{1,2,3}'::int[])

SELECT count(*) FROM pg_class WHERE relname = 'orders'

SELECT typname FROM pg_type WHERE oid = 23

SELECT nspname FROM pg_namespace WHERE nspname = 'archive'

SELECT attname FROM pg_attribute WHERE attrelid = 'public.orders'::regclass AND attnum > 0 ORDER BY attnum

SELECT column_name FROM information_schema.columns WHERE table_name = 'customers' AND table_schema = 'public' ORDER BY ordinal_position

SELECT version() IS NOT NULL

-- ---------------------------------------------------------------- several statements in one Query
SELECT count(*) FROM orders; SELECT count(*) FROM customers

SELECT 'x;' AS a, id FROM orders WHERE id = 1; SELECT $$;$$ AS b

BEGIN; SELECT count(*) FROM order_items; SELECT max(total) FROM orders; COMMIT

BEGIN; DECLARE c CURSOR FOR SELECT id, total FROM orders ORDER BY id; FETCH 5 FROM c; FETCH 5 FROM c; CLOSE c; COMMIT

PREPARE p_own AS SELECT id, name FROM customers WHERE id <= $1 ORDER BY id; EXECUTE p_own(4); DEALLOCATE p_own

-- ---------------------------------------------------------------- parameters
-- @params int4:3
SELECT * FROM customers WHERE id = $1

-- @params text:'paid' int4:5
SELECT id, total FROM orders WHERE status = $1 AND customer_id <> $2 ORDER BY id

-- @params int4:2 int4:4
SELECT * FROM orders WHERE id BETWEEN $1 AND $2 ORDER BY id

-- @params text:'gold'
SELECT c.id, count(o.id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id WHERE c.tier = $1 GROUP BY c.id

-- @params int8:5
SELECT * FROM orders ORDER BY id LIMIT $1

-- @params numeric:100
SELECT id FROM orders WHERE total > $1 AND EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = orders.id)

-- @params int4:3
SELECT * FROM orders WHERE customer_id = $1 OR id = $1

-- @params jsonb:'{"vip": true}'
SELECT id FROM customers WHERE profile @> $1

-- @params null
SELECT id FROM customers WHERE tier IS NOT DISTINCT FROM $1::text

-- @params int4:2
WITH x AS (SELECT * FROM orders WHERE customer_id = $1) SELECT * FROM x

-- @params int4:1 int4:10
SELECT * FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE id BETWEEN $1 AND $2)

-- @params text:'A'
SELECT count(*) FROM orders WHERE tenant_id = $1

-- @params text:'web' bool:true
SELECT id FROM customers WHERE profile->>'source' = $1 AND active = $2

-- @params timestamptz:'2024-02-15 00:00:00+00'
SELECT id, ordered_at FROM orders WHERE ordered_at < $1 ORDER BY id

-- @params int4:5 text:'%-secret-%'
SELECT c.id, o.id FROM customers c JOIN LATERAL (SELECT id FROM orders WHERE customer_id = c.id AND note LIKE $2 ORDER BY id LIMIT 1) o ON true WHERE c.id < $1

-- @params int4:1
SELECT id FROM customers UNION SELECT customer_id FROM orders WHERE id > $1 EXCEPT SELECT $1
