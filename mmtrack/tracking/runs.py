"""Runs and experiments in MLflow: creating experiments, logging a run (`RunLogger`), report runs. Reading runs
back is `search`; a run's stored model and predictions, `artifacts`."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pandas as pd

from mmtrack.errors import MMTrackError
from mmtrack.tags import (
    DATASET_CONTEXT_TAG,
    DATASET_SOURCE_TAG,
    ERROR_TAG,
    LAUNCHED_TAG,
    NOTE_TAG,
    REPORT_TAG,
    REPORTS_FOR_TAG,
    REVISION_TAG,
    RUN_NAME_TAG,
    STUDY_TAG,
)
from mmtrack.tracking.resilience import TrackingUnavailable, is_unreachable, patiently
from mmtrack.tracking.stores import artifact_root

WEIGHTS = "weights"  # artifact folder: model.safetensors + model.json, loadable without executing code
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


def failed_run(exc: BaseException, run_id: str) -> BaseException:
    """`exc`, marked (attribute `run_id`, unless it has one) as the error the run `run_id` FAILED with: what the
    sweep's "failed" lines name."""
    if getattr(exc, "run_id", None) is None:
        with contextlib.suppress(AttributeError, TypeError):
            exc.run_id = run_id
    return exc


class RunLogger:
    """Logs one configuration into one MLflow run: a new one, or `run_id` (the run `mlflow run` created).

    Used as a context manager: an exception inside leaves the run FAILED with the error recorded in the tag
    `mmtrack.error` (and `error.txt`), then propagates; a normal exit marks it FINISHED.

    Every call waits out an unreachable tracking server (`resilience.patiently`, up to the server wait); training
    curves (metrics with a step) do not even wait: while the server is away they are kept, in order, and sent
    before anything else is logged (`flush`), so training goes on through a server restart.
    """

    model_id: str | None = None  # the run's logged model, once logged: final metrics are linked to it
    dataset: tuple[str, str] | None = None  # (name, digest) of the dataset the run's metrics are scored on

    def __init__(self, client, run_id: str):
        """A logger on an existing run, logging through the client only (see `start` and `attach`)."""
        self.client, self.run_id = client, run_id
        self.pending: list = []  # training metrics not sent yet (the server was unreachable), in order

    @classmethod
    def start(
        cls, client, exp_id: str | None, run_name: str, tags: dict[str, str], run_id: str | None = None
    ) -> RunLogger:
        """Start a new run in `exp_id`, or resume `run_id` (the run `mlflow run` created). It is MLflow's active
        (fluent) run until the `with` block ends, because `mlflow.pytorch.log_model` logs into the active run."""
        import mlflow

        if run_id:  # launched by `mlflow run`: log into the run it created
            logger = cls(client, patiently("the run's start", mlflow.start_run, run_id=run_id).info.run_id)
            logger.set_tags({**tags, RUN_NAME_TAG: run_name})
        else:
            run = patiently("the run's start", mlflow.start_run, experiment_id=exp_id, run_name=run_name, tags=tags)
            logger = cls(client, run.info.run_id)
        return logger

    @classmethod
    def create(cls, client, exp_id: str, run_name: str, tags: dict[str, str]) -> RunLogger:
        """A new RUNNING run with the tags `mlflow.start_run` would give it (source, user, git), but not MLflow's
        active run: models trained together log into their runs side by side, and each becomes the active run
        in turn (`resume`) to log its model. `fail` ends one that never became active."""
        from mlflow.tracking.context.registry import resolve_tags

        run = patiently("a new run", client.create_run, exp_id, tags=resolve_tags(tags), run_name=run_name)
        return cls(client, run.info.run_id)

    def resume(self) -> RunLogger:
        """Make this run MLflow's active run until the `with` block it opens ends (FINISHED, or FAILED/KILLED with
        the error recorded)."""
        import mlflow

        patiently(f"run {self.run_id}", mlflow.start_run, run_id=self.run_id)
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
            self.flush()
            patiently("the run's end", self.client.set_terminated, self.run_id, "FINISHED")
            with contextlib.suppress(Exception):  # FINISHED already; this only closes MLflow's active run
                mlflow.end_run("FINISHED")
            return False
        self._record_error(exc_type, exc, tb)
        with contextlib.suppress(Exception):
            mlflow.end_run("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        failed_run(exc, self.run_id)
        return False

    def _record_error(self, exc_type, exc, tb) -> None:
        with contextlib.suppress(Exception):
            import traceback

            self.client.set_tag(self.run_id, ERROR_TAG, f"{exc_type.__name__}: {exc}"[:5000])
            self.client.log_text(self.run_id, "".join(traceback.format_exception(exc_type, exc, tb)), "error.txt")

    def log_params(self, params: dict) -> None:
        """Log params; those already on the run (`mlflow run -P ...` logs its own) are kept as they are."""
        from mlflow.entities import Param

        existing = patiently("params", self.client.get_run, self.run_id).data.params
        new = [Param(k, str(v)) for k, v in params.items() if k not in existing]
        patiently("params", self.client.log_batch, self.run_id, params=new)

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
        if step is not None and not to_model:  # a training curve: kept while the server is away
            self.pending.extend(batch)
            self.flush(wait=False)
            return
        self.flush()
        for i in range(0, len(batch), 500):
            patiently("metrics", self.client.log_batch, self.run_id, metrics=batch[i : i + 500])

    def flush(self, wait: bool = True) -> None:
        """Send the training metrics kept while the server was unreachable, in order. With `wait` (before
        anything else is logged) wait for the server as any call does; without, leave them for later."""
        while self.pending:
            chunk = self.pending[:500]
            try:
                if wait:
                    patiently("buffered training metrics", self.client.log_batch, self.run_id, metrics=chunk)
                else:
                    self.client.log_batch(self.run_id, metrics=chunk)
            except Exception as exc:
                if wait or not is_unreachable(exc):
                    raise
                return  # still away: kept for the next call
            del self.pending[: len(chunk)]

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.flush()
        patiently("tags", self.client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @contextlib.contextmanager
    def storing(self, path: str):
        """Upload failures of artifact `path` as one line naming it and why (a full disk, a server error)."""
        try:
            yield
        except MMTrackError:
            raise
        except Exception as exc:  # noqa: BLE001 - MLflow, the file system and HTTP raise many types
            why = " ".join(f"{type(exc).__name__}: {exc}".split())[:240]
            if is_unreachable(exc):  # cut off by a server that answers otherwise (`resilience.request_failed`)
                why = (
                    "the tracking server cut the upload off, though it answers: is its artifact disk full? see its log"
                )
            raise MMTrackError(
                f"artifact {path} of run {self.run_id} not stored ({why}); free space in (or fix) the artifact "
                "store and rerun: the configuration is trained again"
            ) from exc

    def verify_artifacts(self, paths: list[str]) -> None:
        """Every artifact in `paths` is on the run and not empty (checked before a run may become FINISHED)."""
        listed: dict[str, dict[str, int]] = {}
        for path in paths:
            parent = str(Path(path).parent)
            if parent not in listed:
                files = patiently(
                    "an artifact listing", self.client.list_artifacts, self.run_id, None if parent == "." else parent
                )
                listed[parent] = {f.path: f.file_size or 0 for f in files if not f.is_dir}
            if listed[parent].get(path, 0) <= 0:
                raise MMTrackError(
                    f"artifact {path} of run {self.run_id} is missing or empty after its upload; check the "
                    "artifact store (space, permissions) and rerun: the configuration is trained again"
                )

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
            with self.storing("model"):
                info = patiently(
                    "the model",
                    mlflow.pytorch.log_model,
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
            source=json.dumps({"tags": {DATASET_SOURCE_TAG: name, "description": description}}),
            profile=json.dumps(profile, sort_keys=True),
        )
        inputs = [DatasetInput(dataset, [InputTag(DATASET_CONTEXT_TAG, "training")])]
        for attempt in range(DATASET_RETRIES):
            try:
                patiently("the dataset input", self.client.log_inputs, self.run_id, datasets=inputs)
                break
            except TrackingUnavailable:
                raise
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
            with self.storing(f"{WEIGHTS}/"):
                patiently(f"{WEIGHTS}/", self.client.log_artifacts, self.run_id, tmp, WEIGHTS)

    def log_dataframe(self, df: pd.DataFrame, path: str) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(path).name
            df.to_parquet(local, index=False)
            parent = str(Path(path).parent)
            with self.storing(path):
                patiently(path, self.client.log_artifact, self.run_id, str(local), None if parent == "." else parent)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


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
