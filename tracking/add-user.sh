#!/usr/bin/env bash
# Add a user to the stack's MLflow server (its basic-auth app), as the stack's admin.
#
#   tracking/add-user.sh [--dir DIR] [--api URL] NAME      # prints NAME's generated password
#
# A new user reads every experiment (the stack's default permission is READ) and writes only the experiments
# it creates (or is granted: MLflow's /api/2.0/mlflow/experiments/permissions/create): an analyst gets
# `MLFLOW_TRACKING_USERNAME=NAME MLFLOW_TRACKING_PASSWORD=... mmtrack sheet ...` and cannot change the
# workers' runs. The admin's password comes from $MMTRACK_ADMIN_PASSWORD, else DIR/stack.env (default DIR:
# tracking/); the server from --api, else stack.env's MLFLOW_TRACKING_URI. $MMTRACK_NEW_PASSWORD sets the
# password instead of generating one (an existing user then gets it: how start-stack.sh keeps `worker` in
# step with stack.env). Exit status: 0 done, 1 error (one line on stderr).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${MMTRACK_STACK_DIR:-$here}"
api=""
name=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --api) api="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "add-user.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
    *) name="$1"; shift ;;
  esac
done
[ -n "$name" ] || { echo "add-user.sh: give the new user's NAME (see --help)" >&2; exit 1; }
admin="${MMTRACK_ADMIN_PASSWORD:-}"
if [ -z "$admin" ] && [ -f "$dir/stack.env" ]; then admin="$(sed -n 's/^# admin-password: //p' "$dir/stack.env")"; fi
if [ -z "$api" ] && [ -f "$dir/stack.env" ]; then api="$(sed -n 's/^export MLFLOW_TRACKING_URI=//p' "$dir/stack.env")"; fi
[ -n "$admin" ] || { echo "add-user.sh: the admin password is unknown: set MMTRACK_ADMIN_PASSWORD or --dir" >&2; exit 1; }
[ -n "$api" ] || { echo "add-user.sh: the MLflow server is unknown: pass --api http://HOST:PORT" >&2; exit 1; }
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$here/../.venv/bin/python" ]; then python="$here/../.venv/bin/python"; else python="$(command -v python3)"; fi
fi

MMTRACK_ADMIN_PASSWORD="$admin" "$python" - "$api" "$name" <<'EOF'
import base64, json, os, secrets, sys, urllib.error, urllib.request

api, name = sys.argv[1].rstrip("/"), sys.argv[2]
password = os.environ.get("MMTRACK_NEW_PASSWORD") or secrets.token_urlsafe(18)
auth = "Basic " + base64.b64encode(f"admin:{os.environ['MMTRACK_ADMIN_PASSWORD']}".encode()).decode()


def call(method, path, body):
    req = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(), method=method,
                                 headers={"Authorization": auth, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        sys.exit(f"add-user.sh: {api} is unreachable ({exc})")


status, text = call("POST", "/api/2.0/mlflow/users/create", {"username": name, "password": password})
exists = status != 200 and ("RESOURCE_ALREADY_EXISTS" in text or "already exists" in text)
if exists and os.environ.get("MMTRACK_NEW_PASSWORD"):
    status, text = call("PATCH", "/api/2.0/mlflow/users/update-password", {"username": name, "password": password})
if status != 200:
    try:
        text = json.loads(text).get("message", text)
    except ValueError:
        pass
    if exists:
        sys.exit(f"add-user.sh: user {name!r} already exists")
    sys.exit(f"add-user.sh: could not add {name!r} ({status}: {text.strip().splitlines()[0][:200]})")
print(f"{name} {password}")
EOF
