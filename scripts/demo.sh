#!/usr/bin/env bash
# make demo: a throwaway sshd on 127.0.0.1:2222 guarded by pam_mfa, with its
# own config, database and host key in a temp dir, policy "required", and a
# user `demo` whose password is printed. The first `ssh -p 2222 demo@127.0.0.1`
# sets up an authenticator app inside the login; the next asks for a code.
# Logins go through its own `mfa serve` on a socket in the temp dir.
# Ctrl-C stops sshd and the daemon and removes the user,
# /etc/pam.d/sshd-mfademo and the temp dir, and ends the demo with status 0.
# The host's own sshd, daemon and PAM files are never touched.
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."

# Ctrl-C is how the demo is meant to end, and a terminal sends it to its
# whole foreground process group: make too, which then dies of it (status
# 130, or "make: *** [Makefile:48: demo] Error 130") whatever the demo
# does. So at a terminal the demo runs as a job of its own (set -m: its own
# process group, given the terminal), which alone gets the Ctrl-C and ends
# with status 0; make and this shell just see it finish.
if [ -t 0 ] && [ -z "${PAM_MFA_DEMO_JOB:-}" ]; then
    set -m
    status=0
    PAM_MFA_DEMO_JOB=1 "$self" "$@" || status=$?
    exit "$status"
fi

port=${DEMO_PORT:-2222}
user=demo
service=sshd-mfademo
pam_file=/etc/pam.d/$service
# Marks what the demo made, so that a leftover of a killed demo can be
# cleaned up while anything else of the same name is left alone.
mark="pam_mfa demo account (make demo)"

die() {
    echo "make demo: $*" >&2
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null ||
        die "needs root: it runs sshd, writes $pam_file and creates the user '$user'. Run it as root."
    echo "make demo: needs root (it runs sshd, writes $pam_file and creates the user '$user'); asking sudo."
    exec sudo env "DEMO_PORT=$port" PAM_MFA_DEMO_JOB=1 ${CARGO_TARGET_DIR:+"CARGO_TARGET_DIR=$CARGO_TARGET_DIR"} "$self"
fi

# Refuse before making anything.
leftover_user=
if entry=$(getent passwd "$user"); then
    [ "$(echo "$entry" | cut -d: -f5)" = "$mark" ] ||
        die "a user '$user' exists and was not made by the demo; not touching it"
    leftover_user=1
fi
if [ -e "$pam_file" ] && ! grep -q "make demo" "$pam_file"; then
    die "$pam_file exists and was not written by the demo; not touching it"
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "something already listens on 127.0.0.1:$port (set DEMO_PORT to use another port)"
fi

scripts/install-test-deps.sh
# Under sudo, build as the user who owns the tree, with their toolchain
# (root's PATH rarely has cargo), so that target/ gets no root-owned files.
as_sudo_user() {
    runuser -u "$SUDO_USER" -- bash -lc "$1" demo "$PWD"
}
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] &&
    as_sudo_user 'command -v cargo' >/dev/null 2>&1; then
    as_sudo_user 'cd "$1" && cargo build --release'
elif command -v cargo >/dev/null; then
    cargo build --release
else
    die "cannot find cargo, as root or as ${SUDO_USER:-the sudo user}; install Rust (rustup) or run: sudo env PATH=\"\$PATH\" make demo"
fi
build_dir=${CARGO_TARGET_DIR:-$PWD/target}/release
[ -f "$build_dir/libpam_mfa.so" ] && [ -x "$build_dir/mfa" ] ||
    die "the build did not produce $build_dir/libpam_mfa.so and $build_dir/mfa"

dir=$(mktemp -d /tmp/pam_mfa_demo.XXXXXX)
made_user=
sshd_pid=
daemon_pid=
# TERM, then KILL if it is still there after 5 s: sshd that gets TERM while
# it handles the HUP of a closed terminal re-executes itself and lives on.
stop() {
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    trap - EXIT INT TERM HUP
    local pid
    for pid in $sshd_pid $daemon_pid; do
        stop "$pid"
    done
    if [ -n "$made_user" ]; then
        userdel -f -r "$user" 2>/dev/null || true
    fi
    rm -f "$pam_file"
    rm -rf "$dir"
    echo
    echo "Demo stopped: removed the user '$user', $pam_file and $dir."
}
trap cleanup EXIT
# Ctrl-C is how the demo is meant to end: not an error (make would say
# "Error 130" of a script that exits with 130).
trap 'exit 0' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [ -n "$leftover_user" ]; then
    userdel -f -r "$user" 2>/dev/null || true
fi
useradd -m -s /bin/bash -c "$mark" "$user"
made_user=1
password=$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')
echo "$user:$password" | chpasswd

# The module is copied so that a rebuild during the demo cannot swap it
# under a running sshd.
install -m 0644 "$build_dir/libpam_mfa.so" "$dir/pam_mfa.so"
config=$dir/pam_mfa.toml
cat >"$config" <<EOF
database = "$dir/db/mfa.sqlite3"
policy = "required"
enroll_at_login = true
issuer = "pam_mfa demo"
EOF
chmod 0600 "$config"
mfa=("$build_dir/mfa" --config "$config")
"${mfa[@]}" admin init >/dev/null
"${mfa[@]}" admin policy required >/dev/null

# Every login goes through the daemon; root's own `mfa` (the admin commands
# below) works on the database directly.
socket=$dir/mfa.sock
"${mfa[@]}" --socket "$socket" serve </dev/null &
daemon_pid=$!
for _ in $(seq 100); do
    [ -S "$socket" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || die "mfa serve did not start (see its messages above)"
    sleep 0.1
done
[ -S "$socket" ] || die "mfa serve did not listen on $socket"

cat >"$pam_file" <<EOF
# Written by make demo (pam_mfa); removed when the demo stops.
auth    requisite                  $dir/pam_mfa.so preauth config=$config socket=$socket
auth    [success=1 default=ignore] pam_unix.so
auth    [default=die]              $dir/pam_mfa.so authfail config=$config socket=$socket
auth    required                   $dir/pam_mfa.so config=$config socket=$socket
account required                   $dir/pam_mfa.so config=$config socket=$socket
account required                   pam_unix.so
session required                   pam_unix.so
EOF

ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
cat >"$dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
PubkeyAuthentication no
AuthenticationMethods keyboard-interactive
PermitRootLogin no
UseDNS no
PrintLastLog no
EOF
# Debian 12's sshd names its PAM service after its program name.
ln -s /usr/sbin/sshd "$dir/$service"
mkdir -p /run/sshd
# sshd logs each login attempt here (-e): part of the show. A copy goes to
# a file, where "Server listening" says it is ready: probing the port would
# make sshd log a kex_exchange_identification error for the probe.
"$dir/$service" -D -e -f "$dir/sshd_config" 2> >(tee "$dir/sshd.log" >&2) &
sshd_pid=$!
for _ in $(seq 100); do
    grep -q "Server listening" "$dir/sshd.log" 2>/dev/null && break
    kill -0 "$sshd_pid" 2>/dev/null || die "sshd did not start (see its messages above)"
    sleep 0.1
done
grep -q "Server listening" "$dir/sshd.log" 2>/dev/null || die "sshd did not start listening in time"

cat <<EOF

pam_mfa demo: sshd on 127.0.0.1:$port, policy "required".

  Log in (password: $password):

    ssh -p $port -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null $user@127.0.0.1

  The first login shows a QR code and a secret: scan it with an authenticator
  app, or compute a code with:  oathtool --totp -b SECRET
  Then log in again: after the password it asks for a verification code.

  As the administrator, in another terminal:
    ${mfa[*]} admin show $user
    ${mfa[*]} --user $user bypass generate --count 3
    ${mfa[*]} admin unlock $user

  Logins go through mfa serve (pid $daemon_pid) on $socket:
  stop it (kill $daemon_pid) to see what a login says when MFA is unavailable.

  The QR code needs a UTF-8 terminal; the secret works everywhere.
  Press Ctrl-C to stop; everything above is removed.

EOF
wait "$sshd_pid"
