#!/bin/sh
# bench/events.sh: events per second through the event writer (group
# commit), N threads posting and N threads emitting (each waits for its
# commit), on SQLite and on a throwaway PostgreSQL (tests/with-postgres.sh
# with TOKEND_PG_FSYNC=on: the tests run it with fsync=off);
# every chain is verified after its figure. Appended to BENCHMARKS.md.
#
#   EVENTS_BENCH_SECONDS=3       seconds per figure
#   EVENTS_BENCH_THREADS=1,4,16  thread counts
#   BENCH_OUT=BENCHMARKS.md
set -eu
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-BENCHMARKS.md}
secs=${EVENTS_BENCH_SECONDS:-3}
threads=${EVENTS_BENCH_THREADS:-1,4,16}
[ -x build/events-bench ] || { echo "bench: build/events-bench not found; run 'make build/events-bench'" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tokend-events-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
build/events-bench "sqlite:$tmp/events.db" "$secs" "$threads" 2>"$tmp/sqlite.err" >"$tmp/sqlite.md" \
  || { cat "$tmp/sqlite.err" >&2; exit 1; }
TOKEND_PG_FSYNC=on tests/with-postgres.sh sh -c '
  psql "$TOKEND_TEST_PG" -qAt -c "SHOW fsync" -c "SHOW synchronous_commit" -c "SHOW server_version" | tr "\n" " " >"$3/pg.conf" &&
  build/events-bench "$TOKEND_TEST_PG" "$1" "$2"' sh "$secs" "$threads" "$tmp" 2>"$tmp/pg.err" >"$tmp/pg.out" \
  || { cat "$tmp/pg.err" >&2; exit 1; }
table=$(cat "$tmp/sqlite.md"; grep '^| postgres' "$tmp/pg.out")
{
  echo ""
  echo "## $(date -u '+%Y-%m-%d %H:%M') UTC — events, tokend $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo ""
  echo "- Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "- SQLite $(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo '?') (WAL, synchronous=NORMAL) in ${TMPDIR:-/tmp}; PostgreSQL (fsync, synchronous_commit, version): $(cat "$tmp/pg.conf"), on the same machine over loopback TCP"
  echo "- Events like an authentication refusal (detail of 4 members), one tenant, keyring unsealed (every event carries its MAC); events_queue 10000"
  echo "- Command: \`make build/events-bench && EVENTS_BENCH_SECONDS=$secs EVENTS_BENCH_THREADS=$threads bench/events.sh\`; events/s counts until the last posted event is committed"
  echo ""
  echo "$table"
} >>"$out"
echo "$table"
