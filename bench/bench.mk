# make bench: benchmark pam_mfa against pam_google_authenticator, pam_oath and
# pam_permit (figures, not a pass/fail test). Included from the top-level
# Makefile; alone: make -f bench/bench.mk bench. Needs root and the Debian
# packages libpam-wrapper libnss-wrapper libpam-google-authenticator
# libpam-oath; with postgresql installed it also runs pam_mfa on a
# throwaway PostgreSQL server (BENCH_PG=0: not). Knobs (BENCH_NS,
# BENCH_DIR, ...) are described in scripts/bench.sh.
.PHONY: bench
bench:
	./scripts/bench.sh
