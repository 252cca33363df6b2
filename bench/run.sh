#!/bin/sh
# bench/run.sh: wrk benchmarks of the release binary build/tokend on
# loopback, as ratios to a hello-world measured in the same run; the
# figures are appended to BENCHMARKS.md.
#
# Starts build/bench-hello (bench/hello.c: libmicrohttpd configured as
# tokend's src/http/http.c, answering every GET from one prepared response)
# and `build/tokend serve --dev` on free loopback ports, tokend with a fresh
# data dir, then runs `wrk -t1 -c64 -d10s --latency` against
#   1. GET /health of the hello-world (the baseline)
#   2. GET /health of tokend
#   3. GET /v1/events?limit=1 of tokend, with the root operator token
# one after the other, BENCH_RUNS rounds, so that the machine's noise falls
# on the three alike. It records the median req/s, p50 and p99 latency, the
# server's CPU time per request (utime+stime from /proc/<pid>/stat around
# each run), tokend's RSS, and for tokend the median over the rounds of the
# ratio of its req/s to the hello-world's in the same round.
#
#   BENCH_DURATION=10   seconds per wrk run
#   BENCH_RUNS=3        rounds (median reported)
#   BENCH_WARMUP=2      seconds of unrecorded wrk before the rounds (0: none)
#   BENCH_OUT=BENCHMARKS.md
set -eu
cd "$(dirname "$0")/.."

BENCH_DURATION=${BENCH_DURATION:-10}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_OUT=${BENCH_OUT:-BENCHMARKS.md}
WRK_THREADS=1
WRK_CONNS=64
BIN=${BENCH_BIN:-build/tokend} # another build to compare (an A/B in the same minutes)
HELLO=build/bench-hello

die() {
  echo "bench: $*" >&2
  exit 1
}
[ -x "$BIN" ] || die "$BIN not found; run 'make build/tokend' first"
[ -x "$HELLO" ] || die "$HELLO not found; run 'make build/bench-hello' first"
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

: >"$tmp/hello.out" # there before the loop reads it (the child opens it after the fork)
"$HELLO" >"$tmp/hello.out" 2>&1 &
hpid=$!
hport=""
i=0
while [ -z "$hport" ] && [ $i -lt 100 ]; do
  hport=$(sed -n 's/^hello: listening on port \([0-9][0-9]*\)$/\1/p' "$tmp/hello.out")
  [ -n "$hport" ] || { kill -0 "$hpid" 2>/dev/null || die "$HELLO exited: $(cat "$tmp/hello.out")"; sleep 0.1; }
  i=$((i + 1))
done
[ -n "$hport" ] || die "$HELLO did not print its port"
hbase="http://127.0.0.1:$hport"
trap 'kill "$hpid" 2>/dev/null || true; cleanup' EXIT
echo "bench: hello-world pid $hpid listening on $hbase"

# Both endpoints must answer 200 before they are worth measuring.
for path in /health "/v1/events?limit=1"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$base$path")
  [ "$code" = 200 ] || die "GET $path answered $code, not 200"
done

# ---- helpers ----
clk_tck=$(getconf CLK_TCK)
# utime + stime of tokend in clock ticks (fields 14 and 15; the command name
# in field 2 is skipped by cutting after the last ')').
cpu_ticks() { # PID
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
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

# wrk_once NAME N PID URL AUTH(0|1): one recorded run; appends to NAME's lists
wrk_once() {
  name=$1 n=$2 spid=$3 url=$4 auth=$5
  if [ "$auth" = 1 ]; then
    set -- -H "Authorization: Bearer $token"
  else
    set --
  fi
  out="$tmp/wrk-$name-$n.txt"
  t0=$(cpu_ticks "$spid")
  wrk -t$WRK_THREADS -c$WRK_CONNS -d"${BENCH_DURATION}s" --latency "$@" "$url" >"$out"
  t1=$(cpu_ticks "$spid")
  if [ "$spid" = "$pid" ]; then
    rss=$(status_kb VmRSS)
    [ "$rss" -gt "${rss_max:-0}" ] && rss_max=$rss
  fi
  if grep -q 'Non-2xx or 3xx responses' "$out"; then
    cat "$out" >&2
    die "GET $url: wrk saw non-2xx responses; figures would be meaningless"
  fi
  reqs=$(awk '/requests in/ { print $1; exit }' "$out")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")
  p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
  errs=$(awk '/Socket errors:/ { sub(/.*Socket errors: /, ""); print; exit }' "$out")
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$clk_tck" -v n="$reqs" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
  echo "bench: round $n $name: $reqs requests, $rps req/s, p50 $(fmt_ms "$p50"), p99 $(fmt_ms "$p99"), server CPU $cpu us/req${errs:+, socket errors: $errs}"
  [ -n "$errs" ] && socket_errors="$socket_errors $name round $n: $errs;"
  eval "${name}_rps=\"\${${name}_rps:-} $rps\" ${name}_p50=\"\${${name}_p50:-} $p50\" ${name}_p99=\"\${${name}_p99:-} $p99\" ${name}_cpu=\"\${${name}_cpu:-} $cpu\""
  last_rps=$rps
}

# summary NAME: sets r_rps r_p50 r_p99 r_cpu r_runs from NAME's lists
summary() {
  eval "l_rps=\$${1}_rps l_p50=\$${1}_p50 l_p99=\$${1}_p99 l_cpu=\$${1}_cpu"
  r_rps=$(echo "$l_rps" | median)
  r_p50=$(echo "$l_p50" | median)
  r_p99=$(echo "$l_p99" | median)
  r_cpu=$(echo "$l_cpu" | median)
  r_runs=$(for v in $l_rps; do fmt_int "$v"; done | paste -sd / - | sed 's|/| / |g')
}

verdict_ratio() { # ratio aim
  awk -v r="$1" -v a="$2" 'BEGIN { if (r >= a) print "met"; else print "not met" }'
}

# ---- run ----
rss_max=0
socket_errors=""
if [ "$BENCH_WARMUP" -gt 0 ]; then
  wrk -t$WRK_THREADS -c$WRK_CONNS -d"${BENCH_WARMUP}s" "$hbase/health" >/dev/null
  wrk -t$WRK_THREADS -c$WRK_CONNS -d"${BENCH_WARMUP}s" "$base/health" >/dev/null
  wrk -t$WRK_THREADS -c$WRK_CONNS -d"${BENCH_WARMUP}s" -H "Authorization: Bearer $token" "$base/v1/events?limit=1" >/dev/null
fi
ratio_h="" ratio_e=""
n=1
while [ $n -le "$BENCH_RUNS" ]; do
  wrk_once hello $n "$hpid" "$hbase/health" 0
  hello_last=$last_rps
  wrk_once health $n "$pid" "$base/health" 0
  ratio_h="$ratio_h $(awk -v a="$last_rps" -v b="$hello_last" 'BEGIN { printf "%.3f", a / b }')"
  wrk_once events $n "$pid" "$base/v1/events?limit=1" 1
  ratio_e="$ratio_e $(awk -v a="$last_rps" -v b="$hello_last" 'BEGIN { printf "%.3f", a / b }')"
  n=$((n + 1))
done
summary hello
o_rps=$r_rps o_p50=$r_p50 o_p99=$r_p99 o_cpu=$r_cpu o_runs=$r_runs
summary health
h_rps=$r_rps h_p50=$r_p50 h_p99=$r_p99 h_cpu=$r_cpu h_runs=$r_runs
summary events
e_rps=$r_rps e_p50=$r_p50 e_p99=$r_p99 e_cpu=$r_cpu e_runs=$r_runs
h_ratio=$(echo "$ratio_h" | median)
e_ratio=$(echo "$ratio_e" | median)
ratios_list() { for v in $1; do printf '%.2f\n' "$v"; done | paste -sd / - | sed 's|/| / |g'; }
load_avg=$(cut -d' ' -f1-3 /proc/loadavg)
rss_end=$(status_kb VmRSS)
hwm=$(status_kb VmHWM)

kill -TERM "$pid"
wait "$pid" && stop="exit 0" || stop="exit $?"
pid=""
kill -TERM "$hpid" 2>/dev/null || true
wait "$hpid" 2>/dev/null || true
echo "bench: tokend stopped on SIGTERM ($stop)"

# ---- report ----
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(git status --porcelain -- src 2>/dev/null)" ]; then commit="$commit + uncommitted changes in src/"; fi
[ -n "${BENCH_BIN:-}" ] && commit="$BENCH_BIN (BENCH_BIN)"
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
  echo "- Baseline: \`build/bench-hello\` (bench/hello.c, libmicrohttpd $(ver libmicrohttpd12), 2 threads, tokend's flags and limits)"
  echo "- Load: \`$WRK_BASE http://127.0.0.1:<port>/health\` (hello-world, then tokend) and"
  echo "  \`$WRK_BASE -H '$AUTH_HDR' 'http://127.0.0.1:<port>/v1/events?limit=1'\`,"
  echo "  $BENCH_RUNS rounds of the three after a ${BENCH_WARMUP} s warm-up of each; command: \`make bench\` (bench/run.sh)"
  echo "- Load average at the end: $load_avg (the machine is shared: other builds and tests ran beside this)"
  echo
  echo "| endpoint | req/s (median) | ratio to hello-world (median of rounds) | p50 | p99 | server CPU µs/req | req/s per round | ratio per round | aim | aim met? |"
  echo "|---|---:|---:|---:|---:|---:|---|---|---|---|"
  echo "| hello-world GET /health (bench/hello.c) | $(fmt_int "$o_rps") | 1.00 | $(fmt_ms "$o_p50") | $(fmt_ms "$o_p99") | $o_cpu | $o_runs | | baseline | |"
  echo "| tokend GET /health | $(fmt_int "$h_rps") | $(printf '%.2f' "$h_ratio") | $(fmt_ms "$h_p50") | $(fmt_ms "$h_p99") | $h_cpu | $h_runs | $(ratios_list "$ratio_h") | ≥ 0.90 | $(verdict_ratio "$h_ratio" 0.90) |"
  echo "| tokend GET /v1/events?limit=1 (Bearer) | $(fmt_int "$e_rps") | $(printf '%.2f' "$e_ratio") | $(fmt_ms "$e_p50") | $(fmt_ms "$e_p99") | $e_cpu | $e_runs | $(ratios_list "$ratio_e") | ≥ 0.70, p99 ≤ 2 ms | $(verdict_ratio "$e_ratio" 0.70), p99 $(awk -v p="$e_p99" 'BEGIN { print (p <= 2000 ? "met" : "not met") }') |"
  echo
  echo "Each round measures the three one after the other, so the ratio of a round compares figures taken within seconds of each other; the table gives the median over the rounds."
  echo
  echo "tokend RSS: $(mb "$rss_end") after the runs (largest seen after a run $(mb "$rss_max"), peak VmHWM $(mb "$hwm")); stopped with SIGTERM: $stop."
  if [ -n "$socket_errors" ]; then
    echo "wrk socket errors:$socket_errors"
  fi
} >>"$BENCH_OUT"

echo "bench: appended to $BENCH_OUT:"
sed -n '/^## /h; /^## /!H; ${x; p}' "$BENCH_OUT"
