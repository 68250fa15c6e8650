#!/bin/sh
# send-sms-http.sh PHONE [ENV_FILE]: an SMS gateway command for pam_mfa that
# posts the message to a generic HTTP SMS API with curl.
#
# pam_mfa (backend "command", see pam_mfa.toml(5)) runs it as root, without
# a shell, with an empty environment but PATH, the phone number as $1 and
# the message on standard input; it waits at most sms.timeout seconds.
# Exit 0 means sent; anything else means not sent, and the first line on
# standard error is what pam_mfa logs and shows the administrator.
#
# Install:
#   install -m 0755 -o root -g root conf/sms/send-sms-http.sh /usr/local/sbin/send-sms-http
# and in /etc/security/pam_mfa.toml:
#   [sms]
#   backend = "command"
#   command = ["/usr/local/sbin/send-sms-http", "{phone}"]
#
# The API's address and token live in a root-only file, not in the config
# or on a command line (where `ps` would show them), by default
# /etc/security/pam_mfa-sms.env (root:root, mode 0600), one KEY=value per
# line, no quotes; lines starting with # are comments:
#   SMS_API_URL=https://sms.example.com/v1/messages
#   SMS_API_TOKEN=your-api-token
#   SMS_FROM=ExampleCorp        (optional: the sender name or number)
#
# It sends
#   POST SMS_API_URL
#   Authorization: Bearer SMS_API_TOKEN
#   Content-Type: application/json
#   {"to":"PHONE","text":"MESSAGE"}            (plus "from" when SMS_FROM is set)
# Providers differ in field names and authentication: adapt body() and the
# header lines below to yours. Plain http:// is refused except to this host
# (a local relay), since the token would travel in clear.
#
# The message (which holds the code) and the token go to curl on its
# standard input, never on its command line.
set -eu

me=send-sms-http

die() {
    echo "$me: $*" >&2
    exit 1
}

[ $# -ge 1 ] || die "usage: $me PHONE [ENV_FILE] < message"
phone=$1
env_file=${2:-/etc/security/pam_mfa-sms.env}

case $phone in
    '' | *[!0-9+]*) die "refusing phone number with characters other than digits and +" ;;
esac

# The file holds the API token: it must be root's alone.
[ -f "$env_file" ] || die "$env_file does not exist; create it (root:root, mode 0600) with SMS_API_URL and SMS_API_TOKEN"
owner_mode=$(stat -c '%u %a' "$env_file")
case $owner_mode in
    "0 600" | "0 400") ;;
    *) die "$env_file must be owned by root with mode 0600 (it is uid/mode $owner_mode); fix with: chown root:root $env_file && chmod 0600 $env_file" ;;
esac

url=
token=
from=
# Read as data, never sourced: nothing in the file is run.
while IFS= read -r line || [ -n "$line" ]; do
    line=$(printf '%s' "$line" | tr -d '\r')
    case $line in
        '' | '#'*) continue ;;
        *=*) ;;
        *) die "$env_file: a line is not KEY=value" ;;
    esac
    key=${line%%=*}
    value=${line#*=}
    case $key in
        SMS_API_URL) url=$value ;;
        SMS_API_TOKEN) token=$value ;;
        SMS_FROM) from=$value ;;
        *) die "$env_file: unknown setting '$key' (known: SMS_API_URL, SMS_API_TOKEN, SMS_FROM)" ;;
    esac
done <"$env_file"

[ -n "$url" ] || die "$env_file does not set SMS_API_URL"
[ -n "$token" ] || die "$env_file does not set SMS_API_TOKEN"
case $url in
    https://*) ;;
    http://127.0.0.1[:/]* | http://localhost[:/]* | http://\[::1\][:/]*) ;;
    *) die "SMS_API_URL must start with https:// (plain http only to this host)" ;;
esac

message=$(cat)
[ -n "$message" ] || die "no message on standard input"

# A JSON string's content: backslashes and quotes escaped, line breaks and
# tabs made spaces, other control characters dropped.
json_string() {
    printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\r\t' '   ' | tr -d '\000-\037'
}

# A value for curl's config syntax, inside double quotes.
curl_string() {
    printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'
}

body() {
    printf '{"to":"%s","text":"%s"' "$(json_string "$phone")" "$(json_string "$message")"
    if [ -n "$from" ]; then
        printf ',"from":"%s"' "$(json_string "$from")"
    fi
    printf '}'
}

curl_config() {
    printf 'url = "%s"\n' "$(curl_string "$url")"
    printf 'header = "Authorization: Bearer %s"\n' "$(curl_string "$token")"
    printf 'header = "Content-Type: application/json"\n'
    printf 'data-raw = "%s"\n' "$(curl_string "$(body)")"
}

# -q first: no ~/.curlrc. --fail-with-body: an HTTP error is a failure, and
# the API's explanation is kept for the message below.
if ! response=$(curl_config | curl -q --silent --show-error --fail-with-body \
    --max-time 8 --proto =https,http --proto-redir =https --config - 2>&1); then
    detail=$(printf '%s' "$response" | tr '\r\n\t' '   ' | cut -c1-240)
    die "the SMS API at $url did not take the message: ${detail:-no answer}"
fi
exit 0
