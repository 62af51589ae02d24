-- Read attacks for the isolation oracle (format: see corpus.rs).
-- Each tries to reach tenant B's or C's rows from a session of tenant A.
-- Default: tenantgate may refuse it; if it runs, it must return exactly what
-- oracle_a returns (which has no B or C rows at all), and no value of B or C
-- may appear anywhere in the result. `@refuse`: it must be refused.

-- ---------------------------------------------------------------- predicates
SELECT * FROM orders WHERE tenant_id = 'B'

SELECT * FROM orders WHERE tenant_id <> 'A'

SELECT * FROM orders WHERE tenant_id IN ('A', 'B', 'C')

SELECT * FROM orders WHERE id = 1 OR 1 = 1

SELECT * FROM orders WHERE id = 1 OR tenant_id = 'B'

SELECT * FROM orders WHERE true OR tenant_id = 'B' AND false

SELECT * FROM orders WHERE NOT (tenant_id = 'A')

SELECT * FROM orders WHERE tenant_id = 'B' OR tenant_id = 'C' OR tenant_id IS NOT NULL

SELECT * FROM customers WHERE name LIKE 'B-secret%'

SELECT * FROM customers WHERE name = 'B-secret-cust-1'

SELECT count(*) FROM orders WHERE tenant_id = 'B'

SELECT * FROM orders/**/WHERE/**/tenant_id='B'

SELECT * FROM orders WHERE tenant_id = 'B' -- AND tenant_id = 'A'

SELECT * FROM orders WHERE (tenant_id, id) = ('B', 1)

SELECT * FROM orders WHERE tenant_id = ANY ('{A,B,C}')

SELECT * FROM orders WHERE tenant_id = chr(66)

-- ---------------------------------------------------------------- UNION and subqueries
SELECT id FROM orders UNION SELECT id FROM orders WHERE tenant_id = 'B'

SELECT name FROM customers UNION ALL SELECT note FROM orders

SELECT id, name FROM customers UNION SELECT id, note FROM public.orders

SELECT id, name FROM customers WHERE false UNION ALL SELECT id, name FROM customers WHERE tenant_id = 'C'

SELECT * FROM orders WHERE tenant_id = 'A' UNION SELECT * FROM orders WHERE tenant_id = 'B'

SELECT 1 AS x UNION SELECT count(*) FROM public.customers

SELECT * FROM (SELECT * FROM orders) o WHERE o.tenant_id = 'B'

SELECT (SELECT name FROM customers WHERE tenant_id = 'B' LIMIT 1)

SELECT id, (SELECT string_agg(name, ',') FROM customers x WHERE x.tenant_id <> 'A') FROM orders WHERE id = 1

SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.tenant_id = 'B' AND c.id = o.customer_id)

SELECT * FROM plans p WHERE EXISTS (SELECT 1 FROM customers c WHERE c.plan_id = p.id AND c.name LIKE 'B-secret%')

SELECT c.id, (SELECT count(*) FROM orders o WHERE o.tenant_id <> c.tenant_id) FROM customers c

SELECT (SELECT max(name) FROM customers), (SELECT min(name) FROM customers)

SELECT id, ARRAY(SELECT note FROM orders WHERE note IS NOT NULL ORDER BY note) FROM customers WHERE id = 1

SELECT ARRAY(SELECT tenant_id FROM public.orders ORDER BY 1)

SELECT c.id, ARRAY(SELECT o.id FROM orders o WHERE o.customer_id = c.id OR o.tenant_id = 'B' ORDER BY 1) FROM customers c

SELECT array_to_string(ARRAY(SELECT name FROM customers c WHERE c.tenant_id <> 'A' ORDER BY 1), ',')

SELECT cardinality(ARRAY(SELECT 1 FROM orders, customers))

SELECT ARRAY(SELECT ARRAY(SELECT name FROM customers) FROM orders WHERE tenant_id = 'C')

SELECT * FROM customers WHERE id IN (SELECT id FROM customers WHERE tenant_id = 'B')

SELECT id FROM customers ORDER BY id LIMIT (SELECT count(*) FROM orders WHERE tenant_id = 'B')

SELECT id FROM customers GROUP BY id HAVING (SELECT count(*) FROM orders WHERE tenant_id = 'C') > 0

SELECT * FROM jsonb_to_recordset((SELECT jsonb_agg(c) FROM customers c)) AS x(name text)

SELECT * FROM jsonb_array_elements((SELECT jsonb_agg(to_jsonb(o)) FROM public.orders o WHERE o.tenant_id = 'B'))

-- ---------------------------------------------------------------- CTE shadowing and scopes
WITH orders AS (SELECT * FROM orders) SELECT * FROM orders ORDER BY id

WITH orders AS (SELECT * FROM public.orders WHERE tenant_id = 'B') SELECT * FROM orders

WITH x AS (SELECT 1 AS id) SELECT * FROM orders, x WHERE orders.id = x.id

WITH c AS (SELECT * FROM orders) SELECT * FROM c WHERE tenant_id = 'B'

WITH a AS (SELECT * FROM customers), customers AS (SELECT * FROM orders) SELECT count(*) FROM a

WITH a AS (SELECT id, name FROM customers), customers AS (SELECT 1 AS id, 'fake' AS name) SELECT * FROM a ORDER BY id

WITH a AS (SELECT id, name FROM customers), customers AS (SELECT 1 AS id, 'fake' AS name) SELECT * FROM customers, a WHERE a.id = customers.id

WITH RECURSIVE a AS (SELECT id, name FROM customers), customers AS (SELECT 1 AS id, 'x' AS name) SELECT * FROM a

WITH RECURSIVE customers AS (SELECT 1 AS id UNION ALL SELECT id + 1 FROM customers WHERE id < 3) SELECT * FROM customers

WITH RECURSIVE r AS (SELECT id, name FROM customers WHERE id = 1 UNION SELECT c.id, c.name FROM public.customers c JOIN r ON c.id = r.id + 1) SELECT * FROM r

SELECT * FROM (WITH orders AS (SELECT 1 AS id) SELECT * FROM orders) s, orders WHERE orders.id = s.id

SELECT (WITH customers AS (SELECT 1 AS id) SELECT count(*) FROM customers), (SELECT count(*) FROM customers)

WITH customers AS (SELECT 1 AS id) SELECT (SELECT count(*) FROM public.customers) FROM customers

WITH customers AS (SELECT 1 AS id) SELECT * FROM (SELECT * FROM customers) s

WITH "Orders" AS (SELECT 1 AS id) SELECT count(*) FROM orders

WITH "orders" AS (SELECT 1 AS id) SELECT count(*) FROM orders

WITH orders AS (SELECT 1 AS id) SELECT count(*) FROM "orders"

WITH orders AS (SELECT 1 AS id) SELECT count(*) FROM public.orders

WITH x AS (SELECT * FROM orders WHERE tenant_id = 'B'), y AS (SELECT * FROM x) SELECT * FROM y

-- ---------------------------------------------------------------- names, quoting, relation forms
SELECT * FROM "public"."orders" WHERE id = 1

SELECT * FROM Public.Orders WHERE tenant_id = 'B'

SELECT * FROM "ORDERS"

SELECT * FROM ONLY orders WHERE tenant_id = 'B'

SELECT * FROM ONLY (orders) WHERE tenant_id = 'B'

SELECT o.* FROM only (public.orders) o

TABLE orders

TABLE public.orders

TABLE ONLY orders

TABLE archive.plans

SELECT * FROM archive.orders WHERE tenant_id = 'C'

SELECT * FROM archive.plans WHERE tenant_id <> 'A'

SELECT * FROM customers c, LATERAL (SELECT * FROM orders o WHERE o.tenant_id = 'B' AND o.customer_id = c.id) x

SELECT * FROM customers c CROSS JOIN LATERAL (SELECT note FROM public.orders) x WHERE c.id = 1

SELECT * FROM orders AS customers JOIN customers AS orders ON orders.id = customers.customer_id

SELECT * FROM customer_spend WHERE tenant_id = 'B'

SELECT * FROM U&"\006Frders"

SELECT * FROM (orders)

SELECT * FROM orders o1 NATURAL JOIN orders o2

SELECT o FROM orders o WHERE (o).tenant_id = 'B'

SELECT to_jsonb(o) FROM orders o

SELECT row_to_json(c.*) FROM customers c

SELECT count(*) FROM order_items

SELECT sum(total) FROM orders

SELECT max(id), max(name) FROM customers

SELECT * FROM orders TABLESAMPLE BERNOULLI (100) REPEATABLE (1) WHERE tenant_id = 'B'

SELECT * FROM orders o WHERE o.id = 1 UNION SELECT * FROM archive.orders

-- ---------------------------------------------------------------- statements that start with a parenthesis
(SELECT * FROM orders)

((SELECT name FROM customers)) UNION SELECT 'x'

(TABLE orders)

(SELECT id FROM orders ORDER BY id LIMIT 3) UNION ALL (SELECT id FROM customers ORDER BY id LIMIT 3)

(SELECT 1) UNION SELECT count(*) FROM orders

(WITH x AS (SELECT * FROM orders) SELECT * FROM x)

(SELECT note FROM orders WHERE tenant_id = 'B')

-- @refuse
(SELECT * FROM internal_audit)

-- @refuse
(SELECT query FROM pg_stat_activity)

-- @refuse
(SELECT query_to_xml('select * from orders', true, false, ''))

-- @params int4:1
(SELECT * FROM orders WHERE id = $1)

-- ---------------------------------------------------------------- comments PostgreSQL nests
/* /* */ */ SELECT * FROM orders

/* a /* b */ c */ SELECT name FROM customers WHERE tenant_id = 'B'

-- line comment
/* /* nested */ still a comment */ TABLE orders

-- ---------------------------------------------------------------- errors raised by other tenants' rows
-- Through tenantgate these must behave as on oracle_a (no error): an error
-- would tell A that B has such a row.
SELECT count(*) FROM orders WHERE (CASE WHEN note = 'B-secret-note-1' THEN 1 / (id - id) ELSE 1 END) = 1

SELECT count(*) FROM customers c WHERE (CASE WHEN c.name LIKE 'C-secret%' THEN (c.name)::int ELSE 0 END) = 0

SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE (CASE WHEN c.name = 'B-secret-cust-1' THEN 1 / (c.id - c.id) ELSE 0 END) = 0

SELECT count(*) FROM orders WHERE note = 'B-secret-note-1' AND 1 / (id - id) = 1

SELECT id FROM orders WHERE tenant_id = 'B' AND (note)::int = 1

-- ---------------------------------------------------------------- functions that run SQL text
SELECT ts_rewrite('x'::tsquery, 'SELECT ''x''::tsquery, plainto_tsquery(''simple'', name) FROM customers WHERE tenant_id = ''B'' ORDER BY id LIMIT 1')::text

SELECT ts_rewrite('x'::tsquery, 'SELECT ''x''::tsquery, plainto_tsquery(''simple'', string_agg(name, '' '')) FROM customers')::text

-- ---------------------------------------------------------------- statements and cursors
BEGIN; DECLARE c CURSOR FOR SELECT * FROM orders WHERE tenant_id = 'B'; FETCH ALL c; COMMIT

PREPARE p_leak AS SELECT * FROM orders WHERE tenant_id = $1; EXECUTE p_leak('B'); DEALLOCATE p_leak

SELECT 1; SELECT * FROM orders WHERE tenant_id = 'B'

SELECT $$ ; SELECT * FROM internal_audit; $$ AS s

SELECT 'a;b' AS s, * FROM orders WHERE tenant_id = 'C'

SELECT /* ; */ * FROM orders WHERE tenant_id = 'B'

-- @params text:'B'
SELECT * FROM orders WHERE tenant_id = $1

-- @params text:'B' int4:1
SELECT * FROM orders WHERE tenant_id = $1 OR id = $2

-- @params text:'C'
SELECT * FROM customers WHERE id IN (SELECT id FROM customers WHERE tenant_id = $1)

-- @params text:'x'
SELECT * FROM orders WHERE note = $1 OR true

-- @nocompare
EXPLAIN SELECT * FROM orders WHERE tenant_id = 'B'

-- @nocompare
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM orders

-- @nocompare
SELECT ctid, xmin, * FROM orders WHERE tenant_id = 'B'

-- ---------------------------------------------------------------- refused: statistics and activity views
-- @refuse
SELECT * FROM pg_stats WHERE tablename = 'customers'

-- @refuse
SELECT * FROM pg_catalog.pg_stats

-- @refuse
SELECT most_common_vals::text FROM pg_stats WHERE attname = 'name'

-- @refuse
SELECT * FROM pg_statistic

-- @refuse
SELECT * FROM "pg_catalog"."pg_statistic"

-- @refuse
SELECT query FROM pg_stat_activity

-- @refuse
SELECT * FROM pg_catalog.pg_stat_activity

-- @refuse
SELECT * FROM pg_locks

-- @refuse
SELECT * FROM pg_prepared_statements

-- @refuse
SELECT * FROM pg_cursors

-- @refuse
SELECT * FROM pg_settings

-- @refuse
SELECT * FROM pg_stat_user_tables

-- @refuse
SELECT n_live_tup FROM pg_stat_all_tables WHERE relname = 'orders'

-- @refuse
SELECT * FROM pg_statio_user_tables

-- @refuse
SELECT * FROM pg_stats_ext

-- @refuse
SELECT name, statement FROM pg_prepared_statement()

-- @refuse
SELECT * FROM pg_catalog.pg_cursor()

-- @refuse
SELECT * FROM pg_lock_status()

-- @refuse
SELECT * FROM pg_show_all_settings()

-- @refuse
SELECT * FROM pg_stat_get_activity(NULL)

-- ---------------------------------------------------------------- refused: functions that run SQL or reach outside
-- @refuse
SELECT query_to_xml('SELECT * FROM orders', true, false, '')

-- @refuse
SELECT pg_catalog.query_to_xml('select * from orders', true, false, '')

-- @refuse
SELECT QUERY_TO_XML('select name from customers', true, false, '')

-- @refuse
SELECT query_to_xml_and_xmlschema('select * from orders', true, false, '')

-- @refuse
SELECT table_to_xml('orders', true, false, '')

-- @refuse
SELECT table_to_xml('public.customers'::regclass, true, false, '')

-- @refuse
SELECT cursor_to_xml('c', 10, true, false, '')

-- @refuse
SELECT database_to_xml(true, false, '')

-- @refuse
SELECT schema_to_xml('public', true, false, '')

-- @refuse
SELECT xpath('/row', query_to_xml('select 1', true, false, ''))

-- @refuse
SELECT * FROM dblink('dbname=shared', 'SELECT name FROM customers') AS t(name text)

-- @refuse
SELECT dblink_exec('dbname=shared', 'DELETE FROM orders')

-- @refuse
SELECT ts_stat('SELECT to_tsvector(name) FROM customers')

-- @refuse
SELECT * FROM ts_stat('SELECT to_tsvector(name) FROM customers')

-- @refuse
SELECT set_config('app.current_tenant', 'B', false)

-- @refuse
SELECT pg_catalog.set_config('search_path', 'archive', false)

-- @refuse
SELECT set_config('app.' || 'current_tenant', 'B', true)

-- @refuse
SELECT pg_read_file('/etc/passwd')

-- @refuse
SELECT pg_ls_dir('.')

-- @refuse
SELECT lo_import('/etc/passwd')

-- @refuse
SELECT pg_relation_size('orders')

-- @refuse
SELECT pg_total_relation_size('public.customers')

-- @refuse
SELECT pg_terminate_backend(pg_backend_pid())

-- @refuse
SELECT pg_notify('chan', 'x')

-- ---------------------------------------------------------------- refused: user-defined functions, plain relations
-- @refuse
SELECT count_all_orders()

-- @refuse
SELECT public.count_all_orders()

-- @refuse
SELECT * FROM orders_of('B')

-- @refuse
SELECT id FROM customers WHERE id = (SELECT count_all_orders())

-- @refuse
SELECT * FROM order_stats

-- @refuse
SELECT * FROM internal_audit

-- @refuse
SELECT c.id, a.what FROM customers c JOIN internal_audit a ON a.id = c.id

-- ---------------------------------------------------------------- refused: statements
-- @refuse
DO $$ BEGIN PERFORM 1; END $$

-- @refuse
DO $$ BEGIN RAISE EXCEPTION '%', (SELECT string_agg(name, ',') FROM customers); END $$

-- @refuse
CREATE FUNCTION leak() RETURNS SETOF text LANGUAGE sql AS $$ SELECT name FROM customers $$

-- @refuse
CREATE VIEW leak AS SELECT * FROM customers

-- @refuse
CREATE TEMP TABLE leak AS SELECT * FROM customers

-- @refuse
SELECT * INTO TEMP leak FROM customers

-- @refuse
CREATE TABLE leak AS SELECT * FROM customers

-- @refuse
ALTER TABLE customers DISABLE ROW LEVEL SECURITY

-- @refuse
GRANT SELECT ON customers TO public

-- @refuse
SET ROLE postgres

-- @refuse
SET search_path TO archive, public

-- @refuse
SET search_path = archive

-- @refuse
SET SESSION search_path TO archive, public

-- @refuse
SET LOCAL search_path TO archive

-- @refuse
SET "search_path" TO archive, public

-- @refuse
SET SCHEMA 'archive'

-- @refuse
SET SESSION AUTHORIZATION postgres

-- @refuse
SET session_authorization = 'postgres'

-- @refuse
SET "role" TO postgres

-- @refuse
SET SESSION "search_path" TO archive, public

-- @refuse
SET search_path TO DEFAULT

-- @refuse
TRUNCATE orders

-- @refuse
VACUUM customers

-- @refuse
ANALYZE customers

-- @refuse
LISTEN chan

-- @refuse
NOTIFY chan

-- @refuse
COPY orders TO '/tmp/tenantgate-oracle-leak'

-- @refuse
COPY (SELECT 1) TO PROGRAM 'id'

-- @refuse
LOCK TABLE orders

-- @refuse
CALL nothing()

-- @refuse
PREPARE TRANSACTION 'x'

-- @refuse
ALTER SYSTEM SET log_statement = 'all'

-- @refuse
CREATE EXTENSION dblink
