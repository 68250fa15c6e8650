#!/bin/bash
# The .deb in a throwaway Debian 12 root: install, enable the pam-auth-update
# profiles, log in with pamtester through the stacks pam-auth-update wrote
# (password + code, a wrong password counting, lockout after six failures,
# the account phase refusing, unlock), then purge and check /etc/pam.d is
# byte for byte as before. Only files under the chroot change; the host's
# /etc/pam.d is checked to be untouched too.
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
cleanup() {
    local status=$?
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

in_root() {
    chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
json_field() { python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)[sys.argv[1]]))' "$1"; }

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
if ! in_root dpkg -i "/tmp/$(basename "$deb")"; then
    say "dpkg -i left dependencies open; apt-get -f install"
    in_root apt-get update -qq
    in_root apt-get -f install -y -qq
fi
in_root dpkg -s libpam-mfa | grep -q '^Status: install ok installed' || die "libpam-mfa is not installed"
snapshot "$root/etc/pam.d" | cmp -s - "$work/pam.d.before" ||
    die "installing the package changed /etc/pam.d although its profiles are Default: no"
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
service=mfa-test
login() {
    local expect=$1 status=0
    shift
    out=$(python3 packaging/test/converse.py --timeout 60 "$@" -- \
        chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin LC_ALL=C.UTF-8 \
        pamtester "$service" "$user" authenticate acct_mgmt) || status=$?
    echo "$out" | sed 's/^/    | /'
    [ "$status" = "$expect" ] || die "pamtester exited $status, expected $expect"
}
failures() { in_root mfa --json admin show "$user" | json_field failures; }
locked() { in_root mfa --json admin show "$user" | json_field locked; }
check_state() {
    [ "$(failures)" = "$1" ] && [ "$(locked)" = "$2" ] ||
        die "expected failures=$1 locked=$2, mfa admin show says failures=$(failures) locked=$(locked)"
    say "  failures=$1 locked=$2"
}

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

say "locked: the right password and code are refused, before the password is asked"
# A current code, not fresh_code: nothing may consume it, so no need to wait.
login 1 "Password: =$password" "Verification code: =$(totp_at $(($(date +%s) / 30)))"
echo "$out" | grep -q 'Password:' && die "preauth asked a locked account for its password"

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

say "reinstalling the same .deb keeps the enabled stack"
pam_enabled=$(snapshot "$root/etc/pam.d")
in_root dpkg -i "/tmp/$(basename "$deb")" >/dev/null
snapshot "$root/etc/pam.d" | diff -u <(echo "$pam_enabled") - || die "reinstalling changed the enabled stacks (above)"

say "apt-get remove: stacks restored, database and config kept"
in_root apt-get remove -y -qq -o Dpkg::Use-Pty=0 libpam-mfa
snapshot "$root/etc/pam.d" | diff -u "$work/pam.d.before" - || die "/etc/pam.d differs from before the install (above)"
[ -f "$root/var/lib/pam_mfa/mfa.sqlite3" ] || die "apt-get remove deleted the database"
[ -f "$root/etc/security/pam_mfa.toml" ] || die "apt-get remove deleted the config"

say "apt-get purge libpam-mfa"
in_root apt-get purge -y -qq -o Dpkg::Use-Pty=0 libpam-mfa
snapshot "$root/etc/pam.d" | diff -u "$work/pam.d.before" - || die "/etc/pam.d differs from before the install (above)"
[ ! -e "$root/var/lib/pam_mfa" ] || die "/var/lib/pam_mfa survived the purge"
[ ! -e "$root/etc/security/pam_mfa.toml" ] || die "the config survived the purge"
ls "$root"/usr/share/pam-configs/pam_mfa* >/dev/null 2>&1 && die "profiles survived the purge"
snapshot /etc/pam.d | cmp -s - "$work/host-pam.d.before" || die "the HOST's /etc/pam.d changed"

say "package test passed: install, enable, login, lockout, unlock, remove, purge ($(($(date +%s) - t0))s)"
