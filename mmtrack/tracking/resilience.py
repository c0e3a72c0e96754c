"""Riding out a tracking server that goes away for a while (a restart, an upgrade, a network blip).

A worker's MLflow calls go through `patiently`: a call that fails because the server cannot be reached is tried
again with backoff (1, 2, 4, ... 15 s) until the server answers or the worker's `server wait` has passed
(`mmtrack sweep/worker --server-wait`, default 10 minutes); then `TrackingUnavailable`, one line. In a worker
MLflow's own HTTP retries are made short (`patient_worker`: each attempt gives up within seconds), so this loop,
not MLflow's, decides how long to wait, and training metrics can be buffered instead of blocking training
(`RunLogger.log_metrics`). Calls that fail for another reason (a bad request, a permission) fail at once.
The same loop (`wait_out`) rides out a restart of the Optuna storage (`execution.optuna_queue`).
Re-sending is safe: MLflow keeps one copy of a metric logged twice with the same step and timestamp, params and
tags are idempotent, artifacts are overwritten.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

from mmtrack import settings
from mmtrack.errors import MMTrackError

log = logging.getLogger(__name__)
T = TypeVar("T")

BACKOFF_MAX = 15.0  # seconds between two attempts, at most
# What a request to a server that is down (or restarting behind a proxy) fails with, in MLflow's and requests'
# words; a refused login or a bad request says something else and is not retried.
_UNREACHABLE = (
    "connection refused",
    "connectionerror",
    "connection aborted",
    "max retries exceeded",
    "failed to establish a new connection",
    "remote end closed connection",
    "remotedisconnected",
    "read timed out",
    "connection reset",
    "bad gateway",
    "service unavailable",
    "gateway timeout",
    "too many 502 error responses",
    "too many 503 error responses",
    "too many 504 error responses",
)

# Of those, the ones only a server that is up but not serving says (a proxy, or MLflow with its database down):
# always an outage. The others (a connection refused, reset or aborted) are an outage only while the server's
# /health does not answer either: a server that answers it but resets one upload (a full disk) fails that request.
_UNAVAILABLE = ("bad gateway", "service unavailable", "gateway timeout", "502 error", "503 error", "504 error")
REQUEST_RETRIES = 2  # tries more of a call that fails on a connection the healthy server reset

_WAIT: dict[str, float] = {}  # this process's server wait, once a worker set it


class TrackingUnavailable(MMTrackError):
    """The tracking server did not answer within the server wait."""


def set_server_wait(seconds: float) -> None:
    """How long this process's MLflow calls wait for an unreachable tracking server (`--server-wait`)."""
    if seconds < 0:
        raise MMTrackError(f"--server-wait must be at least 0 seconds, got {seconds:g}")
    _WAIT["seconds"] = float(seconds)


def server_wait() -> float:
    return _WAIT.get("seconds", settings.server_wait())


def patient_worker(seconds: float) -> None:
    """Set up a worker process: `seconds` of server wait, and MLflow's own HTTP retries short (one retry, 1 s
    backoff, 20 s timeout: each attempt fails within seconds) unless the user set MLflow's variables."""
    set_server_wait(seconds)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the server could not be reached (rather than that it refused the request)."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(marker in text for marker in _UNREACHABLE)


def _server_answers() -> bool:
    """Whether the tracking server (MLflow's current tracking URI) answers /health within 3 s."""
    import urllib.request

    import mlflow

    from mmtrack.tracking.schemes import scheme_of

    uri = mlflow.get_tracking_uri()
    if scheme_of(uri).check != "server":
        return False
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


def request_failed(exc: BaseException) -> bool:
    """Whether an unreachable-looking `exc` is this request's own failure: the connection was cut (not refused
    by a server that is down, not a 5xx of one that cannot serve) and the server answers /health."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return not any(marker in text for marker in _UNAVAILABLE) and _server_answers()


def patiently(what: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """`fn(*args, **kwargs)`, tried again while the tracking server is unreachable, for up to the server wait;
    a call whose connection a healthy server cuts (an upload to a full disk) fails after `REQUEST_RETRIES`."""

    def gone(seconds: float, exc: BaseException) -> Exception:
        return TrackingUnavailable(
            f"tracking server unreachable for {seconds:.0f} s (--server-wait {server_wait():g} s) while logging "
            f"{what}: {' '.join(str(exc).split())[:160]}"
        )

    return wait_out(
        f"tracking server unreachable while logging {what}",
        lambda: fn(*args, **kwargs),
        is_unreachable,
        gone,
        request_failed=request_failed,
    )


def wait_out(
    what: str,
    fn: Callable[[], T],
    down: Callable[[BaseException], bool],
    gone: Callable[[float, BaseException], Exception],
    on_down: Callable[[], None] = lambda: None,
    request_failed: Callable[[BaseException], bool] = lambda exc: False,
) -> T:
    """`fn()`, tried again with backoff (1, 2, 4, ... 15 s) while it fails with an error `down` says means "the
    service cannot be reached", for up to the server wait; then `gone(seconds unreachable, last error)` is raised.
    Other errors propagate at once. `what` names the trouble in the two warnings (away, back); `on_down` is told
    of every failed attempt. An error `request_failed` blames on the request, not the service, is raised after
    `REQUEST_RETRIES` more tries. Shared by the MLflow calls (`patiently`) and the Optuna storage's."""
    deadline = time.monotonic() + server_wait()
    delay, first, strikes = 1.0, None, 0
    while True:
        try:
            result = fn()
        except Exception as exc:
            if not down(exc):
                raise
            if request_failed(exc):
                strikes += 1
                if strikes > REQUEST_RETRIES:
                    raise
                time.sleep(1.0)
                continue
            on_down()
            if first is None:
                first = time.monotonic()
                log.warning("%s; retrying for %.0f s", what, server_wait())
            if time.monotonic() + delay > deadline:
                raise gone(time.monotonic() - first, exc) from None
            time.sleep(delay)
            delay = min(2 * delay, BACKOFF_MAX)
            continue
        if first is not None:
            log.warning("back after %.0f s (%s)", time.monotonic() - first, what)
        return result
