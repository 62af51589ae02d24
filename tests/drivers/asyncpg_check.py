"""asyncpg through tenantgate (run by tests/drivers.rs).

Checks: SCRAM login of tenant-bound users (and 28P01 for a wrong password),
tenant isolation of `fetch`, INSERT without tenant_id (the Rust test verifies
the stored tenant directly on the cluster), a refusal's SQLSTATE, asyncpg's
statement cache (named prepared statements) and an explicit
`Connection.prepare` reused over many transactions by more concurrent
connections than the pool has server connections, `executemany`,
`copy_records_to_table` (COPY FROM into a tenant table: tenantgate refuses
it with 0A000, asserted), an error inside `async with conn.transaction()`
followed by rollback and reuse of the same statement (also one whose first
execution failed), and cancel of pg_sleep
through a query timeout (asyncpg sends a CancelRequest and swallows the
57014, so the check is that the next query answers at once), and a pool
of a schema-per-tenant tenant over several acquire/release cycles (its reset
query ends with RESET ALL; the search_path must stay pinned).

Connection settings come from TG_* environment variables. Prints one
`ok <check>` or `FAIL <check> <detail>` line per check; exits 1 if any failed.
"""

import asyncio
import os
import sys
import time

import asyncpg
from tg_check import (
    CLIENTS,
    DB,
    DRIVER,
    HOST,
    ITEMS,
    PORT,
    TENANTS,
    TRUSTED,
    TXNS,
    exit_code,
    expect,
    fail,
    failed,
    ok,
)


async def run(check, fn):
    try:
        await fn()
        ok(check)
    except Exception as e:  # noqa: BLE001 - every failure is reported
        failed(check, e)


async def connect(who, password=None):
    user, pw, _ = TENANTS[who]
    return await asyncpg.connect(host=HOST, port=PORT, database=DB, user=user,
                                 password=password or pw, timeout=10, ssl=False)


async def check_login():
    for who in ("a", "b"):
        c = await connect(who)
        try:
            expect(await c.fetchval("SELECT 1") == 1, "SELECT 1")
        finally:
            await c.close()


async def check_bad_password():
    try:
        c = await connect("a", password="wrong")
    except asyncpg.PostgresError as e:
        expect(e.sqlstate == "28P01", f"SQLSTATE {e.sqlstate}: {e}")
        return
    await c.close()
    raise AssertionError("a wrong password was accepted")


async def check_isolation():
    for who in ("a", "b"):
        tenant = TENANTS[who][2]
        other = TENANTS["b" if who == "a" else "a"][2]
        c = await connect(who)
        try:
            rows = [tuple(r) for r in
                    await c.fetch("SELECT tenant_id, id, note FROM items ORDER BY id")]
            want = [(tenant, i, f"{tenant}-{i}") for i in range(1, ITEMS[who] + 1)]
            expect(rows == want, f"{tenant} saw {rows}, wanted {want}")
            n = await c.fetchval("SELECT count(*) FROM items WHERE tenant_id = $1", other)
            expect(n == 0, f"{tenant} counted {n} rows of {other}")
            note = await c.fetchval("SELECT note FROM items WHERE id = $1", 1)
            expect(note == f"{tenant}-1", f"{tenant} read {note!r} for id 1")
        finally:
            await c.close()


async def check_insert_default_tenant():
    for who in ("a", "b"):
        tenant = TENANTS[who][2]
        c = await connect(who)
        try:
            t = await c.fetchval(
                "INSERT INTO events (driver, note, n) VALUES ($1, $2, 0) RETURNING tenant_id",
                DRIVER, f"default-tenant-{tenant}")
            expect(t == tenant, f"RETURNING tenant_id gave {t!r}")
        finally:
            await c.close()


async def check_refusal():
    c = await connect("a")
    try:
        try:
            await c.fetch("SELECT * FROM pg_stats")
        except asyncpg.PostgresError as e:
            expect(e.sqlstate == "42501", f"SQLSTATE {e.sqlstate}: {e}")
        else:
            raise AssertionError("pg_stats was readable")
        expect(await c.fetchval("SELECT 2") == 2, "connection unusable after the refusal")
    finally:
        await c.close()


async def check_prepared_concurrent():
    conns = [await connect("a" if k % 2 == 0 else "b") for k in range(CLIENTS)]

    async def client(k, c):
        who = "a" if k % 2 == 0 else "b"
        tenant = TENANTS[who][2]
        note = f"loop-{k}"
        count = await c.prepare("SELECT count(*) FROM events WHERE driver = $1 AND note = $2")
        for i in range(TXNS):
            async with c.transaction():
                item = i % ITEMS[who] + 1
                got = await c.fetchval("SELECT note FROM items WHERE id = $1", item)
                expect(got == f"{tenant}-{item}", f"client {k} txn {i}: read {got!r}")
                await c.execute("INSERT INTO events (driver, note, n) VALUES ($1, $2, $3)",
                                DRIVER, note, i)
                n = await count.fetchval(DRIVER, note)
                expect(n == i + 1, f"client {k} txn {i}: count {n}, wanted {i + 1}")
        # The statement cache holds named statements (__asyncpg_stmt_*).
        expect(len(c._stmt_cache) >= 2, f"client {k}: cache of {len(c._stmt_cache)}")  # noqa: SLF001

    try:
        results = await asyncio.gather(*(client(k, c) for k, c in enumerate(conns)),
                                       return_exceptions=True)
    finally:
        for c in conns:
            await c.close()
    errs = [f"client {k}: {type(r).__name__}: {r} [{getattr(r, 'sqlstate', None)}]"
            for k, r in enumerate(results) if isinstance(r, BaseException)]
    expect(not errs, "; ".join(errs))


async def check_executemany():
    c = await connect("b")
    try:
        await c.executemany("INSERT INTO events (driver, note, n) VALUES ($1, $2, $3)",
                            [(DRIVER, "many", i) for i in range(20)])
        n = await c.fetchval("SELECT count(*) FROM events WHERE driver = $1 AND note = 'many'",
                             DRIVER)
        expect(n == 20, f"count {n}")
    finally:
        await c.close()


async def check_copy_records_refused():
    c = await connect("a")
    try:
        try:
            await c.copy_records_to_table("events", records=[(DRIVER, "copy", 1)],
                                          columns=["driver", "note", "n"])
        except asyncpg.PostgresError as e:
            expect(e.sqlstate == "0A000", f"SQLSTATE {e.sqlstate}: {e}")
            print(f"info copy_records_to_table refused: {e.sqlstate} {e}", flush=True)
        else:
            raise AssertionError("COPY FROM into a tenant table was accepted")
        expect(await c.fetchval("SELECT count(*) FROM events WHERE note = 'copy'") == 0,
               "copied rows visible")
        expect(await c.fetchval("SELECT 4") == 4, "connection unusable after the refusal")
    finally:
        await c.close()


async def check_error_rollback():
    c = await connect("a")
    try:
        div = "SELECT 10 / $1::int"
        expect(await c.fetchval(div, 5) == 2, "10/5")
        try:
            async with c.transaction():
                await c.execute(
                    "INSERT INTO events (driver, note, n) VALUES ($1, 'rolled-back', 1)", DRIVER)
                await c.fetchval(div, 0)
        except asyncpg.DivisionByZeroError as e:
            expect(e.sqlstate == "22012", f"SQLSTATE {e.sqlstate}")
        else:
            raise AssertionError("10/0 did not fail")
        expect(not c.is_in_transaction(), "still in a transaction after the rollback")
        for i in range(1, 4):
            v = await c.fetchval(div, i)
            expect(v == 10 // i, f"10/{i} gave {v} after the rollback")
        n = await c.fetchval("SELECT count(*) FROM events WHERE note = 'rolled-back'")
        expect(n == 0, f"{n} rolled-back rows visible")
    finally:
        await c.close()


async def check_error_first_use():
    # A statement's first execution (so its Parse) is in the transaction that
    # fails; then it is used again, in new transactions.
    c = await connect("a")
    try:
        q = "SELECT 100 / $1::int"
        try:
            async with c.transaction():
                await c.fetchval("SELECT count(*) FROM items")
                await c.fetchval(q, 0)
        except asyncpg.DivisionByZeroError as e:
            expect(e.sqlstate == "22012", f"SQLSTATE {e.sqlstate}")
        else:
            raise AssertionError("100/0 did not fail")
        for i in range(1, 6):
            async with c.transaction():
                v = await c.fetchval(q, i)
                expect(v == 100 // i, f"100/{i} gave {v}")
    finally:
        await c.close()


async def check_cancel():
    c = await connect("a")
    try:
        t0 = time.monotonic()
        try:
            await c.fetchval("SELECT pg_sleep(30)", timeout=0.5)
        except asyncio.TimeoutError:
            pass
        else:
            raise AssertionError("pg_sleep(30) finished within 0.5 s")
        # asyncpg cancels the query on the server and waits for that before
        # the next one runs: without a working cancel this waits 30 s.
        v = await asyncio.wait_for(c.fetchval("SELECT 3"), timeout=15)
        elapsed = time.monotonic() - t0
        expect(v == 3, f"SELECT 3 gave {v}")
        expect(elapsed < 10, f"query after the cancel came back after {elapsed:.1f} s")
    finally:
        await c.close()


async def check_schema_pool_reset():
    # asyncpg's pool resets a connection it takes back with a query string
    # ending in RESET ALL; a schema tenant's search_path must survive it.
    user, pw = os.environ["TG_USER_S"], os.environ["TG_PASSWORD_S"]
    pool = await asyncpg.create_pool(host=HOST, port=PORT, database=DB, user=user,
                                     password=pw, min_size=1, max_size=2, ssl=False,
                                     timeout=10)
    try:
        for i in range(10):
            async with pool.acquire() as c:
                notes = [r["note"] for r in await c.fetch("SELECT note FROM items ORDER BY id")]
                expect(notes == [f"{user}-1"], f"round {i}: items {notes}")
                path = await c.fetchval("SHOW search_path")
                expect(path == f'"{user}", public', f"round {i}: search_path {path}")
                await c.execute(f"SET application_name = 'round {i}'")
    finally:
        await pool.close()


async def check_cached_statement_across_homes():
    # A trusted session switching between a shared-table tenant and a
    # schema tenant: the statement asyncpg cached for one home is refused
    # for the other the way Postgres refuses a plan that no longer fits
    # (routine RevalidateCachedQuery), so asyncpg prepares it again and
    # retries, outside a transaction, without the application noticing.
    user, pw = TRUSTED
    schema_tenant = os.environ["TG_USER_S"]
    shared = TENANTS["a"][2]
    c = await asyncpg.connect(host=HOST, port=PORT, database=DB, user=user,
                              password=pw, timeout=10, ssl=False)
    try:
        query = "SELECT note FROM items WHERE id <= $1 ORDER BY id"
        for round_ in range(2):
            for tenant, want in ((shared, [f"{shared}-1", f"{shared}-2"]),
                                 (schema_tenant, [f"{schema_tenant}-1"])):
                await c.execute(f"SET app.current_tenant = '{tenant}'")
                notes = [r["note"] for r in await c.fetch(query, 2)]
                expect(notes == want, f"round {round_}, {tenant}: {notes}, wanted {want}")
        # Inside a transaction the driver cannot retry: the refusal reaches
        # the application, as Postgres's own would.
        await c.execute(f"SET app.current_tenant = '{shared}'")
        await c.fetch(query, 2)
        await c.execute(f"SET app.current_tenant = '{schema_tenant}'")
        try:
            async with c.transaction():
                await c.fetch(query, 2)
        except asyncpg.exceptions.InvalidCachedStatementError as e:
            expect(e.sqlstate == "0A000", f"SQLSTATE {e.sqlstate}: {e}")
        else:
            raise AssertionError("a statement planned for another home ran in a transaction")
        notes = [r["note"] for r in await c.fetch(query, 2)]
        expect(notes == [f"{schema_tenant}-1"], f"after the transaction: {notes}")
    finally:
        await c.close()


CHECKS = [
    ("login", check_login),
    ("bad_password", check_bad_password),
    ("isolation", check_isolation),
    ("insert_default_tenant", check_insert_default_tenant),
    ("refusal", check_refusal),
    ("prepared_concurrent", check_prepared_concurrent),
    ("executemany", check_executemany),
    ("copy_records_refused", check_copy_records_refused),
    ("error_rollback", check_error_rollback),
    ("error_first_use", check_error_first_use),
    ("cancel", check_cancel),
    ("schema_pool_reset", check_schema_pool_reset),
    ("cached_statement_across_homes", check_cached_statement_across_homes),
]


async def main():
    print(f"info asyncpg {asyncpg.__version__}", flush=True)
    for name, fn in CHECKS:
        await run(name, fn)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(exit_code())
