#!/bin/sh
# send-sms-gammu.sh PHONE [smsd|direct]: an SMS gateway command for pam_mfa
# that sends the message through a GSM modem or phone with Gammu.
#
# pam_mfa (backend "command", see pam_mfa.toml(5)) runs it as root, without
# a shell, with an empty environment but PATH, the phone number as $1 and
# the message on standard input; it waits at most sms.timeout seconds.
# Exit 0 means sent (or queued); anything else means not sent, and the
# first line on standard error is what pam_mfa logs and shows.
#
# Two ways to reach the modem:
#   smsd    gammu-smsd owns the modem (package gammu-smsd, configured in
#           /etc/gammu-smsdrc): the message is put in its queue with
#           gammu-smsd-inject, and the daemon sends it moments later.
#           Use this when anything else uses the modem too.
#   direct  no daemon: `gammu sendsms` opens the modem itself (package
#           gammu, configured in /etc/gammurc), sends, and waits for the
#           network to confirm. Raise sms.timeout (30 is typical) since a
#           modem can take that long.
# Without the second argument: smsd when /etc/gammu-smsdrc exists, else
# direct.
#
# Install:
#   install -m 0755 -o root -g root conf/sms/send-sms-gammu.sh /usr/local/sbin/send-sms-gammu
# and in /etc/security/pam_mfa.toml:
#   [sms]
#   backend = "command"
#   command = ["/usr/local/sbin/send-sms-gammu", "{phone}"]
#   timeout = 30
#
# The message (which holds the code) reaches gammu on its standard input,
# never on its command line, where `ps` would show it.
set -eu

me=send-sms-gammu

die() {
    echo "$me: $*" >&2
    exit 1
}

[ $# -ge 1 ] || die "usage: $me PHONE [smsd|direct] < message"
phone=$1
case $phone in
    '' | *[!0-9+]*) die "refusing phone number with characters other than digits and +" ;;
esac

mode=${2:-}
if [ -z "$mode" ]; then
    if [ -f /etc/gammu-smsdrc ]; then mode=smsd; else mode=direct; fi
fi

message=$(cat)
[ -n "$message" ] || die "no message on standard input"

# gammu's own messages, flattened into the one line pam_mfa reports.
report() {
    detail=$(printf '%s' "$2" | tr '\r\n\t' '   ' | cut -c1-240)
    die "$1 failed: ${detail:-no message from gammu}"
}

case $mode in
    smsd)
        command -v gammu-smsd-inject >/dev/null || die "gammu-smsd-inject not found: install gammu-smsd, or pass 'direct'"
        if ! out=$(printf '%s' "$message" | gammu-smsd-inject TEXT "$phone" 2>&1); then
            report "gammu-smsd-inject (queueing for gammu-smsd)" "$out"
        fi
        ;;
    direct)
        command -v gammu >/dev/null || die "gammu not found: install gammu"
        if ! out=$(printf '%s' "$message" | gammu sendsms TEXT "$phone" 2>&1); then
            report "gammu sendsms" "$out"
        fi
        ;;
    *) die "unknown mode '$mode': use smsd or direct" ;;
esac
exit 0
