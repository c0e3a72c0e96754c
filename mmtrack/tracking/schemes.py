"""Every URL scheme mmtrack accepts for a store, said once: which stores may use it (MLflow's tracking store,
the Optuna queue's storage), how it comes to exist, how mmtrack checks that it answers, how the queue locks it,
and how its SQLAlchemy engine is opened. `stores.connect`, `stores.check_store`, the UI links (`stores.ui_base`,
`open_hint`), the resilience layer, the Optuna storage check (`execution.storage`) and the queue
(`execution.optuna_queue`) all read this table; none of them tests a URL's prefix itself.

A new scheme is one row here (and, if it needs one, a check in `stores.CHECKS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmtrack.errors import MMTrackError


@dataclass(frozen=True)
class Scheme:
    name: str
    prefixes: tuple[str, ...]  # what a URL of this scheme starts with
    tracking: bool  # MLflow's tracking store may live here
    optuna: bool  # the Optuna queue's storage may live here
    bootstrap: str  # how the store comes to exist (documentation, shown by `mmtrack info`)
    check: str  # how mmtrack checks it answers: "local" (a file mmtrack creates), "server" (/health and login),
    #             "database" (a SQLAlchemy connection), "none" (MLflow's client reports its own errors)
    lock: str = "none"  # the Optuna queue's lock: "file" (next to the database), "advisory" (pg_advisory_xact_lock)
    driver: str | None = None  # the SQLAlchemy driver mmtrack names in the URL (psycopg 3 for PostgreSQL)
    timeout_arg: str | None = None  # the DBAPI connect argument that bounds a connection attempt
    engine_kwargs: dict = field(default_factory=dict)  # the Optuna storage's SQLAlchemy engine options
    serves_ui: bool = False  # the URL itself serves the MLflow UI (else `mmtrack server` over the store)
    restarts_visible: bool = False  # the database says when it started (pg_postmaster_start_time)


SCHEMES: tuple[Scheme, ...] = (
    Scheme(
        "sqlite",
        ("sqlite:///",),
        tracking=True,
        optuna=True,
        bootstrap="created on first use (MLflow's tables under a file lock; artifacts/ beside the database)",
        check="local",
        lock="file",
        timeout_arg="timeout",
        engine_kwargs={"connect_args": {"timeout": 60}},  # wait for other writers instead of failing
    ),
    Scheme(
        "postgresql",
        ("postgresql://", "postgresql+", "postgres://"),
        tracking=True,
        optuna=True,
        bootstrap="a database on a running server (tracking/start-stack.sh creates MLflow's and Optuna's)",
        check="database",
        lock="advisory",
        driver="postgresql+psycopg",
        timeout_arg="connect_timeout",
        engine_kwargs={"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}},
        restarts_visible=True,
    ),
    Scheme(
        "mysql",
        ("mysql://", "mysql+"),
        tracking=True,
        optuna=False,
        bootstrap="a database on a running server",
        check="database",
        timeout_arg="connect_timeout",
    ),
    Scheme(
        "mssql",
        ("mssql://", "mssql+"),
        tracking=True,
        optuna=False,
        bootstrap="a database on a running server",
        check="database",
    ),
    Scheme(
        "http",
        ("http://", "https://"),
        tracking=True,
        optuna=False,
        bootstrap="a running MLflow server (`mmtrack server`, tracking/start-stack.sh)",
        check="server",
        serves_ui=True,
    ),
    Scheme(
        "databricks",
        ("databricks",),
        tracking=True,
        optuna=False,
        bootstrap="a Databricks workspace (MLflow's databricks profile)",
        check="none",
    ),
    Scheme(
        "file",
        ("file:",),
        tracking=True,
        optuna=False,
        bootstrap="MLflow's file store, created on first use (deprecated by MLflow; prefer sqlite)",
        check="none",
    ),
)


def scheme_of(url: str) -> Scheme:
    """The scheme of a store URL; a plain path (`./mlruns`) is MLflow's file store. An unknown scheme raises
    MMTrackError naming the ones mmtrack knows."""
    for scheme in SCHEMES:
        if url.startswith(scheme.prefixes):
            return scheme
    if "://" not in url:
        return next(s for s in SCHEMES if s.name == "file")
    known = ", ".join(s.name for s in SCHEMES)
    raise MMTrackError(f"store URL {url.split('://')[0]}://... has a scheme mmtrack does not know; use one of: {known}")


def optuna_schemes() -> list[Scheme]:
    return [s for s in SCHEMES if s.optuna]


def driver_url(url: str) -> str:
    """The URL SQLAlchemy opens: the scheme's own driver named (`postgresql://` means psycopg 3, mmtrack's one
    PostgreSQL driver, whatever SQLAlchemy's default is)."""
    scheme, rest = scheme_of(url), url.partition("://")
    if scheme.driver is None or "+" in rest[0]:  # no driver of its own, or one the URL names
        return url
    return scheme.driver + "://" + rest[2]


def local_path(url: str) -> str | None:
    """The file behind a local (sqlite:///) URL, else None."""
    scheme = scheme_of(url)
    return url[len(scheme.prefixes[0]) :] if scheme.check == "local" else None
