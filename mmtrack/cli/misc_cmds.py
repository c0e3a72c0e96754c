"""`mmtrack server` (`mmtrack datasets` is in `data_cmds`)."""

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
