#!/bin/sh
# Start script template for Sigil (tested: it is .ci/conformance-sigil with
# an installed binary). Run as:
#   sigil-conformance -exec ./start-sigil.sh http://127.0.0.1:0
# sigil-conformance starts it once its SMTP sink, SMS sink, fake homeserver
# and CA file exist, with:
#   CONFORMANCE_BASE_URL      where the server must listen (http://127.0.0.1:PORT)
#   CONFORMANCE_SMTP_HOST/PORT  plain SMTP, no TLS, any AUTH PLAIN
#   CONFORMANCE_SMS_URL       an HTTP API that takes any request as a text
#   CONFORMANCE_CA_FILE       the fake homeserver's CA, to trust for federation
#   CONFORMANCE_HOMESERVER    the fake homeserver's name (127.0.0.1:PORT)
#   CONFORMANCE_SHORT_LIFETIME  only with -short-lifetimes D: D, as the
#                             validation token and session lifetime
# and stops it (its whole process group) with SIGTERM at the end.
set -eu
SIGIL=${SIGIL:-sigil}
# Next to the CA file: the runner removes its temporary directory at the end.
dir=$(dirname "$CONFORMANCE_CA_FILE")/server
mkdir -p "$dir"
hostport=${CONFORMANCE_BASE_URL#http://}
cat >"$dir/sigil.yaml" <<YAML
server_name: "$hostport"
public_base_url: "$CONFORMANCE_BASE_URL"
listen: "$hostport"
database: "$dir/sigil.db"
signing_key: "$dir/signing.key"
smtp: {host: "$CONFORMANCE_SMTP_HOST", port: $CONFORMANCE_SMTP_PORT, tls: none, from: "Sigil <noreply@localhost>"}
sms: {url: "$CONFORMANCE_SMS_URL", from: "+15005550006"}
limits: {mail_every: 1ms, mail_burst: 1000}
federation: {allow_private_addresses: true, ca_file: "$CONFORMANCE_CA_FILE"}
$(if [ -n "${CONFORMANCE_SHORT_LIFETIME:-}" ]; then echo "sessions: {token_lifetime: $CONFORMANCE_SHORT_LIFETIME, session_lifetime: $CONFORMANCE_SHORT_LIFETIME}"; fi)
terms:
  - id: privacy
    version: "1.0"
    languages:
      en: {name: Privacy policy, url: "$CONFORMANCE_BASE_URL/terms/privacy-1.0-en.html"}
      fr: {name: Politique de confidentialité, url: "$CONFORMANCE_BASE_URL/terms/privacy-1.0-fr.html"}
  - id: terms
    version: "2.0"
    languages:
      en: {name: Terms of service, url: "$CONFORMANCE_BASE_URL/terms/terms-2.0-en.html"}
YAML
exec "$SIGIL" -config "$dir/sigil.yaml"
