#!/bin/sh
# with-postgres.sh CMD...: run CMD with a throwaway PostgreSQL server.
#
# Creates a cluster in a temporary directory owned by the postgres user
# (initdb and postgres refuse to run as root), starts it on a free loopback
# port with its socket in that directory, exports TOKEND_TEST_PG (a libpq URL
# for the superuser: the e2e library, the unit tests, psql and pg_dump all take
# it as is) and TOKEND_TEST_PG_HOST / TOKEND_TEST_PG_PORT (its host and port,
# for scripts that want them apart), runs CMD, and stops and removes the
# cluster when CMD ends, also on failure or Ctrl-C.
# The server runs with fsync=off unless TOKEND_PG_FSYNC=on (benchmarks).
set -eu
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  echo "with-postgres: no PostgreSQL server binaries under /usr/lib/postgresql (run make deps)" >&2
  exit 1
fi
dir=$(mktemp -d /tmp/tokend-pg.XXXXXX)
chmod 755 "$dir"
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM
as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c fsync=${TOKEND_PG_FSYNC:-off} -c max_connections=300" start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }
export TOKEND_TEST_PG="postgresql://postgres@127.0.0.1:$port/postgres"
export TOKEND_TEST_PG_HOST=127.0.0.1 TOKEND_TEST_PG_PORT=$port
echo "with-postgres: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
set +e
"$@"
rc=$?
exit $rc
