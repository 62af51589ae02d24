#!/usr/bin/env python3
"""Memory of idle client connections: opens COUNT logged-in client
connections to a running tenantgate and reports its resident memory (VmRSS
of the process) before and after, per connection. design.md's target:
10,000 idle clients in at most 200 MB.

Usage (standard library only; the user must have `auth = "md5"` so that
the login costs the script little):

    benches/idle_clients.py --pid PID --port 6432 --user bench \
        --password bench --database bench --count 10000

The connections log in one after another, each to ReadyForQuery (with
`--query SQL`, each then runs SQL once, as a client that has done some work
and gone quiet), and stay open (idle, outside a transaction) until the
figures are printed.
Needs COUNT + a few file descriptors here and in tenantgate (the script
raises its own soft limit to the hard one).
"""

import argparse
import hashlib
import resource
import socket
import struct
import sys
import time


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def read_message(sock, buf):
    """One backend message (tag, body) from `sock`; `buf` holds bytes read ahead."""
    while len(buf) < 5:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed during login")
        buf.extend(chunk)
    tag = buf[0:1]
    (length,) = struct.unpack("!i", buf[1:5])
    while len(buf) < 1 + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed during login")
        buf.extend(chunk)
    body = bytes(buf[5 : 1 + length])
    del buf[: 1 + length]
    return tag, body


def run_query(sock, sql):
    body = sql.encode() + b"\0"
    sock.sendall(b"Q" + struct.pack("!i", 4 + len(body)) + body)
    buf = bytearray()
    while True:
        tag, body = read_message(sock, buf)
        if tag == b"E":
            raise RuntimeError("query failed: " + body.decode(errors="replace"))
        if tag == b"Z":
            return


def login(host, port, user, password, database):
    sock = socket.create_connection((host, port))
    params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
    sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    buf = bytearray()
    while True:
        tag, body = read_message(sock, buf)
        if tag == b"R":
            (code,) = struct.unpack("!i", body[:4])
            if code == 5:
                salt = body[4:8]
                inner = hashlib.md5((password + user).encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + salt).hexdigest()
                pw = b"md5" + outer.encode() + b"\0"
                sock.sendall(b"p" + struct.pack("!i", 4 + len(pw)) + pw)
            elif code != 0:
                raise RuntimeError(f"authentication method {code} offered; use auth = \"md5\"")
        elif tag == b"E":
            raise RuntimeError("login refused: " + body.decode(errors="replace"))
        elif tag == b"Z":
            return sock


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pid", type=int, required=True, help="tenantgate's process id")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6432)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--database", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--query", help="SQL each connection runs once after logging in")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.count + 16:
        sys.exit(f"file descriptor limit {hard} is below {args.count} connections")

    before = vm_rss_kib(args.pid)
    started = time.monotonic()
    conns = []
    for i in range(args.count):
        conn = login(args.host, args.port, args.user, args.password, args.database)
        if args.query:
            run_query(conn, args.query)
        conns.append(conn)
    took = time.monotonic() - started
    time.sleep(2)
    after = vm_rss_kib(args.pid)
    print(f"idle client connections: {len(conns)} (logged in over {took:.1f} s)")
    print(f"tenantgate VmRSS before: {before / 1024:.1f} MiB")
    print(f"tenantgate VmRSS with them open: {after / 1024:.1f} MiB")
    print(f"per connection: {(after - before) / len(conns):.1f} KiB")
    for c in conns:
        c.close()


if __name__ == "__main__":
    main()
