#!/bin/sh
# bench/run.sh: wrk benchmarks of the release binary build/tokend on
# loopback; the figures are appended to BENCHMARKS.md.
#
# Starts `build/tokend serve --dev` on a free loopback port with a fresh data
# dir, then runs `wrk -t1 -c64 -d10s --latency` BENCH_RUNS times against
#   1. GET /health
#   2. GET /v1/events?limit=1 with the root operator token
# and records the median req/s, p50 and p99 latency, tokend's CPU time per
# request (utime+stime from /proc/<pid>/stat around each run) and its RSS.
#
#   BENCH_DURATION=10   seconds per wrk run
#   BENCH_RUNS=3        runs per endpoint (median reported)
#   BENCH_WARMUP=2      seconds of unrecorded wrk before each endpoint (0: none)
#   BENCH_OUT=BENCHMARKS.md
set -eu
cd "$(dirname "$0")/.."

BENCH_DURATION=${BENCH_DURATION:-10}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_OUT=${BENCH_OUT:-BENCHMARKS.md}
WRK_THREADS=1
WRK_CONNS=64
BIN=build/tokend

die() {
  echo "bench: $*" >&2
  exit 1
}
[ -x "$BIN" ] || die "$BIN not found; run 'make build/tokend' first"
command -v wrk >/dev/null 2>&1 || die "wrk not found (apt-get install wrk)"
command -v curl >/dev/null 2>&1 || die "curl not found (apt-get install curl)"
case "$BENCH_DURATION$BENCH_RUNS" in *[!0-9]*) die "BENCH_DURATION and BENCH_RUNS must be integers" ;; esac
[ "$BENCH_RUNS" -ge 1 ] || die "BENCH_RUNS must be at least 1"

. bench/lib.sh

# ---- start tokend ----
start_tokend bench
[ -s "$data/root-token" ] || die "no root token in $data/root-token"
token=$(cat "$data/root-token")
base="http://127.0.0.1:$port"
echo "bench: tokend pid $pid listening on $base"

# Both endpoints must answer 200 before they are worth measuring.
for path in /health "/v1/events?limit=1"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$base$path")
  [ "$code" = 200 ] || die "GET $path answered $code, not 200"
done

# ---- helpers ----
clk_tck=$(getconf CLK_TCK)
# utime + stime of tokend in clock ticks (fields 14 and 15; the command name
# in field 2 is skipped by cutting after the last ')').
cpu_ticks() {
  sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'
}
status_kb() {
  awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"
}
# wrk latency ("812.00us", "1.23ms", "1.02s", "2.00m") to microseconds
to_us() {
  echo "$1" | awk '{
    v = $1 + 0
    if ($1 ~ /us$/) f = 1; else if ($1 ~ /ms$/) f = 1000;
    else if ($1 ~ /m$/) f = 60000000; else if ($1 ~ /s$/) f = 1000000; else f = 1
    printf "%.0f", v * f }'
}
median() {
  tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 }
    END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
fmt_int() { # 12345.6 -> 12,346
  printf '%.0f\n' "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta'
}
fmt_ms() { # microseconds -> "0.81 ms"
  awk -v u="$1" 'BEGIN { printf "%.2f ms", u / 1000 }'
}

WRK_BASE="wrk -t$WRK_THREADS -c$WRK_CONNS -d${BENCH_DURATION}s --latency"
AUTH_HDR='Authorization: Bearer $(cat <data-dir>/root-token)'

# bench_endpoint NAME PATH AUTH(0|1): sets r_rps r_p50 r_p99 r_cpu r_runs
bench_endpoint() {
  name=$1 path=$2 auth=$3
  if [ "$auth" = 1 ]; then
    set -- -H "Authorization: Bearer $token"
  else
    set --
  fi
  if [ "$BENCH_WARMUP" -gt 0 ]; then
    wrk -t$WRK_THREADS -c$WRK_CONNS -d"${BENCH_WARMUP}s" "$@" "$base$path" >/dev/null
  fi
  rps_l="" p50_l="" p99_l="" cpu_l=""
  n=1
  while [ $n -le "$BENCH_RUNS" ]; do
    out="$tmp/wrk-$name-$n.txt"
    t0=$(cpu_ticks)
    wrk -t$WRK_THREADS -c$WRK_CONNS -d"${BENCH_DURATION}s" --latency "$@" "$base$path" >"$out"
    t1=$(cpu_ticks)
    rss=$(status_kb VmRSS)
    [ "$rss" -gt "${rss_max:-0}" ] && rss_max=$rss
    if grep -q 'Non-2xx or 3xx responses' "$out"; then
      cat "$out" >&2
      die "GET $path: wrk saw non-2xx responses; figures would be meaningless"
    fi
    reqs=$(awk '/requests in/ { print $1; exit }' "$out")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
    errs=$(awk '/Socket errors:/ { sub(/.*Socket errors: /, ""); print; exit }' "$out")
    cpu=$(awk -v d=$((t1 - t0)) -v hz="$clk_tck" -v n="$reqs" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
    echo "bench: $name run $n: $reqs requests, $rps req/s, p50 $(fmt_ms "$p50"), p99 $(fmt_ms "$p99"), tokend CPU $cpu us/req${errs:+, socket errors: $errs}"
    [ -n "$errs" ] && socket_errors="$socket_errors $name run $n: $errs;"
    rps_l="$rps_l $rps" p50_l="$p50_l $p50" p99_l="$p99_l $p99" cpu_l="$cpu_l $cpu"
    n=$((n + 1))
  done
  r_rps=$(echo "$rps_l" | median)
  r_p50=$(echo "$p50_l" | median)
  r_p99=$(echo "$p99_l" | median)
  r_cpu=$(echo "$cpu_l" | median)
  r_runs=$(for v in $rps_l; do fmt_int "$v"; done | paste -sd / - | sed 's|/| / |g')
}

verdict() { # req/s aim
  awk -v r="$1" -v a="$2" 'BEGIN { if (r >= a) print "met"; else printf "not met (%.0f%%)", 100 * r / a }'
}

# ---- run ----
rss_max=0
socket_errors=""
bench_endpoint health /health 0
h_rps=$r_rps h_p50=$r_p50 h_p99=$r_p99 h_cpu=$r_cpu h_runs=$r_runs
bench_endpoint events "/v1/events?limit=1" 1
e_rps=$r_rps e_p50=$r_p50 e_p99=$r_p99 e_cpu=$r_cpu e_runs=$r_runs
rss_end=$(status_kb VmRSS)
hwm=$(status_kb VmHWM)

kill -TERM "$pid"
wait "$pid" && stop="exit 0" || stop="exit $?"
pid=""
echo "bench: tokend stopped on SIGTERM ($stop)"

# ---- report ----
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(git status --porcelain -- src 2>/dev/null)" ]; then commit="$commit + uncommitted changes in src/"; fi
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }

if [ ! -f "$BENCH_OUT" ]; then
  cat >"$BENCH_OUT" <<'TXT'
# tokend benchmarks

Figures appended by `make bench` (bench/run.sh), newest last. Each section
records one run on one machine: the release binary `build/tokend` started
with `serve --dev` on a fresh SQLite data dir in a temporary directory,
loaded with [wrk](https://github.com/wg/wrk) over loopback with keep-alive
(`wrk -t1 -c64`, so wrk and tokend share the machine). Each endpoint gets a
short unrecorded warm-up, then BENCH_RUNS runs of BENCH_DURATION seconds;
the table gives the median of each figure across the runs (each column's
median on its own) and every run's req/s. Latency percentiles are wrk's
(`--latency`). CPU µs/req is tokend's user+system time from
`/proc/<pid>/stat` over a run divided by the requests wrk completed in it.
RSS is tokend's resident memory after the runs and its peak (VmHWM).

Aims (issue 2, item 9): ≥ 60,000 req/s for `GET /health` and ≥ 40,000 req/s
for the authenticated `GET /v1/events?limit=1`, keep-alive, `wrk -t1 -c64`
on 2 cores.
TXT
fi

{
  echo
  echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — tokend $commit"
  echo
  echo "- Machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, $(uname -sr)"
  echo "- Versions: $("$BIN" version | head -n 1); libmicrohttpd $(ver libmicrohttpd12), SQLite $(ver libsqlite3-0), wrk $(ver wrk)"
  echo "- tokend: \`$BIN serve --dev --listen 127.0.0.1:0 --data-dir <tmpdir>\`, the default configuration (2 HTTP threads, SQLite store, access log on, to ${BENCH_LOG:-a file})"
  echo "- Load: \`$WRK_BASE http://127.0.0.1:<port>/health\` and"
  echo "  \`$WRK_BASE -H '$AUTH_HDR' 'http://127.0.0.1:<port>/v1/events?limit=1'\`,"
  echo "  $BENCH_RUNS runs each after a ${BENCH_WARMUP} s warm-up"
  echo
  echo "| endpoint | req/s (median) | ratio to /health | p50 | p99 | tokend CPU µs/req | req/s per run | aim | aim met? |"
  echo "|---|---:|---:|---:|---:|---:|---|---:|---|"
  echo "| GET /health | $(fmt_int "$h_rps") | 1.00 | $(fmt_ms "$h_p50") | $(fmt_ms "$h_p99") | $h_cpu | $h_runs | ≥ 60,000 | $(verdict "$h_rps" 60000) |"
  echo "| GET /v1/events?limit=1 (Bearer) | $(fmt_int "$e_rps") | $(awk -v a="$e_rps" -v b="$h_rps" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }') | $(fmt_ms "$e_p50") | $(fmt_ms "$e_p99") | $e_cpu | $e_runs | ≥ 40,000 | $(verdict "$e_rps" 40000) |"
  echo
  echo "The ratio is the baseline the machine's noise cancels out of: both endpoints are measured in this run, on this machine, minutes apart."
  echo
  echo "tokend RSS: $(mb "$rss_end") after the runs (largest seen after a run $(mb "$rss_max"), peak VmHWM $(mb "$hwm")); stopped with SIGTERM: $stop."
  if [ -n "$socket_errors" ]; then
    echo "wrk socket errors:$socket_errors"
  fi
} >>"$BENCH_OUT"

echo "bench: appended to $BENCH_OUT:"
sed -n '/^## /h; /^## /!H; ${x; p}' "$BENCH_OUT"
