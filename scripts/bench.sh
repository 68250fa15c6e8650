#!/bin/bash
# make bench: pam_mfa against pam_google_authenticator, pam_oath and
# pam_permit, through real libpam under pam_wrapper and nss_wrapper. Prints
# figures; it is not a pass/fail test. pam_mfa's logins go through a
# `mfa serve` that this script starts for each N.
#
# Two ways of logging in, both measured (BENCH_MODES):
#   process  each login in a fresh C process (bench/pam_once.c), timed from
#            inside it: the module is loaded into a process that has not
#            loaded it, nor libgcc_s, before - as in sshd's, su's or
#            login's child. The figures the targets are judged on.
#   inproc   many logins in one Rust process (bench-login): libpam still
#            loads and unloads the module at each login, but libgcc_s stays
#            loaded, which flatters a Rust module.
#
# Environment knobs (defaults in brackets):
#   BENCH_NS          user counts to measure ["1000 10000 100000"]
#   BENCH_DIR         scratch directory, on the disk under test [/var/tmp]
#   BENCH_CHUNKS      the users of each N are logged in by this many
#                     interleaved runs per module, so load changes on the
#                     machine hit every module alike [10]
#   BENCH_GA_MAX      most pam_google_authenticator logins per N, spread
#                     evenly over the users (every k-th user) [25000]
#   BENCH_MFA_MAX     most pam_mfa logins per N [25000]
#   BENCH_OATH_MAX    most pam_oath logins per N; it rewrites its whole users
#                     file at each login [2000 at N<=10000, 200 above]
#   pam_permit logs every user in.
#   BENCH_BUDGET      seconds of timed logins per module and N; after the
#                     first chunk a slower module is thinned to fit [60]
#   BENCH_PAR_N       users for the parallel runs [10000]
#   BENCH_PAR_LOGINS  logins per parallel run, spread over those users; two
#                     rounds of 2, 8 and 40 processes [5000]
#   BENCH_MODES       ["process inproc"]
#   BENCH_PROFILE=0   skip the callgrind/strace counts (they need valgrind, strace)
#   BENCH_IMPORT      users imported with `mfa admin import-google-authenticator`,
#                     one process each; the rest are written through the library [100]
#   BENCH_KEEP=1      keep the scratch directory
#   BENCH_PG          1: also pam_mfa on PostgreSQL, a column beside SQLite
#                     (module "mfapg"): a throwaway server this script starts
#                     (initdb from /usr/lib/postgresql/*/bin, run as the
#                     postgres user, on 127.0.0.1), each N's users copied into
#                     it from the SQLite store by `mfa admin migrate --to URL`,
#                     and a second daemon on it; 0: not [1 when the server
#                     programs and a postgres user exist]
#   BENCH_PG_FSYNC    fsync of that server [on: a commit is on disk before
#                     the answer, as pam_mfa promises and production runs]
#   BENCH_FAIR        1: the fairness figure at N=BENCH_PAR_N: the median
#                     login time of probe users alone and while
#                     BENCH_FAIR_PROCS processes log in other users, per
#                     store; pam_permit probes in the same windows show what
#                     the machine's load alone does [1]
#   BENCH_FAIR_LOGINS probe logins per window, each a fresh process [50]
#   BENCH_FAIR_PROCS  processes logging in the other users [40]
#   BENCH_FAIR_PACE   a second loaded window where those processes log in
#                     at this fraction of the rate they reached flat out,
#                     evenly spaced: a load the daemon can keep up with, so
#                     what remains is waiting on each other, not on the CPUs
#                     (0: skip) [0.5]
set -euo pipefail

# pam_wrapper keeps its copy of libpam and of the services in /tmp/pam.X (X
# one of a few dozen characters) and deletes it at exit; another pam_wrapper
# user on the machine can pick the same X and delete it under us (pam_start
# then fails). A private /tmp, in a mount namespace of our own, avoids that.
if [ "${BENCH_PRIVATE_TMP:-}" != done ] && unshare -m true 2> /dev/null; then
    exec unshare -m env BENCH_PRIVATE_TMP=done \
        bash -c 'mount -t tmpfs -o mode=1777 bench-tmp /tmp && exec bash "$@"' bash "$0" "$@"
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REL=$CARGO_TARGET_DIR/release
# The bench crate builds pam-mfa as a dependency; its own target directory
# keeps those artifacts from mixing with the top-level build's.
BENCH_TARGET=$CARGO_TARGET_DIR/bench
BIN=$BENCH_TARGET/release
NS=${BENCH_NS:-"1000 10000 100000"}
CHUNKS=${BENCH_CHUNKS:-10}
GA_MAX=${BENCH_GA_MAX:-25000}
MFA_MAX=${BENCH_MFA_MAX:-25000}
PAR_N=${BENCH_PAR_N:-10000}
PAR_LOGINS=${BENCH_PAR_LOGINS:-5000}
[ "$PAR_LOGINS" -le $((PAR_N / 2)) ] || PAR_LOGINS=$((PAR_N / 2))
BUDGET=${BENCH_BUDGET:-60}
PROFILE=${BENCH_PROFILE:-1}
MODES=${BENCH_MODES:-"process inproc"}
IMPORT=${BENCH_IMPORT:-100}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -n 1)
pg_present() { [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] && id postgres > /dev/null 2>&1; }
PG=${BENCH_PG:-$(pg_present && echo 1 || echo 0)}
PG_FSYNC=${BENCH_PG_FSYNC:-on}
FAIR=${BENCH_FAIR:-1}
FAIR_LOGINS=${BENCH_FAIR_LOGINS:-50}
FAIR_PROCS=${BENCH_FAIR_PROCS:-40}
FAIR_PACE=${BENCH_FAIR_PACE:-0.5}
MODULES="permit ga oath mfa"
[ "$PG" = 0 ] || MODULES="$MODULES mfapg"
SECURITY=${BENCH_SECURITY_DIR:-/lib/x86_64-linux-gnu/security}
COMMAND_LINE="$0${*:+ $*}"
STARTED=$(date +%s)

die() { echo "bench: $*" >&2; exit 1; }
LIBS=$(ldconfig -p)
for f in libpam_wrapper.so libnss_wrapper.so; do
    [[ $LIBS == *"$f"* ]] || die "$f missing (Debian: apt-get install libpam-wrapper libnss-wrapper)"
done
for m in pam_permit pam_google_authenticator pam_oath; do
    [ -e "$SECURITY/$m.so" ] || die "$SECURITY/$m.so missing (libpam-google-authenticator, libpam-oath)"
done
if [ "$PROFILE" = 1 ] && ! { command -v valgrind && command -v strace; } > /dev/null; then
    echo "bench: valgrind or strace missing; skipping instruction and fsync counts" >&2
    PROFILE=0
fi
[ "$(id -u)" = 0 ] || die "run as root: the google-authenticator files must belong to the synthetic users"
[ "$PG" = 0 ] || pg_present || die "BENCH_PG=1 but no PostgreSQL server programs or postgres user (Debian: apt-get install postgresql)"

echo "== building (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
CARGO_TARGET_DIR=$BENCH_TARGET cargo build --release --quiet --manifest-path "$ROOT/bench/Cargo.toml"

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/pam_mfa-bench.XXXXXX")
# pam_google_authenticator opens each file as its user: they must reach their homes.
chmod 755 "$WORK"
cleanup() { [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT
cc -O2 -shared -fPIC -o "$WORK/libnss_bench.so" "$ROOT/bench/nss_bench.c"
cc -O2 -o "$WORK/pam_once" "$ROOT/bench/pam_once.c" -lpam
OUT=$WORK/results.txt
: > "$OUT"

# Runs bench-login for tree $1 with a minimal environment: nss_wrapper and
# pam_wrapper call getenv() often, and a long environment would bill them.
# --valgrind FILE / --strace FILE run it under callgrind / strace -c.
login() {
    local d=$1 n=$2; shift 2
    local args=() wrap=()
    while [ $# -gt 0 ]; do
        case $1 in
            --valgrind) wrap=(valgrind --tool=callgrind "--callgrind-out-file=$2"); shift 2 ;;
            --strace) wrap=(strace -f -c -o "$2"); shift 2 ;;
            *) args+=("$1"); shift ;;
        esac
    done
    env -i PATH=/usr/bin:/bin \
        LD_PRELOAD=libpam_wrapper.so:libnss_wrapper.so \
        PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$d/pam.d" \
        NSS_WRAPPER_PASSWD="$d/passwd" NSS_WRAPPER_GROUP="$d/group" \
        NSS_WRAPPER_MODULE_SO_PATH="$WORK/libnss_bench.so" NSS_WRAPPER_MODULE_FN_PREFIX=bench \
        BENCH_NSS_USERS="$n" BENCH_NSS_HOME="$d/home" \
        "${wrap[@]}" "$BIN/bench-login" --users "$d/users.txt" "${args[@]}"
}

# The daemon for tree $1, with the same users (nss_wrapper and the bench
# NSS module) as the logins; $3 is its directory in the tree: mfa (SQLite)
# or mfa-pg (PostgreSQL). DAEMONS[$3] holds its pid.
declare -A DAEMONS=()
start_daemon() {
    local d=$1 n=$2 sub=${3:-mfa} i pid
    rm -f "$d/$sub/mfa.sock"
    env -i PATH=/usr/bin:/bin \
        LD_PRELOAD=libnss_wrapper.so \
        NSS_WRAPPER_PASSWD="$d/passwd" NSS_WRAPPER_GROUP="$d/group" \
        NSS_WRAPPER_MODULE_SO_PATH="$WORK/libnss_bench.so" NSS_WRAPPER_MODULE_FN_PREFIX=bench \
        BENCH_NSS_USERS="$n" BENCH_NSS_HOME="$d/home" \
        "$REL/mfa" --config "$d/$sub/pam_mfa.toml" serve > "$d/daemon.$sub.log" 2>&1 &
    pid=$!
    DAEMONS[$sub]=$pid
    for i in $(seq 200); do
        [ -S "$d/$sub/mfa.sock" ] && return 0
        kill -0 "$pid" 2> /dev/null || { cat "$d/daemon.$sub.log"; die "mfa serve ($sub) exited"; }
        sleep 0.05
    done
    die "mfa serve did not listen on $d/$sub/mfa.sock"
}
stop_daemon() {
    local sub=${1:-mfa} pid=${DAEMONS[${1:-mfa}]:-}
    [ -n "$pid" ] || return 0
    kill "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    unset "DAEMONS[$sub]"
}
stop_daemons() { local sub; for sub in "${!DAEMONS[@]}"; do stop_daemon "$sub"; done; }
# CPU seconds (user + system) daemon $1 has used so far.
daemon_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/${DAEMONS[${1:-mfa}]}/stat"; }

# ---- the throwaway PostgreSQL server (BENCH_PG=1), as tests/common/postgres.rs starts one
PG_PID= PG_DIR= PG_PORT=
PG_PASSWORD=bench-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')
# A server program as the postgres user (the server refuses root), with
# neither our environment nor the login's wrappers.
pg_as() {
    local program=$1; shift
    env -i PATH=/usr/bin:/bin LC_ALL=C setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" \
        --clear-groups "$PG_BIN/$program" "$@"
}
# SQL as the superuser over the unix socket, in database $1.
pg_sql() { local db=$1; shift; pg_as psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U postgres -d "$db" -c "$*"; }
pg_start() {
    local p i
    PG_DIR=$WORK/pg
    mkdir -m 700 "$PG_DIR"
    chown postgres: "$PG_DIR"
    pg_as initdb --auth-local=trust --auth-host=scram-sha-256 -U postgres -E UTF8 --locale=C \
        -D "$PG_DIR/data" > "$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log"; die "initdb failed"; }
    # A port nothing listens on.
    for p in $(seq $((50000 + RANDOM % 10000)) 65000); do
        (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null || { PG_PORT=$p; break; }
    done
    # Not through pg_as: env and setpriv exec, so $! is the postmaster,
    # whose process tree pg_cpu reads and which pg_stop signals.
    env -i PATH=/usr/bin:/bin LC_ALL=C setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" \
        --clear-groups "$PG_BIN/postgres" -D "$PG_DIR/data" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
        -c "unix_socket_directories=$PG_DIR" -c "fsync=$PG_FSYNC" -c max_connections=300 \
        > "$PG_DIR/server.log" 2>&1 &
    PG_PID=$!
    for i in $(seq 600); do
        pg_as pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
        kill -0 "$PG_PID" 2> /dev/null || { cat "$PG_DIR/server.log"; die "postgres exited"; }
        sleep 0.05
    done
    pg_sql postgres "CREATE ROLE mfa LOGIN PASSWORD '$PG_PASSWORD'" > /dev/null
    (umask 077 && printf '%s\n' "$PG_PASSWORD" > "$WORK/pg-password")
    "$REL/mfa" admin generate-key "$WORK/seal.key" > /dev/null
    echo "PostgreSQL $(pg_as postgres --version | awk '{print $3}') on 127.0.0.1:$PG_PORT, fsync=$(pg_sql postgres 'SHOW fsync'), synchronous_commit=$(pg_sql postgres 'SHOW synchronous_commit'), data in $PG_DIR (on the scratch disk)"
}
pg_stop() {
    [ -n "$PG_PID" ] || return 0
    kill -INT "$PG_PID" 2> /dev/null || true
    wait "$PG_PID" 2> /dev/null || true
    PG_PID=
}
# CPU seconds the server has used so far: the postmaster, its live
# processes (a backend per pooled connection) and those it has reaped.
pg_cpu() {
    local pids
    pids=$(pgrep -P "$PG_PID" || true)
    { awk '{print $14 + $15 + $16 + $17}' "/proc/$PG_PID/stat"
      for p in $pids; do awk '{print $14 + $15}' "/proc/$p/stat" 2> /dev/null || true; done
    } | awk -v hz="$(getconf CLK_TCK)" '{s += $1} END {printf "%.2f", s / hz}'
}
# WAL syncs (the server's, all databases) and commits in database $1 so
# far: per login, the PostgreSQL counterpart of the fsyncs counted above.
pg_syncs() { pg_sql postgres "SELECT (SELECT wal_sync FROM pg_stat_wal) || ' ' || xact_commit FROM pg_stat_database WHERE datname = '$1'"; }
pg_url() { echo "postgresql://mfa@127.0.0.1:$PG_PORT/$1?sslmode=disable"; }
# Tree $1's users in PostgreSQL database mfa_n$2, copied from a copy of its
# SQLite store by `mfa admin migrate` (the SQLite column's own file is left
# as seeded), and a daemon config and PAM service (bench-mfapg) for it.
pg_seed() {
    local d=$1 n=$2 db=mfa_n$2 t0 url
    url=$(pg_url "$db")
    pg_sql postgres "CREATE DATABASE $db OWNER mfa" > /dev/null
    mkdir -m 700 "$d/migrate-src" "$d/mfa-pg"
    cp -a "$d/mfa/db/mfa.sqlite3" "$d/migrate-src/"
    sed "s|^database = .*|database = \"$d/migrate-src/mfa.sqlite3\"|; /^socket = /d" "$d/mfa/pam_mfa.toml" > "$d/migrate-src/pam_mfa.toml"
    printf 'secrets_key_file = "%s"\ndatabase_password_file = "%s"\n' "$WORK/seal.key" "$WORK/pg-password" >> "$d/migrate-src/pam_mfa.toml"
    t0=$(date +%s.%N)
    "$REL/mfa" --config "$d/migrate-src/pam_mfa.toml" admin migrate --to "$url" > "$d/migrate.log" 2>&1 ||
        { cat "$d/migrate.log"; die "mfa admin migrate failed at N=$n"; }
    echo "MIGRATE n=$n s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}') $(tr '\n' ' ' < "$d/migrate.log")"
    rm -rf "$d/migrate-src"
    (umask 077 && printf 'database = "%s"\nsocket = "%s"\npolicy = "optional"\nsecrets_key_file = "%s"\ndatabase_password_file = "%s"\n' \
        "$url" "$d/mfa-pg/mfa.sock" "$WORK/seal.key" "$WORK/pg-password" > "$d/mfa-pg/pam_mfa.toml")
    sed "s|$d/mfa/pam_mfa.toml|$d/mfa-pg/pam_mfa.toml|; s|$d/mfa/mfa.sock|$d/mfa-pg/mfa.sock|" \
        "$d/pam.d/bench-mfa" > "$d/pam.d/bench-mfapg"
}
trap 'stop_daemons; pg_stop; cleanup' EXIT

# The import refuses names the system does not know, so the seed (and the
# `mfa` it runs) sees the same users as the daemon; the seed writes the
# passwd and group files before it runs `mfa`.
seed() {
    local d=$1 n=$2
    env -i PATH=/usr/bin:/bin \
        LD_PRELOAD=libnss_wrapper.so \
        NSS_WRAPPER_PASSWD="$d/passwd" NSS_WRAPPER_GROUP="$d/group" \
        NSS_WRAPPER_MODULE_SO_PATH="$WORK/libnss_bench.so" NSS_WRAPPER_MODULE_FN_PREFIX=bench \
        BENCH_NSS_USERS="$n" BENCH_NSS_HOME="$d/home" \
        "$BIN/bench-seed" --dir "$d" --n "$n" --mfa "$REL/mfa" --mfa-so "$REL/libpam_mfa.so" \
        --security-dir "$SECURITY" --import "$IMPORT"
}

# stride that spreads at most $2 logins over $1 users (0 = all)
stride() { local n=$1 max=$2; if [ "$max" -le 0 ] || [ "$n" -le "$max" ]; then echo 1; else echo $(( (n + max - 1) / max )); fi; }

# mean and median of a file of microseconds
stats() { sort -n "$1" | awk '{a[NR]=$1; s+=$1} END {printf "%d %.1f %.1f\n", NR, s/NR, a[int((NR+1)/2)]}'; }

echo "== pam_mfa bench: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "command: $COMMAND_LINE (in $ROOT, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown))"
echo "knobs: $(env | grep '^BENCH_' | grep -v '^BENCH_PRIVATE_TMP=' | sort | paste -sd' ')"
[ "${BENCH_PRIVATE_TMP:-}" = done ] || echo "note: no private /tmp (unshare -m failed); pam_wrapper runs may collide with others"
echo "host: $(nproc) CPUs, $(uname -sr), scratch on $(findmnt -no FSTYPE -T "$WORK" 2>/dev/null || stat -f -c %T "$WORK"), load $(cut -d' ' -f1-3 /proc/loadavg)"

# Per-login instructions (callgrind: 25 logins minus 5, so process start
# and first loads cancel out) and fsync/fdatasync calls (strace, 50 logins):
# unlike wall-clock time, these do not move with other load on the machine.
# Module k uses users k*80 .. k*80+79, which the timed runs leave alone;
# users 320..327 are kept for the resident-memory runs (two per module).
PROFILE_USERS=320
RESERVED=328
profile() {
    local d=$1 n=$2 k=0 m c syncs st
    local -a ir
    for m in permit ga oath mfa; do
        ir=()
        for c in 5 25; do
            login "$d" "$n" --service "bench-$m" --from $((k * 80 + (c == 5 ? 0 : 5))) --count "$c" \
                --valgrind "$d/cg.$m.$c" > /dev/null 2> "$d/vg.$m.$c" || die "callgrind run failed for $m"
            ir+=("$(sed -n 's/.*Collected : //p' "$d/vg.$m.$c")")
        done
        # pam_mfa's fsyncs happen in the daemon: trace it too.
        st=
        if [ "$m" = mfa ]; then
            strace -f -c -o "$d/strace.daemon" -p "${DAEMONS[mfa]}" 2> /dev/null &
            st=$!
            sleep 1
        fi
        login "$d" "$n" --service "bench-$m" --from $((k * 80 + 30)) --count 50 --strace "$d/strace.$m" \
            > /dev/null || die "strace run failed for $m"
        if [ -n "$st" ]; then
            kill -INT "$st"
            wait "$st" || true
            cat "$d/strace.daemon" >> "$d/strace.$m"
        fi
        syncs=$(awk '$NF ~ /^(fsync|fdatasync)$/ {s += $4} END {print s + 0}' "$d/strace.$m")
        echo "PROFILE N=$n module=$m instructions_per_login=$(( (ir[1] - ir[0]) / 20 )) fsyncs_per_login=$(awk -v s="$syncs" 'BEGIN {printf "%.2f", s / 50}')" | tee -a "$OUT"
        k=$((k + 1))
    done
}

# Tree $1 (N=PAR_N) with its store as seeded and its daemon restarted on it:
# a TOTP code counts once per step, so runs that log in the same users
# each start from a fresh copy.
sqlite_fresh() {
    local d=$1
    stop_daemon mfa
    rm -rf "$d/mfa/db" && cp -a "$WORK/par-db" "$d/mfa/db"
    start_daemon "$d" "$PAR_N" mfa
}
pg_fresh() {
    local d=$1
    stop_daemon mfa-pg
    pg_sql postgres "DROP DATABASE mfa_n$PAR_N" > /dev/null
    pg_sql postgres "CREATE DATABASE mfa_n$PAR_N TEMPLATE mfa_par_seed OWNER mfa" > /dev/null
    start_daemon "$d" "$PAR_N" mfa-pg
}

# One loaded window for fairness(): probe logins of users $4.. of module $2
# (and pam_permit) while FAIR_PROCS processes log in the users from
# RESERVED on, each once, flat out or at $5 logins/s. Prints the FAIR line.
fair_window() {
    local d=$1 m=$2 sub=$3 from=$4 rate=$5 bg cpu0 i covered count=()
    local -a med rate_arg=()
    if [ "$rate" != 0 ]; then
        rate_arg=(--rate "$rate")
        # Enough users for 20 s, far longer than the probes take.
        count=(--count "$(awk -v r="$rate" 'BEGIN {printf "%d", r * 20}')")
    fi
    cpu0=$(daemon_cpu "$sub")
    login "$d" "$PAR_N" --service "bench-$m" --procs "$FAIR_PROCS" "${rate_arg[@]}" --from "$RESERVED" "${count[@]}" \
        > "$d/fair.background" &
    bg=$!
    # The probes start once the background logins reach the daemon.
    for i in $(seq 400); do
        awk -v a="$cpu0" -v b="$(daemon_cpu "$sub")" 'BEGIN {exit !(b - a >= 0.05)}' && break
        sleep 0.05
    done
    rm -f "$d/fair.$m.loaded" "$d/fair.permit.loaded"
    login "$d" "$PAR_N" --service "bench-$m" --from "$from" --count "$FAIR_LOGINS" --driver "$WORK/pam_once" \
        --times "$d/fair.$m.loaded" > "$d/fair.last" || die "probe ($m) failed"
    grep -q 'errors=0' "$d/fair.last" || { cat "$d/fair.last"; die "probe logins ($m, under load) failed"; }
    login "$d" "$PAR_N" --service bench-permit --from "$from" --count "$FAIR_LOGINS" --driver "$WORK/pam_once" \
        --times "$d/fair.permit.loaded" > /dev/null || die "probe (permit) failed"
    # The load must have lasted through both probe windows.
    covered=$(kill -0 "$bg" 2> /dev/null && echo yes || echo no)
    wait "$bg" || die "background logins ($m) failed"
    for f in "$m.alone" "$m.loaded" permit.alone permit.loaded; do
        med+=("$(stats "$d/fair.$f" | awk '{print $3}')")
    done
    echo "FAIR module=$m procs=$FAIR_PROCS load=$([ "$rate" = 0 ] && echo flat-out || echo "paced")" \
        "probes=$FAIR_LOGINS alone_us_median=${med[0]} loaded_us_median=${med[1]}" \
        "ratio=$(awk -v a="${med[0]}" -v b="${med[1]}" 'BEGIN {printf "%.2f", b / a}')" \
        "permit_alone_us_median=${med[2]} permit_loaded_us_median=${med[3]}" \
        "permit_ratio=$(awk -v a="${med[2]}" -v b="${med[3]}" 'BEGIN {printf "%.2f", b / a}')" \
        "background_$(sed -n 's/^RESULT service=[^ ]* //p' "$d/fair.background" | tr ' ' '\n' |
            grep -E '^(logins|errors|per_s)=' | paste -sd' ' | sed 's/ / background_/g')" \
        "load_covered_probes=$covered" | tee -a "$OUT"
}

# The fairness figure for module $2 (mfa or mfapg) in tree $1, store reset
# by $3: the median of FAIR_LOGINS probe logins (each a fresh process,
# pam_once) of users 0.. alone, then of users FAIR_LOGINS.. while
# FAIR_PROCS processes log in other users flat out, then (fresh store) at
# FAIR_PACE times the rate they reached. pam_permit probes in the same
# windows measure what the load does to any login on this machine.
fairness() {
    local d=$1 m=$2 reset=$3 sub rate
    sub=$([ "$m" = mfapg ] && echo mfa-pg || echo mfa)
    "$reset" "$d"
    rm -f "$d"/fair.*
    login "$d" "$PAR_N" --service bench-permit --from 0 --count "$FAIR_LOGINS" --driver "$WORK/pam_once" \
        --times "$d/fair.permit.alone" > /dev/null || die "probe (permit) failed"
    login "$d" "$PAR_N" --service "bench-$m" --from 0 --count "$FAIR_LOGINS" --driver "$WORK/pam_once" \
        --times "$d/fair.$m.alone" > "$d/fair.last" || die "probe ($m) failed"
    grep -q 'errors=0' "$d/fair.last" || { cat "$d/fair.last"; die "probe logins ($m, alone) failed"; }
    fair_window "$d" "$m" "$sub" "$FAIR_LOGINS" 0
    [ "$FAIR_PACE" != 0 ] || return 0
    rate=$(sed -n 's/.* per_s=\([0-9]*\).*/\1/p' "$d/fair.background" | awk -v f="$FAIR_PACE" '{printf "%d", $1 * f}')
    "$reset" "$d"
    fair_window "$d" "$m" "$sub" "$FAIR_LOGINS" "$rate"
}

if [ "$PG" = 1 ]; then pg_start; fi
for n in $NS; do
    d=$WORK/n$n
    echo "== N=$n: seeding"
    seed "$d" "$n" | tee -a "$OUT"
    [ "$n" = "$PAR_N" ] && cp -a "$d/mfa/db" "$WORK/par-db"
    start_daemon "$d" "$n"
    if [ "$PG" = 1 ]; then
        echo "== N=$n: the same users into PostgreSQL (mfa admin migrate --to)"
        pg_seed "$d" "$n" | tee -a "$OUT"
        # The parallel and fairness runs start each from a fresh copy of it.
        [ "$n" = "$PAR_N" ] && pg_sql postgres "CREATE DATABASE mfa_par_seed TEMPLATE mfa_n$n OWNER mfa" > /dev/null
        start_daemon "$d" "$n" mfa-pg
    fi
    first=0
    [ "$n" -gt $((RESERVED * 2)) ] && first=$RESERVED
    if [ "$PROFILE" = 1 ] && [ "$first" -gt 0 ]; then
        echo "== N=$n: instruction counts (in the login process) and fsyncs (login process and daemon), users 0..$((PROFILE_USERS - 1))"
        profile "$d" "$n"
    fi
    oath_max=${BENCH_OATH_MAX:-$([ "$n" -le 10000 ] && echo 2000 || echo 200)}
    # Each mode logs in the same selection of users; a TOTP code can be
    # used once per step, so a mode starts on a fresh 30-second step.
    for mode in $MODES; do
        declare -A sel=(
            [permit]=1
            [ga]=$(stride $((n - first)) "$GA_MAX")
            [oath]=$(stride $((n - first)) "$oath_max")
            [mfa]=$(stride $((n - first)) "$MFA_MAX")
            [mfapg]=$(stride $((n - first)) "$MFA_MAX")
        )
        [ "$PG" = 1 ] || unset 'sel[mfapg]'
        driver=()
        [ "$mode" = process ] && driver=(--driver "$WORK/pam_once")
        sleep $(( 31 - $(date +%s) % 30 ))
        echo "== N=$n, $mode: timed logins, users $first..$((n - 1)) (every k-th: permit ${sel[permit]}, ga ${sel[ga]}, oath ${sel[oath]}, mfa ${sel[mfa]}${sel[mfapg]:+, mfapg ${sel[mfapg]}})"
        rm -f "$d"/times.* "$d"/chunks.*
        cpu=0 cpu_pg=0 cpu_pgserver=0 pg_wal=0 pg_commits=0
        # Chunk c holds users first+c*size .. first+(c+1)*size-1; the modules take
        # turns chunk by chunk. After the first chunk, a module whose projected
        # time exceeds BENCH_BUDGET seconds is thinned to fit (see "logins" below).
        size=$(( (n - first + CHUNKS - 1) / CHUNKS ))
        for c in $(seq 0 $((CHUNKS - 1))); do
            for m in $MODULES; do
                s=${sel[$m]}
                lo=$(( first + c * size ))
                from=$(( first + ( (c * size + s - 1) / s ) * s ))
                end=$(( lo + size < n ? lo + size : n ))
                [ "$from" -lt "$end" ] || continue
                count=$(( (end - from + s - 1) / s ))
                case $m in
                    mfa) cpu0=$(daemon_cpu) ;;
                    mfapg) cpu0=$(daemon_cpu mfa-pg) pgcpu0=$(pg_cpu) syncs0=$(pg_syncs "mfa_n$n") ;;
                esac
                login "$d" "$n" --service "bench-$m" --from "$from" --count "$count" --stride "$s" \
                    "${driver[@]}" --times "$d/times.$m" > "$d/last.$m" || die "bench-login failed for $m"
                case $m in
                    mfa) cpu=$(awk -v a="$cpu" -v b="$cpu0" -v c="$(daemon_cpu)" 'BEGIN {print a + c - b}') ;;
                    mfapg)
                        cpu_pg=$(awk -v a="$cpu_pg" -v b="$cpu0" -v c="$(daemon_cpu mfa-pg)" 'BEGIN {print a + c - b}')
                        cpu_pgserver=$(awk -v a="$cpu_pgserver" -v b="$pgcpu0" -v c="$(pg_cpu)" 'BEGIN {print a + c - b}')
                        read -r w c < <(pg_syncs "mfa_n$n")
                        pg_wal=$((pg_wal + w - ${syncs0% *})) pg_commits=$((pg_commits + c - ${syncs0#* })) ;;
                esac
                grep -q 'errors=0' "$d/last.$m" || { cat "$d/last.$m"; tail -n 20 "$d"/daemon.*.log; die "$m ($mode): logins failed at N=$n"; }
                sed -n "s/.* us_mean=\([0-9.]*\).*/$c \1/p" "$d/last.$m" >> "$d/chunks.$m"
                if [ "$c" = 0 ]; then
                    sel[$m]=$(awk -v s="$s" -v left=$(( (n - end) / s )) -v b="$BUDGET" \
                        '{t += $1} END {p = t / NR * left / 1e6; print (p > b) ? int(s * p / b) + 1 : s}' "$d/times.$m")
                fi
            done
        done
        for m in $MODULES; do
            read -r cnt mean median < <(stats "$d/times.$m")
            echo "RESULT N=$n mode=$mode module=$m logins=$cnt us_mean=$mean us_median=$median" | tee -a "$OUT"
        done
        echo "DAEMON N=$n mode=$mode cpu_us_per_login=$(awk -v c="$cpu" -v n="$(wc -l < "$d/times.mfa")" 'BEGIN {printf "%.0f", c * 1e6 / n}')" | tee -a "$OUT"
        [ "$PG" = 0 ] || echo "DAEMON N=$n mode=$mode store=pg cpu_us_per_login=$(awk -v c="$cpu_pg" -v n="$(wc -l < "$d/times.mfapg")" 'BEGIN {printf "%.0f", c * 1e6 / n}') postgres_cpu_us_per_login=$(awk -v c="$cpu_pgserver" -v n="$(wc -l < "$d/times.mfapg")" 'BEGIN {printf "%.0f", c * 1e6 / n}') wal_syncs_per_login=$(awk -v c="$pg_wal" -v n="$(wc -l < "$d/times.mfapg")" 'BEGIN {printf "%.2f", c / n}') commits_per_login=$(awk -v c="$pg_commits" -v n="$(wc -l < "$d/times.mfapg")" 'BEGIN {printf "%.2f", c / n}')" | tee -a "$OUT"
        # pam_mfa / google_authenticator chunk by chunk (the two ran minutes
        # apart at most), median over the chunks: steadier than the ratio of means.
        echo "RATIO N=$n mode=$mode mfa_over_ga_chunk_median=$(join "$d/chunks.mfa" "$d/chunks.ga" |
            awk '{print $2 / $3}' | sort -g | awk '{a[NR] = $1} END {printf "%.2f", a[int((NR + 1) / 2)]}')" | tee -a "$OUT"
        [ "$PG" = 0 ] || echo "RATIO N=$n mode=$mode store=pg mfa_over_ga_chunk_median=$(join "$d/chunks.mfapg" "$d/chunks.ga" |
            awk '{print $2 / $3}' | sort -g | awk '{a[NR] = $1} END {printf "%.2f", a[int((NR + 1) / 2)]}')" | tee -a "$OUT"
        unset sel
    done
    stop_daemons
    [ "$n" = "$PAR_N" ] || [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$d"
done

if [ -d "$WORK/par-db" ]; then
    d=$WORK/n$PAR_N
    ps=$(stride $((PAR_N - RESERVED)) "$PAR_LOGINS")
    start_daemon "$d" "$PAR_N"
    echo "== parallel logins, pam_mfa on SQLite, N=$PAR_N (users on a stride of $ps, each once, fresh copy of the database per run)"
    # Two rounds, the second on other users, to show how much the figures move.
    for r in 0 1; do
        for p in 2 8 40; do
            rm -rf "$d/mfa/db" && cp -a "$WORK/par-db" "$d/mfa/db"
            login "$d" "$PAR_N" --service bench-mfa --procs "$p" --from $((RESERVED + r)) --stride "$ps" |
                sed "s/^RESULT /RESULT N=$PAR_N /" | tee -a "$OUT"
            kill -0 "${DAEMONS[mfa]}" 2> /dev/null || { tail -n 5 "$d/daemon.mfa.log"; die "mfa serve died during the parallel logins"; }
        done
    done
    stop_daemon
    if [ "$PG" = 1 ]; then
        echo "== parallel logins, pam_mfa on PostgreSQL, N=$PAR_N (the same users, fresh copy of the database per run)"
        for r in 0 1; do
            for p in 2 8 40; do
                pg_fresh "$d"
                login "$d" "$PAR_N" --service bench-mfapg --procs "$p" --from $((RESERVED + r)) --stride "$ps" |
                    sed "s/^RESULT /RESULT N=$PAR_N /" | tee -a "$OUT"
                kill -0 "${DAEMONS[mfa-pg]}" 2> /dev/null || { tail -n 5 "$d/daemon.mfa-pg.log"; die "mfa serve (PostgreSQL) died during the parallel logins"; }
            done
        done
        stop_daemon mfa-pg
    fi
    if [ "$FAIR" = 1 ]; then
        echo "== fairness, N=$PAR_N: $FAIR_LOGINS probe logins (fresh processes), alone and while $FAIR_PROCS processes log in other users"
        fairness "$d" mfa sqlite_fresh
        if [ "$PG" = 1 ]; then fairness "$d" mfapg pg_fresh; fi
    fi
    start_daemon "$d" "$PAR_N"
    echo "== resident memory added by dlopen + one login, in a C process (bench/pam_once.c)"
    rm -rf "$d/mfa/db" && cp -a "$WORK/par-db" "$d/mfa/db"
    k=0
    for m in permit:pam_permit ga:pam_google_authenticator oath:pam_oath mfa:; do
        svc=${m%%:*} so=${m#*:}
        path=$([ -n "$so" ] && echo "$SECURITY/$so.so" || echo "$REL/libpam_mfa.so")
        login "$d" "$PAR_N" --service "bench-$svc" --rss "$path" --driver "$WORK/pam_once" \
            --from $((PROFILE_USERS + 2 * k)) --count 2 | tee -a "$OUT"
        k=$((k + 1))
    done
    stop_daemon
fi
pg_stop

echo "== sizes"
strip -o "$WORK/stripped.so" "$REL/libpam_mfa.so"
for f in "$REL/libpam_mfa.so" "$WORK/stripped.so" "$SECURITY/pam_google_authenticator.so" "$SECURITY/pam_oath.so"; do
    echo "SIZE $(basename "$f") $(stat -c %s "$f")" | tee -a "$OUT"
done

# ---- summary
echo
echo "== summary ($(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - STARTED )) s, load $(cut -d' ' -f1-3 /proc/loadavg))"
awk '
function fields() { delete f; for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] } }
/^RESULT N=.* module=/ {
    fields()
    if (f["module"] == "mfapg") haspg = 1
    k = f["N"] SUBSEP f["mode"]
    us[k, f["module"]] = f["us_mean"]; med[k, f["module"]] = f["us_median"]; cnt[k, f["module"]] = f["logins"]
    if (!(f["N"] in seen)) { seen[f["N"]] = 1; order[++nn] = f["N"] }
    if (!(f["mode"] in mseen)) { mseen[f["mode"]] = 1; modes[++nm] = f["mode"] }
}
/^RATIO / { fields(); chunkratio[f["N"], f["mode"], ("store" in f) ? "mfapg" : "mfa"] = f["mfa_over_ga_chunk_median"] }
/^DAEMON / {
    fields()
    if ("store" in f) { dcpupg[f["N"], f["mode"]] = f["cpu_us_per_login"]; pgcpu[f["N"], f["mode"]] = f["postgres_cpu_us_per_login"] }
    else dcpu[f["N"], f["mode"]] = f["cpu_us_per_login"]
}
/^RESULT N=.* procs=/ {
    fields()
    par[++np] = sprintf("| %s | %s | %s | %s | %s (refused %s, pam_start failed %s) |", (f["service"] == "mfapg") ? "PostgreSQL" : "SQLite", f["procs"], f["logins"], f["per_s"], f["errors"], f["refused"], f["not_started"])
}
/^FAIR / {
    fields()
    fair[++nf] = sprintf("| %s | %s, %s | %s | %s | %s | %.2f× | %s | %s | %.2f× | %s/s%s |", (f["module"] == "mfapg") ? "PostgreSQL" : "SQLite", f["procs"], f["load"], f["probes"],
        f["alone_us_median"], f["loaded_us_median"], f["ratio"], f["permit_alone_us_median"], f["permit_loaded_us_median"], f["permit_ratio"],
        f["background_per_s"], (f["load_covered_probes"] == "yes") ? "" : " (load ended before the probes did)")
    fratio[f["module"], f["load"]] = f["ratio"]; loads[f["load"]] = 1
}
/^MIGRATE / { fields(); mig[++nmig] = sprintf("| %s | %s |", f["n"], f["s"]) }
/^RESULT service=.* rss_added_kib=/ {
    fields()
    rss[++nr] = sprintf("| %s | %s | %s | %s |", f["service"], f["rss_added_kib"], f["anon_added_kib"], f["file_added_kib"])
}
/^PROFILE / {
    fields()
    ins[f["N"], f["module"]] = f["instructions_per_login"]; fs[f["N"], f["module"]] = f["fsyncs_per_login"]
    if (!(f["N"] in pseen)) { pseen[f["N"]] = 1; porder[++npn] = f["N"] }
}
/^SEED / {
    fields()
    seed[++nseed] = sprintf("| %s | %s | %s | %s | %s |", f["n"], f["import_sample"], f["import_ms_per_user"], f["library_users"], f["library_s"])
}
/^SIZE / { size[++ns] = sprintf("| %s | %d |", $2, $3) }
END {
    for (j = 1; j <= nm; j++) {
        mo = modes[j]
        print (mo == "process" ? "One fresh C process per login (as sshd runs; bench/pam_once.c):" : "Many logins in one Rust process (libgcc_s stays loaded: flatters pam_mfa):")
        print "wall-clock µs per login, pam_start + pam_authenticate + pam_end, mean (median) [logins]; pam_mfa includes its wait on the daemon."
        print ""
        if (haspg) {
            print "| N | pam_permit | pam_google_authenticator | pam_oath | pam_mfa, SQLite | pam_mfa, PostgreSQL | daemon CPU µs per login: SQLite; PostgreSQL daemon + server | pam_mfa SQLite / google_auth | pam_mfa PostgreSQL / google_auth |"
            print "|---|---|---|---|---|---|---|---|---|"
        } else {
            print "| N | pam_permit | pam_google_authenticator | pam_oath | pam_mfa | daemon CPU µs per pam_mfa login | pam_mfa / google_auth |"
            print "|---|---|---|---|---|---|---|"
        }
        for (k = 1; k <= nn; k++) {
            n = order[k]; x = n SUBSEP mo
            printf "| %s | %.0f (%.0f) [%d] | %.0f (%.0f) [%d] | %.0f (%.0f) [%d] | %.0f (%.0f) [%d] |", n,
                us[x,"permit"], med[x,"permit"], cnt[x,"permit"], us[x,"ga"], med[x,"ga"], cnt[x,"ga"],
                us[x,"oath"], med[x,"oath"], cnt[x,"oath"], us[x,"mfa"], med[x,"mfa"], cnt[x,"mfa"]
            if (haspg)
                printf " %.0f (%.0f) [%d] | %s; %s + %s | %.2f× (chunks: %.2f×) | %.2f× (chunks: %.2f×) |\n",
                    us[x,"mfapg"], med[x,"mfapg"], cnt[x,"mfapg"], dcpu[n,mo], dcpupg[n,mo], pgcpu[n,mo],
                    us[x,"mfa"] / us[x,"ga"], chunkratio[n,mo,"mfa"], us[x,"mfapg"] / us[x,"ga"], chunkratio[n,mo,"mfapg"]
            else
                printf " %s | %.2f× (chunks: %.2f×) |\n", dcpu[n,mo], us[x,"mfa"] / us[x,"ga"], chunkratio[n,mo,"mfa"]
        }
        print ""
    }
    if (npn) {
        print ""
        print "Instructions per login in the login process (callgrind; for pam_mfa the daemon'"'"'s share is not counted: see its CPU time above) and fsync/fdatasync calls per login, login process and daemon (strace): repeatable, unlike wall-clock time"
        print ""
        print "| N | pam_permit | pam_google_authenticator | pam_oath | pam_mfa | pam_mfa / google_auth (instructions) |"
        print "|---|---|---|---|---|---|"
        for (k = 1; k <= npn; k++) {
            n = porder[k]
            printf "| %s | %d, %s | %d, %s | %d, %s | %d, %s | %.2f× |\n", n, ins[n,"permit"], fs[n,"permit"], ins[n,"ga"], fs[n,"ga"],
                ins[n,"oath"], fs[n,"oath"], ins[n,"mfa"], fs[n,"mfa"], ins[n,"mfa"] / ins[n,"ga"]
        }
    }
    print ""
    first = order[1]; last = order[nn]
    jm = ("process" in mseen) ? "process" : modes[1]
    worst = 0; worstc = 0
    for (k = 1; k <= nn; k++) {
        x = order[k] SUBSEP jm
        r = us[x,"mfa"] / us[x,"ga"]; if (r > worst) worst = r
        if (chunkratio[order[k],jm,"mfa"] > worstc) worstc = chunkratio[order[k],jm,"mfa"]
    }
    printf "target (%s mode): pam_mfa <= 0.15x pam_google_authenticator per login at every N: worst %.2fx (per-chunk %.2fx) -> %s; <= 0.25x -> %s\n",
        jm, worst, worstc, (worst <= 0.15 && worstc <= 0.15) ? "met" : "MISSED", (worst <= 0.25 && worstc <= 0.25) ? "met" : "MISSED"
    if (nn > 1) {
        xl = last SUBSEP jm; xf = first SUBSEP jm
        r = us[xl,"mfa"] / us[xf,"mfa"]; rm = med[xl,"mfa"] / med[xf,"mfa"]
        rd = (dcpu[first,jm] > 0) ? dcpu[last,jm] / dcpu[first,jm] : 0
        line = sprintf("target: pam_mfa at N=%s <= 1.2x its cost at N=%s: wall %.2fx (medians %.2fx), daemon CPU %.2fx", last, first, r, rm, rd)
        if ((first, "mfa") in ins && (last, "mfa") in ins)
            line = line sprintf(", login-process instructions %.3fx, fsyncs %s", ins[last,"mfa"] / ins[first,"mfa"], (fs[first,"mfa"] == fs[last,"mfa"]) ? "equal" : "differ")
        line = line ((rm <= 1.2 && rd <= 1.2) ? " -> met (medians and daemon CPU)" : " -> MISSED")
        print line
    }
    if (np) { print ""; print "Parallel pam_mfa logins (each a pam_start/pam_authenticate/pam_end in one of P processes; two rounds)"; print ""; print "| store | processes | logins | logins/s | errors |"; print "|---|---|---|---|---|"; for (i = 1; i <= np; i++) print par[i] }
    if (nf) {
        print ""
        print "Fairness: median µs of one login (a fresh process, pam_once) of probe users, alone and while P processes log in other users; pam_permit probed in the same windows"
        print ""
        print "| store | P, load | probes | pam_mfa alone | under load | ratio | pam_permit alone | under load | ratio | background logins |"
        print "|---|---|---|---|---|---|---|---|---|---|"
        for (i = 1; i <= nf; i++) print fair[i]
        for (ld in loads) if (("mfapg", ld) in fratio)
            printf "target: a login on PostgreSQL under %s parallel logins (%s) of other users <= 2x its time alone: %.2fx -> %s\n", FAIR_PROCS_, ld, fratio["mfapg", ld], (fratio["mfapg", ld] <= 2) ? "met" : "MISSED"
    }
    if (nmig) { print ""; print "| N | mfa admin migrate --to PostgreSQL, seconds |"; print "|---|---|"; for (i = 1; i <= nmig; i++) print mig[i] }
    if (nr) { print ""; print "| module | RSS added by dlopen + one login (KiB) | of which anonymous | of which file-backed |"; print "|---|---|---|---|"; for (i = 1; i <= nr; i++) print rss[i] }
    if (nseed) { print ""; print "| N | devices imported with mfa, one process each | ms per import | devices written through the library (same rows) | seconds |"; print "|---|---|---|---|---|"; for (i = 1; i <= nseed; i++) print seed[i] }
    if (ns) { print ""; print "| file | bytes |"; print "|---|---|"; for (i = 1; i <= ns; i++) print size[i] }
}' FAIR_PROCS_="$FAIR_PROCS" "$OUT"
