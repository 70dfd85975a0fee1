#!/usr/bin/env bash
# The whole production layout on one machine without a container engine: PostgreSQL 15,
# SeaweedFS (S3), a Prefect server on PostgreSQL and a process worker for the docflow-cpu pool.
#   deploy/local/all.sh start|stop|status
# start writes $DOCFLOW_LOCAL_DIR/docflow.env (DOCFLOW_* and PREFECT_API_URL); `source` it to
# use `docflow` and `prefect` against these services. The S3 secret is generated once and kept
# in that file, so the data stays readable across restarts.
# Environment: DOCFLOW_LOCAL_DIR (default <checkout>/.docflow-local), PGPORT (54330),
# S3_BASE_PORT (58400; S3 answers on +3), PREFECT_PORT (4200), POOL (docflow-cpu).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV_BIN="$ROOT/.venv/bin"
PYTHON=${PYTHON:-$( [ -x "$VENV_BIN/python" ] && echo "$VENV_BIN/python" || command -v python3 )}
DOCFLOW=${DOCFLOW:-$( [ -x "$VENV_BIN/docflow" ] && echo "$VENV_BIN/docflow" || command -v docflow )}
DIR=${DOCFLOW_LOCAL_DIR:-$ROOT/.docflow-local}
ENV_FILE="$DIR/docflow.env"
export PGPORT=${PGPORT:-54330} S3_BASE_PORT=${S3_BASE_PORT:-58400} PREFECT_PORT=${PREFECT_PORT:-4200}
export POOL=${POOL:-docflow-cpu}
# Where each script keeps its state; the PostgreSQL dir is not $DOCFLOW_HOME/postgres, so an
# accidental `docflow up` with this env file cannot mix the two servers' data.
export PGDATA_DIR="$DIR/postgres15" S3_DIR="$DIR/seaweedfs" PREFECT_DIR="$DIR/prefect"
export WORKER_DIR="$DIR/worker-$POOL" PGDATABASES="docflow prefect"
export PREFECT_DB_URL="postgresql+asyncpg://postgres@127.0.0.1:$PGPORT/prefect"
export PATH="$VENV_BIN:$PATH"

write_env_file() {  # $1: S3 endpoint, $2: S3 secret
  (
    umask 077
    cat >"$ENV_FILE" <<ENV
# Written by deploy/local/all.sh; source it: . $ENV_FILE
export DOCFLOW_HOME=$DIR/home
export DOCFLOW_DATABASE_URL=postgresql+psycopg2://postgres@127.0.0.1:$PGPORT/docflow
export DOCFLOW_S3_ENDPOINT=$1
export DOCFLOW_S3_ACCESS_KEY=docflow
export DOCFLOW_S3_SECRET_KEY=$2
export DOCFLOW_PROJECT_DIR=$ROOT
export PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export DO_NOT_TRACK=1
ENV
  )
}

case "${1:-}" in
  start)
    mkdir -p "$DIR"
    # Reuse the secret of an earlier start: SeaweedFS's data is only readable with it.
    if [ -f "$ENV_FILE" ]; then
      secret=$(sed -n 's/^export DOCFLOW_S3_SECRET_KEY=//p' "$ENV_FILE")
    else
      secret=$("$PYTHON" -c "import secrets; print(secrets.token_hex(20))")
    fi
    "$HERE/postgres.sh" start >/dev/null
    endpoint=$(AWS_ACCESS_KEY_ID=docflow AWS_SECRET_ACCESS_KEY="$secret" "$HERE/seaweedfs.sh" start)
    write_env_file "$endpoint" "$secret"
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    "$DOCFLOW" init
    "$HERE/prefect-server.sh" start >/dev/null
    # Flow runs start in the worker's directory: the checkout, where prefect.yaml points.
    (cd "$ROOT" && "$HERE/prefect-worker.sh" start)
    echo "PostgreSQL 127.0.0.1:$PGPORT, S3 $endpoint, Prefect $PREFECT_API_URL (UI: http://127.0.0.1:$PREFECT_PORT/)"
    echo "use them with: . $ENV_FILE"
    ;;
  stop)
    "$HERE/prefect-worker.sh" stop
    "$HERE/prefect-server.sh" stop
    "$HERE/seaweedfs.sh" stop
    "$HERE/postgres.sh" stop
    ;;
  status)
    rc=0
    for part in postgres seaweedfs prefect-server prefect-worker; do
      printf '%-15s ' "$part"
      "$HERE/$part.sh" status 2>&1 | tail -1 || rc=1
    done
    exit $rc
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
