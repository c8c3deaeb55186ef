# Shared by the CI scripts that start a Sigil outside the Go test harness
# (.ci/systemd-boot, .ci/image, .ci/dist-check, .ci/nocgo): a free port, waiting
# for readiness, and the README's "Try it" flow on v1.

# free_port prints a free loopback TCP port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_ready BASE [SECONDS]: until /readyz answers 200 (10 s unless told).
wait_ready() {
  for _ in $(seq $((${2:-10} * 10))); do curl -fsS "$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "no answer from $1/readyz"; return 1
}

# bind_email BASE EMAIL MXID LOGCMD...: validates EMAIL (the mail is in the
# server's log, read by LOGCMD: no smtp block), then binds it to MXID.
bind_email() {
  local base=$1 email=$2 mxid=$3 id sid link=""
  shift 3
  id="$base/_matrix/identity/api/v1"
  sid=$(curl -fsS "$id/validate/email/requestToken" -H 'Content-Type: application/json' \
    -d '{"client_secret":"s3cret","email":"'"$email"'","send_attempt":1}' | sed 's/.*"sid":"\([^"]*\)".*/\1/')
  for _ in $(seq 50); do
    link=$("$@" 2>&1 | grep -o "http://[^ ]*submitToken?[^\\ \"]*sid=$sid[^\\ \"]*" | head -1) && [ -n "$link" ] && break
    sleep 0.1
  done
  [ -n "$link" ] || { "$@"; echo "no validation link for $email in the log"; return 1; }
  curl -fsS "$link" >/dev/null
  curl -fsS "$id/3pid/bind" -H 'Content-Type: application/json' \
    -d '{"sid":"'"$sid"'","client_secret":"s3cret","mxid":"'"$mxid"'"}' >/dev/null
}

# lookup_email BASE EMAIL: the v1 lookup's body.
lookup_email() {
  curl -fsS "$1/_matrix/identity/api/v1/lookup?medium=email&address=$2"
}
