#!/usr/bin/env bash
# Start/stop a Prefect server on 127.0.0.1, backed by a PostgreSQL database.
#   deploy/local/prefect-server.sh start|stop|status
# Environment:
#   PREFECT_DB_URL   the server's database (default
#                    postgresql+asyncpg://postgres@127.0.0.1:${PGPORT:-54330}/prefect); the database
#                    and its pg_trgm extension are created when missing.
#   PREFECT_PORT     API and UI port (default 4200); PREFECT_DIR state dir (default .docflow-local/prefect)
#   PYTHON, PREFECT  the interpreter and `prefect` command (default: the project's .venv)
# start prints the API URL (http://127.0.0.1:PORT/api). Needs no curl: health checks use Python.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VENV_BIN="$HERE/../../.venv/bin"
PYTHON=${PYTHON:-$( [ -x "$VENV_BIN/python" ] && echo "$VENV_BIN/python" || command -v python3 )}
PREFECT=${PREFECT:-$( [ -x "$VENV_BIN/prefect" ] && echo "$VENV_BIN/prefect" || command -v prefect )}
PREFECT_PORT=${PREFECT_PORT:-4200}
PREFECT_DIR=${PREFECT_DIR:-$PWD/.docflow-local/prefect}
PREFECT_DB_URL=${PREFECT_DB_URL:-postgresql+asyncpg://postgres@127.0.0.1:${PGPORT:-54330}/prefect}
PIDFILE="$PREFECT_DIR/server.pid"
API_URL="http://127.0.0.1:$PREFECT_PORT/api"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
healthy() {
  "$PYTHON" -c "import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1] + '/health', timeout=2).status == 200 else 1)
except OSError:
    sys.exit(1)" "$API_URL"
}

# Create the database and the pg_trgm extension the Prefect server's migrations need.
prepare_database() {
  "$PYTHON" - "$PREFECT_DB_URL" <<'PY'
import sys
import sqlalchemy as sa
url = sa.engine.make_url(sys.argv[1]).set(drivername="postgresql+psycopg2")
admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
with admin.connect() as conn:
    if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}).first():
        conn.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
admin.dispose()
engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
with engine.connect() as conn:
    conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
engine.dispose()
PY
}

case "${1:-}" in
  start)
    mkdir -p "$PREFECT_DIR/home"
    if ! running; then
      prepare_database
      # setsid: the server and its children form one process group that `stop` can end as one.
      PREFECT_HOME="$PREFECT_DIR/home" \
      PREFECT_API_DATABASE_CONNECTION_URL="$PREFECT_DB_URL" \
      PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 \
        setsid "$PREFECT" server start --host 127.0.0.1 --port "$PREFECT_PORT" \
        </dev/null >>"$PREFECT_DIR/server.log" 2>&1 &
      echo $! >"$PIDFILE"
    fi
    for _ in $(seq 1 120); do
      if healthy; then echo "$API_URL"; exit 0; fi
      running || { echo "prefect server exited; see $PREFECT_DIR/server.log" >&2; exit 1; }
      sleep 0.5
    done
    echo "prefect server on port $PREFECT_PORT not healthy within 60 s; see $PREFECT_DIR/server.log" >&2
    exit 1
    ;;
  stop)
    if running; then
      pid=$(cat "$PIDFILE")
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    ;;
  status)
    if running && healthy; then echo "running (pid $(cat "$PIDFILE")), $API_URL"
    elif running; then echo "running (pid $(cat "$PIDFILE")) but $API_URL/health does not answer"; exit 1
    else echo "stopped"; exit 3; fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
