"""What the Python driver programs share (imported by psycopg_check.py and
asyncpg_check.py): the connection settings tests/drivers.rs passes in TG_*
environment variables, and the `ok <check>` / `FAIL <check> <detail>` lines
it reads back.
"""

import os
import traceback

HOST = os.environ["TG_HOST"]
PORT = int(os.environ["TG_PORT"])
DB = os.environ["TG_DB"]
DRIVER = os.environ["TG_DRIVER"]
POOL_SIZE = int(os.environ["TG_POOL_SIZE"])
CLIENTS = int(os.environ["TG_CLIENTS"])
TXNS = int(os.environ["TG_TXNS"])
TENANTS = {
    "a": (os.environ["TG_USER_A"], os.environ["TG_PASSWORD_A"], os.environ["TG_TENANT_A"]),
    "b": (os.environ["TG_USER_B"], os.environ["TG_PASSWORD_B"], os.environ["TG_TENANT_B"]),
}
# A trusted user (no tenant of its own): it chooses one with SET.
TRUSTED = (os.environ["TG_USER_T"], os.environ["TG_PASSWORD_T"])
# Rows the test put in `items` for each tenant (ids 1..n, note '<tenant>-<id>').
ITEMS = {"a": int(os.environ["TG_ITEMS_A"]), "b": int(os.environ["TG_ITEMS_B"])}

_failures = 0


def ok(check):
    print(f"ok {check}", flush=True)


def fail(check, detail):
    global _failures
    _failures += 1
    print(f"FAIL {check} {detail}".replace("\n", " | "), flush=True)


def failed(check, e):
    """Reports exception `e` as the failure of `check`."""
    fail(check, f"{type(e).__name__}: {e} [{getattr(e, 'sqlstate', None)}] "
                + traceback.format_exc(limit=3))


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def exit_code():
    return 1 if _failures else 0
