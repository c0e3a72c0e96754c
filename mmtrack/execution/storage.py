"""The Optuna storage behind `OptunaQueue`: which URLs it takes (`check_storage`, `driver_url`), the one-line
error for one that cannot be reached, and riding out one that goes away for a while (`patiently`: a PostgreSQL
restart, a dropped connection), up to the worker's `--server-wait` (`tracking.wait_out`)."""

from __future__ import annotations

from pathlib import Path

from mmtrack.errors import MMTrackError


def scheme(url: str):
    """The row of `tracking.schemes.SCHEMES` that `url` belongs to (imported lazily: `mmtrack --help` stays light)."""
    from mmtrack.tracking.schemes import scheme_of

    return scheme_of(url)


def driver_url(url: str) -> str:
    """The URL SQLAlchemy opens (`tracking.schemes.driver_url`: `postgresql://` means psycopg 3)."""
    from mmtrack.tracking.schemes import driver_url as _driver_url

    return _driver_url(url)


def _redact(url: str) -> str:
    from mmtrack import tracking

    return tracking.redact(url)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def unreachable(url: str, exc: BaseException | None = None, seconds: float | None = None) -> MMTrackError:
    why = f" ({_first_line(exc)})" if exc is not None else ""
    waited = f" for {seconds:.0f} s (--server-wait)" if seconds is not None else ""
    return MMTrackError(
        f"Optuna storage {_redact(url)} is unreachable{waited}{why}; start it (tracking/start-stack.sh) "
        "or fix --storage / $MMTRACK_STORAGE (finished runs are kept in MLflow)"
    )


def check_storage(url: str, timeout: int = 5) -> None:
    """Fail fast, in one line naming the URL, when the storage cannot be reached (or is of a scheme Optuna's queue
    cannot use: `tracking.schemes.SCHEMES`)."""
    from mmtrack.tracking.schemes import local_path, optuna_schemes, scheme_of

    try:
        scheme = scheme_of(url)
    except MMTrackError:
        scheme = None
    if scheme is None or not scheme.optuna:
        usable = " or ".join(f"{s.prefixes[0]}..." for s in optuna_schemes())
        raise MMTrackError(
            f"--storage must be {usable} (postgresql://user:password@host:port/db for several machines, "
            f"sqlite:///file for one), got {_redact(url)}"
        )
    if scheme.check == "local":
        parent = Path(local_path(url)).parent
        if not parent.is_dir():
            raise MMTrackError(f"Optuna storage {url}: folder {parent} does not exist")
        return
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(driver_url(url), connect_args={scheme.timeout_arg: timeout})
        with engine.connect() as conn:
            inspector = sqlalchemy.inspect(conn)
            mlflow_db = inspector.has_table("experiments") and inspector.has_table("runs")
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any driver error means: cannot reach it
        raise unreachable(url, exc) from None
    if mlflow_db:  # Optuna and MLflow both keep an `alembic_version` table: they cannot share a database
        raise MMTrackError(
            f"Optuna storage {_redact(url)} is MLflow's database; give Optuna a database of its "
            "own on the same server (tracking/start-stack.sh creates `mmtrack_optuna`)"
        )


def _connection_lost(exc: BaseException) -> BaseException | None:
    """The driver error behind `exc` when it says the storage cannot be reached (down, restarting, a dropped
    connection), else None."""
    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError

    if not isinstance(exc, (sqlalchemy.exc.DBAPIError, StorageInternalError)):
        return None
    cause = exc if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc.__cause__
    return cause if isinstance(cause, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)) else None


def patiently(url: str, what: str, fn, on_down=lambda: None):
    """`fn()`, tried again while the storage is unreachable (a PostgreSQL restart), for up to the server wait
    (`tracking.wait_out`); then one line naming the URL."""
    from mmtrack import tracking

    def gone(seconds: float, exc: BaseException) -> MMTrackError:
        return unreachable(url, _connection_lost(exc), seconds)

    trouble = f"Optuna storage {_redact(url)} unreachable while {what}"
    return tracking.wait_out(trouble, fn, lambda exc: _connection_lost(exc) is not None, gone, on_down)
