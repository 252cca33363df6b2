# bench/lib.sh: sourced by bench/run.sh and bench/profile.sh. start_tokend
# starts `build/tokend serve --dev` on a free loopback port in a fresh
# temporary data dir and sets tmp, pid, port, data; it is stopped (SIGTERM)
# and the dir removed when the script exits. The configuration is the
# default one, as a user runs it: the access log on, written to a file
# ($tmp/stderr; BENCH_LOG=/dev/null to leave the disk out). BIN (default
# build/tokend) is the binary; BENCH_ARGS, more arguments to serve.
tmp=""
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  [ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_tokend LABEL
start_tokend() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/tokend-$1.XXXXXX")
  data="$tmp/data"
  "${BIN:-build/tokend}" serve --dev --listen 127.0.0.1:0 --data-dir "$data" ${BENCH_ARGS:-} \
    >"$tmp/stdout" 2>"${BENCH_LOG:-$tmp/stderr}" &
  pid=$!
  port=""
  i=0
  while [ $i -lt 300 ]; do
    port=$(sed -n 's/^tokend: listening on port \([0-9][0-9]*\)$/\1/p' "$tmp/stdout" | head -n 1)
    [ -n "$port" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/stderr" >&2; echo "$1: tokend exited at start" >&2; exit 1; }
    sleep 0.1
    i=$((i + 1))
  done
  cat "$tmp/stderr" >&2
  echo "$1: tokend did not print its port within 30 s" >&2
  exit 1
}
