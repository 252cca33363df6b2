#!/bin/sh
# bench/authcache.sh: GET /v1/whoami with the authentication cache
# (auth_cache_size default) against without it (auth_cache_size 0), in the
# same run: two release tokend nodes on SQLite side by side, wrk runs
# interleaved (health, whoami cached, whoami uncached, repeated), so that a
# noisy machine weighs on both alike. Prints the median req/s and p99 of
# each and the ratios; /health of the cached node is the reference.
#
#   BENCH_DURATION=5  seconds per wrk run     BENCH_RUNS=3  rounds
set -eu
cd "$(dirname "$0")/.."
BENCH_DURATION=${BENCH_DURATION:-5}
BENCH_RUNS=${BENCH_RUNS:-3}
BIN=build/tokend
[ -x "$BIN" ] || { echo "bench: $BIN not found; run 'make build/tokend' first" >&2; exit 1; }
command -v wrk >/dev/null 2>&1 || { echo "bench: wrk not found (apt-get install wrk)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tokend-authcache.XXXXXX")
pids=""
cleanup() {
  for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $pids; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME ARGS...: sets port_NAME
start() {
  name=$1; shift
  "$BIN" serve --dev --listen 127.0.0.1:0 --data-dir "$tmp/$name" "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids="$pids $!"
  eval "pid_$name=$!"
  i=0
  while [ $i -lt 100 ]; do
    p=$(sed -n 's/^tokend: listening on port \([0-9][0-9]*\)$/\1/p' "$tmp/$name.out" | head -n 1)
    if [ -n "$p" ]; then eval "port_$name=$p"; return 0; fi
    sleep 0.1
    i=$((i + 1))
  done
  cat "$tmp/$name.err" >&2
  echo "bench: $name did not start" >&2
  exit 1
}
start cached
start uncached --auth-cache-size 0
tok_cached=$(cat "$tmp/cached/root-token")
tok_uncached=$(cat "$tmp/uncached/root-token")

# utime + stime of a process in clock ticks
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
clk_tck=$(getconf CLK_TCK)

# run LABEL PID URL [TOKEN]: appends "rps p99_us cpu_us_per_req" to $tmp/LABEL
run() {
  label=$1 pid=$2 url=$3 tok=${4:-}
  t0=$(cpu_ticks "$pid")
  if [ -n "$tok" ]; then
    wrk -t1 -c64 -d"${BENCH_DURATION}s" --latency -H "Authorization: Bearer $tok" "$url" >"$tmp/w"
  else
    wrk -t1 -c64 -d"${BENCH_DURATION}s" --latency "$url" >"$tmp/w"
  fi
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

# warm up both (and fill the cache)
wrk -t1 -c8 -d1s -H "Authorization: Bearer $tok_cached" "http://127.0.0.1:$port_cached/v1/whoami" >/dev/null
wrk -t1 -c8 -d1s -H "Authorization: Bearer $tok_uncached" "http://127.0.0.1:$port_uncached/v1/whoami" >/dev/null
n=1
while [ $n -le "$BENCH_RUNS" ]; do
  run health "$pid_cached" "http://127.0.0.1:$port_cached/health"
  run whoami_cached "$pid_cached" "http://127.0.0.1:$port_cached/v1/whoami" "$tok_cached"
  run whoami_uncached "$pid_uncached" "http://127.0.0.1:$port_uncached/v1/whoami" "$tok_uncached"
  n=$((n + 1))
done
h=$(cut -d' ' -f1 "$tmp/health" | median)
c=$(cut -d' ' -f1 "$tmp/whoami_cached" | median)
u=$(cut -d' ' -f1 "$tmp/whoami_uncached" | median)
cp=$(cut -d' ' -f2 "$tmp/whoami_cached" | median)
up=$(cut -d' ' -f2 "$tmp/whoami_uncached" | median)
hc=$(cut -d' ' -f3 "$tmp/health" | median)
cc=$(cut -d' ' -f3 "$tmp/whoami_cached" | median)
uc=$(cut -d' ' -f3 "$tmp/whoami_uncached" | median)
echo
echo "median of $BENCH_RUNS x ${BENCH_DURATION}s, wrk -t1 -c64, SQLite, access log on:"
awk -v h="$h" -v c="$c" -v u="$u" -v cp="$cp" -v up="$up" -v hc="$hc" -v cc="$cc" -v uc="$uc" 'BEGIN {
  printf "  /health                          %9.0f req/s                 tokend CPU %5.1f us/req\n", h, hc
  printf "  /v1/whoami auth_cache_size=10000 %9.0f req/s  p99 %6.2f ms  tokend CPU %5.1f us/req  (%.0f%% of /health req/s)\n", c, cp / 1000, cc, 100 * c / h
  printf "  /v1/whoami auth_cache_size=0     %9.0f req/s  p99 %6.2f ms  tokend CPU %5.1f us/req  (%.0f%% of /health req/s)\n", u, up / 1000, uc, 100 * u / h
  printf "  cached / uncached: %.2fx req/s, %.2fx CPU per request\n", c / u, uc / cc }'
