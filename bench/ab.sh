#!/bin/sh
# bench/ab.sh BIN_A BIN_B [PATH] [ROUNDS] [SECONDS]: which of two builds
# costs less CPU per request, on a shared, noisy machine. Starts both
# (`serve --dev`, fresh data dirs, the default configuration) at once and
# loads them in turn, `wrk -t1 -c32 -dSECONDS` on PATH (default /health;
# /v1/... with the root token), ROUNDS times (default 8), so that both see
# the same minutes. Prints each build's median server CPU µs per request
# (utime+stime from /proc/<pid>/stat over a run / requests in it), min and
# max. A or B may be a wrapper script that execs tokend with more flags.
set -eu
A=$1 B=$2 P=${3:-/health} R=${4:-8} S=${5:-2}
d=$(mktemp -d "${TMPDIR:-/tmp}/tokend-ab.XXXXXX")
pids=""
trap 'kill $pids 2>/dev/null || true; rm -rf "$d"' EXIT
start() {
  "$1" serve --dev --listen 127.0.0.1:0 --data-dir "$d/$2" >"$d/$2.out" 2>"$d/$2.err" &
  echo $! >"$d/$2.pid"
  pids="$pids $!"
}
start "$A" a
start "$B" b
for x in a b; do
  i=0
  until grep -q "listening on port" "$d/$x.out"; do
    sleep 0.2
    i=$((i + 1))
    [ $i -lt 150 ] || { cat "$d/$x.err" >&2; echo "ab: $x did not start" >&2; exit 1; }
  done
done
port() { sed -n 's/.*listening on port \([0-9]*\)$/\1/p' "$d/$1.out"; }
pa=$(port a) pb=$(port b)
ta="" tb=""
case "$P" in /v1/*) ta=$(cat "$d/a/root-token") tb=$(cat "$d/b/root-token") ;; esac
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
hz=$(getconf CLK_TCK)
one() { # LABEL PID PORT TOKEN
  t0=$(ticks "$2")
  out=$(wrk -t1 -c32 -d"${S}s" ${4:+-H "Authorization: Bearer $4"} "http://127.0.0.1:$3$P")
  t1=$(ticks "$2")
  n=$(echo "$out" | awk '/requests in/ { print $1 }')
  awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$n" -v l="$1" 'BEGIN { printf "%s %.2f\n", l, d / hz * 1e6 / n }'
}
one A "$(cat "$d/a.pid")" "$pa" "$ta" >/dev/null # warm-up
one B "$(cat "$d/b.pid")" "$pb" "$tb" >/dev/null
r=0
while [ $r -lt "$R" ]; do
  one A "$(cat "$d/a.pid")" "$pa" "$ta"
  one B "$(cat "$d/b.pid")" "$pb" "$tb"
  r=$((r + 1))
done >"$d/res"
echo "ab: $P, $R rounds of ${S} s each, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for x in A B; do
  bin=$A
  [ $x = B ] && bin=$B
  grep "^$x " "$d/res" | awk '{ print $2 }' | sort -g | awk -v x="$x" -v b="$bin" '{ a[NR] = $1 }
    END { printf "%s %s: server CPU µs/req median %.2f (min %.2f, max %.2f)\n", x, b, a[int((NR + 1) / 2)], a[1], a[NR] }'
done
