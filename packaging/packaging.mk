# Packaging targets. The top-level Makefile includes this file; on its own:
#   make -f packaging/packaging.mk deb|deb-lint|rpm|package-test
# Paths are relative to the repository root, where make runs.

# Included before the top Makefile's first rule, this file must not become
# its default goal: remember the goal and restore it at the end.
pkg_saved_default_goal := $(.DEFAULT_GOAL)

PKG_VERSION := $(shell sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
PKG_DEB := target/debian/libpam-mfa_$(PKG_VERSION)_amd64.deb

.PHONY: deb deb-lint rpm package-test

# The scripts run cargo themselves (a no-op when the release build is fresh),
# so these targets always rebuild the package from what is there now.
deb:
	scripts/build-deb.sh

# lintian must report no errors; warnings and infos are printed, and the
# deliberate ones are overridden with reasons in packaging/debian/lintian-overrides.
deb-lint: deb
	command -v lintian >/dev/null || apt-get install -y -qq lintian >/dev/null || \
	    { apt-get update -qq && apt-get install -y -qq lintian >/dev/null; }
	lintian --fail-on error --display-info --pedantic $(PKG_DEB)

# rpmbuild from Debian's rpm package (installed when missing and root).
rpm:
	scripts/build-rpm.sh

# Installs the .deb into a throwaway Debian 12 chroot and logs in with
# pamtester there (needs root; the first run fetches a base system from the
# Debian mirror, ~2.5 min; later runs reuse it from target/, ~1 min).
package-test:
	scripts/package-test.sh

.DEFAULT_GOAL := $(pkg_saved_default_goal)
