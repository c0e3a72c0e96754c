"""Every environment variable and default path mmtrack reads, resolved in one place.

Modules call these functions (or take the values as arguments); nothing else reads `os.environ`, and nothing
writes it to pass values along. The writes mmtrack makes are all of MLflow's own variables: `take_mlflow_run_id`
below (MLFLOW_RUN_ID), `tracking.quiet_libraries` (MLflow's console chatter off) and `tracking.patient_worker`
(MLflow's HTTP retries short in a worker process); and, with MMTRACK_DETERMINISTIC=1, cuBLAS's
CUBLAS_WORKSPACE_CONFIG (`set_cublas_workspace`). Each function reads the environment when called, so a test or
a launcher that sets a variable before calling sees it.

| variable | meaning | default |
|---|---|---|
| `MMTRACK_TRACKING_DIR` | local tracking store (SQLite + artifacts), locks and caches | `tracking-dir` of `[tool.mmtrack]` in the nearest `pyproject.toml` up from the working directory (a checkout of mmtrack: its `tracking/`), else the per-user data folder (`~/.local/share/mmtrack` on Linux) |
| `MMTRACK_CACHE` | caches (decoded datasets, runs tables, predictions) | `<tracking dir>/cache` |
| `MMTRACK_DATA` | root folder of real datasets (`--data-dir` wins) | `./data` |
| `MMTRACK_THREADS` | torch threads a sweep shares between its workers; also the most processes a first decode of 2,048+ images uses | the CPUs this process may use |
| `MMTRACK_DEVICE` | torch device | `cuda` when present, else `cpu` |
| `MMTRACK_MEMORY_FORMAT` | `channels_last` or `contiguous` | `channels_last` |
| `MMTRACK_PRECISION` | `fp32` (on CUDA: TF32 off), `tf32` (CUDA may use TF32), or `bf16` (bfloat16 autocast while training on CUDA); CPU always trains in fp32 | `fp32` |
| `MMTRACK_DETERMINISTIC` | `1`: deterministic algorithms (torch, cuDNN, cuBLAS; README "On a GPU") | unset |
| `MMTRACK_SERVER_WAIT` | seconds a worker waits for an unreachable tracking server or Optuna storage before it stops (`--server-wait` wins) | `600` |
| `MMTRACK_SPOOL` | trained weights whose run could not be logged (the tracking server was away too long), kept until a rerun on this machine logs them | `<tracking dir>/spool` |
| `MMTRACK_CRASH_AT` | fault injection for the restart tests: `train`, `evaluate` or `artifacts` kills the process (SIGKILL) at that point of its first run, as a lost machine would | unset |
| `MLFLOW_TRACKING_URI`, `MLFLOW_RUN_ID`, `MLFLOW_TRACKING_USERNAME/PASSWORD` | MLflow's own | |
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from mmtrack.errors import MMTrackError

MEMORY_FORMATS = ("channels_last", "contiguous")


def tracking_dir() -> Path:
    return tracking_dir_origin()[0]


def tracking_dir_origin() -> tuple[Path, str]:
    """(the local store's folder, what chose it): $MMTRACK_TRACKING_DIR, else a project's own setting, else the
    per-user data folder (platformdirs), so an installed mmtrack writes nothing into the working directory."""
    env = os.environ.get("MMTRACK_TRACKING_DIR")
    if env:
        return Path(env).expanduser().resolve(), "$MMTRACK_TRACKING_DIR"
    project = project_setting("tracking-dir")
    if project is not None:
        value, pyproject = project
        return (pyproject.parent / Path(value).expanduser()).resolve(), f"{pyproject} [tool.mmtrack]"
    import platformdirs

    return platformdirs.user_data_path("mmtrack"), "the per-user default"


def project_setting(key: str) -> tuple[str, Path] | None:
    """(value, the pyproject.toml that sets it) of `[tool.mmtrack] <key>` in the nearest pyproject.toml, from the
    working directory up, that has a `[tool.mmtrack]` table (as ruff and pytest find their settings)."""
    here = Path.cwd()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        try:
            text = pyproject.read_text()
        except (OSError, UnicodeDecodeError):
            continue  # none, or not ours to judge
        if "tool.mmtrack" not in text:
            continue
        try:
            table = tomllib.loads(text).get("tool", {}).get("mmtrack")
        except tomllib.TOMLDecodeError as exc:
            raise MMTrackError(f"{pyproject}: not valid TOML ({exc}); fix its [tool.mmtrack] table") from None
        if table is None:
            continue
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise MMTrackError(f"{pyproject}: [tool.mmtrack] {key} must be a path (a string), got {value!r}")
        return value, pyproject
    return None


def cache_dir() -> Path:
    """Root of mmtrack's local caches: $MMTRACK_CACHE, else the tracking directory's `cache/`."""
    env = os.environ.get("MMTRACK_CACHE")
    return Path(env).expanduser() if env else tracking_dir() / "cache"


def spool_dir() -> Path:
    """Where trained weights wait for their run to be logged (`mmtrack.jobs.spool`): $MMTRACK_SPOOL, else the
    tracking directory's `spool/`."""
    env = os.environ.get("MMTRACK_SPOOL")
    return Path(env).expanduser() if env else tracking_dir() / "spool"


def lock_dir() -> Path:
    return tracking_dir() / "locks"


def data_dir(explicit: str | Path | None = None) -> Path:
    """The root folder of real datasets: the explicit value (--data-dir), else $MMTRACK_DATA, else ./data."""
    return Path(explicit or os.environ.get("MMTRACK_DATA") or "data").expanduser()


def studies_dir() -> Path:
    """The user's own folder of study files, looked up before the presets for a bare name (`mine`)."""
    return Path("studies")


def cpu_budget() -> int:
    """Torch threads a sweep shares between its workers, and the most processes a first decode uses:
    $MMTRACK_THREADS, else the CPUs this process may use."""
    value = os.environ.get("MMTRACK_THREADS")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise MMTrackError(f"MMTRACK_THREADS must be a positive integer, got {value!r}")
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def device_name() -> str | None:
    """$MMTRACK_DEVICE (e.g. `cpu`), or None for "CUDA when present"."""
    return os.environ.get("MMTRACK_DEVICE") or None


def memory_format() -> str:
    name = os.environ.get("MMTRACK_MEMORY_FORMAT", "channels_last")
    if name not in MEMORY_FORMATS:
        raise MMTrackError(f"MMTRACK_MEMORY_FORMAT must be one of {', '.join(MEMORY_FORMATS)}, got {name!r}")
    return name


PRECISIONS = ("fp32", "tf32", "bf16")


def server_wait() -> float:
    value = os.environ.get("MMTRACK_SERVER_WAIT", "600")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise MMTrackError(f"MMTRACK_SERVER_WAIT must be a number of seconds >= 0, got {value!r}")
    return seconds


CRASH_POINTS = ("train", "evaluate", "artifacts")


def crash_point(stage: str) -> None:
    """Die here (SIGKILL: no clean-up, no hand-back) when $MMTRACK_CRASH_AT names `stage`: the restart tests kill
    a worker at a known moment instead of racing a timer."""
    if os.environ.get("MMTRACK_CRASH_AT") == stage:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def precision() -> str:
    name = os.environ.get("MMTRACK_PRECISION", "fp32")
    if name not in PRECISIONS:
        raise MMTrackError(f"MMTRACK_PRECISION must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return name


def deterministic() -> bool:
    """$MMTRACK_DETERMINISTIC=1: deterministic algorithms wherever PyTorch has them (`training.device.use_device`)."""
    value = os.environ.get("MMTRACK_DETERMINISTIC", "")
    if value not in ("", "0", "1"):
        raise MMTrackError(f"MMTRACK_DETERMINISTIC must be 0 or 1, got {value!r}")
    return value == "1"


def set_cublas_workspace() -> None:
    """cuBLAS's own variable for repeatable matmuls (deterministic mode), unless the user set it."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def mlflow_tracking_uri() -> str | None:
    return os.environ.get("MLFLOW_TRACKING_URI") or None


def mlflow_run_id() -> str | None:
    """The run `mlflow run` created for this process (it passes it as MLFLOW_RUN_ID)."""
    return os.environ.get("MLFLOW_RUN_ID") or None


def mlflow_credentials() -> tuple[str | None, str | None]:
    return os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")


def take_mlflow_run_id() -> str | None:
    """Remove and return MLFLOW_RUN_ID. The one write to the environment: MLflow's fluent API would otherwise
    resume `mlflow run`'s launcher run for every run this process starts."""
    return os.environ.pop("MLFLOW_RUN_ID", None) or None
