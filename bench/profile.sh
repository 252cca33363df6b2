#!/bin/sh
# bench/profile.sh: where tokend spends its CPU under wrk load. Starts the
# release build/tokend like bench/run.sh does, loads one endpoint with
# `wrk -t1 -c64` and samples tokend with `perf record --call-graph dwarf`,
# then prints the functions with the largest inclusive share of samples.
#
#   bench/profile.sh                         authenticated GET /v1/events?limit=1
#   PROFILE_PATH=/health bench/profile.sh    another endpoint (no token sent)
#   PROFILE_SECONDS=8 PROFILE_KEEP=/tmp/p.data bench/profile.sh
#
# Needs perf (linux-perf) and root or kernel.perf_event_paranoid <= 1.
# The release build has no frame pointers, hence DWARF unwinding; libraries
# without debug symbols show up as bare addresses.
set -eu
cd "$(dirname "$0")/.."

PROFILE_PATH=${PROFILE_PATH:-/v1/events?limit=1}
PROFILE_SECONDS=${PROFILE_SECONDS:-6}
BIN=build/tokend
[ -x "$BIN" ] || { echo "profile: $BIN not found; run 'make build/tokend'" >&2; exit 1; }
command -v perf >/dev/null 2>&1 || { echo "profile: perf not found (apt-get install linux-perf)" >&2; exit 1; }

. bench/lib.sh
start_tokend profile
url="http://127.0.0.1:$port$PROFILE_PATH"
case "$PROFILE_PATH" in
  /v1/*) set -- -H "Authorization: Bearer $(cat "$tmp/data/root-token")" ;;
  *) set -- ;;
esac

wrk -t1 -c64 -d2s "$@" "$url" >/dev/null # warm-up
perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$pid" -o "$tmp/perf.data" \
  -- sleep "$((PROFILE_SECONDS + 1))" 2>/dev/null &
perf_pid=$!
sleep 0.5
echo "profile: wrk -t1 -c64 -d${PROFILE_SECONDS}s $url"
wrk -t1 -c64 -d"${PROFILE_SECONDS}s" "$@" "$url" | grep -E 'Requests/sec|Latency '
wait "$perf_pid" || true
echo "profile: inclusive share of tokend's samples (functions >= 1.5%):"
perf report -i "$tmp/perf.data" --children --sort sym --stdio -g none --percent-limit 1.5 \
  2>/dev/null | grep '%' | grep -v '^#' | grep -v ' 0x0000' | head -n 60
if [ -n "${PROFILE_KEEP:-}" ]; then
  cp "$tmp/perf.data" "$PROFILE_KEEP"
  echo "profile: perf data kept in $PROFILE_KEEP (perf report -i $PROFILE_KEEP)"
fi
