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


def patiently(what: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """`fn(*args, **kwargs)`, tried again while the tracking server is unreachable, for up to the server wait."""

    def gone(seconds: float, exc: BaseException) -> Exception:
        return TrackingUnavailable(
            f"tracking server unreachable for {seconds:.0f} s (--server-wait {server_wait():g} s) while logging "
            f"{what}: {' '.join(str(exc).split())[:160]}"
        )

    return wait_out(
        f"tracking server unreachable while logging {what}", lambda: fn(*args, **kwargs), is_unreachable, gone
    )


def wait_out(
    what: str,
    fn: Callable[[], T],
    down: Callable[[BaseException], bool],
    gone: Callable[[float, BaseException], Exception],
    on_down: Callable[[], None] = lambda: None,
) -> T:
    """`fn()`, tried again with backoff (1, 2, 4, ... 15 s) while it fails with an error `down` says means "the
    service cannot be reached", for up to the server wait; then `gone(seconds unreachable, last error)` is raised.
    Other errors propagate at once. `what` names the trouble in the two warnings (away, back); `on_down` is told
    of every failed attempt. Shared by the MLflow calls (`patiently`) and the Optuna storage's."""
    deadline = time.monotonic() + server_wait()
    delay, first = 1.0, None
    while True:
        try:
            result = fn()
        except Exception as exc:
            if not down(exc):
                raise
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
