"""`mmtrack evaluate`: reload a logged model (its safetensors weights) and add intervention metrics, and the
predictions they are measured on, to its finished run; the training run's other metrics and timings stay."""

from __future__ import annotations

import json

from mmtrack import interventions as iv_mod
from mmtrack import tracking
from mmtrack.data import load_dataset
from mmtrack.errors import MMTrackError
from mmtrack.interventions import EvalSettings, Evaluator, Intervention
from mmtrack.jobs.record import RunResult, log_interventions, log_populations, populations
from mmtrack.study import register_study_dataset
from mmtrack.training.device import use_device


def evaluate_run(
    client,
    run_id: str,
    interventions: list[Intervention],
    settings: EvalSettings,
    data_dir: str | None = None,
    trust_pickle: bool = False,
) -> RunResult:
    """Reload a logged model and add intervention metrics to its (finished) run; other metrics are untouched."""
    run = tracking.get_run(client, run_id)
    p = run.data.params
    if "dataset" not in p:
        raise MMTrackError(
            f"run {run_id} has no dataset param; only runs logged by `mmtrack train` / `mmtrack sweep` can be evaluated"
        )
    image_size = None if p.get("image_size", "default") == "default" else int(p["image_size"])
    register_study_dataset(tracking.experiment_study(client, run.info.experiment_id))  # a dataset the study declared
    data = load_dataset(p["dataset"], data_dir, image_size)
    iv_mod.check_available(interventions, data)
    model = tracking.load_model(client, run_id, trust_pickle).to(use_device(None))
    logger = tracking.RunLogger.attach(client, run_id)
    result = RunResult(run_id)
    counts = json.loads(run.data.tags.get(tracking.EVAL_N_TAG, "{}"))
    evaluator = Evaluator(model, data, settings)
    # timings describe the training run's own evaluation; a later evaluation does not overwrite them
    log_interventions(logger, evaluator, interventions, result, counts, log_seconds=False)
    # predictions for every population the run's accuracies are measured on, where a run logged before they
    # were stored lacks them (and those of the new interventions)
    names = populations(interventions, data, measured=run.data.metrics)
    stored = set(tracking.stored_populations(client, run_id))
    result.stored_predictions = log_populations(logger, evaluator, names, skip=stored)
    tracking.mark_changed(client, run.info.experiment_id)
    return result
