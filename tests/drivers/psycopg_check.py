"""psycopg 3 through tenantgate (run by tests/drivers.rs).

Checks: SCRAM login of tenant-bound users (and 28P01 for a wrong password),
tenant isolation of reads, INSERT without tenant_id (the Rust test verifies
the stored tenant directly on the cluster), a refusal's SQLSTATE,
server-side prepared statements (prepare_threshold=0) reused over many
transactions by more concurrent connections than the pool has server
connections, executemany, an error inside a transaction followed by rollback
and reuse of the same prepared statement (also one whose first execution
failed), cancel of pg_sleep (57014), a trusted connection choosing its
tenant in psycopg's default mode (inside the transaction it opens), and an
ORM's UPDATE that writes the tenant column back.

Connection settings come from TG_* environment variables. Prints one
`ok <check>` or `FAIL <check> <detail>` line per check; exits 1 if any failed.
"""

import os
import sys
import threading
import time

import psycopg
from psycopg import errors
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


def run(check, fn):
    try:
        fn()
        ok(check)
    except Exception as e:  # noqa: BLE001 - every failure is reported
        failed(check, e)


def connect(who, **kw):
    user, password, _ = TENANTS[who]
    return psycopg.connect(host=HOST, port=PORT, dbname=DB, user=user, password=password,
                           connect_timeout=10, **kw)


def check_login():
    for who in ("a", "b"):
        with connect(who) as c:
            (v,) = c.execute("SELECT 1").fetchone()
            expect(v == 1, f"SELECT 1 gave {v!r}")


def check_bad_password():
    user, _, _ = TENANTS["a"]
    try:
        psycopg.connect(host=HOST, port=PORT, dbname=DB, user=user, password="wrong",
                        connect_timeout=10).close()
    except psycopg.OperationalError as e:
        # psycopg reports a failed connection attempt without a diag; the
        # message carries Postgres's text.
        expect("password authentication failed" in str(e), f"unexpected error: {e}")
        return
    raise AssertionError("a wrong password was accepted")


def check_isolation():
    for who in ("a", "b"):
        tenant = TENANTS[who][2]
        other = TENANTS["b" if who == "a" else "a"][2]
        with connect(who) as c:
            rows = c.execute("SELECT tenant_id, id, note FROM items ORDER BY id").fetchall()
            want = [(tenant, i, f"{tenant}-{i}") for i in range(1, ITEMS[who] + 1)]
            expect(rows == want, f"{tenant} saw {rows}, wanted {want}")
            (n,) = c.execute("SELECT count(*) FROM items WHERE tenant_id = %s",
                             (other,)).fetchone()
            expect(n == 0, f"{tenant} counted {n} rows of {other}")
            (note,) = c.execute("SELECT note FROM items WHERE id = 1").fetchone()
            expect(note == f"{tenant}-1", f"{tenant} read {note!r} for id 1")


def check_insert_default_tenant():
    for who in ("a", "b"):
        tenant = TENANTS[who][2]
        with connect(who) as c:
            (t,) = c.execute(
                "INSERT INTO events (driver, note, n) VALUES (%s, %s, 0) RETURNING tenant_id",
                (DRIVER, f"default-tenant-{tenant}")).fetchone()
            expect(t == tenant, f"RETURNING tenant_id gave {t!r}")


def check_refusal():
    with connect("a", autocommit=True) as c:
        try:
            c.execute("SELECT * FROM pg_stats")
        except psycopg.Error as e:
            expect(e.sqlstate == "42501", f"SQLSTATE {e.sqlstate}: {e}")
        else:
            raise AssertionError("pg_stats was readable")
        (v,) = c.execute("SELECT 2").fetchone()
        expect(v == 2, "connection unusable after the refusal")


def check_prepared_concurrent():
    errors_seen = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client(k):
        who = "a" if k % 2 == 0 else "b"
        tenant = TENANTS[who][2]
        note = f"loop-{k}"
        try:
            with connect(who, prepare_threshold=0) as c:
                start.wait(timeout=30)
                for i in range(TXNS):
                    with c.transaction():
                        item = i % ITEMS[who] + 1
                        (got,) = c.execute("SELECT note FROM items WHERE id = %s",
                                           (item,)).fetchone()
                        expect(got == f"{tenant}-{item}", f"client {k} txn {i}: read {got!r}")
                        c.execute("INSERT INTO events (driver, note, n) VALUES (%s, %s, %s)",
                                  (DRIVER, note, i))
                        (n,) = c.execute(
                            "SELECT count(*) FROM events WHERE driver = %s AND note = %s",
                            (DRIVER, note)).fetchone()
                        expect(n == i + 1, f"client {k} txn {i}: count {n}, wanted {i + 1}")
                # psycopg really prepared them (server-side names _pg3_*).
                expect(len(c._prepared._names) == 3,  # noqa: SLF001
                       f"client {k}: prepared {dict(c._prepared._names)}")
        except Exception as e:  # noqa: BLE001
            with lock:
                errors_seen.append(f"client {k}: {type(e).__name__}: {e} "
                                   f"[{getattr(e, 'sqlstate', None)}]")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expect(not errors_seen, "; ".join(errors_seen))


def check_executemany():
    with connect("b", prepare_threshold=0) as c:
        with c.cursor() as cur:
            cur.executemany("INSERT INTO events (driver, note, n) VALUES (%s, %s, %s)",
                            [(DRIVER, "many", i) for i in range(20)])
        (n,) = c.execute("SELECT count(*) FROM events WHERE driver = %s AND note = 'many'",
                         (DRIVER,)).fetchone()
        expect(n == 20, f"count {n}")


def check_error_rollback():
    with connect("a", prepare_threshold=0, autocommit=True) as c:
        div = "SELECT 10 / %s::int"
        (v,) = c.execute(div, (5,)).fetchone()
        expect(v == 2, f"10/5 gave {v}")
        try:
            with c.transaction():
                c.execute("INSERT INTO events (driver, note, n) VALUES (%s, 'rolled-back', 1)",
                          (DRIVER,))
                c.execute(div, (0,))
        except errors.DivisionByZero as e:
            expect(e.sqlstate == "22012", f"SQLSTATE {e.sqlstate}")
        else:
            raise AssertionError("10/0 did not fail")
        expect(c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE,
               f"status after rollback: {c.info.transaction_status}")
        for i in range(1, 4):
            (v,) = c.execute(div, (i,)).fetchone()
            expect(v == 10 // i, f"10/{i} gave {v} after the rollback")
        (n,) = c.execute("SELECT count(*) FROM events WHERE note = 'rolled-back'").fetchone()
        expect(n == 0, f"{n} rolled-back rows visible")


def check_error_first_use():
    # A statement's first execution (so its Parse) is in the transaction that
    # fails; then it is used again, in new transactions.
    with connect("a", prepare_threshold=0, autocommit=True) as c:
        q = "SELECT 100 / %s::int"
        try:
            with c.transaction():
                c.execute("SELECT count(*) FROM items")
                c.execute(q, (0,))
        except errors.DivisionByZero as e:
            expect(e.sqlstate == "22012", f"SQLSTATE {e.sqlstate}")
        else:
            raise AssertionError("100/0 did not fail")
        for i in range(1, 6):
            with c.transaction():
                (v,) = c.execute(q, (i,)).fetchone()
                expect(v == 100 // i, f"100/{i} gave {v}")


def check_cancel():
    with connect("a") as c:
        result = {}

        def sleeper():
            t0 = time.monotonic()
            try:
                c.execute("SELECT pg_sleep(30)")
                result["error"] = None
            except psycopg.Error as e:
                result["error"] = e
            result["elapsed"] = time.monotonic() - t0

        t = threading.Thread(target=sleeper)
        t.start()
        time.sleep(0.5)
        c.cancel_safe(timeout=10)
        t.join(timeout=20)
        expect(not t.is_alive(), "pg_sleep(30) still running 20 s after the cancel")
        e = result.get("error")
        expect(isinstance(e, errors.QueryCanceled) and e.sqlstate == "57014",
               f"got {type(e).__name__}: {e} [{getattr(e, 'sqlstate', None)}]")
        expect(result["elapsed"] < 10, f"cancel took {result['elapsed']:.1f} s")
        c.rollback()
        (v,) = c.execute("SELECT 3").fetchone()
        expect(v == 3, "connection unusable after the cancel")


def check_trusted_choice_in_transaction():
    """psycopg's default mode (autocommit off) sends BEGIN before the first
    statement, so a trusted connection's SET of the tenant comes inside a
    transaction: it counts at once and, committed, for the session; a nested
    transaction block (a savepoint after the choice) can fail and roll back."""
    user, password = TRUSTED
    tenant = TENANTS["a"][2]
    with psycopg.connect(host=HOST, port=PORT, dbname=DB, user=user, password=password,
                         connect_timeout=10) as c:
        c.execute(f"SET app.current_tenant = '{tenant}'")
        (n,) = c.execute("SELECT count(*) FROM items").fetchone()
        expect(n == ITEMS["a"], f"counted {n} items, wanted {ITEMS['a']}")
        try:
            with c.transaction():
                c.execute("SELECT 1/0")
        except errors.DivisionByZero:
            pass
        (t,) = c.execute("SELECT min(tenant_id) FROM items").fetchone()
        expect(t == tenant, f"after the savepoint rollback: {t!r}")
        c.commit()
        (n,) = c.execute("SELECT count(*) FROM items").fetchone()
        expect(n == ITEMS["a"], f"next transaction counted {n} items")
        c.rollback()


def check_trusted_choice_elsewhere_in_transaction():
    """The same default mode, choosing a tenant with another home than the
    session's default (the schema tenant): the transaction psycopg opened
    has run nothing but its BEGIN, so it moves to that home; committed, the
    choice stays for the session. A second choice inside a transaction is
    still refused."""
    user, password = TRUSTED
    schema_tenant = os.environ["TG_USER_S"]
    with psycopg.connect(host=HOST, port=PORT, dbname=DB, user=user, password=password,
                         connect_timeout=10) as c:
        # psycopg then opens its transactions with
        # BEGIN ISOLATION LEVEL REPEATABLE READ: the moved one keeps it.
        c.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        c.execute(f"SET app.current_tenant = '{schema_tenant}'")
        notes = [r[0] for r in c.execute("SELECT note FROM items ORDER BY id").fetchall()]
        expect(notes == [f"{schema_tenant}-1"], f"in the moved transaction: {notes}")
        (level,) = c.execute("SHOW transaction_isolation").fetchone()
        expect(level == "repeatable read", f"isolation level {level!r}")
        c.commit()
        notes = [r[0] for r in c.execute("SELECT note FROM items ORDER BY id").fetchall()]
        expect(notes == [f"{schema_tenant}-1"], f"next transaction: {notes}")
        c.rollback()
        try:
            c.execute(f"SET app.current_tenant = '{TENANTS['a'][2]}'")
        except errors.ActiveSqlTransaction:
            c.rollback()
        else:
            raise AssertionError("a second choice inside a transaction was accepted")
    # Rolled back, the choice is undone: the next transaction has no tenant.
    with psycopg.connect(host=HOST, port=PORT, dbname=DB, user=user, password=password,
                         connect_timeout=10) as c:
        c.execute(f"SET app.current_tenant = '{schema_tenant}'")
        c.rollback()
        (t,) = c.execute("SHOW app.current_tenant").fetchone()
        expect(t == "", f"after the rollback the tenant is {t!r}")
        c.rollback()


def check_orm_full_row_update():
    """ORMs (Django's save(), Hibernate) write every column back, the tenant
    column included: the session's own tenant passes, another is refused
    (42501) and changes nothing."""
    tenant = TENANTS["a"][2]
    other = TENANTS["b"][2]
    with connect("a", autocommit=True) as c:
        for sql, args in [
            ("UPDATE items SET tenant_id = %s, note = note WHERE id = 1", (tenant,)),
            (f"UPDATE items SET tenant_id = '{tenant}', note = note WHERE id = 1", None),
        ]:
            cur = c.execute(sql, args)
            expect(cur.rowcount == 1, f"{sql}: {cur.rowcount} rows")
        try:
            c.execute("UPDATE items SET tenant_id = %s, note = 'moved' WHERE id = 1", (other,))
        except errors.InsufficientPrivilege:
            pass
        else:
            raise AssertionError("an UPDATE to another tenant's id ran")
        (note,) = c.execute("SELECT note FROM items WHERE id = 1").fetchone()
        expect(note == f"{tenant}-1", f"note after the refused UPDATE: {note!r}")


CHECKS = [
    ("login", check_login),
    ("bad_password", check_bad_password),
    ("isolation", check_isolation),
    ("insert_default_tenant", check_insert_default_tenant),
    ("refusal", check_refusal),
    ("prepared_concurrent", check_prepared_concurrent),
    ("executemany", check_executemany),
    ("error_rollback", check_error_rollback),
    ("error_first_use", check_error_first_use),
    ("cancel", check_cancel),
    ("trusted_choice_in_transaction", check_trusted_choice_in_transaction),
    ("trusted_choice_elsewhere_in_transaction", check_trusted_choice_elsewhere_in_transaction),
    ("orm_full_row_update", check_orm_full_row_update),
]

if __name__ == "__main__":
    print(f"info psycopg {psycopg.__version__} libpq {psycopg.pq.version()}", flush=True)
    for name, fn in CHECKS:
        run(name, fn)
    sys.exit(exit_code())
