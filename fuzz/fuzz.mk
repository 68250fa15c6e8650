# Fuzzing with cargo-fuzz, on the stable toolchain. Included by the
# top-level Makefile (which sets CARGO, SHELL and .SHELLFLAGS).
#
#   make fuzz-smoke                  every target for FUZZ_SECONDS (20) each
#   make fuzz FUZZ_TARGET=config     one target, FUZZ_SECONDS (0 = until ^C),
#                                    growing fuzz/corpus/config
#
# See fuzz/README.md for longer runs and what each target checks.

FUZZ_TARGETS := config codes phone google_auth protocol
FUZZ_SECONDS ?= 20
FUZZ_TARGET ?= config
CARGO_FUZZ_VERSION := 0.13.2

# cargo-fuzz passes nightly-only rustc flags (-Zsanitizer=address);
# RUSTC_BOOTSTRAP lets the stable compiler take them. The linker wrapper
# lets the PAM module (a cdylib cargo builds alongside) link under the
# fuzzer's instrumentation; see fuzz/cdylib-gcc. The fuzz build keeps its
# own target dir: its flags differ from the main build's.
FUZZ_ENV := RUSTC_BOOTSTRAP=1 \
	CARGO_TARGET_DIR=$(CURDIR)/fuzz/target \
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=$(CURDIR)/fuzz/cdylib-gcc
FUZZ_FLAGS := -timeout=10 -rss_limit_mb=2048

.PHONY: fuzz-tools fuzz-build fuzz-smoke fuzz

# libFuzzer is C++, built by libfuzzer-sys.
fuzz-tools:
	@if ! command -v c++ >/dev/null; then \
	    if [ "$$(id -u)" -ne 0 ]; then echo "fuzz: a C++ compiler is missing: apt-get install g++" >&2; exit 1; fi; \
	    apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++; \
	fi
	@if ! cargo-fuzz --version 2>/dev/null | grep -qF '$(CARGO_FUZZ_VERSION)'; then \
	    echo "$(CARGO) install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION)"; \
	    $(CARGO) install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION); \
	fi

fuzz-build: fuzz-tools
	$(FUZZ_ENV) $(CARGO) fuzz build

# A fresh corpus each time (seeded from fuzz/seeds), so the run is bounded
# and leaves nothing behind but a crash's artifact in fuzz/artifacts/.
fuzz-smoke: fuzz-build
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for t in $(FUZZ_TARGETS); do \
	    mkdir -p "$$tmp/$$t"; \
	    if $(FUZZ_ENV) $(CARGO) fuzz run $$t "$$tmp/$$t" fuzz/seeds/$$t -- \
	        -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) >"$$tmp/$$t.log" 2>&1; then \
	        echo "fuzz $$t: $$(grep -E '^#[0-9]+' "$$tmp/$$t.log" | tail -n 1)"; \
	    else \
	        tail -n 60 "$$tmp/$$t.log"; \
	        echo "fuzz $$t: FAILED (the input is in fuzz/artifacts/$$t/)"; \
	        exit 1; \
	    fi; \
	done

fuzz: fuzz-build
	mkdir -p fuzz/corpus/$(FUZZ_TARGET)
	$(FUZZ_ENV) $(CARGO) fuzz run $(FUZZ_TARGET) fuzz/corpus/$(FUZZ_TARGET) fuzz/seeds/$(FUZZ_TARGET) -- \
	    -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS)
