# make        build the module (target/release/libpam_mfa.so) and `mfa`
# make test   install missing test packages, build once, run every test,
#             check formatting and lints
# make demo   a throwaway sshd on 127.0.0.1:2222 with pam_mfa (needs root)
# make deb | rpm | deb-lint | package-test   packages (see packaging/README.md)
# make fuzz-smoke | fuzz   cargo-fuzz targets (see fuzz/README.md)
# make bench  figures against pam_google_authenticator and pam_oath (root)

CARGO ?= cargo

include packaging/packaging.mk
include fuzz/fuzz.mk
include bench/bench.mk
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

.PHONY: all build test demo clean

all: build

build:
	$(CARGO) build --release

# One release build serves the tests too (they load target/release/libpam_mfa.so).
# Lints run even when a test fails, so one run shows everything; the last
# line sums every test binary's results (the doc-test binary, last to run,
# often has none).
test:
	scripts/install-test-deps.sh
	$(CARGO) build --release --all-targets
	@log=$$(mktemp); trap 'rm -f "$$log"' EXIT; status=0; \
	echo "$(CARGO) test --release --no-fail-fast"; \
	$(CARGO) test --release --no-fail-fast 2>&1 | tee "$$log" || status=1; \
	echo "$(CARGO) fmt --check"; \
	$(CARGO) fmt --check || status=1; \
	echo "$(CARGO) clippy --release --all-targets -- -D warnings"; \
	$(CARGO) clippy --release --all-targets -- -D warnings || status=1; \
	echo "make fuzz-smoke"; \
	$(MAKE) --no-print-directory fuzz-smoke || status=1; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "make deb-lint rpm package-test"; \
	  $(MAKE) --no-print-directory deb-lint rpm package-test || status=1; \
	else echo "packages: skipped (building and chroot-testing them needs root)"; fi; \
	awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$$log"; \
	exit $$status

demo:
	scripts/demo.sh

clean:
	$(CARGO) clean
