#!/bin/sh
# fuzz/run.sh: build the libFuzzer targets with clang (ASan + UBSan) into
# build/fuzz/ and run each for FUZZ_SECONDS (default 20) seconds.
#
#   fuzz/run.sh                     every target
#   FUZZ_TARGETS="router config" fuzz/run.sh
#   FUZZ_SECONDS=300 fuzz/run.sh    longer runs
#   FUZZ_STRICT=1 fuzz/run.sh       also check semantic invariants that src/
#                                   does not meet yet (fuzz/crashes/README.md)
#
# Seeds come from fuzz/corpus/<target>/; what libFuzzer finds goes to
# build/fuzz/corpus/<target>/ (never into the repository). A crashing input is
# written to build/fuzz/artifacts/; copy the ones worth keeping to
# fuzz/crashes/. Exits non-zero if any target crashed or failed to build.
set -eu
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
FUZZ_TARGETS=${FUZZ_TARGETS:-"issued time int router config share host json_str form cookie xff outbound catalog public_url tls sse conn_wire connect client_token jwt oauth_client"}
CC=${FUZZ_CC:-clang}
OUT=build/fuzz

command -v "$CC" >/dev/null 2>&1 || {
  echo "fuzz: $CC not found (apt-get install clang)" >&2
  exit 1
}

PKGS="libmicrohttpd jansson libcurl sqlite3 libpq libcrypto inih gnutls"
PKG_CFLAGS=$(pkg-config --cflags $PKGS)
PKG_LIBS=$(pkg-config --libs $PKGS)
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
[ "${FUZZ_STRICT:-0}" = 1 ] && CFLAGS="$CFLAGS -DTK_FUZZ_STRICT"
# What the targets need from src/: formats, log lines, router, HTTP parsers, Host checks, config, keyring parsers, the outbound record, the provider catalogue parser, TLS files; no store.
SRCS="src/common/common.c src/common/issued.c src/common/log.c src/common/text.c src/http/router.c src/http/parse.c src/http/hostcheck.c src/http/sse.c src/config/config.c src/config/public_url.c src/keyring/crypto.c src/common/metrics.c src/outbound/outbound.c src/upstream/catalog.c src/upstream/conn_wire.c src/tls/tls.c src/upstream/connect_wire.c src/clients/token_form.c src/oauth/jwt.c src/oauth/ocrules.c"

mkdir -p "$OUT/obj" "$OUT/artifacts"
echo "fuzz: building into $OUT with $($CC --version | head -n 1)"
objs=""
for src in $SRCS; do
  obj="$OUT/obj/$(echo "$src" | tr / _ | sed 's/\.c$/.o/')"
  # shellcheck disable=SC2086
  $CC $CFLAGS -fsanitize=fuzzer-no-link,address,undefined $PKG_CFLAGS -c "$src" -o "$obj"
  objs="$objs $obj"
done
for t in $FUZZ_TARGETS; do
  # shellcheck disable=SC2086
  $CC $CFLAGS -fsanitize=fuzzer,address,undefined $PKG_CFLAGS \
    -o "$OUT/${t}_fuzz" "fuzz/${t}_fuzz.c" $objs $PKG_LIBS -lgfshare -lpthread
done

failed=""
summary=""
for t in $FUZZ_TARGETS; do
  corpus="$OUT/corpus/$t"
  log="$OUT/$t.log"
  mkdir -p "$corpus"
  dict=""
  [ -f "fuzz/dict/$t.dict" ] && dict="-dict=fuzz/dict/$t.dict"
  echo "fuzz: ---- target $t: ${FUZZ_SECONDS} s, seeds fuzz/corpus/$t, log $log ----"
  set +e
  # shellcheck disable=SC2086
  "$OUT/${t}_fuzz" -max_len=4096 -max_total_time="$FUZZ_SECONDS" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" $dict \
    "$corpus" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  [ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
  ncorpus=$(find "$corpus" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    line="fuzz: $t: ok, ${execs:-?} execs in ${FUZZ_SECONDS} s, coverage ${cov:-?}, corpus $ncorpus"
  else
    art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    line="fuzz: $t: FAILED (exit $rc) after ${execs:-?} execs; input: ${art:-none}; see $log"
    failed="$failed $t"
    echo "fuzz: last lines of $log:"
    grep -E 'ERROR|SUMMARY|invariant|runtime error|==[0-9]+==' "$log" | head -n 20 | sed 's/^/  /'
  fi
  echo "$line"
  summary="$summary$line
"
done

echo "fuzz: ==== summary ===="
printf '%s' "$summary"
if [ -n "$failed" ]; then
  echo "fuzz: FAILED:$failed" >&2
  exit 1
fi
echo "fuzz: all targets ran clean"
