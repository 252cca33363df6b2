#!/bin/sh
# pg-throwaway.sh start DIR | stop DIR: a PostgreSQL cluster of a test's own
# in DIR (which must exist), for tests that stop or break the server
# (SIGSTOP, kill): the shared server of with-postgres.sh stays untouched.
# start prints the libpq URL of the superuser on a free loopback port; the
# postmaster's pid is the first line of DIR/data/postmaster.pid.
set -eu
cmd=$1 dir=$2
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] || { echo "pg-throwaway: no PostgreSQL binaries" >&2; exit 1; }
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case $cmd in
start)
  chmod 755 "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=20" start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
  echo "postgresql://postgres@127.0.0.1:$port/postgres"
  ;;
stop)
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  ;;
*) echo "usage: pg-throwaway.sh start|stop DIR" >&2; exit 2 ;;
esac
