#!/usr/bin/env bash
# Start/stop Debian's PostgreSQL 15 under a directory of our own, on 127.0.0.1 only.
#   deploy/local/postgres.sh start|stop|status
# Environment: PGDATA_DIR (default .docflow-local/postgres), PGPORT (default 54330),
#              PGBIN (default /usr/lib/postgresql/15/bin), PGDATABASES (default "docflow").
# initdb refuses to run as root, so as root every server command runs as the postgres user.
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGDATA_DIR=${PGDATA_DIR:-$PWD/.docflow-local/postgres}
PGPORT=${PGPORT:-54330}
PGDATABASES=${PGDATABASES:-docflow}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    mkdir -p "$PGDATA_DIR"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA_DIR"
    if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
      as_owner "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if ! as_owner "$PGBIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
      as_owner "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDATA_DIR" start >/dev/null
    fi
    for db in $PGDATABASES; do
      if ! as_owner "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc \
          "SELECT 1 FROM pg_database WHERE datname='$db'" postgres | grep -q 1; then
        as_owner "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres "$db"
      fi
    done
    echo "postgresql+psycopg2://postgres@127.0.0.1:$PGPORT/${PGDATABASES%% *}"
    ;;
  stop)
    if [ -f "$PGDATA_DIR/PG_VERSION" ]; then
      as_owner "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null 2>&1 || true
    fi
    ;;
  status)
    as_owner "$PGBIN/pg_ctl" -D "$PGDATA_DIR" status
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
