#!/usr/bin/env bash
# Installs the Debian packages that building and testing pam_mfa need, and
# only those that are missing. Installing needs root; without root it names
# what is missing and fails.
set -euo pipefail

packages=(
    make gcc libc6-dev              # cargo's linker and C runtime
    libpam0g-dev libsqlite3-dev     # what the crate links against
    libunwind-14-dev                # LLVM's unwinder, linked in (feature static-unwind)
    pamtester libpam-wrapper libnss-wrapper   # PAM logins without root
    openssh-server openssh-client   # the real sshd test and make demo
    oathtool                        # independent TOTP codes
    libpam-google-authenticator     # real google-authenticator files and logins (migration tests, make bench)
    passwd                          # useradd, chpasswd, userdel
    systemd                         # systemd-socket-activate, for the daemon test
    strace                          # which files a login syncs (durability test)
    postgresql                      # a real server for the fleet tests (started by the tests)
    openssl                         # a CA and a server certificate for the TLS test
)

if ! command -v dpkg-query >/dev/null; then
    echo "install-test-deps: this script knows Debian packages only; install the equivalents of: ${packages[*]}" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: missing Debian packages: ${missing[*]}" >&2
    echo "install them as root: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi

echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Installing openssh-server would otherwise start the host's sshd on port 22;
# the tests and the demo run their own sshd and need no system service.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from pam_mfa install-test-deps.sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
