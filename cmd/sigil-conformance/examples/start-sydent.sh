#!/bin/sh
# Start script for Sydent (matrix-org/sydent). Tested with Sydent 2.6.1
# (a37d60bd) run from a source checkout (PYTHONPATH=the checkout,
# SYDENT_RES=the checkout's res/) on Debian 12's python3 packages
# (python3-twisted, -signedjson, -matrix-common, -nacl, -phonenumbers,
# -netaddr, -sortedcontainers, -prometheus-client, -service-identity,
# -unpaddedbase64, -jinja2, -yaml, -attr, -openssl). The option names are
# Sydent's (sydent/config/*.py). Run as:
#   sigil-conformance -exec ./start-sydent.sh -skip 'code from the SMS' \
#     -expect expect-sydent.txt http://127.0.0.1:0
# Sydent sends texts through OpenMarket only, so the SMS code cannot reach
# the runner: skip that case (the phone cases that need it then skip).
# Sydent has no setting for validation lifetimes: do not pass
# -short-lifetimes (the expiry cases are then skipped, saying why).
set -eu
# Next to the CA file: the runner removes its temporary directory at the end.
dir=$(dirname "$CONFORMANCE_CA_FILE")/server
mkdir -p "$dir"
hostport=${CONFORMANCE_BASE_URL#http://}
port=${hostport##*:}
cat >"$dir/terms.yaml" <<YAML
master_version: "1"
docs:
  privacy:
    version: "1.0"
    langs:
      en: {name: Privacy policy, url: "$CONFORMANCE_BASE_URL/terms/privacy-1.0-en.html"}
      fr: {name: Politique de confidentialité, url: "$CONFORMANCE_BASE_URL/terms/privacy-1.0-fr.html"}
  terms:
    version: "2.0"
    langs:
      en: {name: Terms of service, url: "$CONFORMANCE_BASE_URL/terms/terms-2.0-en.html"}
YAML
cat >"$dir/sydent.conf" <<CONF
[general]
server.name = $hostport
log.path =
pidfile.path = $dir/sydent.pid
terms.path = $dir/terms.yaml
# Sydent's res/ directory (mail templates), from its source tree.
templates.path = ${SYDENT_RES:-res}
# The fake homeserver is on loopback, which Sydent refuses by default.
ip.whitelist = 127.0.0.0/8
[db]
db.file = $dir/sydent.db
[http]
clientapi.http.bind_address = 127.0.0.1
clientapi.http.port = $port
client_http_base = $CONFORMANCE_BASE_URL
# Sydent has no CA-file setting: certificates are not checked instead
# (the fake homeserver's certificate is issued by $CONFORMANCE_CA_FILE).
federation.verifycerts = false
[email]
email.smtphost = $CONFORMANCE_SMTP_HOST
email.smtpport = $CONFORMANCE_SMTP_PORT
email.tlsmode = 0
email.from = Sydent <noreply@localhost>
email.hostname = localhost
# A run sends about 30 mails and 20 invites from one account and IP.
email.ratelimit_sender.burst = 1000
email.ratelimit_sender.rate_hz = 100
[sms]
msisdn.ratelimit.burst = 1000
msisdn.ratelimit.rate_hz = 100
CONF
cd "$dir"
# PYTHON: the interpreter with those packages (Debian's /usr/bin/python3 when
# pyenv or a virtualenv comes first on PATH).
SYDENT_CONF="$dir/sydent.conf" exec "${PYTHON:-python3}" -m sydent.sydent
