# make        build the module (target/release/libpam_mfa.so) and `mfa`
# make test   install missing test packages, build once, run every test,
#             then check formatting and lints
# make demo   a throwaway sshd on 127.0.0.1:2222 with pam_mfa (needs root)

CARGO ?= cargo

.PHONY: all build test demo clean

all: build

build:
	$(CARGO) build --release

test:
	scripts/install-test-deps.sh
	$(CARGO) build --release --all-targets
	$(CARGO) test --release
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

demo:
	scripts/demo.sh

clean:
	$(CARGO) clean
