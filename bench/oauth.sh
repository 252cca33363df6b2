#!/bin/sh
# bench/oauth.sh: the authorization server's hot paths (issue 15) over
# keep-alive HTTP, against /health of the same node in the same run: a
# release tokend on SQLite (--dev, ES256 signing key), a confidential OAuth
# client (client_secret_basic, grant client_credentials, one scope), then
# wrk runs interleaved, BENCH_RUNS rounds:
#   GET  /health
#   POST /oauth2/token       grant_type=client_credentials (Basic): a signed
#                            ES256 JWT per request
#   POST /oauth2/introspect  token=<one access token> (Basic)
# Prints the median req/s and p99 of each and the ratios to /health, and
# appends them to BENCHMARKS.md. Aims (issue 15): issuance >= 40% of
# /health, introspection >= 60%, p99 <= 5 ms.
#
#   BENCH_DURATION=5  seconds per wrk run     BENCH_RUNS=3  rounds
#   BENCH_OUT=BENCHMARKS.md  where the figures are appended
#   BENCH_ARGS  more arguments to serve (e.g. --oauth-signing-alg RS256)
set -eu
cd "$(dirname "$0")/.."
BENCH_DURATION=${BENCH_DURATION:-5}
BENCH_RUNS=${BENCH_RUNS:-3}
out=${BENCH_OUT:-BENCHMARKS.md}
BIN=${BENCH_BIN:-build/tokend}
[ -x "$BIN" ] || { echo "bench: $BIN not found; run 'make build/tokend' first" >&2; exit 1; }
command -v wrk >/dev/null 2>&1 || { echo "bench: wrk not found (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null 2>&1 || { echo "bench: curl not found" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tokend-oauth.XXXXXX")
pid=""
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck disable=SC2086 # BENCH_ARGS is a list of arguments
"$BIN" serve --dev --listen 127.0.0.1:0 --data-dir "$tmp/data" ${BENCH_ARGS:-} >"$tmp/out" 2>"$tmp/err" &
pid=$!
port=""
i=0
while [ -z "$port" ] && [ $i -lt 100 ]; do
  port=$(sed -n 's/^tokend: listening on port \([0-9][0-9]*\)$/\1/p' "$tmp/out" | head -n 1)
  [ -n "$port" ] || sleep 0.1
  i=$((i + 1))
done
[ -n "$port" ] || { cat "$tmp/err" >&2; echo "bench: tokend did not start" >&2; exit 1; }
base="http://127.0.0.1:$port"
op=$(cat "$tmp/data/root-token")
post() { curl -sS -X POST -H "Content-Type: application/json" -H "Authorization: Bearer $1" -d "$3" "$base$2"; }
field() { sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" | head -n 1; }

post "$op" /v1/oauth/scopes '{"name":"bench:read","description":"bench"}' >/dev/null
post "$op" /v1/oauth/clients '{"name":"bench","client_type":"confidential","application_type":"web",
  "token_endpoint_auth_method":"client_secret_basic","redirect_uris":["https://bench.example/cb"],
  "grant_types":["client_credentials"],"scopes":["bench:read"],"default_scopes":["bench:read"]}' >"$tmp/client"
cid=$(field client_id <"$tmp/client")
secret=$(field client_secret <"$tmp/client")
[ -n "$cid" ] && [ -n "$secret" ] || { cat "$tmp/client" >&2; echo "bench: could not create an OAuth client" >&2; exit 1; }
# RFC 6749 §2.3.1: form-urlencode id and secret before Basic (both are URL-safe here)
basic=$(printf '%s:%s' "$cid" "$secret" | base64 | tr -d '\n')
curl -sS -X POST -H "Authorization: Basic $basic" -H "Content-Type: application/x-www-form-urlencoded" \
  -d grant_type=client_credentials "$base/oauth2/token" >"$tmp/tok"
at=$(field access_token <"$tmp/tok")
[ -n "$at" ] || { cat "$tmp/tok" >&2; echo "bench: client_credentials failed" >&2; exit 1; }
alg=$(printf '%s' "$at" | cut -d. -f1 | tr '_-' '/+' | awk '{ n = length($0) % 4; if (n) $0 = $0 substr("===", 1, 4 - n); print }' | base64 -d 2>/dev/null | field alg)
curl -sS -X POST -H "Authorization: Basic $basic" -H "Content-Type: application/x-www-form-urlencoded" \
  -d "token=$at" "$base/oauth2/introspect" | grep -q '"active": *true' || { echo "bench: the token is not active" >&2; exit 1; }
cat >"$tmp/token.lua" <<LUA
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $basic"
LUA
cat >"$tmp/introspect.lua" <<LUA
wrk.method = "POST"
wrk.body = "token=$at"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $basic"
LUA

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
clk_tck=$(getconf CLK_TCK)
# run LABEL URL [wrk args]: appends "rps p99_us cpu_us_per_req" to $tmp/LABEL
run() {
  label=$1 url=$2
  shift 2
  t0=$(cpu_ticks "$pid")
  wrk -t1 -c64 -d"${BENCH_DURATION}s" --latency "$@" "$url" >"$tmp/w"
  if grep -q 'Non-2xx' "$tmp/w"; then cat "$tmp/w" >&2; echo "bench: $label: non-2xx answers" >&2; exit 1; fi
  t1=$(cpu_ticks "$pid")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/w")
  reqs=$(awk '/requests in/ { print $1; exit }' "$tmp/w")
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$clk_tck" -v n="$reqs" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')
  p99=$(awk '$1 == "99%" { v = $2 + 0; if ($2 ~ /us$/) f = 1; else if ($2 ~ /ms$/) f = 1000; else f = 1000000; printf "%.0f", v * f }' "$tmp/w")
  echo "$rps $p99 $cpu" >>"$tmp/$label"
  echo "bench: $label: $rps req/s, p99 $p99 us, tokend CPU $cpu us/req"
}
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

wrk -t1 -c8 -d1s -s "$tmp/token.lua" "$base/oauth2/token" >/dev/null # warm caches
n=1
while [ $n -le "$BENCH_RUNS" ]; do
  run health "$base/health"
  run token "$base/oauth2/token" -s "$tmp/token.lua"
  run introspect "$base/oauth2/introspect" -s "$tmp/introspect.lua"
  n=$((n + 1))
done
h=$(cut -d' ' -f1 "$tmp/health" | median)
tk=$(cut -d' ' -f1 "$tmp/token" | median)
in=$(cut -d' ' -f1 "$tmp/introspect" | median)
hp=$(cut -d' ' -f2 "$tmp/health" | median)
tp=$(cut -d' ' -f2 "$tmp/token" | median)
ip=$(cut -d' ' -f2 "$tmp/introspect" | median)
tc=$(cut -d' ' -f3 "$tmp/token" | median)
ic=$(cut -d' ' -f3 "$tmp/introspect" | median)
load=$(cut -d' ' -f1-3 /proc/loadavg)
table=$(awk -v h="$h" -v tk="$tk" -v in_="$in" -v hp="$hp" -v tp="$tp" -v ip="$ip" -v tc="$tc" -v ic="$ic" -v alg="$alg" 'BEGIN {
  printf "| endpoint | req/s (median) | p99 | tokend CPU/req | ratio to /health | aim |\n|---|---:|---:|---:|---:|---|\n"
  printf "| `GET /health` | %.0f | %.2f ms | | 100%% | |\n", h, hp / 1000
  printf "| `POST /oauth2/token` client_credentials (%s) | %.0f | %.2f ms | %.0f us | %.0f%% | >= 40%%, p99 <= 5 ms |\n", alg, tk, tp / 1000, tc, 100 * tk / h
  printf "| `POST /oauth2/introspect` | %.0f | %.2f ms | %.0f us | %.0f%% | >= 60%%, p99 <= 5 ms |\n", in_, ip / 1000, ic, 100 * in_ / h }')
{
  echo ""
  echo "## $(date -u '+%Y-%m-%d %H:%M') UTC — OAuth token issuance and introspection, tokend $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo ""
  echo "- Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r), $(openssl version 2>/dev/null || echo 'OpenSSL ?'), $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2), load average $load at the end"
  echo "- Command: \`make build/tokend && BENCH_DURATION=$BENCH_DURATION BENCH_RUNS=$BENCH_RUNS bench/oauth.sh\`: \`$BIN serve --dev${BENCH_ARGS:+ $BENCH_ARGS}\` on SQLite (access log on), one confidential client (client_secret_basic), \`wrk -t1 -c64 --latency\` on keep-alive connections, interleaved rounds, medians"
  echo ""
  echo "$table"
} >>"$out"

echo
echo "median of $BENCH_RUNS x ${BENCH_DURATION}s, wrk -t1 -c64, SQLite, access log on, signing $alg, load average $load:"
awk -v h="$h" -v tk="$tk" -v in_="$in" -v tp="$tp" -v ip="$ip" 'BEGIN {
  printf "  GET /health                 %9.0f req/s\n", h
  printf "  POST /oauth2/token (cc)     %9.0f req/s  p99 %6.2f ms  (%.0f%% of /health; aim >= 40%%, p99 <= 5 ms)\n", tk, tp / 1000, 100 * tk / h
  printf "  POST /oauth2/introspect     %9.0f req/s  p99 %6.2f ms  (%.0f%% of /health; aim >= 60%%, p99 <= 5 ms)\n", in_, ip / 1000, 100 * in_ / h }'
