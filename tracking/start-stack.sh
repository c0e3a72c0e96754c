#!/usr/bin/env bash
# Start the shared mmtrack stack: a PostgreSQL server holding two databases, `mmtrack` (MLflow's backend
# store) and `mmtrack_optuna` (the Optuna storage that hands configurations to `mmtrack worker`), and an
# `mlflow server` on top of it that also serves artifacts (clients upload and download through the server,
# so every machine that reaches the server reaches the artifacts too; `--artifacts` may be s3://... etc.).
#
#   tracking/start-stack.sh [--dir DIR] [--pgdata DIR] [--pg-port 5433] [--pg-host 127.0.0.1]
#                           [--port 5000] [--host 127.0.0.1] [--artifacts DIR_OR_URI] [--workers 4]
#   source tracking/stack.env          # MLFLOW_TRACKING_URI and MMTRACK_STORAGE for this machine
#   mmtrack worker digits-skewed --storage "$MMTRACK_STORAGE"
#   tracking/stop-stack.sh [--dir DIR]
#
# Both servers bind 127.0.0.1 unless told otherwise (--host / --pg-host 0.0.0.0 for other machines; then
# PostgreSQL accepts password logins from any address and MLflow gets --allowed-hosts '*').
# Both authenticate: PostgreSQL with scram-sha-256 passwords, MLflow with its basic-auth app (every API call
# needs a user; an `admin` and a `worker` user are generated; users read every experiment and write the ones
# they created; tracking/add-user.sh adds one). TLS belongs in a reverse proxy in front of port --port.
# Files under DIR (default: tracking/): pgdata/ (or --pgdata), postgres.log, mlflow-server.log,
# mlflow-server.pid, artifacts/served/ (default artifact store), auth.ini and basic_auth.db (MLflow's users),
# stack.env (mode 600: URLs, the worker's MLflow login as MLFLOW_TRACKING_USERNAME/PASSWORD, the admin's).
# The password of the PostgreSQL role `mmtrack` comes from $MMTRACK_PG_PASSWORD, else the existing stack.env,
# else is generated. Running as root, PostgreSQL runs as the `postgres` user (it refuses to run as root):
# the data directory is chowned to it, so its parent folders must be reachable by that user.
# Exit status: 0 started (or already running), 3 PostgreSQL is missing or cannot start, 1 other errors.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
dir="${MMTRACK_STACK_DIR:-$here}"
pgdata=""
pg_port="${MMTRACK_PG_PORT:-5433}"
pg_host="${MMTRACK_PG_HOST:-127.0.0.1}"
port="${MMTRACK_MLFLOW_PORT:-5000}"
host="${MMTRACK_MLFLOW_HOST:-127.0.0.1}"
artifacts=""
workers="${MMTRACK_MLFLOW_WORKERS:-4}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --pgdata) pgdata="$2"; shift 2 ;;
    --pg-port) pg_port="$2"; shift 2 ;;
    --pg-host) pg_host="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --host) host="$2"; shift 2 ;;
    --artifacts) artifacts="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "start-stack.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
pgdata="${pgdata:-$dir/pgdata}"
artifacts="${artifacts:-$dir/artifacts/served}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python="$(command -v python3)"; fi
fi

die() { echo "start-stack.sh: $2" >&2; exit "$1"; }

# ---------------------------------------------------------------- PostgreSQL binaries, user, data directory
pg_bin="${PG_BIN:-}"
if [ -z "$pg_bin" ]; then
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ]; then pg_bin="$d"; break; fi
  done
fi
if [ -z "$pg_bin" ] && command -v initdb >/dev/null 2>&1; then pg_bin="$(dirname "$(command -v initdb)")"; fi
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] && [ -x "$pg_bin/pg_ctl" ] \
  || die 3 "PostgreSQL server binaries not found (set PG_BIN, or: apt-get install -y postgresql)"

as_pg() { "$@"; }
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die 3 "running as root, PostgreSQL needs the 'postgres' user (apt-get install -y postgresql creates it)"
  as_pg() { runuser -u postgres -- "$@"; }
fi

if [ -f "$dir/stack.env" ] && [ -z "${MMTRACK_PG_PASSWORD:-}" ]; then
  MMTRACK_PG_PASSWORD="$(sed -n 's/^# pg-password: //p' "$dir/stack.env")"
fi
new_secret() { "$python" -c 'import secrets; print(secrets.token_urlsafe(18))'; }
admin_password=""; worker_password=""
if [ -f "$dir/stack.env" ]; then  # a restart keeps the MLflow users' passwords (they live in basic_auth.db)
  admin_password="$(sed -n 's/^# admin-password: //p' "$dir/stack.env")"
  worker_password="$(sed -n 's/^export MLFLOW_TRACKING_PASSWORD=//p' "$dir/stack.env")"
fi
admin_password="${admin_password:-$(new_secret)}"
worker_password="${worker_password:-$(new_secret)}"
if [ ! -f "$pgdata/PG_VERSION" ]; then
  password="${MMTRACK_PG_PASSWORD:-$("$python" -c 'import secrets; print(secrets.token_urlsafe(18))')}"
  mkdir -p "$pgdata"
  chmod 700 "$pgdata"
  pwfile="$(mktemp)"
  printf '%s\n' "$password" > "$pwfile"
  if [ "$(id -u)" = 0 ]; then chown postgres "$pgdata" "$pwfile"; fi
  as_pg "$pg_bin/initdb" -D "$pgdata" -U mmtrack --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 \
    --locale=C >"$dir/postgres.log" 2>&1 || { rm -f "$pwfile"; tail -5 "$dir/postgres.log" >&2;
    die 3 "initdb failed in $pgdata (see $dir/postgres.log; as root, its parent folders must be reachable by the postgres user: try --pgdata /var/lib/mmtrack/pgdata)"; }
  rm -f "$pwfile"
  if [ "$pg_host" != 127.0.0.1 ] && [ "$pg_host" != localhost ]; then
    echo "host all all 0.0.0.0/0 scram-sha-256" | as_pg tee -a "$pgdata/pg_hba.conf" >/dev/null
    echo "host all all ::/0 scram-sha-256" | as_pg tee -a "$pgdata/pg_hba.conf" >/dev/null
  fi
else
  password="${MMTRACK_PG_PASSWORD:-}"
  [ -n "$password" ] || die 1 "$pgdata exists but its password is unknown: set MMTRACK_PG_PASSWORD"
fi

url_host="$host"; [ "$url_host" = 0.0.0.0 ] && url_host="$(hostname -f 2>/dev/null || hostname)"
pg_url_host="$pg_host"; [ "$pg_url_host" = 0.0.0.0 ] && pg_url_host="$(hostname -f 2>/dev/null || hostname)"
pw="$("$python" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$password")"
backend="postgresql+psycopg://mmtrack:$pw@127.0.0.1:$pg_port/mmtrack"
tracking_uri="http://$url_host:$port"
storage="postgresql://mmtrack:$pw@$pg_url_host:$pg_port/mmtrack_optuna"
(umask 077
cat > "$dir/stack.env" <<EOF
# Written by tracking/start-stack.sh; source it on this machine (other machines: replace 127.0.0.1 by this
# machine's name and start the stack with --host/--pg-host 0.0.0.0).
# pg-password: $password
# admin-username: admin
# admin-password: $admin_password
export MLFLOW_TRACKING_URI=$tracking_uri
export MLFLOW_TRACKING_USERNAME=worker
export MLFLOW_TRACKING_PASSWORD=$worker_password
export MMTRACK_STORAGE=$storage
EOF
cat > "$dir/auth.ini" <<EOF
[mlflow]
default_permission = READ
database_uri = sqlite:///$dir/basic_auth.db
admin_username = admin
admin_password = $admin_password
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
)

# ---------------------------------------------------------------- start PostgreSQL (TCP only, no socket file)
if ! as_pg "$pg_bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
  touch "$dir/postgres.log"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir/postgres.log"; fi
  as_pg "$pg_bin/pg_ctl" -D "$pgdata" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses='$pg_host' -p $pg_port -c unix_socket_directories='' -c max_connections=200" start \
    >/dev/null || { tail -5 "$dir/postgres.log" >&2; die 3 "PostgreSQL did not start on $pg_host:$pg_port (see $dir/postgres.log)"; }
fi
export PGPASSWORD="$password"
psql_q() { "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U mmtrack -d postgres -v ON_ERROR_STOP=1 -tAc "$1"; }
for db in mmtrack mmtrack_optuna; do
  if [ "$(psql_q "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
    psql_q "CREATE DATABASE $db" >/dev/null || die 1 "could not create database $db"
  fi
done
unset PGPASSWORD

# ---------------------------------------------------------------- mlflow server (password via env, not argv)
pidfile="$dir/mlflow-server.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "mlflow server already running (pid $(cat "$pidfile"))"
else
  case "$artifacts" in *://*) ;; *) mkdir -p "$artifacts"; artifacts="$(cd "$artifacts" && pwd)" ;; esac
  extra=()
  if [ "$host" != 127.0.0.1 ] && [ "$host" != localhost ]; then extra=(--allowed-hosts '*'); fi
  umask 077  # the server's files (its user database, served artifacts) are this user's alone
  MLFLOW_BACKEND_STORE_URI="$backend" MLFLOW_AUTH_CONFIG_PATH="$dir/auth.ini" \
    MLFLOW_FLASK_SERVER_SECRET_KEY="$(new_secret)" setsid "$python" -m mlflow server --app-name basic-auth \
    --serve-artifacts --artifacts-destination "$artifacts" --host "$host" --port "$port" --workers "$workers" "${extra[@]}" \
    >"$dir/mlflow-server.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
fi
"$python" - "http://127.0.0.1:$port/health" "$(cat "$pidfile")" <<'EOF' || { tail -20 "$dir/mlflow-server.log" >&2; die 1 "mlflow server did not answer on port $port (see $dir/mlflow-server.log)"; }
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 180
while time.time() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            sys.exit(0 if resp.status == 200 else 1)
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit(1)  # the server exited
        time.sleep(0.5)
sys.exit(1)
EOF

# ---------------------------------------------------------------- the worker's MLflow user (admin creates it)
MMTRACK_ADMIN_PASSWORD="$admin_password" MMTRACK_NEW_PASSWORD="$worker_password" PYTHON="$python" \
  bash "$here/add-user.sh" --api "http://127.0.0.1:$port" worker >/dev/null \
  || die 1 "could not create the MLflow user 'worker' (see $dir/mlflow-server.log)"

echo "PostgreSQL on $pg_host:$pg_port (data $pgdata), mlflow server on $tracking_uri (artifacts $artifacts), login required"
echo "source $dir/stack.env   # sets MLFLOW_TRACKING_URI, the worker's MLFLOW_TRACKING_USERNAME/PASSWORD, MMTRACK_STORAGE"
