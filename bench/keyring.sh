#!/bin/sh
# bench/keyring.sh: seal/open/HMAC per second on one core (build/keyring-bench),
# appended to BENCHMARKS.md.
set -eu
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-BENCHMARKS.md}
table=$(build/keyring-bench "${KEYRING_BENCH_SECONDS:-2}")
{
  echo ""
  echo "## $(date -u '+%Y-%m-%d %H:%M') UTC — keyring, tokend $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo ""
  echo "- Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r)"
  echo "- OpenSSL $(dpkg-query -W -f='${Version}' libssl3 2>/dev/null || echo '?'); command: \`make build/keyring-bench && build/keyring-bench ${KEYRING_BENCH_SECONDS:-2}\` (CPU time of one thread)"
  echo ""
  echo "$table"
} >> "$out"
echo "$table"
