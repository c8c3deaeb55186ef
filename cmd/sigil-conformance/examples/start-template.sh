#!/bin/sh
# Start script template for any identity server. sigil-conformance -exec
# runs it with these variables set, and SIGTERMs its process group at the
# end (so exec the server, or let it run in the foreground):
#   CONFORMANCE_BASE_URL        http://127.0.0.1:PORT: listen there, and use it
#                               as the public base URL in mailed links
#   CONFORMANCE_SMTP_HOST/PORT  send mail there: plain SMTP, no TLS (any AUTH
#                               PLAIN credentials or none; SMTPUTF8 offered)
#   CONFORMANCE_SMS_URL         an HTTP API: any request to it is a text
#                               message; it must name the number and the code
#   CONFORMANCE_CA_FILE         trust this CA for federation requests
#   CONFORMANCE_HOMESERVER      the fake homeserver (127.0.0.1:PORT): allow
#                               requests to this loopback address
#   CONFORMANCE_SHORT_LIFETIME  only with -short-lifetimes D: configure D
#   CONFORMANCE_SHORT_LIFETIME_SECONDS  (the same, whole seconds) as the
#                               validation token and session lifetime
# For every case to run: list policies in /terms (two, one in two
# languages), and allow bursts of mail (a run sends about 30 mails, a few
# to the same address).
set -eu
# Next to the CA file: the runner removes its temporary directory at the end.
dir=$(dirname "$CONFORMANCE_CA_FILE")/server
mkdir -p "$dir"
# ... write your server's configuration into "$dir" from the variables ...
exec my-identity-server --config "$dir/config"
