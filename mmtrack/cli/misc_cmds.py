"""`mmtrack server` and `mmtrack info` (`mmtrack datasets` is in `data_cmds`, `mmtrack study` in `study_cmds`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape as esc

from mmtrack.cli._app import app, console
from mmtrack.cli._options import TrackingUri
from mmtrack.errors import MMTrackError


@app.command()
def server(
    host: Annotated[
        str, typer.Option(metavar="HOST", help="Interface to bind (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port.")] = 5000,
    tracking_uri: TrackingUri = None,
):
    """Start the MLflow UI/server over the tracking store (default: the local store under tracking/)."""
    import os
    import signal
    import subprocess
    import time
    import urllib.request

    from mmtrack import tracking

    uri = tracking.resolve_uri(tracking_uri)
    tracking.connect(uri)  # creates the local store if needed
    # One user, one machine: one uvicorn worker and no background job consumers (MLflow's defaults start 4
    # workers plus job processes, ~10 processes and ~40 s on 2 busy cores).
    args = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    if tracking.is_local_sqlite(uri):
        args += ["--default-artifact-root", str(tracking.tracking_dir() / "artifacts")]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    try:
        while proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        if proc.poll() is not None:
            raise MMTrackError(
                f"mlflow server exited with code {proc.returncode} before answering (is port {port} in use? try --port)"
            )
        console.print(
            f"MLflow UI on http://{esc(host)}:{port} over {esc(uri)} (ready in "
            f"{time.perf_counter() - start:.0f} s; Ctrl-C stops it)"
        )
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(30)


@app.command()
def info(tracking_uri: TrackingUri = None):
    """Where things go and what runs them: version, tracking URI, local store and cache (with sizes), device,
    thread budget and the versions of torch, MLflow, Optuna and ART."""
    from importlib.metadata import version

    from mmtrack import __version__, settings, tracking
    from mmtrack.study import preset_dir
    from mmtrack.training.device import gpu_diagnosis, pick_device

    uri = tracking.resolve_uri(tracking_uri)
    where, origin = settings.tracking_dir_origin()
    source = "--tracking-uri" if tracking_uri else ("$MLFLOW_TRACKING_URI" if uri != tracking.default_uri() else "")
    rows = [
        ("tracking URI", tracking.redact(uri) + (f"  ({source})" if source else "  (the local store)")),
        ("local store", f"{where}  ({_size(where, skip='cache')}; from {origin})"),
        ("cache", f"{settings.cache_dir()}  ({_size(settings.cache_dir())})"),
        ("data dir", f"{settings.data_dir().resolve()}  (--data-dir / $MMTRACK_DATA)"),
        ("presets", f"{preset_dir()}"),
        (
            "device",
            f"{pick_device()}  (precision {settings.precision()}"
            + (", deterministic)" if settings.deterministic() else ")"),
        ),
        *([("GPU", why)] if (why := gpu_diagnosis()) else []),
        ("threads", f"{settings.cpu_budget()}  (shared by a sweep's workers; $MMTRACK_THREADS)"),
    ]
    pkgs = {"torch": "torch", "torchvision": "torchvision", "mlflow": "MLflow", "optuna": "Optuna"}
    pkgs["adversarial-robustness-toolbox"] = "ART"
    for pkg, label in pkgs.items():
        rows.append((label, version(pkg)))
    console.print(f"mmtrack {__version__}", highlight=False)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        console.print(f"  {key.ljust(width)}  {esc(value)}", highlight=False, soft_wrap=True)


def _size(path, skip: str | None = None) -> str:
    """Total size of the files under `path` (not following links), skipping the subfolder `skip`."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        return "not created yet"
    total = 0
    for p in path.rglob("*"):
        if skip and p.relative_to(path).parts[0] == skip:
            continue
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    for unit in ("B", "KB", "MB", "GB"):
        if total < 1024 or unit == "GB":
            return f"{total:.0f} {unit}" if unit == "B" else f"{total:.1f} {unit}"
        total /= 1024
    return ""
