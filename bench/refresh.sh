#!/bin/sh
# bench/refresh.sh: the refresh engine (issue 18, Benchmark): N connections
# all due when a node starts, against a fast loopback token endpoint (node,
# tests/e2e/lib/engineupstream.mjs); refreshes per second, tokend's CPU
# time per refresh and its peak RSS, on SQLite and on a throwaway
# PostgreSQL (tests/with-postgres.sh with TOKEND_PG_FSYNC=on). See
# bench/refresh.mjs for the steps. Appended to BENCHMARKS.md.
#
#   REFRESH_BENCH_N=10000          connections on SQLite
#   REFRESH_BENCH_PG_N=2000        connections on PostgreSQL (0: skip)
#   REFRESH_BENCH_CONCURRENCY=64   refresh_concurrency (and per provider)
#   BENCH_OUT=BENCHMARKS.md
set -eu
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-BENCHMARKS.md}
n=${REFRESH_BENCH_N:-10000}
pgn=${REFRESH_BENCH_PG_N:-2000}
conc=${REFRESH_BENCH_CONCURRENCY:-64}
[ -x build/tokend ] || { echo "bench: build/tokend not found; run 'make build/tokend'" >&2; exit 1; }
command -v node >/dev/null 2>&1 || { echo "bench: node not found" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tokend-refresh-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/sqlite" "$tmp/pg"
node bench/refresh.mjs build/tokend "$n" "" "$tmp/sqlite" "$conc" >"$tmp/sqlite.json"
if [ "$pgn" -gt 0 ]; then
  TOKEND_PG_FSYNC=on tests/with-postgres.sh sh -c 'node bench/refresh.mjs build/tokend "$1" "$TOKEND_TEST_PG" "$2" "$3"' \
    sh "$pgn" "$tmp/pg" "$conc" >"$tmp/pg.json"
fi
row() {
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").pop());
    console.log(`| ${r.store} | ${r.n} | ${r.refreshes_per_s} | ${r.refresh_s.toFixed(1)} | ${r.cpu_us_per_refresh} | ${r.prepare_us} / ${r.complete_us} | ${(r.rss_peak_kb / 1024).toFixed(1)} | ${r.duration_p50_le_s} / ${r.duration_p99_le_s} | ${r.redeemed} / ${r.reused} |`);
  ' "$1"
}
table=$(
  echo "| store | connections | refreshes/s | seconds | CPU µs/refresh | µs per refresh: prepare / complete (thread time) | peak RSS MB | duration p50 / p99 ≤ s | redeemed / reused |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  row "$tmp/sqlite.json"
  if [ "$pgn" -gt 0 ]; then row "$tmp/pg.json"; fi
)
{
  echo ""
  echo "## $(date -u '+%Y-%m-%d %H:%M') UTC — refresh engine, tokend $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo ""
  echo "- Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "- Every connection due when the node starts (imported by a node with refresh_concurrency 0, which then stops); refresh_concurrency and refresh_per_provider $conc, store_pool 16, access log off; the token endpoint is node on loopback (rotation, an hour's tokens); seconds: from the node's listening line until the endpoint has redeemed every refresh token"
  echo "- Command: \`make build/tokend && REFRESH_BENCH_N=$n REFRESH_BENCH_PG_N=$pgn REFRESH_BENCH_CONCURRENCY=$conc bench/refresh.sh\`"
  echo ""
  echo "$table"
} >>"$out"
echo "$table"
