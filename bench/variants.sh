#!/bin/bash
# What building with SQLite inside the module would do to pam_mfa's cost per
# login, measured the same way as make bench. Not part of make bench; the
# source tree is left alone (variants are built from a copy of HEAD).
#
#   system   HEAD as it is: the system libsqlite3.so.0 (the default)
#   bundled  cargo --features bundled-sqlite: SQLite compiled into the module
#
# Prints instructions, fsync/fdatasync calls and system calls per login, and
# wall-clock medians from interleaved rounds beside pam_google_authenticator
# and pam_permit. Usage: bench/variants.sh [rounds] (default 5; 60 logins
# per variant and round). Takes ~6 minutes on 2 cores, most of it building.
set -euo pipefail
if [ "${BENCH_PRIVATE_TMP:-}" != done ] && unshare -m true 2> /dev/null; then
    exec unshare -m env BENCH_PRIVATE_TMP=done \
        bash -c 'mount -t tmpfs -o mode=1777 bench-tmp /tmp && exec bash "$@"' bash "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/bench/release
SECURITY=${BENCH_SECURITY_DIR:-/lib/x86_64-linux-gnu/security}
ROUNDS=${1:-5}
N=$((400 + ROUNDS * 360 + 40))
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/pam_mfa-variants.XXXXXX")
chmod 755 "$W"
trap '[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$W"' EXIT
die() { echo "variants: $*" >&2; exit 1; }

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
CARGO_TARGET_DIR=$CARGO_TARGET_DIR/bench cargo build --release --quiet --manifest-path "$ROOT/bench/Cargo.toml"

build() {
    local name=$1 src=$W/src-$1 features=()
    mkdir -p "$src"
    git -C "$ROOT" archive HEAD | tar -x -C "$src"
    [ "$name" = bundled ] && features=(--features bundled-sqlite)
    echo "== building $name" >&2
    CARGO_TARGET_DIR=$CARGO_TARGET_DIR/variants/$name cargo build --release --quiet --lib \
        "${features[@]}" --manifest-path "$src/Cargo.toml"
    cp "$CARGO_TARGET_DIR/variants/$name/release/libpam_mfa.so" "$W/$name.so"
}
VARIANTS="system bundled"
for v in $VARIANTS; do build "$v"; done

cc -O2 -shared -fPIC -o "$W/libnss_bench.so" "$ROOT/bench/nss_bench.c"
"$BIN/bench-seed" --dir "$W/t" --n "$N" --mfa "$CARGO_TARGET_DIR/release/mfa" --mfa-so "$W/system.so" \
    --security-dir "$SECURITY" --import 0 > /dev/null
cp -a "$W/t/mfa/db" "$W/db.snap"
for v in $VARIANTS; do
    sed "s|^auth required [^ ]*|auth required $W/$v.so|" "$W/t/pam.d/bench-mfa" > "$W/t/pam.d/bench-$v"
done

run() {
    env -i PATH=/usr/bin:/bin \
        LD_PRELOAD=libpam_wrapper.so:libnss_wrapper.so \
        PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$W/t/pam.d" \
        NSS_WRAPPER_PASSWD="$W/t/passwd" NSS_WRAPPER_GROUP="$W/t/group" \
        NSS_WRAPPER_MODULE_SO_PATH="$W/libnss_bench.so" NSS_WRAPPER_MODULE_FN_PREFIX=bench \
        BENCH_NSS_USERS="$N" BENCH_NSS_HOME="$W/t/home" "$@"
}

# Counts: each variant on a fresh copy of the database and its own 80 users.
k=0
for v in $VARIANTS; do
    rm -rf "$W/t/mfa/db" && cp -a "$W/db.snap" "$W/t/mfa/db"
    ir=()
    for c in 5 25; do
        run valgrind --tool=callgrind --callgrind-out-file="$W/cg.$v.$c" "$BIN/bench-login" \
            --users "$W/t/users.txt" --service "bench-$v" --from $((k * 80 + (c == 5 ? 0 : 5))) --count "$c" \
            > /dev/null 2> "$W/vg.$v.$c"
        ir+=("$(sed -n 's/.*Collected : //p' "$W/vg.$v.$c")")
    done
    run strace -f -c -o "$W/strace.$v" "$BIN/bench-login" --users "$W/t/users.txt" \
        --service "bench-$v" --from $((k * 80 + 30)) --count 50 > /dev/null
    awk -v v="$v" -v ins=$(( (ir[1] - ir[0]) / 20 )) '
        $NF ~ /^(fsync|fdatasync)$/ {s += $4}
        $NF == "total" {t = $4}
        END {printf "COUNTS variant=%s instructions_per_login=%d fsyncs_per_login=%.2f syscalls_per_login=%.0f\n", v, ins, s / 50, t / 50}' \
        "$W/strace.$v"
    k=$((k + 1))
done

# Wall clock: one database for all (as on a real host), variants interleaved.
rm -rf "$W/t/mfa/db" && cp -a "$W/db.snap" "$W/t/mfa/db"
from=400
for r in $(seq "$ROUNDS"); do
    for v in $VARIANTS ga permit; do
        run "$BIN/bench-login" --users "$W/t/users.txt" --service "bench-$v" --from "$from" --count 60 \
            --times "$W/times.$v" > "$W/last.$v"
        grep -q 'errors=0' "$W/last.$v" || { cat "$W/last.$v"; die "$v: logins failed"; }
        from=$((from + 60))
    done
done
for v in $VARIANTS ga permit; do
    sort -n "$W/times.$v" | awk -v v="$v" '{a[NR] = $1} END {printf "WALL variant=%s logins=%d us_median=%.0f\n", v, NR, a[int((NR + 1) / 2)]}'
done
ls -l "$W"/*.so | awk '{print "SIZE", $NF, $5}'
