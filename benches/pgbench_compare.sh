#!/usr/bin/env bash
# pgbench side by side, in ONE run on the same machine: Postgres direct,
# PgBouncer and tenantgate, both proxies in transaction pooling with the same
# pool size. See docs/benchmarks.md for how to read the output and
# /work/shared/design.md "Performance targets" for the goals.
#
# Usage (from anywhere; the repo root is found from this script's path):
#
#   benches/pgbench_compare.sh
#   CLIENTS=32 POOL=20 DURATION=15 SCALE=10 JOBS=2 benches/pgbench_compare.sh
#
# Knobs (environment variables, defaults in brackets):
#   CLIENTS   pgbench clients (-c)                                [32]
#   POOL      server connections per pool, both proxies           [20]
#   DURATION  seconds per measured pgbench run (-T)               [15]
#   SCALE     pgbench scale factor (-s) for `pgbench -i`          [10]
#   JOBS      pgbench worker threads (-j)                         [2]
#   WARMUP    seconds of warm-up per target (simple protocol)     [3]
#   ROUNDS    measured runs per target and mode; the report gives the
#             median of each figure (the order of the targets rotates
#             from round to round)                                  [3]
#   MODES     query protocols measured, in order                  ["simple extended prepared"]
#   TG_WORKERS tenantgate's `[server] workers`; PgBouncer runs one thread,
#             so the default compares per core (1 = a single-threaded
#             runtime); "" = tenantgate's own default (one per core)  [1]
#   TG_OWN_SESSION 1 = start tenantgate in a session of its own (setsid),
#             as PgBouncer's `-d` puts itself; 0 = in this script's session,
#             beside pgbench (see docs/benchmarks.md on autogroup)   [1]
#   REWRITE   1 = tenantgate with tenant rewriting on: pgbench_accounts
#             gets a `tenant_id text` column (every row 't1', for all three
#             targets), tenantgate a `[tenancy]` table (pgbench_branches,
#             which pgbench counts at start, global) and the bench user
#             `tenant = "t1"`, so each SELECT gains `AND tenant_id = 't1'`
#             on its way through; 0 = pass-through (no `[tenancy]`)  [0]
#   KEEP      1 = keep the temp dir (logs, configs) on exit       [0]
#   PERF_OUT  if set, `perf record -g` tenantgate during its measured
#             run in PERF_MODE and write perf.data there (this skews that
#             run's TPS and CPU figures)
#   PERF_MODE the mode profiled with PERF_OUT or SYSCALLS           [simple]
#   INSTRUCTIONS 1 = after the measured runs, run a second copy of each
#             proxy under valgrind's callgrind and print the user-space
#             instructions it executes per transaction (8 clients,
#             $INSTR_TXNS transactions each, -M $PERF_MODE): the steadiest
#             figure of the proxies' own code, immune to the machine's
#             noise, but blind to the kernel's share               [0]
#   SYSCALLS  1 = after the measured runs, run each proxy under
#             `strace -c -f` for a short extra run (`-M $PERF_MODE`) and print
#             its system calls per transaction (counts, not times: strace
#             slows the run, but the counts per transaction hold)     [0]
#
# What it does: `cargo build --release`; initdb a throwaway cluster (fsync off)
# on a free port; `pgbench -i -s $SCALE`; start PgBouncer (installed with
# apt-get when missing and running as root) and target/release/tenantgate on
# free ports; warm each target up; then for each mode, run `pgbench -S` once
# per target (direct, pgbouncer, tenantgate, always in that order) and print
# TPS, failures, and the proxies' CPU per transaction (utime+stime from
# /proc/<pid>/stat, delta over the run, divided by transactions processed).
# Everything is stopped and removed on exit.
#
# Postgres and PgBouncer refuse to run as root: as root they are run as user
# `postgres` through `runuser -u postgres --`.

set -euo pipefail

CLIENTS=${CLIENTS:-32}
POOL=${POOL:-20}
DURATION=${DURATION:-15}
SCALE=${SCALE:-10}
JOBS=${JOBS:-2}
TG_OWN_SESSION=${TG_OWN_SESSION:-1}
REWRITE=${REWRITE:-0}
WARMUP=${WARMUP:-3}
MODES=${MODES-"simple extended prepared"}
KEEP=${KEEP:-0}
PERF_OUT=${PERF_OUT:-}
PERF_MODE=${PERF_MODE:-simple}
SYSCALLS=${SYSCALLS:-0}
ROUNDS=${ROUNDS:-3}
INSTRUCTIONS=${INSTRUCTIONS:-0}
INSTR_TXNS=${INSTR_TXNS:-2000}
TG_WORKERS=${TG_WORKERS-1}

TARGETS=(direct pgbouncer tenantgate)
DBNAME=bench
BENCH_USER=bench
BENCH_PASSWORD=bench

log() { printf '[pgbench_compare] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

IS_ROOT=0
[[ $(id -u) -eq 0 ]] && IS_ROOT=1

# Run a command as the `postgres` OS user when we are root, else as ourselves.
# session id of a process (field 6 of /proc/<pid>/stat, after the command name)
session_of() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo "?"; return; }
    stat=${stat##*) }
    awk '{ print $4 }' <<<"$stat"
}

as_pg() {
    if [[ $IS_ROOT -eq 1 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# ---------------------------------------------------------------- tools ----

find_pg_bin() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -n -r); do
        if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/pgbench ]]; then
            echo "$d"
            return
        fi
    done
    local initdb
    if initdb=$(command -v initdb 2>/dev/null); then
        dirname "$initdb"
        return
    fi
    return 1
}

PGBIN=$(find_pg_bin) || die "Postgres binaries not found (looked in /usr/lib/postgresql/*/bin and PATH); install e.g. 'postgresql' and 'postgresql-contrib'"
PGBENCH=$PGBIN/pgbench
[[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench) || die "pgbench not found"

find_pgbouncer() {
    command -v pgbouncer 2>/dev/null && return
    [[ -x /usr/sbin/pgbouncer ]] && { echo /usr/sbin/pgbouncer; return; }
    return 1
}

if ! PGBOUNCER=$(find_pgbouncer); then
    if [[ $IS_ROOT -eq 1 ]]; then
        log "pgbouncer missing: apt-get install -y pgbouncer"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer >&2; then
            DEBIAN_FRONTEND=noninteractive apt-get update >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer >&2
        fi
        PGBOUNCER=$(find_pgbouncer) || die "pgbouncer still not found after apt-get install"
    else
        die "pgbouncer not found; install it first: sudo apt-get install -y pgbouncer (or run this script as root)"
    fi
fi

if [[ $IS_ROOT -eq 1 ]] && ! id postgres >/dev/null 2>&1; then
    die "running as root but there is no 'postgres' user (initdb and pgbouncer refuse root); create one (useradd -r postgres) or run as a normal user"
fi

CLK_TCK=$(getconf CLK_TCK)

# ----------------------------------------------------------- temp state ----

TMP=$(mktemp -d /tmp/tg-pgbench.XXXXXX)
chmod 755 "$TMP"
mkdir -p "$TMP/pg" "$TMP/pgbouncer" "$TMP/runs"
if [[ $IS_ROOT -eq 1 ]]; then
    chown postgres: "$TMP/pg" "$TMP/pgbouncer"
fi
PGDATA_DIR=$TMP/pg/data

TG_PID=
PGB_PID=
PG_STARTED=0
PERF_PID=

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n $PERF_PID ]] && kill -0 "$PERF_PID" 2>/dev/null; then
        kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null
    fi
    if [[ -n $TG_PID ]] && kill -0 "$TG_PID" 2>/dev/null; then
        kill -TERM "$TG_PID"
        for _ in $(seq 50); do kill -0 "$TG_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$TG_PID" 2>/dev/null && kill -KILL "$TG_PID"
        wait "$TG_PID" 2>/dev/null
    fi
    if [[ -n $PGB_PID ]] && kill -0 "$PGB_PID" 2>/dev/null; then
        kill -INT "$PGB_PID"
        for _ in $(seq 50); do kill -0 "$PGB_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$PGB_PID" 2>/dev/null && kill -KILL "$PGB_PID"
    fi
    if [[ $PG_STARTED -eq 1 ]]; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1
    fi
    if [[ $KEEP == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A TCP port on 127.0.0.1 nobody listens on (and not handed out before).
USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

wait_port() { # port pid name
    local port=$1 pid=$2 name=$3
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            log "ERROR: $name exited during startup"
            return 1
        fi
        sleep 0.1
    done
    log "ERROR: $name does not listen on 127.0.0.1:$port after 10 s"
    return 1
}

# utime+stime of a process (all its threads), in clock ticks.
cpu_ticks() {
    local stat rest
    stat=$(cat "/proc/$1/stat") || return 1
    rest=${stat##*) }            # drop "pid (comm) "; comm may hold spaces
    # rest starts at field 3 (state); utime, stime are fields 14, 15.
    awk '{ print $12 + $13 }' <<<"$rest"
}

# machine_ticks -> "IDLE TOTAL": the machine's idle clock ticks and all of
# them (user, nice, system, idle, iowait, irq, softirq, steal), all CPUs.
machine_ticks() {
    awk '/^cpu / { print $5, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# ctx_switches PID -> context switches (voluntary + involuntary) of all its threads
ctx_switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null \
        | awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

# --------------------------------------------------------------- build ----

TG_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')
if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    TG_COMMIT+=" + uncommitted changes"
fi
log "cargo build --release (in $REPO, HEAD $TG_COMMIT)"
(cd "$REPO" && cargo build --release >&2)
TG_BIN=$REPO/target/release/tenantgate
[[ -x $TG_BIN ]] || die "$TG_BIN not built"

# ------------------------------------------------------------ postgres ----

PG_PORT=$(free_port)
log "initdb ($PGBIN) into $PGDATA_DIR, port $PG_PORT"
as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres --no-sync >"$TMP/initdb.log" 2>&1 \
    || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# pgbench_compare.sh
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$TMP/pg'
EOF
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$TMP/pg/postgres.log" -w -t 60 start >/dev/null \
    || { cat "$TMP/pg/postgres.log" >&2; die "postgres did not start"; }
PG_STARTED=1

export PGHOST=127.0.0.1
"$PGBIN/psql" -X -q -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE $DBNAME" >/dev/null
log "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -p "$PG_PORT" -U postgres "$DBNAME" >"$TMP/pgbench-init.log" 2>&1 \
    || { cat "$TMP/pgbench-init.log" >&2; die "pgbench -i failed"; }
if [[ $REWRITE == 1 ]]; then
    # A constant default adds the column without rewriting the table.
    "$PGBIN/psql" -X -q -p "$PG_PORT" -U postgres -d "$DBNAME" \
        -c "ALTER TABLE pgbench_accounts ADD COLUMN tenant_id text NOT NULL DEFAULT 't1'" >/dev/null
fi

# ----------------------------------------------------------- pgbouncer ----

PGB_PORT=$(free_port)
cat >"$TMP/pgbouncer/userlist.txt" <<EOF
"$BENCH_USER" "$BENCH_PASSWORD"
EOF
cat >"$TMP/pgbouncer/pgbouncer.ini" <<EOF
[databases]
$DBNAME = host=127.0.0.1 port=$PG_PORT dbname=$DBNAME user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $TMP/pgbouncer/userlist.txt
pool_mode = transaction
default_pool_size = $POOL
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 1000
max_db_connections = 0
logfile = $TMP/pgbouncer/pgbouncer.log
pidfile = $TMP/pgbouncer/pgbouncer.pid
log_connections = 0
log_disconnections = 0
ignore_startup_parameters = extra_float_digits
EOF
[[ $IS_ROOT -eq 1 ]] && chown -R postgres: "$TMP/pgbouncer"
log "pgbouncer ($("$PGBOUNCER" --version 2>/dev/null | head -1)) on port $PGB_PORT"
as_pg "$PGBOUNCER" -d "$TMP/pgbouncer/pgbouncer.ini" \
    || { cat "$TMP/pgbouncer/pgbouncer.log" >&2 2>/dev/null; die "pgbouncer did not start"; }
for _ in $(seq 50); do [[ -s $TMP/pgbouncer/pgbouncer.pid ]] && break; sleep 0.1; done
PGB_PID=$(cat "$TMP/pgbouncer/pgbouncer.pid" 2>/dev/null) || die "pgbouncer wrote no pidfile"
wait_port "$PGB_PORT" "$PGB_PID" pgbouncer || { tail -20 "$TMP/pgbouncer/pgbouncer.log" >&2; exit 1; }

# ---------------------------------------------------------- tenantgate ----

TG_PORT=$(free_port)
TG_TENANCY=""
TG_USER_TENANT=""
if [[ $REWRITE == 1 ]]; then
    # pgbench reads pgbench_branches once at start (to learn the scale).
    TG_TENANCY=$'\n[tenancy]\ncolumn = "tenant_id"\nglobal_tables = ["pgbench_branches"]'
    TG_USER_TENANT='tenant = "t1"'
fi
cat >"$TMP/routing.toml" <<EOF
# written by benches/pgbench_compare.sh
[server]
listen = "127.0.0.1:$TG_PORT"
database = "$DBNAME"
pool_mode = "transaction"
shutdown_timeout = "2s"
${TG_WORKERS:+workers = $TG_WORKERS}
$TG_TENANCY

[[users]]
name = "$BENCH_USER"
password = "$BENCH_PASSWORD"
$TG_USER_TENANT

[[shards]]
name = "s0"
url = "postgres://postgres@127.0.0.1:$PG_PORT/$DBNAME"
pool_size = $POOL

[routing]
hash_shards = ["s0"]
EOF
log "tenantgate on port $TG_PORT"
# In its own session, as PgBouncer (`-d` calls setsid) and every Postgres
# backend are, and as a service manager would start it. With
# kernel.sched_autogroup_enabled=1 the kernel shares CPU between sessions
# first: started straight from this script, tenantgate would share one share
# with pgbench, the load generator. (From a script without job control the
# background child is no process-group leader, so setsid does not fork and
# $! is tenantgate itself; checked below.)
TG_LAUNCH=(setsid)
[[ $TG_OWN_SESSION == 1 ]] || TG_LAUNCH=(env)
RUST_LOG=warn "${TG_LAUNCH[@]}" "$TG_BIN" --config "$TMP/routing.toml" run >"$TMP/tenantgate.log" 2>&1 &
TG_PID=$!
wait_port "$TG_PORT" "$TG_PID" tenantgate || { tail -40 "$TMP/tenantgate.log" >&2; exit 1; }
[[ $(cat "/proc/$TG_PID/comm" 2>/dev/null) == tenantgate ]] || die "pid $TG_PID is not tenantgate"

# ------------------------------------------------------------- pgbench ----

target_port() {
    case $1 in
        direct) echo "$PG_PORT" ;;
        pgbouncer) echo "$PGB_PORT" ;;
        tenantgate) echo "$TG_PORT" ;;
    esac
}
target_user() {
    case $1 in
        direct) echo postgres ;;
        *) echo "$BENCH_USER" ;;
    esac
}
target_pid() {
    case $1 in
        pgbouncer) echo "$PGB_PID" ;;
        tenantgate) echo "$TG_PID" ;;
        *) echo "" ;;
    esac
}

declare -A TPS FAILED STATUS CPU_US LAT TXNS CSW IDLE

# run_one TARGET MODE SECONDS LOGFILE -> sets R_* for the run
run_one() {
    local target=$1 mode=$2 secs=$3 out=$4
    local port user pid t0=0 t1=0 c0=0 c1=0 rc=0 m0 m1
    port=$(target_port "$target"); user=$(target_user "$target"); pid=$(target_pid "$target")
    if [[ -n $pid ]]; then
        kill -0 "$pid" 2>/dev/null || { R_STATUS="DEAD"; R_TPS=; R_TXNS=; R_FAILED=; R_LAT=; R_CPU=; R_CSW=; R_IDLE=; return; }
        t0=$(cpu_ticks "$pid")
        c0=$(ctx_switches "$pid")
    fi
    if [[ -n $PERF_OUT && $target == tenantgate && $mode == "$PERF_MODE" && $secs == "$DURATION" ]]; then
        perf record -g -p "$TG_PID" -o "$PERF_OUT" >"$TMP/perf.log" 2>&1 &
        PERF_PID=$!
        sleep 0.5
    fi
    m0=$(machine_ticks)
    PGPASSWORD=$BENCH_PASSWORD timeout -k 5 $((secs + 60)) \
        "$PGBENCH" -n -S -M "$mode" -c "$CLIENTS" -j "$JOBS" -T "$secs" \
        -h 127.0.0.1 -p "$port" -U "$user" "$DBNAME" >"$out" 2>&1 || rc=$?
    m1=$(machine_ticks)
    if [[ -n $PERF_PID ]]; then
        kill -INT "$PERF_PID" 2>/dev/null; wait "$PERF_PID" 2>/dev/null || true; PERF_PID=
        log "perf data in $PERF_OUT"
    fi
    [[ -n $pid ]] && t1=$(cpu_ticks "$pid" 2>/dev/null || echo "$t0")
    [[ -n $pid ]] && c1=$(ctx_switches "$pid")

    R_TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$out" | head -1)
    R_TXNS=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out" | head -1)
    R_FAILED=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out" | head -1)
    R_LAT=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$out" | head -1)
    R_CPU=
    R_CSW=
    # The machine's idle share over the run (pgbench's connection set-up
    # and wind-down included).
    R_IDLE=$(awk -v a="$m0" -v b="$m1" 'BEGIN { split(a, x, " "); split(b, y, " ");
        t = y[2] - x[2]; if (t > 0) printf "%.1f", 100 * (y[1] - x[1]) / t }')
    if [[ -n $pid && -n $R_TXNS && $R_TXNS -gt 0 ]]; then
        R_CPU=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$R_TXNS" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')
        R_CSW=$(awk -v d=$((c1 - c0)) -v n="$R_TXNS" 'BEGIN { printf "%.2f", d / n }')
    fi
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        R_STATUS="HUNG"
    elif [[ $rc -ne 0 ]] || grep -q 'aborted' "$out"; then
        R_STATUS="ABORTED"
    elif [[ -z $R_TPS ]]; then
        R_STATUS="NO-TPS"
    elif [[ -n $R_FAILED && $R_FAILED != 0 ]]; then
        R_STATUS="FAILED"
    elif [[ -z $R_FAILED ]]; then
        R_STATUS="ok?"   # this pgbench prints no failed-transactions line
    else
        R_STATUS="ok"
    fi
    if [[ $R_STATUS != ok ]]; then
        log "$target -M $mode: $R_STATUS (pgbench exit $rc); last lines of its output:"
        grep -v '^\(transaction type\|scaling factor\|query mode\|number of clients\|number of threads\|maximum number\|duration\)' "$out" \
            | tail -8 | sed 's/^/    /' >&2
    fi
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before the runs: $LOAD_BEFORE; nproc $(nproc)"
for target in "${TARGETS[@]}"; do
    log "warm-up $target (${WARMUP}s, -M simple)"
    run_one "$target" simple "$WARMUP" "$TMP/runs/warmup-$target.log"
done

# median VALUES... -> the median of the non-empty values ("" if none)
median() {
    printf '%s\n' "$@" | { grep -v '^$' || true; } | sort -g \
        | awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

declare -A ROUND_TPS
for round in $(seq "$ROUNDS"); do
    for mode in $MODES; do
        # Rotate the order, so no target always runs first (or last).
        n=${#TARGETS[@]}
        for i in $(seq 0 $((n - 1))); do
            target=${TARGETS[$(((i + round - 1) % n))]}
            log "round $round/$ROUNDS: measure $target -M $mode (${DURATION}s)"
            run_one "$target" "$mode" "$DURATION" "$TMP/runs/$mode-$target-$round.log"
            key=$mode/$target
            ROUND_TPS[$key/$round]=${R_TPS:-}
            TPS[$key]+=" ${R_TPS:-}"
            TXNS[$key]+=" ${R_TXNS:-}"
            FAILED[$key]=$(( ${FAILED[$key]:-0} + ${R_FAILED:-0} ))
            LAT[$key]+=" ${R_LAT:-}"
            CPU_US[$key]+=" ${R_CPU:-}"
            CSW[$key]+=" ${R_CSW:-}"
            IDLE[$key]+=" ${R_IDLE:-}"
            # A target's status is its worst round's.
            if [[ -z ${STATUS[$key]:-} || ${STATUS[$key]} == ok* ]]; then
                STATUS[$key]=$R_STATUS
            fi
        done
    done
done
for key in "${!STATUS[@]}"; do
    # shellcheck disable=SC2086
    {
        TPS[$key]=$(median ${TPS[$key]})
        TXNS[$key]=$(median ${TXNS[$key]})
        LAT[$key]=$(median ${LAT[$key]})
        CPU_US[$key]=$(median ${CPU_US[$key]})
        CSW[$key]=$(median ${CSW[$key]})
        IDLE[$key]=$(median ${IDLE[$key]})
    }
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# -------------------------------------------------------------- report ----

# ratio MODE TARGET_A TARGET_B -> TPS a/b with 2 decimals; "n/a (...)" when
# either run did not finish cleanly (an aborted run's TPS is partial).
ratio() {
    local a=$1/$2 b=$1/$3
    if [[ ${STATUS[$a]:-} != ok* ]]; then echo "n/a ($2 ${STATUS[$a]:-})"; return; fi
    if [[ ${STATUS[$b]:-} != ok* ]]; then echo "n/a ($3 ${STATUS[$b]:-})"; return; fi
    awk -v a="${TPS[$a]}" -v b="${TPS[$b]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
}

echo
echo "pgbench -S: clients=$CLIENTS jobs=$JOBS duration=${DURATION}s scale=$SCALE pool=$POOL (both proxies: transaction pooling; tenantgate workers=${TG_WORKERS:-default})"
if [[ $REWRITE == 1 ]]; then
    echo "tenantgate REWRITES: user $BENCH_USER is tenant t1, [tenancy] column tenant_id (PgBouncer and direct run the statements as pgbench sends them)"
else
    echo "tenantgate in pass-through mode (no [tenancy])"
fi
echo "each figure is the median of $ROUNDS rounds (failed: the sum)"
echo "machine: nproc=$(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); load avg before: $LOAD_BEFORE, after: $LOAD_AFTER"
echo "sessions (sid): pgbench $(session_of $$), pgbouncer $(session_of "$PGB_PID"), tenantgate $(session_of "$TG_PID"); kernel.sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo n/a)"
echo "postgres: $("$PGBIN/postgres" --version); $("$PGBOUNCER" --version 2>/dev/null | head -1); tenantgate built at $TG_COMMIT"
echo
printf '%-9s %-11s %12s %12s %10s %8s %14s %11s %7s  %s\n' mode target tps transactions "lat ms" failed "proxy µs/txn" "ctxsw/txn" "idle %" status
for mode in $MODES; do
    for target in "${TARGETS[@]}"; do
        key=$mode/$target
        printf '%-9s %-11s %12s %12s %10s %8s %14s %11s %7s  %s\n' "$mode" "$target" \
            "${TPS[$key]:--}" "${TXNS[$key]:--}" "${LAT[$key]:--}" "${FAILED[$key]:--}" \
            "${CPU_US[$key]:--}" "${CSW[$key]:--}" "${IDLE[$key]:--}" "${STATUS[$key]}"
    done
done
echo
echo "TPS by round, and tenantgate/pgbouncer in that round"
for mode in $MODES; do
    for target in "${TARGETS[@]}"; do
        printf '%-9s %-11s' "$mode" "$target"
        for round in $(seq "$ROUNDS"); do printf ' %12s' "${ROUND_TPS[$mode/$target/$round]:--}"; done
        echo
    done
    printf '%-9s %-11s' "$mode" "tg/pgb"
    for round in $(seq "$ROUNDS"); do
        printf ' %12s' "$(awk -v a="${ROUND_TPS[$mode/tenantgate/$round]:-0}" -v b="${ROUND_TPS[$mode/pgbouncer/$round]:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "-" }')"
    done
    echo
    # Pooled over the rounds where both report a TPS (an aborted run's TPS
    # is partial: the status column above says which): total TPS against
    # total TPS, and in how many rounds tenantgate came out ahead.
    pooled=""
    for round in $(seq "$ROUNDS"); do
        pooled+="${ROUND_TPS[$mode/tenantgate/$round]:-0} ${ROUND_TPS[$mode/pgbouncer/$round]:-0} "
    done
    printf '%-9s %s\n' "$mode" "$(echo "$pooled" | awk '{
        for (i = 1; i < NF; i += 2) if ($i > 0 && $(i + 1) > 0) { a += $i; b += $(i + 1); n++; if ($i >= $(i + 1)) w++ }
        if (n > 0) printf "tg/pgb pooled over %d rounds: %.3f (tenantgate ahead in %d of them)", n, a / b, w
        else print "tg/pgb pooled: -" }')"
done
echo
echo "ratios of TPS (n/a where a run did not finish cleanly: its TPS is partial)"
printf '%-9s %22s %22s %22s\n' mode "tenantgate/pgbouncer" "tenantgate/direct" "pgbouncer/direct"
for mode in $MODES; do
    printf '%-9s %22s %22s %22s\n' "$mode" \
        "$(ratio "$mode" tenantgate pgbouncer)" \
        "$(ratio "$mode" tenantgate direct)" \
        "$(ratio "$mode" pgbouncer direct)"
done
if [[ " $MODES " == *" prepared "* && " $MODES " == *" simple "* ]]; then
    if [[ ${STATUS[prepared/tenantgate]} == ok* && ${STATUS[simple/pgbouncer]} == ok* ]]; then
        pp=$(awk -v a="${TPS[prepared/tenantgate]}" -v b="${TPS[simple/pgbouncer]}" 'BEGIN { printf "%.2f", a / b }')
    else
        pp="n/a"
    fi
    echo "tenantgate prepared / pgbouncer simple: $pp"
fi

# syscall_profile TARGET: strace -c over a short -M $PERF_MODE run; prints the
# proxy's system calls per transaction.
syscall_profile() {
    local target=$1 pid port user out
    pid=$(target_pid "$target"); port=$(target_port "$target"); user=$(target_user "$target")
    out=$TMP/runs/strace-$target
    strace -c -f -p "$pid" -o "$out.txt" >/dev/null 2>&1 &
    local spid=$!
    sleep 1
    PGPASSWORD=$BENCH_PASSWORD "$PGBENCH" -n -S -M "$PERF_MODE" -c "$CLIENTS" -j "$JOBS" -T 5 \
        -h 127.0.0.1 -p "$port" -U "$user" "$DBNAME" >"$out.pgbench" 2>&1 || true
    kill -INT "$spid" 2>/dev/null; wait "$spid" 2>/dev/null || true
    local n
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out.pgbench" | head -1)
    [[ -n $n && $n -gt 0 ]] || { echo "$target: no transactions under strace"; return; }
    echo "$target ($n transactions under strace):"
    awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
            e = (NF == 6) ? $5 : 0
            printf "    %-16s %6.2f per txn (%.2f failed)\n", $NF, $4 / n, e / n }' "$out.txt" \
        | sort -k2 -nr | head -8
}

if [[ $SYSCALLS == 1 ]]; then
    command -v strace >/dev/null || die "SYSCALLS=1 needs strace"
    echo
    echo "system calls per transaction (pgbench -S -M $PERF_MODE, 5 s under strace -c -f)"
    syscall_profile pgbouncer
    syscall_profile tenantgate
fi

# instructions TARGET -> user-space instructions per transaction of a second
# copy of TARGET's proxy run under callgrind (counters zeroed after a
# warm-up, so logins and start-up are not counted).
instructions() {
    local target=$1 port pid out cmd
    port=$(free_port)
    out=$TMP/runs/callgrind-$target.out
    case $target in
        tenantgate)
            sed "s/^listen = .*/listen = \"127.0.0.1:$port\"/" "$TMP/routing.toml" >"$TMP/routing-cg.toml"
            RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" \
                "$TG_BIN" --config "$TMP/routing-cg.toml" run >"$TMP/runs/callgrind-$target.log" 2>&1 &
            cmd=routing-cg.toml
            ;;
        pgbouncer)
            sed -e "s/^listen_port = .*/listen_port = $port/" \
                -e "s|^pidfile = .*|pidfile = $TMP/pgbouncer/pgbouncer-cg.pid|" \
                -e "s|^logfile = .*|logfile = $TMP/pgbouncer/pgbouncer-cg.log|" \
                "$TMP/pgbouncer/pgbouncer.ini" >"$TMP/pgbouncer/pgbouncer-cg.ini"
            [[ $IS_ROOT -eq 1 ]] && chown -R postgres: "$TMP/pgbouncer" "$TMP/runs"
            as_pg valgrind --tool=callgrind --callgrind-out-file="$out" \
                "$PGBOUNCER" "$TMP/pgbouncer/pgbouncer-cg.ini" >"$TMP/runs/callgrind-$target.log" 2>&1 &
            cmd=pgbouncer-cg.ini
            ;;
    esac
    for _ in $(seq 100); do
        pid=$(pgrep -n -f "callgrind.*$cmd" || true)
        [[ -n $pid ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.3
    done
    [[ -n $pid ]] || { echo "$target: did not start under callgrind"; return; }
    local bench=(-n -S -M "$PERF_MODE" -c 8 -j 1 -h 127.0.0.1 -p "$port" -U "$BENCH_USER" "$DBNAME")
    PGPASSWORD=$BENCH_PASSWORD "$PGBENCH" "${bench[@]}" -t 100 >/dev/null 2>&1 || true
    # callgrind_control must run as the process's user (pgbouncer: postgres).
    local ctl=(callgrind_control)
    [[ $target == pgbouncer ]] && ctl=(as_pg callgrind_control)
    "${ctl[@]}" -z "$pid" >/dev/null 2>&1 || true
    PGPASSWORD=$BENCH_PASSWORD "$PGBENCH" "${bench[@]}" -t "$INSTR_TXNS" >"$out.pgbench" 2>&1 || true
    "${ctl[@]}" -d "$pid" >/dev/null 2>&1 || true
    kill -INT "$pid" 2>/dev/null || true
    sleep 2
    local n ir
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out.pgbench" | head -1)
    ir=$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }' || true)
    if [[ -z $n || $n -eq 0 || -z $ir ]]; then
        echo "$target: no count (see $TMP/runs/callgrind-$target.log)"
        return
    fi
    awk -v t="$target" -v ir="$ir" -v n="$n" 'BEGIN { printf "%-11s %8.0f instructions per transaction (%d transactions)\n", t, ir / n, n }'
}

if [[ $INSTRUCTIONS == 1 ]]; then
    command -v valgrind >/dev/null && command -v callgrind_control >/dev/null \
        || die "INSTRUCTIONS=1 needs valgrind (apt-get install valgrind)"
    echo
    echo "user-space instructions per transaction (callgrind; pgbench -S -M $PERF_MODE, 8 clients)"
    instructions pgbouncer
    instructions tenantgate
fi

if grep -qiE 'error|panic' "$TMP/tenantgate.log"; then
    echo
    echo "tenantgate log (warnings and errors, last 20 lines):"
    tail -20 "$TMP/tenantgate.log" | sed 's/^/    /'
fi
