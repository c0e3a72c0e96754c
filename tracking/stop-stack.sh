#!/usr/bin/env bash
# Stop what tracking/start-stack.sh started: the mlflow server (its whole process group) and PostgreSQL.
# Data stays in place (DIR/pgdata, the artifact store); start-stack.sh starts it again.
#   tracking/stop-stack.sh [--dir DIR] [--pgdata DIR]
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${MMTRACK_STACK_DIR:-$here}"
pgdata=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --pgdata) pgdata="$2"; shift 2 ;;
    -h|--help) sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "stop-stack.sh: unknown option $1" >&2; exit 1 ;;
  esac
done
pgdata="${pgdata:-$dir/pgdata}"

pidfile="$dir/mlflow-server.pid"
if [ -f "$pidfile" ]; then
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"  # started with setsid: pid = process group
    for _ in $(seq 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "mlflow server stopped"
fi

if [ -f "$pgdata/postmaster.pid" ]; then
  pg_bin="${PG_BIN:-}"
  if [ -z "$pg_bin" ]; then
    version="$(cat "$pgdata/PG_VERSION" 2>/dev/null)"
    if [ -x "/usr/lib/postgresql/$version/bin/pg_ctl" ]; then pg_bin="/usr/lib/postgresql/$version/bin";
    else pg_bin="$(dirname "$(command -v pg_ctl)")"; fi
  fi
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
  else
    "$pg_bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
  fi && echo "PostgreSQL stopped"
fi
exit 0
