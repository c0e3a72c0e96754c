"""Runs and experiments in MLflow: creating experiments, logging a run (`RunLogger`), reading runs back (paged,
never truncated; with an incremental local cache), loading logged models and stored predictions, report runs."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import pandas as pd

from mmtrack import settings
from mmtrack.errors import MMTrackError
from mmtrack.tags import (
    ERROR_TAG,
    HASH_TAG,
    LAUNCHED_TAG,
    NOTE_TAG,
    REPORT_TAG,
    REPORTS_FOR_TAG,
    REVISION_TAG,
    RUN_NAME_TAG,
    STUDY_TAG,
    TRUSTED_PICKLE_TAG,
)
from mmtrack.tracking.stores import artifact_root

REPORTS_SUFFIX = "-reports"  # reports of experiment X live in experiment X-reports
DATASET_RETRIES = 4  # attempts to log a run's dataset input (see RunLogger.log_dataset)


def experiment_id(client, name: str, create: bool = False, tags: dict | None = None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise MMTrackError(
                f"experiment {name!r} is deleted; restore it (`mlflow experiments restore`) or choose another name"
            )
        for key, value in (tags or {}).items():
            client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id
    if not create:
        names = sorted(e.name for e in client.search_experiments())
        raise MMTrackError(f"unknown experiment {name!r}; the tracking server has: {', '.join(names) or 'none'}")
    root = artifact_root(client.tracking_uri)
    location = f"{root}/{name}" if root else None
    try:
        return client.create_experiment(name, artifact_location=location, tags=tags)
    except Exception:  # created concurrently by another process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def experiment_study(client, exp_id: str) -> dict | None:
    tag = client.get_experiment(exp_id).tags.get(STUDY_TAG)
    return json.loads(tag) if tag else None


# ------------------------------------------------------------------------------------------------ one run


class RunLogger:
    """Logs one configuration into one MLflow run: a new one, or `run_id` (the run `mlflow run` created).

    Used as a context manager: an exception inside leaves the run FAILED with the error recorded in the tag
    `mmtrack.error` (and `error.txt`), then propagates; a normal exit marks it FINISHED.
    """

    model_id: str | None = None  # the run's logged model, once logged: final metrics are linked to it
    dataset: tuple[str, str] | None = None  # (name, digest) of the dataset the run's metrics are scored on

    def __init__(self, client, run_id: str):
        """A logger on an existing run, logging through the client only (see `start` and `attach`)."""
        self.client, self.run_id = client, run_id

    @classmethod
    def start(
        cls, client, exp_id: str | None, run_name: str, tags: dict[str, str], run_id: str | None = None
    ) -> RunLogger:
        """Start a new run in `exp_id`, or resume `run_id` (the run `mlflow run` created). It is MLflow's active
        (fluent) run until the `with` block ends, because `mlflow.pytorch.log_model` logs into the active run."""
        import mlflow

        if run_id:  # launched by `mlflow run`: log into the run it created
            logger = cls(client, mlflow.start_run(run_id=run_id).info.run_id)
            logger.set_tags({**tags, RUN_NAME_TAG: run_name})
        else:
            logger = cls(client, mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=tags).info.run_id)
        return logger

    @classmethod
    def create(cls, client, exp_id: str, run_name: str, tags: dict[str, str]) -> RunLogger:
        """A new RUNNING run with the tags `mlflow.start_run` would give it (source, user, git), but not MLflow's
        active run: models trained together log into their runs side by side, and each becomes the active run
        in turn (`resume`) to log its model. `fail` ends one that never became active."""
        from mlflow.tracking.context.registry import resolve_tags

        return cls(client, client.create_run(exp_id, tags=resolve_tags(tags), run_name=run_name).info.run_id)

    def resume(self) -> RunLogger:
        """Make this run MLflow's active run until the `with` block it opens ends (FINISHED, or FAILED/KILLED with
        the error recorded)."""
        import mlflow

        mlflow.start_run(run_id=self.run_id)
        return self

    def fail(self, exc: BaseException) -> None:
        """End this run (not the active one) FAILED, or KILLED for Ctrl-C/SIGTERM, with the error recorded."""
        self._record_error(type(exc), exc, exc.__traceback__)
        with contextlib.suppress(Exception):
            self.client.set_terminated(self.run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")

    @classmethod
    def attach(cls, client, run_id: str) -> RunLogger:
        """A logger on a finished run (`mmtrack evaluate`): no fluent run; later metrics are linked to the run's
        logged model and dataset, like the training run's own."""
        logger = cls(client, run_id)
        run = client.get_run(run_id)
        models = getattr(getattr(run, "outputs", None), "model_outputs", None) or []
        logger.model_id = models[0].model_id if models else None
        datasets = getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []
        logger.dataset = (datasets[0].dataset.name, datasets[0].dataset.digest) if datasets else None
        return logger

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        import mlflow

        if mlflow.active_run() is None or mlflow.active_run().info.run_id != self.run_id:
            return False  # an attached logger: nothing to end
        if exc is None:
            mlflow.end_run("FINISHED")
            return False
        self._record_error(exc_type, exc, tb)
        with contextlib.suppress(Exception):
            mlflow.end_run("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        return False

    def _record_error(self, exc_type, exc, tb) -> None:
        with contextlib.suppress(Exception):
            import traceback

            self.client.set_tag(self.run_id, ERROR_TAG, f"{exc_type.__name__}: {exc}"[:5000])
            self.client.log_text(self.run_id, "".join(traceback.format_exception(exc_type, exc, tb)), "error.txt")

    def log_params(self, params: dict) -> None:
        """Log params; those already on the run (`mlflow run -P ...` logs its own) are kept as they are."""
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items() if k not in existing])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None, to_model: bool = False) -> None:
        """Metrics on the run; with `to_model`, also linked to the run's logged model (MLflow 3 model metrics,
        shown in the Models view), as the final scores are; training curves stay on the run only."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        model_id = self.model_id if to_model else None
        name, digest = self.dataset if to_model and self.dataset else (None, None)  # scored on this dataset
        batch = [
            Metric(
                k,
                float(v),
                now,
                step or 0,
                run_id=self.run_id,
                model_id=model_id,
                dataset_name=name,
                dataset_digest=digest,
            )
            for k, v in metrics.items()
        ]
        for i in range(0, len(batch), 500):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 500])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_model(self, model, input_example) -> None:
        """The model via mlflow.pytorch.log_model under the name `model`, for serving and MLflow's model views.
        It is a pickle: mmtrack never loads it (it loads `weights/`, see `load_model`)."""
        import mlflow
        import mlflow.pytorch

        from mmtrack._version import __version__

        reqs = [f"mmtrack=={__version__}", f"torch=={_version('torch')}", f"torchvision=={_version('torchvision')}"]
        import logging

        # Pickle, not pt2: `mmtrack evaluate` needs an nn.Module back to attack it. MLflow logs a caution about
        # pickle on every call; it is expected here, so it is silenced for this call only.
        pt_log = logging.getLogger("mlflow.pytorch")
        level = pt_log.level
        pt_log.setLevel(logging.ERROR)
        try:
            # step=-1: MLflow links the run's metrics at the given step to the model; none are at -1, so the
            # epoch-0 training metrics are not shown as the model's (final scores are linked as they are logged)
            info = mlflow.pytorch.log_model(
                model,
                name="model",
                input_example=input_example,
                pip_requirements=reqs,
                serialization_format="pickle",
                step=-1,
            )
            self.model_id = info.model_id
        finally:
            pt_log.setLevel(level)

    def log_dataset(self, name: str, digest: str, description: str, profile: dict) -> None:
        """The training data as an MLflow dataset input (the runs table's Dataset column, the run's dataset
        panel): digest = mmtrack's data fingerprint, profile = split sizes, groups and OOD sets."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(
            name=name,
            digest=digest,
            source_type="code",
            source=json.dumps({"tags": {"mmtrack.dataset": name, "description": description}}),
            profile=json.dumps(profile, sort_keys=True),
        )
        inputs = [DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])]
        for attempt in range(DATASET_RETRIES):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                break
            except Exception as exc:  # noqa: BLE001 - MLflow wraps the database's error in several types
                # Two workers logging the same dataset into an experiment at the same moment both try to create
                # its row; the loser hits the unique constraint. The row exists now: log again, once it is there.
                text = str(exc).lower()
                if attempt == DATASET_RETRIES - 1 or not ("unique" in text or "duplicate" in text):
                    raise
                time.sleep(0.2 * (attempt + 1))
        self.dataset = (name, digest)

    def log_weights(self, model, spec: dict) -> None:
        """The weights as safetensors plus the build description, under `weights/` (what mmtrack loads)."""
        import tempfile

        from mmtrack.models import save_weights

        with tempfile.TemporaryDirectory() as tmp:
            save_weights(model, spec, Path(tmp))
            self.client.log_artifacts(self.run_id, tmp, WEIGHTS)

    def log_dataframe(self, df: pd.DataFrame, path: str) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(path).name
            df.to_parquet(local, index=False)
            parent = str(Path(path).parent)
            self.client.log_artifact(self.run_id, str(local), None if parent == "." else parent)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


WEIGHTS = "weights"  # artifact folder: model.safetensors + model.json, loadable without executing code


def load_model(client, run_id: str, trust_pickle: bool = False):
    """The run's model, rebuilt from mmtrack's code and its safetensors weights (`weights/`): loading executes
    nothing that came from the tracking store. Runs logged before `weights/` existed have only MLflow's pickled
    model (`model/`), which runs arbitrary code when unpickled: refused unless `trust_pickle` (for a store the
    user controls; recorded on the run)."""
    import tempfile

    from mmtrack.models import SPEC_FILE, WEIGHTS_FILE, load_weights

    try:
        names = {Path(f.path).name for f in client.list_artifacts(run_id, WEIGHTS)}
    except Exception:  # noqa: BLE001 - MlflowException: no such run
        raise MMTrackError(f"could not load the model of run {run_id}: no such run in this tracking store") from None
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


def can_adopt(client, run_id: str, experiment: str) -> bool:
    """Whether to log into the run `mlflow run` created: it is in this store and in a named experiment (not
    `Default`, where `mlflow run` puts runs unless told `--experiment-name`)."""
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001 - not in this store
        return False
    exp = client.get_experiment(run.info.experiment_id)
    return exp.name != "Default" or experiment == "Default"


def point_launcher(launcher_uri: str, launcher_run: str, uri: str, experiment: str, run_id: str) -> None:
    """Tag the run `mlflow run` created (in its own store) with where the training run was logged."""
    from mlflow.tracking import MlflowClient

    with contextlib.suppress(Exception):  # best effort: the launcher run is only a pointer
        client = MlflowClient(launcher_uri)
        where = f"run {run_id} in experiment {experiment} of {uri}"
        client.set_tag(launcher_run, LAUNCHED_TAG, where)
        client.set_tag(launcher_run, NOTE_TAG, f"Launcher only: mmtrack logged the training as {where}.")


def log_report(
    client, experiment: str, kind: str, files: dict[str, str], figures: list[Path], metrics: dict[str, float]
) -> tuple[str, str]:
    """One report (every sheet, or a selection) of one `--log` invocation as one run in the companion experiment
    `<experiment>-reports`, out of the training runs table and its charts: its files and figures as artifacts,
    its headline numbers (Δmax^all per metric, ...) as metrics so reports can be sorted and compared.
    Returns (report experiment id, run id)."""
    import math
    import tempfile

    from mlflow.entities import Metric

    exp_id = experiment_id(client, f"{experiment}{REPORTS_SUFFIX}", create=True, tags={REPORTS_FOR_TAG: experiment})
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    run = client.create_run(exp_id, run_name=f"{kind} · {stamp}", tags={REPORT_TAG: kind, REPORTS_FOR_TAG: experiment})
    rid = run.info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        for fname, text in files.items():
            (Path(tmp) / fname).write_text(text)
        client.log_artifacts(rid, tmp)
    for fig in figures:
        client.log_artifact(rid, str(fig), "figures")
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and math.isfinite(v)]
    for i in range(0, len(batch), 500):
        client.log_batch(rid, metrics=batch[i : i + 500])
    client.set_terminated(rid, "FINISHED")
    return exp_id, rid


def mark_changed(client, exp_id: str) -> None:
    """Record that runs of an experiment changed after they ended (metrics added by `mmtrack evaluate`): a new
    experiment tag `mmtrack.revision`, so run caches reload (a run's start and end times are never rewritten)."""
    import uuid

    client.set_experiment_tag(exp_id, REVISION_TAG, f"{time.time_ns()}-{uuid.uuid4().hex[:8]}")


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


# ------------------------------------------------------------------------------------------------ reading runs


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


def get_run(client, run_id: str):
    """The MLflow run `run_id`, or a one-line error naming the store."""
    try:
        return client.get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow raises several types for a missing run
        raise MMTrackError(f"unknown run id {run_id!r} in {client.tracking_uri}") from None


def find_experiment(client, name: str) -> str | None:
    """The id of experiment `name`, or None when it does not exist (nothing is created)."""
    exp = client.get_experiment_by_name(name)
    return None if exp is None else exp.experiment_id


def finished_hashes(client, exp_id: str) -> set[str]:
    """Config hashes with a FINISHED run in the experiment (what a sweep skips)."""
    runs = search_all_runs(client, exp_id, "attributes.status = 'FINISHED'")
    return {r.data.tags.get(HASH_TAG) for r in runs}


def runs_of_config(client, exp_id: str, config_hash: str) -> list:
    """Every run of one configuration in the experiment, whatever its status."""
    return search_all_runs(client, exp_id, f"tags.`{HASH_TAG}` = '{config_hash}'")


def fail_run(client, run_id: str, reason: str) -> None:
    """Mark a run FAILED with its reason (a run left RUNNING by a worker that died)."""
    client.set_tag(run_id, ERROR_TAG, reason)
    client.set_terminated(run_id, "FAILED")


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
