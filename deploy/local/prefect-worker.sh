#!/usr/bin/env bash
# Start/stop a Prefect process worker polling one work pool (created when missing).
#   deploy/local/prefect-worker.sh start|stop|status
# Environment:
#   PREFECT_API_URL  the server's API (required), e.g. http://127.0.0.1:4200/api
#   POOL             work pool (default docflow-cpu); WORKER_NAME (default POOL-HOSTNAME)
#   WORKER_DIR       pid file and log (default .docflow-local/worker-POOL)
#   PREFECT          the `prefect` command (default: the project's .venv)
# Flow runs start in the worker's working directory and environment: start it from the project
# checkout with the DOCFLOW_* variables set (deploy/local/all.sh does both).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VENV_BIN="$HERE/../../.venv/bin"
PREFECT=${PREFECT:-$( [ -x "$VENV_BIN/prefect" ] && echo "$VENV_BIN/prefect" || command -v prefect )}
POOL=${POOL:-docflow-cpu}
WORKER_NAME=${WORKER_NAME:-$POOL-$(hostname)}
WORKER_DIR=${WORKER_DIR:-$PWD/.docflow-local/worker-$POOL}
PIDFILE="$WORKER_DIR/worker.pid"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-}" in
  start)
    : "${PREFECT_API_URL:?set PREFECT_API_URL, e.g. http://127.0.0.1:4200/api}"
    mkdir -p "$WORKER_DIR"
    if running; then echo "worker already running (pid $(cat "$PIDFILE"))"; exit 0; fi
    PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 \
      setsid "$PREFECT" worker start --pool "$POOL" --type process --name "$WORKER_NAME" \
      --install-policy never </dev/null >>"$WORKER_DIR/worker.log" 2>&1 &
    echo $! >"$PIDFILE"
    # The worker has started when it logs that it polls the pool (or it has died).
    for _ in $(seq 1 120); do
      if grep -q "started!" "$WORKER_DIR/worker.log" 2>/dev/null; then
        echo "worker $WORKER_NAME (pid $(cat "$PIDFILE")) polls pool $POOL"; exit 0
      fi
      running || { echo "worker exited; see $WORKER_DIR/worker.log" >&2; exit 1; }
      sleep 0.5
    done
    echo "worker did not report ready within 60 s; see $WORKER_DIR/worker.log" >&2; exit 1
    ;;
  stop)
    if running; then
      pid=$(cat "$PIDFILE")
      # The worker ignores a first SIGTERM (it starts a graceful drain); a second one ends it.
      kill -TERM "$pid" 2>/dev/null || true
      sleep 1
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    ;;
  status)
    if running; then echo "running (pid $(cat "$PIDFILE")), pool $POOL"; else echo "stopped"; exit 3; fi ;;
  *)
    echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
