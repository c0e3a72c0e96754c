"""Where the tracking store is and whether it answers: URIs, the local SQLite store, servers (with their login),
databases, and the MLflow UI address derived from the tracking URI. What each URL scheme needs is said once, in
`schemes.SCHEMES`; the checks here are chosen from it (`CHECKS`).

Without MLFLOW_TRACKING_URI (or --tracking-uri) mmtrack uses a local store under `tracking/` (or
$MMTRACK_TRACKING_DIR): a SQLite database `mlflow.db` plus an artifact folder `artifacts/`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

from mmtrack import settings
from mmtrack.errors import MMTrackError
from mmtrack.tracking.schemes import local_path, scheme_of

MLFLOW_DEFAULT_URIS = ("sqlite:///mlflow.db", "./mlruns", "mlruns", "file:./mlruns")


tracking_dir = settings.tracking_dir  # re-exported: callers ask the tracking layer where its store lives


def default_uri() -> str:
    return f"sqlite:///{tracking_dir() / 'mlflow.db'}"


def resolve_uri(uri: str | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else the local store under tracking/.

    Under `mlflow run` (MLFLOW_RUN_ID set) with no store configured, MLflow passes its own default
    (`sqlite:///mlflow.db` in the working directory) on: mmtrack then uses its local store, where `mmtrack server`
    and every `mmtrack` command look."""
    env = settings.mlflow_tracking_uri()
    if env and settings.mlflow_run_id() and is_mlflow_default(env):
        env = None
    return uri or env or default_uri()


def is_mlflow_default(uri: str) -> bool:
    """MLflow's built-in default store, relative to the working directory (what nobody chose)."""
    return uri in MLFLOW_DEFAULT_URIS or uri == f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def is_local_sqlite(uri: str) -> bool:
    return local_path(uri) is not None


def artifact_root(uri: str) -> str | None:
    """Artifact folder next to a local SQLite store; None (the server's choice) for other stores."""
    path = local_path(uri)
    return (Path(path).parent / "artifacts").resolve().as_uri() if path is not None else None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (released by the OS if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def connect(uri: str | None = None):
    """Point MLflow at the store, check that it answers, and return an MlflowClient.

    Unreachable servers fail fast with one line naming the URL (MLflow's own client would retry for minutes).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = resolve_uri(uri)
    scheme = scheme_of(uri)
    if not scheme.tracking:
        raise MMTrackError(f"{scheme.name} cannot hold an MLflow tracking store; point --tracking-uri elsewhere")
    if scheme.check == "local":
        _bootstrap_local(uri)
    else:
        check_store(uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def _bootstrap_local(uri: str) -> None:
    """Create a local SQLite store's tables once (under a lock: concurrent first use would race on migrations),
    with the artifact root next to the database, so experiment 0 ('Default', used by `mlflow run`) stores its
    artifacts there too."""
    db = Path(local_path(uri))
    if not db.exists():
        with file_lock(db.parent / ".init.lock"):
            if not db.exists():
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                SqlAlchemyStore(uri, artifact_root(uri)).engine.dispose()


def check_store(uri: str) -> None:
    """The store answers (as its scheme checks it: `schemes.Scheme.check`), else one MMTrackError line naming it.
    A local store always answers."""
    CHECKS[scheme_of(uri).check](uri)


def check_server(uri: str, timeout: float = 5.0) -> None:
    """The server answers (`/health`) and accepts this client's login (MLflow's standard variables
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, as the stack's basic-auth app requires)."""
    import base64

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        raise MMTrackError(
            f"tracking server {uri} is unreachable ({getattr(exc, 'reason', exc)}); start it (`mmtrack server`, "
            "or tracking/start-stack.sh) or point MLFLOW_TRACKING_URI / --tracking-uri at a running one"
        ) from None
    user, password = settings.mlflow_credentials()
    req = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    if user and password:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            who = f"user {user!r} was refused" if user else "no login given"
            raise MMTrackError(
                f"tracking server {uri} requires a login ({who}); set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (tracking/stack.env holds the worker's)"
            ) from None
        if exc.code == 403:
            raise MMTrackError(
                f"tracking server {uri}: user {user!r} may not read experiments; ask its admin (tracking/add-user.sh)"
            ) from None
    except (urllib.error.URLError, OSError):
        pass  # answered /health: let MLflow's client report anything else


def check_database(uri: str, timeout: int = 5) -> None:
    import sqlalchemy

    arg = scheme_of(uri).timeout_arg
    try:
        engine = sqlalchemy.create_engine(uri, connect_args={arg: timeout} if arg else {})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any driver error means: cannot reach it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MMTrackError(f"database {redact(uri)} is unreachable ({first}); start it or fix the URL") from None


CHECKS = {"local": lambda uri: None, "none": lambda uri: None, "server": check_server, "database": check_database}


def redact(uri: str) -> str:
    """Hide a password in a database URL."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", uri)


# ------------------------------------------------------------------------------------------------ experiments


LOCAL_UI = "http://127.0.0.1:5000"  # `mmtrack server` with its defaults


UI_VIEW = "workflowType=machine_learning"  # MLflow UI: the "Model training" view (runs table)


def ui_base(uri: str) -> str:
    """The MLflow UI address for a store: the server itself, or `mmtrack server` on this machine."""
    return uri.rstrip("/") if scheme_of(uri).serves_ui else LOCAL_UI


def ui_url(base: str, exp_id: str, run_id: str | None = None) -> str:
    # MLflow 3's UI opens an experiment in the view last chosen in this browser (GenAI by default; the experiment
    # tag mlflow.experimentKind does not change that): the workflowType parameter opens the model-training view.
    url = f"{base.rstrip('/')}/#/experiments/{exp_id}/runs"
    return f"{url}/{run_id}?{UI_VIEW}" if run_id else f"{url}?{UI_VIEW}"


def open_hint(uri: str, exp_id: str, run_id: str | None = None) -> str:
    """A command or address that really shows the run: the server itself for an http(s) store, else
    `mmtrack server` over that store."""
    if scheme_of(uri).serves_ui:
        return ui_url(uri, exp_id, run_id)
    server = "mmtrack server" if uri == default_uri() else f"mmtrack server --tracking-uri {uri}"
    return f"`{server}`, then {ui_url(LOCAL_UI, exp_id, run_id)}"


QUIET_LOGGERS = ("mlflow", "alembic", "art", "optuna")
QUIET_WARNINGS = r"(mlflow|alembic|art|optuna|sqlalchemy|pydantic|torchvision)(\.|$)"  # modules whose warnings go


def quiet_libraries() -> None:
    """Only errors from the libraries mmtrack drives (MLflow, alembic, ART, Optuna), in a command or a worker
    process; warnings raised inside them are dropped (mmtrack's own are kept). Importing mlflow resets its loggers'
    levels, so it is imported first; its console chatter (run URLs, artifact progress bars) is switched off
    through MLflow's own variables (`settings` lists every environment write mmtrack makes)."""
    import mlflow  # noqa: F401

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", module=QUIET_WARNINGS)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
