#!/bin/bash
# The .deb in a throwaway Debian 12 root: install, enable the pam-auth-update
# profiles, start the daemon the way hosts without systemd do (`mfa serve`
# as root in the background: a chroot has no systemd), log in with pamtester
# through the stacks pam-auth-update wrote (password + code, a wrong
# password counting, lockout after six failures, the account phase refusing,
# unlock, the daemon down), upgrade with the daemon running and check a
# daemon started from the new binary serves, then remove and purge and check
# /etc/pam.d is byte for byte as before. Only files under the chroot change;
# the host's /etc/pam.d is checked to be untouched too.
#
# Needs root (chroot), debootstrap and python3; the first run downloads a
# minimal bookworm from the Debian mirror apt uses and caches it as a tarball
# under target/package-test/, so later runs need no network.
#
# Environment: DEBIAN_MIRROR (default: the mirror in apt's sources),
# SKIP_BUILD=1 (use the release build and .deb as they are), KEEP_ROOT=1
# (leave the chroot in place for a look after a failure).
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
t0=$(date +%s)
say() { printf '[%3ds] %s\n' $(($(date +%s) - t0)) "$*"; }
die() { echo "package-test: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root: it builds and enters a chroot"
for tool in debootstrap python3; do
    if ! command -v "$tool" >/dev/null; then
        say "installing $tool"
        apt-get install -y -qq "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; }
    fi
done

version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
deb=target/debian/libpam-mfa_${version}_amd64.deb
if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -f "$deb" ]; then
    say "building $deb"
    scripts/build-deb.sh
fi

# What the chroot must hold besides minbase; part of the cache name, so a
# change here builds a new base.
include=pamtester,oathtool,libsqlite3-0
work=$repo/target/package-test
base=$work/bookworm-minbase-$(echo "$include" | md5sum | cut -c1-8).tar.gz
mkdir -p "$work"

pick_mirror() {
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        tr ' ' '\n' | grep -E '/debian/?$' | head -1 || true)
    if [ -z "$uri" ]; then
        uri=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            grep -E '/debian/?$' | head -1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

if [ ! -f "$base" ]; then
    mirror=${DEBIAN_MIRROR:-$(pick_mirror)}
    say "debootstrap bookworm (minbase + $include) from $mirror; cached as $base"
    fresh=$(mktemp -d "$work/debootstrap.XXXXXX")
    debootstrap --variant=minbase --include="$include" bookworm "$fresh" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log" >&2; rm -rf --one-file-system "$fresh"; die "debootstrap failed (log: $work/debootstrap.log)"; }
    rm -rf "$fresh"/var/cache/apt/archives/*.deb
    tar --numeric-owner -C "$fresh" -czf "$base.tmp" .
    mv "$base.tmp" "$base"
    rm -rf --one-file-system "$fresh"
fi

root=$(mktemp -d "$work/root.XXXXXX")
# The pid of the `mfa serve` started below, while one runs.
daemon_pid=
stop_daemon() {
    [ -n "$daemon_pid" ] || return 0
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=
}
cleanup() {
    local status=$?
    stop_daemon
    if mountpoint -q "$root/proc"; then umount "$root/proc" || true; fi
    if [ "${KEEP_ROOT:-0}" = 1 ]; then
        echo "package-test: chroot kept at $root" >&2
    elif grep -q " $root/" /proc/mounts; then
        # Never delete through a mount point into the host's files.
        echo "package-test: something is still mounted under $root; not removing it" >&2
    else
        rm -rf --one-file-system "$root"
    fi
    exit $status
}
trap cleanup EXIT
say "unpacking the cached base into $root"
tar --numeric-owner -C "$root" -xzf "$base"
mount -t proc proc "$root/proc"
# No service may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
[ ! -e "$root/usr/bin/systemctl" ] || die "the base system has systemd; this test needs a root without it"

in_root() {
    chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
json_field() { python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)[sys.argv[1]]))' "$1"; }

# The daemon every login goes through. No systemd in a chroot: start it the
# way mfa(1) tells hosts without systemd, `mfa serve` run as root in the
# background; not socket-activated, it creates /run/pam_mfa/mfa.sock itself.
# chroot and env exec, so $! is the daemon's own pid.
socket=$root/run/pam_mfa/mfa.sock
daemon_log=$work/daemon.log
: >"$daemon_log"
start_daemon() {
    local _
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
        /usr/bin/mfa serve </dev/null >>"$daemon_log" 2>&1 &
    daemon_pid=$!
    # Listening once a connection succeeds (a socket left by an earlier
    # daemon refuses connections until the new one replaces it).
    for _ in $(seq 100); do
        kill -0 "$daemon_pid" 2>/dev/null || { tail "$daemon_log" >&2; die "mfa serve exited at start (log above)"; }
        if python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$socket" 2>/dev/null; then
            say "  mfa serve listening (pid $daemon_pid, $(readlink "/proc/$daemon_pid/exe" | sed "s|^$root||"))"
            return
        fi
        sleep 0.1
    done
    die "mfa serve (pid $daemon_pid) is not listening on $socket after 10s"
}
unavailable='Multi-factor authentication is unavailable on this host; contact your administrator.'

# A PAM service made of exactly the common-* stacks pam-auth-update manages.
cat >"$root/etc/pam.d/mfa-test" <<'EOF'
# scripts/package-test.sh: the stacks pam-auth-update writes, nothing else.
@include common-auth
@include common-account
EOF

# The auth and account sections packaging/README.md tells RHEL users to put
# in authselect's system-auth/password-auth, on Debian's modules. pam_deny
# stands in for pam_sss: for a local user pam_sss fails too, and the line
# must stay so the README's jump counts are the ones tested.
cat >"$root/etc/pam.d/mfa-test-authselect" <<'EOF'
auth        required                                     pam_env.so
auth        requisite                                    pam_mfa.so preauth
auth        [default=1 ignore=ignore success=ok]         pam_usertype.so isregular
auth        [default=1 ignore=ignore success=ok]         pam_localuser.so
auth        [success=3 default=ignore]                   pam_unix.so nullok
auth        [default=1 ignore=ignore success=ok]         pam_usertype.so isregular
auth        [success=1 default=ignore]                   pam_deny.so
auth        [default=die]                                pam_mfa.so authfail
auth        [success=done default=die]                   pam_mfa.so
auth        required                                     pam_deny.so

account     required                                     pam_mfa.so
account     required                                     pam_unix.so
account     sufficient                                   pam_localuser.so
account     sufficient                                   pam_usertype.so issystem
account     required                                     pam_permit.so
EOF

snapshot() { (cd "$1" && find . -printf '%y %m %p %l\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }
snapshot "$root/etc/pam.d" >"$work/pam.d.before"
snapshot /etc/pam.d >"$work/host-pam.d.before"

say "installing $(basename "$deb")"
cp "$deb" "$root/tmp/"
status=0
out=$(in_root dpkg -i "/tmp/$(basename "$deb")" 2>&1) || status=$?
echo "$out"
if [ "$status" != 0 ]; then
    say "dpkg -i left dependencies open; apt-get -f install"
    in_root apt-get update -qq
    out=$(in_root apt-get -f install -y -qq 2>&1)
    echo "$out"
fi
# No systemd here: the scripts must not try to reach it (their calls end
# in "|| true", so only a complaint would show).
echo "$out" | grep -E "systemctl|deb-systemd-invoke|Can't exec" && die "the maintainer scripts called systemd tools without systemd (above)"
in_root dpkg -s libpam-mfa | grep -q '^Status: install ok installed' || die "libpam-mfa is not installed"
snapshot "$root/etc/pam.d" | cmp -s - "$work/pam.d.before" ||
    die "installing the package changed /etc/pam.d although its profiles are Default: no"
# Enabled for boot (deb-systemd-helper works without a running systemd);
# nothing was started, there being no systemd here.
[ "$(readlink "$root/etc/systemd/system/sockets.target.wants/pam-mfa.socket")" = /lib/systemd/system/pam-mfa.socket ] ||
    die "postinst did not enable pam-mfa.socket (no sockets.target.wants link)"
[ "$(stat -c '%a %U' "$root/var/lib/pam_mfa")" = "700 root" ] || die "/var/lib/pam_mfa is not 0700 root"
[ "$(stat -c '%a %U' "$root/etc/security/pam_mfa.toml")" = "600 root" ] || die "the config is not 0600 root"

say "pam-auth-update --enable pam_mfa pam_mfa_preauth pam_mfa_authfail"
in_root pam-auth-update --enable pam_mfa pam_mfa_preauth pam_mfa_authfail
stack=$(cat "$root/etc/pam.d/common-auth" "$root/etc/pam.d/common-account" | grep -E '^(auth|account)[[:space:]]' | tr -s ' \t' ' ' | sed 's/ $//')
echo "$stack" | sed 's/^/    /'
expected="auth requisite pam_mfa.so preauth
auth [success=2 default=ignore] pam_unix.so nullok try_first_pass
auth [default=die] pam_mfa.so authfail
auth requisite pam_deny.so
auth required pam_permit.so
auth required pam_mfa.so
account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so
account requisite pam_deny.so
account required pam_permit.so
account required pam_mfa.so"
# Other Default: yes profiles (pam_cap) may add their own lines after ours;
# ours must appear, in this order, with nothing foreign in between.
echo "$stack" | grep -vE 'pam_cap\.so|pam_systemd\.so' | diff -u <(echo "$expected") - ||
    die "pam-auth-update wrote an unexpected stack (above)"

user=mfatest
password='Corr3ct-Horse-Battery'
in_root useradd -m -s /bin/sh "$user"
echo "$user:$password" | in_root chpasswd

say "enrolling a TOTP device for $user"
added=$(in_root mfa --user "$user" --json device add totp --name phone --no-verify)
secret=$(echo "$added" | json_field secret | tr -d '"')
[ -n "$secret" ] || die "device add gave no secret: $added"
# The replay guard accepts each time step once, and the window one step
# either side of now: use the next step's code for each login, waiting for
# the clock when that step was used already.
last_step=$(($(date +%s) / 30))
totp_at() { in_root oathtool --totp -b -N "@$(($1 * 30))" "$secret"; }
in_root mfa --user "$user" device verify phone "$(totp_at "$last_step")"
# Sets $code; not called as $(fresh_code), whose subshell would lose last_step.
fresh_code() {
    local now wait
    now=$(date +%s)
    wait=$((last_step * 30 - now + 1))
    if [ "$wait" -gt 0 ]; then
        say "  waiting ${wait}s for an unused time step"
        sleep "$wait"
        now=$(date +%s)
    fi
    last_step=$((now / 30 + 1))
    code=$(totp_at "$last_step")
}
wrong_code() {
    local now code
    now=$(($(date +%s) / 30))
    for code in 000000 111111 222222 333333; do
        case " $(totp_at $((now - 1))) $(totp_at "$now") $(totp_at $((now + 1))) " in
        *" $code "*) ;;
        *) echo "$code"; return ;;
        esac
    done
}

# login EXPECTED_STATUS [PROMPT=ANSWER ...]: pamtester authenticate + acct_mgmt
# through $service
login() {
    local expect=$1 status=0
    shift
    out=$(python3 packaging/test/converse.py --timeout 60 "$@" -- \
        chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin LC_ALL=C.UTF-8 \
        pamtester "$service" "$user" authenticate acct_mgmt) || status=$?
    echo "$out" | sed 's/^/    | /'
    [ "$status" = "$expect" ] || die "pamtester exited $status, expected $expect"
}

say "no daemon running: a login is refused at once, saying why"
service=mfa-test
started=$(date +%s%N)
login 1 "Password: =$password"
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
echo "$out" | grep -qF "$unavailable" || die "no \"$unavailable\" line"
echo "$out" | grep -q 'Password:' && die "asked for the password with no daemon (preauth should refuse first)"
[ "$elapsed_ms" -lt 5000 ] || die "the refusal took ${elapsed_ms} ms"
say "  refused in ${elapsed_ms} ms"

failures() { in_root mfa --json admin show "$user" | json_field failures; }
locked() { in_root mfa --json admin show "$user" | json_field locked; }
check_state() {
    [ "$(failures)" = "$1" ] && [ "$(locked)" = "$2" ] ||
        die "expected failures=$1 locked=$2, mfa admin show says failures=$(failures) locked=$(locked)"
    say "  failures=$1 locked=$2"
}

say "starting the daemon: mfa serve as root, in the background"
start_daemon
[ "$(stat -c '%a %U' "$socket")" = "666 root" ] || die "$socket is not 0666 root: $(stat -c '%a %U' "$socket")"
[ "$(stat -c '%a %U' "$root/run/pam_mfa")" = "755 root" ] || die "/run/pam_mfa is not 0755 root"

say "login: right password, right code -> success"
fresh_code
login 0 "Password: =$password" "Verification code: =$code"
echo "$out" | grep -q 'successfully authenticated' || die "no success message"
check_state 0 false

say "login: wrong password -> failure, counted"
login 1 "Password: =wrong-password"
echo "$out" | grep -q 'Verification code' && die "asked for a code after a wrong password"
check_state 1 false

say "login: right password, wrong code -> failure, counted"
login 1 "Password: =$password" "Verification code: =$(wrong_code)"
check_state 2 false

say "login: four more wrong passwords -> locked after the sixth failure"
for _ in 3 4 5 6; do login 1 "Password: =wrong-password" >/dev/null; done
check_state 6 true

say "locked: the account phase refuses"
status=0
in_root pamtester mfa-test "$user" acct_mgmt || status=$?
[ "$status" != 0 ] || die "acct_mgmt let a locked account through"

say "locked: the right password and code are refused, told so only after the password"
# A current code, not fresh_code: nothing may consume it, so no need to wait.
# Before the password nothing may differ from an unknown name (issue 13 #12).
login 1 "Password: =$password" "Verification code: =$(totp_at $(($(date +%s) / 30)))"
echo "$out" | grep -q 'Password:' || die "a locked account was not asked for its password"
echo "$out" | grep -q 'locked' || die "the right password of a locked account did not say it is locked"
check_state 6 true

say "mfa admin unlock $user, then a normal login"
in_root mfa admin unlock "$user"
check_state 0 false
fresh_code
login 0 "Password: =$password" "Verification code: =$code"
check_state 0 false

say "the README's authselect stack: right password and code, wrong password, wrong code"
service=mfa-test-authselect
fresh_code
login 0 "Password: =$password" "Verification code: =$code"
check_state 0 false
login 1 "Password: =wrong-password"
echo "$out" | grep -q 'Verification code' && die "asked for a code after a wrong password"
check_state 1 false
login 1 "Password: =$password" "Verification code: =$(wrong_code)"
check_state 2 false

say "daemon stopped: a login is refused at once, saying why, and nothing is counted"
service=mfa-test
stop_daemon
started=$(date +%s%N)
login 1 "Password: =$password"
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
echo "$out" | grep -qF "$unavailable" || die "no \"$unavailable\" line"
[ "$elapsed_ms" -lt 5000 ] || die "the refusal took ${elapsed_ms} ms"
say "  refused in ${elapsed_ms} ms"
check_state 2 false
start_daemon

say "upgrade (reinstall) with the daemon running: stacks kept, the stale daemon named"
old_pid=$daemon_pid
pam_enabled=$(snapshot "$root/etc/pam.d")
out=$(in_root dpkg -i "/tmp/$(basename "$deb")" 2>&1) || { echo "$out" >&2; die "reinstalling failed"; }
echo "$out" | grep 'libpam-mfa:' | sed 's/^/    | /'
snapshot "$root/etc/pam.d" | diff -u <(echo "$pam_enabled") - || die "reinstalling changed the enabled stacks (above)"
# dpkg replaced /usr/bin/mfa: the running daemon still executes the old file.
[ "$(readlink "/proc/$old_pid/exe")" = "$root/usr/bin/mfa (deleted)" ] ||
    die "expected the old daemon to run a deleted binary, it runs $(readlink "/proc/$old_pid/exe")"
echo "$out" | grep -q "mfa serve (pid $old_pid) still runs the replaced /usr/bin/mfa" ||
    die "postinst did not warn about the daemon running the replaced binary"

say "restarting the daemon, as the upgrade told us: the new binary serves"
stop_daemon
start_daemon
[ "$(readlink "/proc/$daemon_pid/exe")" = "$root/usr/bin/mfa" ] ||
    die "the restarted daemon runs $(readlink "/proc/$daemon_pid/exe")"
fresh_code
login 0 "Password: =$password" "Verification code: =$code"
check_state 0 false

# systemctl_calls PATTERN...: the stand-in recorded calls matching these
# extended regular expressions, in this order (others may come between).
systemctl_calls() {
    local calls
    calls=$(cat "$systemctl_log")
    echo "$calls" | sed 's/^/    systemctl /'
    while [ $# -gt 0 ]; do
        grep -qE -e "$1" <<<"$calls" || die "no systemctl call matching '$1' (after the ones before it)"
        calls=$(grep -E -A9999 -m1 -e "$1" <<<"$calls" | tail -n +2)
        shift
    done
}

say "upgrade where systemd runs (pretended: /run/systemd/system, a systemctl that records its calls)"
# Where systemd puts it: apt runs dpkg with its own PATH (DPkg::Path).
systemctl_log=$root/tmp/systemctl.log
printf '%s\n' '#!/bin/sh' 'echo "$*" >>/tmp/systemctl.log' \
    'case " $* " in *" is-enabled "*) echo enabled ;; esac' 'exit 0' >"$root/usr/bin/systemctl"
chmod 0755 "$root/usr/bin/systemctl"
mkdir -p "$root/run/systemd/system"
printf '#!/bin/sh\nexit 0\n' >"$root/usr/sbin/policy-rc.d"
: >"$systemctl_log"
in_root dpkg -i "/tmp/$(basename "$deb")" >/dev/null 2>&1 || die "reinstalling failed"
# Reload, restart a running daemon onto the new binary, keep the socket up.
systemctl_calls 'daemon-reload$' '(^| )try-restart pam-mfa\.service$' '(^| )start pam-mfa\.socket$'
grep -q 'stop' "$systemctl_log" && die "an upgrade stopped a unit"

say "apt-get remove with the daemon running: stacks restored, units stopped, the daemon named, database and config kept"
: >"$systemctl_log"
out=$(in_root apt-get remove -y -qq -o Dpkg::Use-Pty=0 libpam-mfa 2>&1) || { echo "$out" >&2; die "apt-get remove failed"; }
echo "$out" | grep 'libpam-mfa:' | sed 's/^/    | /'
systemctl_calls '(^| )stop pam-mfa\.socket pam-mfa\.service$' 'daemon-reload$'
echo "$out" | grep -q "mfa serve (pid $daemon_pid) is still running" ||
    die "prerm did not name the daemon still running"
stop_daemon
rmdir "$root/run/systemd/system"
rm "$root/usr/bin/systemctl"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
snapshot "$root/etc/pam.d" | diff -u "$work/pam.d.before" - || die "/etc/pam.d differs from before the install (above)"
[ -f "$root/var/lib/pam_mfa/mfa.sqlite3" ] || die "apt-get remove deleted the database"
[ -f "$root/etc/security/pam_mfa.toml" ] || die "apt-get remove deleted the config"

say "apt-get purge libpam-mfa"
in_root apt-get purge -y -qq -o Dpkg::Use-Pty=0 libpam-mfa
snapshot "$root/etc/pam.d" | diff -u "$work/pam.d.before" - || die "/etc/pam.d differs from before the install (above)"
[ ! -e "$root/var/lib/pam_mfa" ] || die "/var/lib/pam_mfa survived the purge"
[ ! -e "$root/etc/security/pam_mfa.toml" ] || die "the config survived the purge"
ls "$root"/usr/share/pam-configs/pam_mfa* >/dev/null 2>&1 && die "profiles survived the purge"
leftover=$(find "$root/etc/systemd" "$root/var/lib/systemd" -name 'pam-mfa*' 2>/dev/null)
[ -z "$leftover" ] || die "systemd links or state survived the purge: $leftover"
snapshot /etc/pam.d | cmp -s - "$work/host-pam.d.before" || die "the HOST's /etc/pam.d changed"

say "package test passed: install, enable, daemon, login, lockout, unlock, daemon down, upgrade, remove, purge ($(($(date +%s) - t0))s)"
