#!/bin/bash
# What linking LLVM's unwinder into the module (feature static-unwind, the
# default) saves per login against NEEDing libgcc_s.so.1, measured as make
# bench measures: each login in a fresh C process (bench/pam_once.c), through
# a daemon, beside pam_google_authenticator and pam_permit. Not part of make
# bench; the source tree is left alone (the libgcc_s variant is built from a
# copy of HEAD).
#
#   static   HEAD as it is (libunwind.a linked in)
#   gcc      cargo --no-default-features: NEEDs libgcc_s.so.1
#
# Usage: sudo bench/variants.sh [rounds] (default 5; 60 logins per variant and
# round). Prints wall-clock medians and the resident memory each adds.
set -euo pipefail
if [ "${BENCH_PRIVATE_TMP:-}" != done ] && unshare -m true 2> /dev/null; then
    exec unshare -m env BENCH_PRIVATE_TMP=done \
        bash -c 'mount -t tmpfs -o mode=1777 bench-tmp /tmp && exec bash "$@"' bash "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REL=$CARGO_TARGET_DIR/release
BIN=$CARGO_TARGET_DIR/bench/release
SECURITY=${BENCH_SECURITY_DIR:-/lib/x86_64-linux-gnu/security}
ROUNDS=${1:-5}
N=$((400 + ROUNDS * 240 + 40))
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/pam_mfa-variants.XXXXXX")
chmod 755 "$W"
DAEMON=
trap '[ -z "$DAEMON" ] || kill "$DAEMON" 2> /dev/null; [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$W"' EXIT
die() { echo "variants: $*" >&2; exit 1; }

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
CARGO_TARGET_DIR=$CARGO_TARGET_DIR/bench cargo build --release --quiet --manifest-path "$ROOT/bench/Cargo.toml"
cp "$REL/libpam_mfa.so" "$W/static.so"
mkdir -p "$W/src-gcc"
git -C "$ROOT" archive HEAD | tar -x -C "$W/src-gcc"
echo "== building the libgcc_s variant" >&2
CARGO_TARGET_DIR=$CARGO_TARGET_DIR/variants/gcc cargo build --release --quiet --lib \
    --no-default-features --manifest-path "$W/src-gcc/Cargo.toml"
cp "$CARGO_TARGET_DIR/variants/gcc/release/libpam_mfa.so" "$W/gcc.so"
readelf -d "$W/gcc.so" | grep -q 'libgcc_s' || die "the gcc variant does not NEED libgcc_s"
! readelf -d "$W/static.so" | grep -q 'libgcc_s' || die "the static variant NEEDs libgcc_s"
VARIANTS="static gcc"

cc -O2 -shared -fPIC -o "$W/libnss_bench.so" "$ROOT/bench/nss_bench.c"
cc -O2 -o "$W/pam_once" "$ROOT/bench/pam_once.c" -lpam
"$BIN/bench-seed" --dir "$W/t" --n "$N" --mfa "$REL/mfa" --mfa-so "$W/static.so" \
    --security-dir "$SECURITY" --import 0 > /dev/null
for v in $VARIANTS; do
    sed "s|^auth required [^ ]*|auth required $W/$v.so|" "$W/t/pam.d/bench-mfa" > "$W/t/pam.d/bench-$v"
done

nss() {
    env -i PATH=/usr/bin:/bin NSS_WRAPPER_PASSWD="$W/t/passwd" NSS_WRAPPER_GROUP="$W/t/group" \
        NSS_WRAPPER_MODULE_SO_PATH="$W/libnss_bench.so" NSS_WRAPPER_MODULE_FN_PREFIX=bench \
        BENCH_NSS_USERS="$N" BENCH_NSS_HOME="$W/t/home" "$@"
}
run() { nss LD_PRELOAD=libpam_wrapper.so:libnss_wrapper.so PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$W/t/pam.d" "$@"; }
nss LD_PRELOAD=libnss_wrapper.so "$REL/mfa" --config "$W/t/mfa/pam_mfa.toml" serve > "$W/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do [ -S "$W/t/mfa/mfa.sock" ] && break; sleep 0.05; done
[ -S "$W/t/mfa/mfa.sock" ] || die "mfa serve did not start: $(cat "$W/daemon.log")"

# Wall clock, variants interleaved, each user once.
from=400
for r in $(seq "$ROUNDS"); do
    for v in $VARIANTS ga permit; do
        run "$BIN/bench-login" --users "$W/t/users.txt" --service "bench-$v" --from "$from" --count 60 \
            --driver "$W/pam_once" --times "$W/times.$v" > "$W/last.$v"
        grep -q 'errors=0' "$W/last.$v" || { cat "$W/last.$v"; die "$v: logins failed"; }
        from=$((from + 60))
    done
done
for v in $VARIANTS ga permit; do
    sort -n "$W/times.$v" | awk -v v="$v" '{a[NR] = $1} END {printf "WALL variant=%s logins=%d us_median=%.0f\n", v, NR, a[int((NR + 1) / 2)]}'
done
k=0
for v in $VARIANTS; do
    run "$BIN/bench-login" --users "$W/t/users.txt" --service "bench-$v" --rss "$W/$v.so" \
        --driver "$W/pam_once" --from $((k * 2)) --count 2 | sed "s/^RESULT /RSS variant=$v /"
    k=$((k + 1))
done
ls -l "$W"/*.so | awk '{print "SIZE", $NF, $5}'
