"""Reading runs back: paged searches that are never truncated, single runs with one-line errors, and the runs
table of an experiment with its incremental local cache."""

from __future__ import annotations

import os

import pandas as pd

from mmtrack import settings
from mmtrack.errors import MMTrackError
from mmtrack.tags import (
    ERROR_TAG,
    HASH_TAG,
    LAUNCHED_TAG,
    REVISION_TAG,
)
from mmtrack.tracking.resilience import TrackingUnavailable, is_unreachable, patiently


def _runs_frame(runs) -> pd.DataFrame:
    """Runs as a DataFrame in `mlflow.search_runs` format (run_id, status, times, params.*, metrics.*, tags.*)."""
    rows = []
    for r in runs:
        row = {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "experiment_id": r.info.experiment_id,
            "status": r.info.status,
            "start_time": r.info.start_time,
            "end_time": r.info.end_time,
        }
        row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["run_id", "run_name", "experiment_id", "status", "start_time", "end_time"])
    for col in ("start_time", "end_time"):
        df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
    return df


def search_all_runs(client, exp_id: str, filter_string: str = "") -> list:
    """Every run of an experiment matching `filter_string`, page by page (never silently truncated)."""
    out, token = [], None
    while True:
        page = client.search_runs([exp_id], filter_string, max_results=50000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


NO_SUCH_RUN_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # MLflow's answers to a bad run id


def run_error(client, run_id: str, what: str, exc: BaseException) -> MMTrackError:
    """One line for an MLflow call about run `run_id` that failed: the store could not be reached
    (`TrackingUnavailable`), the run does not exist, or anything else, said as it is."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if is_unreachable(exc):
        return TrackingUnavailable(
            f"tracking store {client.tracking_uri} is unreachable while {what} of run {run_id} ({first[:200]}); "
            "start it or point --tracking-uri / MLFLOW_TRACKING_URI at a running one"
        )
    if getattr(exc, "error_code", None) in NO_SUCH_RUN_CODES:
        return MMTrackError(f"unknown run id {run_id!r} in {client.tracking_uri}")
    return MMTrackError(f"could not {what} of run {run_id} ({type(exc).__name__}: {first[:200]})")


def get_run(client, run_id: str):
    """The MLflow run `run_id`, or a one-line error naming the store (`run_error`)."""
    try:
        return client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types
        raise run_error(client, run_id, "reading", exc) from None


def find_experiment(client, name: str) -> str | None:
    """The id of experiment `name`, or None when it does not exist (nothing is created)."""
    exp = client.get_experiment_by_name(name)
    return None if exp is None else exp.experiment_id


def finished_hashes(client, exp_id: str) -> set[str]:
    """Config hashes with a FINISHED run in the experiment (what a sweep skips)."""
    runs = patiently("a runs search", search_all_runs, client, exp_id, "attributes.status = 'FINISHED'")
    return {r.data.tags.get(HASH_TAG) for r in runs}


def runs_of_config(client, exp_id: str, config_hash: str) -> list:
    """Every run of one configuration in the experiment, whatever its status."""
    return patiently("a runs search", search_all_runs, client, exp_id, f"tags.`{HASH_TAG}` = '{config_hash}'")


def fail_run(client, run_id: str, reason: str) -> None:
    """Mark a run FAILED with its reason (a run left RUNNING by a worker that died)."""
    patiently(f"run {run_id}'s end", client.set_tag, run_id, ERROR_TAG, reason)
    patiently(f"run {run_id}'s end", client.set_terminated, run_id, "FAILED")


def log_launcher_summary(launcher_uri: str, launcher_run: str, counts: dict[str, int], where: str) -> None:
    """`mlflow run . -e sweep`: the launcher run (possibly in MLflow's default store) gets the sweep's counts
    (`sweep/finished`, ...) and a tag saying where the training runs went."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(launcher_uri)
    for key, n in counts.items():
        client.log_metric(launcher_run, f"sweep/{key}", n)
    client.set_tag(launcher_run, LAUNCHED_TAG, where)


def load_runs(client, exp_id: str, use_cache: bool = True) -> pd.DataFrame:
    """Every run of an experiment that has ended (FINISHED, FAILED, KILLED), in `mlflow.search_runs` format.

    With `use_cache`, runs are cached locally (tracking/cache/runs/) and refreshed incrementally: only runs whose
    end_time is newer than the newest cached one are fetched. When finished runs gained metrics since the cache
    was written (`mmtrack evaluate` changes the experiment tag `mmtrack.revision`), the cache is rebuilt.
    Deleted runs stay cached until the cache is dropped (`--refresh`)."""
    import hashlib

    ended = "attributes.status != 'RUNNING' AND attributes.status != 'SCHEDULED'"
    if not use_cache:
        return _runs_frame(search_all_runs(client, exp_id, ended))
    key = hashlib.sha256(f"{client.tracking_uri}|{exp_id}".encode()).hexdigest()[:16]
    path = settings.cache_dir() / "runs" / f"{key}.parquet"
    revision_file = path.with_suffix(".revision")
    revision = client.get_experiment(exp_id).tags.get(REVISION_TAG, "")
    cached = None
    if path.exists() and revision_file.exists() and revision_file.read_text() == revision:
        try:
            cached = pd.read_parquet(path)
        except Exception:  # noqa: BLE001 - a broken cache is rebuilt
            cached = None
    if cached is None or cached.empty:
        fresh = _runs_frame(search_all_runs(client, exp_id, ended))
        merged = fresh
    else:
        since = int(cached["end_time"].max().timestamp() * 1000)
        # >= : runs ending in the same millisecond as the newest cached one are re-read, never missed
        fresh = _runs_frame(search_all_runs(client, exp_id, f"{ended} AND attributes.end_time >= {since}"))
        if fresh.empty:
            return cached
        merged = pd.concat([cached[~cached["run_id"].isin(fresh["run_id"])], fresh], ignore_index=True)
    if not merged.empty:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        merged.to_parquet(tmp, index=False)
        os.replace(tmp, path)
        revision_file.write_text(revision)
    return merged


def drop_cache() -> None:
    import shutil

    shutil.rmtree(settings.cache_dir() / "runs", ignore_errors=True)
