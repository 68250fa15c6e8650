#!/bin/bash
# Repeatable per-login costs, for comparing changes on a busy machine where
# wall-clock figures swing with other processes' disk and CPU use:
#   - instructions per login (valgrind callgrind; logins 11..60 minus 1..10,
#     so process start and first loads cancel out)
#   - fsync/fdatasync calls and all system calls per login (strace -c)
# Usage: bench/profile.sh [N] [modules...]   (default 1000, all four)
# Call-graph files are kept in $BENCH_DIR/profile.N/cg.MODULE.* for
# callgrind_annotate.
set -euo pipefail
# A private /tmp for pam_wrapper's directories (see scripts/bench.sh).
if [ "${BENCH_PRIVATE_TMP:-}" != done ] && unshare -m true 2> /dev/null; then
    exec unshare -m env BENCH_PRIVATE_TMP=done \
        bash -c 'mount -t tmpfs -o mode=1777 bench-tmp /tmp && exec bash "$@"' bash "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REL=$CARGO_TARGET_DIR/release
BIN=$CARGO_TARGET_DIR/bench/release
SECURITY=${BENCH_SECURITY_DIR:-/lib/x86_64-linux-gnu/security}
N=${1:-1000}
shift || true
MODULES=${*:-permit ga oath mfa}

# BENCH_CARGO_FLAGS="--features bundled-sqlite" (with its own
# CARGO_TARGET_DIR) measures that build.
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" ${BENCH_CARGO_FLAGS:-}
CARGO_TARGET_DIR=$CARGO_TARGET_DIR/bench cargo build --release --quiet --manifest-path "$ROOT/bench/Cargo.toml"
W=${BENCH_DIR:-/var/tmp}/profile.$N
rm -rf "$W" && mkdir -p "$W" && chmod 755 "$W"
cc -O2 -shared -fPIC -o "$W/libnss_bench.so" "$ROOT/bench/nss_bench.c"
"$BIN/bench-seed" --dir "$W/t" --n "$N" --mfa "$REL/mfa" --mfa-so "$REL/libpam_mfa.so" \
    --security-dir "$SECURITY" --import 0 > /dev/null

run() {
    env -i PATH=/usr/bin:/bin \
        LD_PRELOAD=libpam_wrapper.so:libnss_wrapper.so \
        PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$W/t/pam.d" \
        NSS_WRAPPER_PASSWD="$W/t/passwd" NSS_WRAPPER_GROUP="$W/t/group" \
        NSS_WRAPPER_MODULE_SO_PATH="$W/libnss_bench.so" NSS_WRAPPER_MODULE_FN_PREFIX=bench \
        BENCH_NSS_USERS="$N" BENCH_NSS_HOME="$W/t/home" "$@"
}

# Each module's 10-, 60- and 100-login runs use fresh users (170 per module).
base=0
for m in $MODULES; do
    ir=()
    for c in 10 60; do
        run valgrind --tool=callgrind --callgrind-out-file="$W/cg.$m.$c" \
            "$BIN/bench-login" --users "$W/t/users.txt" --service "bench-$m" \
            --from $((base + (c == 10 ? 0 : 10))) --count "$c" > /dev/null 2> "$W/vg.$m.$c"
        ir+=("$(sed -n 's/.*Collected : //p' "$W/vg.$m.$c")")
    done
    run strace -f -c -o "$W/strace.$m" "$BIN/bench-login" --users "$W/t/users.txt" \
        --service "bench-$m" --from $((base + 70)) --count 100 > /dev/null
    syncs=$(awk '$NF ~ /^(fsync|fdatasync)$/ {s += $4} END {print s + 0}' "$W/strace.$m")
    calls=$(awk '$NF == "total" {print $4}' "$W/strace.$m")
    printf 'PROFILE N=%s module=%s instructions_per_login=%d fsyncs_per_login=%.2f syscalls_per_login=%.0f\n' \
        "$N" "$m" $(( (ir[1] - ir[0]) / 50 )) "$(echo "$syncs / 100" | bc -l)" "$(echo "$calls / 100" | bc -l)"
    base=$((base + 170))
done
