#!/bin/sh
# bench/clients.sh: client token validation and agent heartbeats (issue 14
# item 7) over keep-alive HTTP, against /health of the same node in the
# same run: a release tokend on SQLite (--dev), a client with a token and a
# registered agent, then wrk runs interleaved (health, GET
# /v1/tokens/validate with the client token, POST /v1/agents/{id}/heartbeat),
# BENCH_RUNS rounds. Prints the median req/s and p99 of each and the ratios
# to /health. Aims: validation >= 70% of /health with p99 <= 2 ms,
# heartbeat >= 50%.
#
#   BENCH_DURATION=5  seconds per wrk run     BENCH_RUNS=3  rounds
#   BENCH_OUT=BENCHMARKS.md  where the figures are appended
set -eu
cd "$(dirname "$0")/.."
BENCH_DURATION=${BENCH_DURATION:-5}
BENCH_RUNS=${BENCH_RUNS:-3}
out=${BENCH_OUT:-BENCHMARKS.md}
BIN=${BENCH_BIN:-build/tokend}
[ -x "$BIN" ] || { echo "bench: $BIN not found; run 'make build/tokend' first" >&2; exit 1; }
command -v wrk >/dev/null 2>&1 || { echo "bench: wrk not found (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null 2>&1 || { echo "bench: curl not found" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tokend-clients.XXXXXX")
pid=""
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$BIN" serve --dev --listen 127.0.0.1:0 --data-dir "$tmp/data" >"$tmp/out" 2>"$tmp/err" &
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
client=$(post "$op" /v1/clients '{"name":"bench"}' | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p')
tkc=$(post "$op" "/v1/clients/$client/tokens" '{"name":"bench"}' | sed -n 's/.*"token": *"\(tkc_[A-Za-z0-9]*\)".*/\1/p')
agent=$(post "$tkc" /v1/agents/register '{"logical_agent_id":"bench-1","hostname":"bench","version":"1"}' | sed -n 's/^{"id": *"\([^"]*\)".*/\1/p')
[ -n "$tkc" ] && [ -n "$agent" ] || { echo "bench: could not set up a client, token and agent" >&2; exit 1; }
cat >"$tmp/hb.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"status":"ok"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $tkc"
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

wrk -t1 -c8 -d1s -H "Authorization: Bearer $tkc" "$base/v1/tokens/validate" >/dev/null # warm the cache
n=1
while [ $n -le "$BENCH_RUNS" ]; do
  run health "$base/health"
  run validate "$base/v1/tokens/validate" -H "Authorization: Bearer $tkc"
  run heartbeat "$base/v1/agents/$agent/heartbeat" -s "$tmp/hb.lua"
  n=$((n + 1))
done
h=$(cut -d' ' -f1 "$tmp/health" | median)
v=$(cut -d' ' -f1 "$tmp/validate" | median)
b=$(cut -d' ' -f1 "$tmp/heartbeat" | median)
vp=$(cut -d' ' -f2 "$tmp/validate" | median)
bp=$(cut -d' ' -f2 "$tmp/heartbeat" | median)
load=$(cut -d' ' -f1-3 /proc/loadavg)
fl=$(curl -sS "$base/metrics" | awk '/^tokend_heartbeat_flushes_total/ { s = s " " $1 "=" $2 } END { print s }')
hbn=$(curl -sS "$base/metrics" | awk '/^tokend_heartbeats_total\{outcome="ok"\}/ { print $2 }')
table=$(awk -v h="$h" -v v="$v" -v b="$b" -v vp="$vp" -v bp="$bp" 'BEGIN {
  printf "| endpoint | req/s (median) | p99 | ratio to /health | aim |\n|---|---:|---:|---:|---|\n"
  printf "| `GET /health` | %.0f | | 100%% | |\n", h
  printf "| `GET /v1/tokens/validate` (client token) | %.0f | %.2f ms | %.0f%% | >= 70%%, p99 <= 2 ms |\n", v, vp / 1000, 100 * v / h
  printf "| `POST /v1/agents/ID/heartbeat` | %.0f | %.2f ms | %.0f%% | >= 50%% |\n", b, bp / 1000, 100 * b / h }')
{
  echo ""
  echo "## $(date -u '+%Y-%m-%d %H:%M') UTC — clients, tokend $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo ""
  echo "- Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r), load average $load at the end"
  echo "- Command: \`make build/tokend && BENCH_DURATION=$BENCH_DURATION BENCH_RUNS=$BENCH_RUNS bench/clients.sh\`: \`$BIN serve --dev\` on SQLite (access log on), \`wrk -t1 -c64 --latency\`, interleaved rounds, medians"
  echo "- Heartbeats: $hbn answered, store writes (tokend_heartbeat_flushes_total):$fl"
  echo ""
  echo "$table"
} >>"$out"

echo
echo "median of $BENCH_RUNS x ${BENCH_DURATION}s, wrk -t1 -c64, SQLite, access log on, load average $load:"
awk -v h="$h" -v v="$v" -v b="$b" -v vp="$vp" -v bp="$bp" 'BEGIN {
  printf "  /health                      %9.0f req/s\n", h
  printf "  GET /v1/tokens/validate      %9.0f req/s  p99 %6.2f ms  (%.0f%% of /health; aim >= 70%%, p99 <= 2 ms)\n", v, vp / 1000, 100 * v / h
  printf "  POST /v1/agents/ID/heartbeat %9.0f req/s  p99 %6.2f ms  (%.0f%% of /health; aim >= 50%%)\n", b, bp / 1000, 100 * b / h }'
