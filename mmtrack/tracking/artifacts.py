"""What a run stored, read back: its model (safe weights; a pickle only when trusted) and its predictions for
every population (cached locally: they never change once logged)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pandas as pd

from mmtrack import settings
from mmtrack.errors import MMTrackError
from mmtrack.tags import (
    TRUSTED_PICKLE_TAG,
)
from mmtrack.tracking.runs import WEIGHTS
from mmtrack.tracking.search import run_error


def load_model(client, run_id: str, trust_pickle: bool = False):
    """The run's model, rebuilt from mmtrack's code and its safetensors weights (`weights/`): loading executes
    nothing that came from the tracking store. Runs logged before `weights/` existed have only MLflow's pickled
    model (`model/`), which runs arbitrary code when unpickled: refused unless `trust_pickle` (for a store the
    user controls; recorded on the run)."""
    import tempfile

    from mmtrack.models import SPEC_FILE, WEIGHTS_FILE, load_weights

    try:
        names = {Path(f.path).name for f in client.list_artifacts(run_id, WEIGHTS)}
    except Exception as exc:  # noqa: BLE001 - no such run, an outage, or anything else: said as it is
        raise run_error(client, run_id, "listing the model", exc) from None
    if {SPEC_FILE, WEIGHTS_FILE} <= names:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp)
            for name in (SPEC_FILE, WEIGHTS_FILE):  # only the two files (never anything else in the folder)
                local = Path(client.download_artifacts(run_id, f"{WEIGHTS}/{name}", tmp)).parent
            try:
                return load_weights(local)
            except MMTrackError as exc:
                raise MMTrackError(f"run {run_id}: {exc.message}") from None
    if not trust_pickle:
        raise MMTrackError(
            f"run {run_id} has no safe weights ({WEIGHTS}/{WEIGHTS_FILE}): its only model is a "
            "pickle, which can run code when loaded; retrain the configuration, or pass "
            "--trust-pickle if you control this tracking store"
        )
    import mlflow.pytorch

    client.set_tag(run_id, TRUSTED_PICKLE_TAG, "true")  # the decision is recorded before anything is unpickled
    try:
        return mlflow.pytorch.load_model(f"runs:/{run_id}/model", map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise MMTrackError(
            f"could not load the model of run {run_id} ({type(exc).__name__}: {exc}); was it logged by mmtrack?"
        ) from None


PREDICTIONS = "predictions/test.parquet"
PREDICTIONS_DIR = "predictions"


def predictions_path(population: str) -> str:
    """The artifact holding a population's predictions: `predictions/test.parquet`, `predictions/group.parquet`,
    `predictions/ood/<set>.parquet`, `predictions/pgd_linf/<δ>.parquet`, ..."""
    return f"{PREDICTIONS_DIR}/{population}.parquet"


def stored_populations(client, run_id: str) -> list[str]:
    """The populations a run stored predictions for (sorted), from its artifact listing."""
    out, folders = [], [PREDICTIONS_DIR]
    while folders:
        folder = folders.pop()
        try:
            entries = client.list_artifacts(run_id, folder)
        except Exception:  # noqa: BLE001 - no predictions folder: nothing stored
            continue
        for entry in entries:
            if entry.is_dir:
                folders.append(entry.path)
            elif entry.path.endswith(".parquet"):
                out.append(entry.path[len(PREDICTIONS_DIR) + 1 : -len(".parquet")])
    return sorted(out)


def load_predictions(
    client, run_ids: list[str], use_cache: bool = True, population: str = "test"
) -> dict[str, pd.DataFrame]:
    """The stored per-example predictions of each run on `population` (`test`, `group`, `ood/<set>`,
    `pgd_linf/<δ>`, ...); runs without them are left out.

    A run's predictions never change once logged (`mmtrack evaluate` only adds missing populations), so with
    `use_cache` each file is downloaded once into `<cache dir>/predictions/<run id>/<population>.parquet` and
    read from there after."""
    import shutil
    import tempfile

    out = {}
    cache = settings.cache_dir() / "predictions"
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in run_ids:
            path = cache / run_id / f"{population}.parquet"
            if use_cache and path.exists():
                with contextlib.suppress(Exception):  # a broken cache file is fetched again
                    out[run_id] = pd.read_parquet(path)
                    continue
            try:
                local = client.download_artifacts(run_id, predictions_path(population), tmp)
            except Exception:  # noqa: BLE001 - a run without these predictions is reported by the caller
                continue
            out[run_id] = pd.read_parquet(local)
            if use_cache:
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(local, path.with_suffix(f".{os.getpid()}.tmp"))
                os.replace(path.with_suffix(f".{os.getpid()}.tmp"), path)
    return out
