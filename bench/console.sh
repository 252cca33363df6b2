#!/bin/sh
# bench/console.sh: the admin console's pages on a store of 100,000 events
# (issue 17: every page under 100 KB and answered in under 50 ms). A release
# tokend on SQLite (--dev) is started once to make its store, stopped, and
# the events table is filled with BENCH_EVENTS events of the default tenant
# by SQL (spread over the last BENCH_EVENTS * 0.6 s, kinds, outcomes and
# subjects mixed; their hashes are placeholders: the chain is not what this
# measures); then it starts again, signs in to the console with the root
# token like a browser (login form, CSRF cookie, session cookie), and GETs
# each page BENCH_REQS times one after the other, with /health in the same
# run as the baseline. Prints the median and the slowest time and the size
# of each page, and appends them to BENCHMARKS.md.
#
#   BENCH_EVENTS=100000  BENCH_REQS=20  BENCH_OUT=BENCHMARKS.md
set -eu
cd "$(dirname "$0")/.."
EVENTS=${BENCH_EVENTS:-100000}
REQS=${BENCH_REQS:-20}
out=${BENCH_OUT:-BENCHMARKS.md}
BIN=${BENCH_BIN:-build/tokend}
[ -x "$BIN" ] || { echo "bench: $BIN not found; run 'make build/tokend' first" >&2; exit 1; }
command -v curl >/dev/null 2>&1 || { echo "bench: curl not found" >&2; exit 1; }
command -v sqlite3 >/dev/null 2>&1 || { echo "bench: sqlite3 not found" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tokend-console.XXXXXX")
pid=""
stop() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  pid=""
}
trap 'stop; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() {
  "$BIN" serve --dev --listen 127.0.0.1:0 --data-dir "$tmp/data" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  port=""
  i=0
  while [ -z "$port" ] && [ $i -lt 200 ]; do
    port=$(sed -n 's/^tokend: listening on port \([0-9][0-9]*\)$/\1/p' "$tmp/out" | head -n 1)
    [ -n "$port" ] || sleep 0.1
    i=$((i + 1))
  done
  [ -n "$port" ] || { cat "$tmp/err" >&2; echo "bench: tokend did not start" >&2; exit 1; }
  base="http://127.0.0.1:$port"
}

start
# an OAuth client and a machine client for the pages that show one
op=$(cat "$tmp/data/root-token")
post() { curl -sS -X POST -H "Content-Type: application/json" -H "Authorization: Bearer $op" -d "$2" "$base$1"; }
field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1; }
post /v1/oauth/scopes '{"name":"bench:read","description":"bench"}' >/dev/null
post /v1/oauth/clients '{"name":"bench","client_type":"confidential","application_type":"web",
  "token_endpoint_auth_method":"client_secret_basic","redirect_uris":["https://bench.example/cb"],
  "grant_types":["authorization_code"],"scopes":["bench:read"],"default_scopes":["bench:read"]}' >"$tmp/oclient"
ocid=$(field id <"$tmp/oclient")
oclient_id=$(field client_id <"$tmp/oclient")
post /v1/clients '{"name":"bench-agent-fleet"}' >"$tmp/client"
mcid=$(field id <"$tmp/client")
[ -n "$ocid" ] && [ -n "$mcid" ] || { cat "$tmp/oclient" "$tmp/client" >&2; echo "bench: setup failed" >&2; exit 1; }
stop
db="$tmp/data/tokend.db"
tenant=$(sqlite3 "$db" "SELECT id FROM tenants WHERE name = 'default'")
t0=$(date +%s%3N)
sqlite3 "$db" <<SQL
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $EVENTS),
base AS (SELECT event_seq AS s FROM tenants WHERE id = '$tenant')
INSERT INTO events (id, tenant_id, seq, at, trace_id, kind, source, action, outcome,
                    subject_type, subject_id, message, detail, latency_us, node, prev_hash, hash)
SELECT printf('01900000-0000-7000-8000-%012d', i), '$tenant', (SELECT s FROM base) + i,
       $t0 - ($EVENTS - i) * 600, printf('bench-%d', i),
       CASE i % 4 WHEN 0 THEN 'refresh' WHEN 1 THEN 'validate' WHEN 2 THEN 'oauth' ELSE 'operator' END,
       'bench', CASE i % 4 WHEN 0 THEN 'refresh' WHEN 1 THEN 'validate' WHEN 2 THEN 'token' ELSE 'authenticate' END,
       CASE WHEN i % 7 = 0 THEN 'failure' ELSE 'success' END,
       CASE i % 4 WHEN 0 THEN 'connection' WHEN 1 THEN 'client_token' WHEN 2 THEN 'oauth_flow' ELSE 'operator_token' END,
       printf('01900000-0000-7000-9000-%012d', i % 500),
       printf('bench event %d: an attempt with a message of ordinary length', i),
       '{"bench":true}', 1000 + i % 5000, 'bench', printf('%064d', i - 1), printf('%064d', i)
FROM n;
UPDATE tenants SET event_seq = event_seq + $EVENTS, event_head = printf('%064d', $EVENTS) WHERE id = '$tenant';
-- as many OAuth flows: most completed, some failed, old abandoned ones
-- (stuck) and a few in progress
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $EVENTS)
INSERT INTO oauth_flows (id, tenant_id, oauth_client_id, client_id, redirect_uri, scopes, stage,
                         status, failed_stage, error, reason, expires_at, created_at, updated_at,
                         token_exchanged_at)
SELECT printf('01900000-0000-7000-a000-%012d', i), '$tenant', '$ocid', '$oclient_id',
       'https://bench.example/cb', '["bench:read"]',
       CASE WHEN i % 10 < 7 THEN 'token_issued' WHEN i % 10 < 9 THEN 'token_exchanged' ELSE 'consent' END,
       CASE WHEN i % 10 < 7 THEN 'completed' WHEN i % 10 < 9 THEN 'failed'
            WHEN i > $EVENTS - 5 THEN 'active' ELSE 'active' END,
       CASE WHEN i % 10 IN (7, 8) THEN 'token_exchanged' END,
       CASE WHEN i % 10 IN (7, 8) THEN 'invalid_grant' END,
       CASE WHEN i % 10 IN (7, 8) THEN 'code_verifier does not match code_challenge' END,
       $t0 - ($EVENTS - i) * 600 + 600000, $t0 - ($EVENTS - i) * 600,
       CASE WHEN i > $EVENTS - 5 THEN $t0 ELSE $t0 - ($EVENTS - i) * 600 END,
       CASE WHEN i % 10 < 9 THEN $t0 - ($EVENTS - i) * 600 END
FROM n;
COMMIT;
SQL
total=$(sqlite3 "$db" "SELECT count(*) FROM events")
start
jar="$tmp/jar"
curl -sS -c "$jar" -b "$jar" "$base/console/login" >"$tmp/login.html"
csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' "$tmp/login.html" | head -n 1)
curl -sS -o /dev/null -c "$jar" -b "$jar" --data-urlencode "csrf=$csrf" \
  --data-urlencode "token=$(cat "$tmp/data/root-token")" --data-urlencode "next=/console/node" "$base/console/login"
grep -q tokend_console "$jar" || { echo "bench: console sign-in failed" >&2; exit 1; }

# path -> "median_ms max_ms bytes status"
measure() {
  : >"$tmp/times"
  n=0
  while [ $n -lt "$REQS" ]; do
    curl -sS -o "$tmp/page" -b "$jar" -w '%{time_total} %{size_download} %{http_code}\n' "$base$1" >>"$tmp/times"
    n=$((n + 1))
  done
  sort -n "$tmp/times" | awk -v n="$REQS" '{t[NR]=$1*1000; b=$2; c=$3} END {printf "%.1f %.1f %d %s\n", t[int((n+1)/2)], t[n], b, c}'
}

rows=""
for p in /health /console/node /console/events "/console/events?kind=refresh" "/console/events?outcome=failure" \
  /console/connections /console/clients "/console/clients/$mcid" /console/agents \
  /console/oauth/flows "/console/oauth/flows?status=failed" "/console/oauth/flows?status=stuck" \
  "/console/oauth/flows?status=active" "/console/oauth/clients/$ocid" \
  /console/tokens /console/tenants; do
  set -- $(measure "$p")
  rows="$rows| \`$p\` | $4 | $1 | $2 | $(($3 / 1024)) KiB ($3 B) |
"
done
load=$(cut -d' ' -f1-3 /proc/loadavg)
table="| page | status | median ms | slowest ms | size |
|---|---:|---:|---:|---:|
$rows"
{
  echo ""
  echo "## $(date -u '+%Y-%m-%d %H:%M') UTC — admin console pages, tokend $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo ""
  echo "- Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r), load average $load at the end"
  echo "- Release build on SQLite ($(sqlite3 --version | cut -d' ' -f1)), --dev; $total events and $EVENTS OAuth flows in the store (seeded by SQL, default tenant: events of four kinds, one in seven a failure; flows 70% completed, 20% failed, 10% abandoned, 4 in progress); signed in as the root admin; $REQS sequential GETs per page with curl (a new connection each), time_total; /health is the baseline of the same run"
  echo "- Command: \`make build/tokend && BENCH_EVENTS=$EVENTS BENCH_REQS=$REQS bench/console.sh\`; aims (issue 17): every page under 100 KB and under 50 ms"
  echo ""
  printf '%s' "$table"
} >>"$out"
printf '%s' "$table"
