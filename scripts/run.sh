#!/bin/sh
# run.sh: what 'make run' does after building: start tokend in development
# mode on the embedded SQLite store in ./tokend-data and say how to reach it.
set -eu
cd "$(dirname "$0")/.."
addr=${TOKEND_LISTEN:-127.0.0.1:8750}
cat <<TXT
Starting tokend on http://$addr (SQLite in ./tokend-data, development mode).
  console: http://$addr/console/       (sign in with the token in tokend-data/root-token)
  health:  curl http://$addr/health
  status:  build/tokend status          (uses ./tokend-data/root-token)
  events:  build/tokend events -f
  API:     curl -H "Authorization: Bearer \$(cat tokend-data/root-token)" http://$addr/v1/events
Stop with Ctrl-C.
TXT
exec build/tokend serve --dev --listen "$addr" "$@"
