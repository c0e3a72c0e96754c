"""Ensembles of logged runs, each evaluated like a training run and logged as one MLflow run (`mmtrack ensemble`).

No retraining: the members' weights come from their runs (`weights/model.safetensors`, nothing unpickled), the
combination rule is the mean of their softmax (`mmtrack.models.ensemble.Ensemble`), and the same `Evaluator` computes
every intervention on the ensemble itself (PGD through ART attacks the ensemble, not one member). An ensemble
run lives in the experiment `<name>-ensembles`, with the params of the configuration its members share and
`seed` = the draw (so the sheets of that experiment have one row per draw), `ensemble.*` params, the members'
run ids as a tag, the same metrics and predictions as a training run, and `ensemble.inference_cost` = K.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import torch

from mmtrack import tracking
from mmtrack.analysis.ensembles import Planned
from mmtrack.data import Dataset, load_dataset
from mmtrack.errors import MMTrackError
from mmtrack.interventions import EvalSettings, Evaluator, Intervention
from mmtrack.jobs.record import (
    RunResult,
    dataset_profile,
    log_interventions,
    log_populations,
    populations,
    run_env_tags,
)
from mmtrack.models.ensemble import Ensemble, SelectiveEnsemble
from mmtrack.study import register_study_dataset
from mmtrack.tags import KIND_TAG, MEMBER_SEEDS_TAG, MEMBERS_TAG, OF_TAG
from mmtrack.training.device import use_device

RULE = "mean_softmax"
SELECTIVE = "selective_vote"  # `SelectiveEnsemble`: a binomial test on the members' votes, abstaining below it


def selective_metrics(evaluator: Evaluator, metrics: dict[str, float]) -> dict[str, float]:
    """For each accuracy `acc[/X]` of a selective ensemble: `abstain[/X]`, the fraction of examples it abstains
    on, and `answered_acc[/X]`, its accuracy on those it answers (absent when it answers none). Under output and
    input noise and PGD (whose predictions are recorded), also per group of the test split:
    `abstain/X/group/<attr>/<value>` and `answered_acc/X/group/<attr>/<value>`."""
    data, abstained = evaluator.data, evaluator.data.num_classes  # the abstain class: never a label
    out: dict[str, float] = {}

    def add(suffix: str, pred, labels) -> None:
        pred, labels = np.asarray(pred), np.broadcast_to(np.asarray(labels), np.shape(pred))
        if pred.size == 0:
            return
        answered = pred != abstained
        out[f"abstain{suffix}"] = float(1 - answered.mean())
        if answered.any():
            out[f"answered_acc{suffix}"] = float((pred == labels)[answered].mean())

    for name in metrics:
        if name != "acc" and not name.startswith("acc/"):
            continue
        suffix = name[3:]
        kind, _, rest = suffix[1:].partition("/")
        if name == "acc":
            logits, split = evaluator.population("test")
            add("", logits.argmax(1).numpy(), split.labels.numpy())
        elif kind == "group":
            attr, _, value = rest.partition("/")
            logits, split = evaluator.population("group")
            mask = split.group_mask(attr, value).numpy()
            add(suffix, logits.argmax(1).numpy()[mask], split.labels.numpy()[mask])
        elif kind == "ood":
            logits, split = evaluator.population(f"ood/{rest}")
            add(suffix, logits.argmax(1).numpy(), split.labels.numpy())
        elif suffix[1:] in evaluator.recorded:
            index, pred = evaluator.recorded[suffix[1:]]
            index = np.arange(pred.shape[-1]) if index is None else index
            add(suffix, pred, data.test.labels.numpy()[index])
            for attr, values in data.test.group_values.items():
                for value in values:
                    mask = data.test.group_mask(attr, value).numpy()[index]
                    add(f"{suffix}/group/{attr}/{value}", pred[..., mask], data.test.labels.numpy()[index][mask])
    return out


def explicit(client, run_ids: list[str]) -> Planned:
    """One ensemble of the given runs (their params where they agree; seed 0)."""
    runs = [tracking.get_run(client, rid) for rid in run_ids]
    shared = dict(runs[0].data.params)
    for r in runs[1:]:
        shared = {k: v for k, v in shared.items() if r.data.params.get(k) == v}
    shared.pop("seed", None)
    seeds = [int(r.data.params.get("seed", -1)) for r in runs]
    return Planned(f"ensemble of {len(runs)}", shared, list(run_ids), seeds, 0)


def members_data(client, members: list[str], data_dir: str | None) -> Dataset:
    """The dataset every member was trained on; one error line when they differ."""
    runs = [tracking.get_run(client, rid) for rid in members]
    found = {(r.data.params.get("dataset"), r.data.params.get("image_size", "default")) for r in runs}
    if len(found) != 1 or None in {d for d, _ in found}:
        names = ", ".join(sorted(f"{d} ({s} px)" if s != "default" else str(d) for d, s in found))
        raise MMTrackError(f"ensemble members must share one dataset and image size, got {names}")
    ((dataset, size),) = found
    register_study_dataset(tracking.experiment_study(client, runs[0].info.experiment_id))
    return load_dataset(dataset, data_dir, None if size == "default" else int(size))


def load_members(client, members: list[str], data: Dataset, device: torch.device) -> list[torch.nn.Module]:
    """The members' models (safe weights only), checked to give one class per class of the dataset."""
    models = [tracking.load_model(client, rid).to(device).eval() for rid in members]
    x = data.test.images[:1].float().div(255).to(device)
    with torch.no_grad():
        classes = {rid: int(m(x).shape[-1]) for rid, m in zip(members, models)}
    if set(classes.values()) != {data.num_classes}:
        shown = ", ".join(f"{rid[:8]}: {n}" for rid, n in classes.items())
        raise MMTrackError(f"ensemble members must have {data.num_classes} classes like {data.name}; got {shown}")
    return models


def log_ensemble(
    client,
    exp_id: str,
    planned: Planned,
    of: str,
    source: str,
    data: Dataset,
    interventions: list[Intervention],
    settings: EvalSettings,
    device: torch.device | None = None,
    alpha: float | None = None,
    with_model: bool = False,
) -> RunResult:
    """Build, evaluate and log one ensemble as a run of `exp_id` (FINISHED; FAILED with the error recorded). With
    `alpha`, a selective ensemble (`SelectiveEnsemble`): its accuracies count abstentions as errors, and it also
    logs `abstain/...` and `answered_acc/...` beside each (`selective_metrics`). With `with_model`, the ensemble
    is also logged as the run's MLflow model `model` (what the Model Registry registers)."""
    device = use_device(device)
    start = time.perf_counter()
    models = load_members(client, planned.members, data, device)
    ensemble = (Ensemble(models) if alpha is None else SelectiveEnsemble(models, alpha)).to(device).eval()
    if alpha is not None:  # per-intervention abstentions are read from the predictions under each
        settings = dataclasses.replace(settings, intervention_predictions=True)
    tags = {
        KIND_TAG: "ensemble",
        MEMBERS_TAG: json.dumps(planned.members),
        MEMBER_SEEDS_TAG: ",".join(map(str, planned.seeds)),
        OF_TAG: source,
        **run_env_tags(data, device),
    }
    logger = tracking.RunLogger.create(client, exp_id, planned.name, tags)
    result = RunResult(logger.run_id)
    with logger.resume():
        logger.log_params(
            {
                **planned.params,
                "seed": planned.draw,
                "ensemble.size": len(planned.members),
                "ensemble.rule": RULE if alpha is None else SELECTIVE,
                **({} if alpha is None else {"ensemble.alpha": alpha}),
                "ensemble.of": of,
                **settings.params(),
                "eval.interventions": ";".join(map(str, interventions)),
            }
        )
        logger.log_dataset(data.name, data.fingerprint, data.description, dataset_profile(data))
        result.seconds["seconds/load_members"] = time.perf_counter() - start
        if with_model:  # before the metrics, so that MLflow links them to the model
            logger.log_model(ensemble.cpu(), data.test.images[:2].float().div(255).numpy())
            ensemble.to(device)
        evaluator = Evaluator(ensemble, data, settings)
        log_interventions(logger, evaluator, interventions, result, {})
        result.stored_predictions = log_populations(logger, evaluator, populations(interventions, data))
        if alpha is not None:
            selective = selective_metrics(evaluator, result.metrics)
            logger.log_metrics(selective, to_model=True)
            result.metrics.update(selective)
        # what shipping it costs: K forward passes per prediction
        logger.log_metrics({**result.seconds, "ensemble.inference_cost": float(len(planned.members))})
    return result


def existing(client, exp_id: str) -> set[tuple[str, ...]]:
    """The member sets of the FINISHED ensembles already logged in `exp_id`."""
    runs = tracking.search_all_runs(client, exp_id, "attributes.status = 'FINISHED'")
    return {tuple(json.loads(r.data.tags[MEMBERS_TAG])) for r in runs if MEMBERS_TAG in r.data.tags}


def shipped_ensemble(client, experiment: str, members: list[str], data_dir: str | None = None) -> tuple[str, bool]:
    """(run id, logged now?) of the mean-softmax ensemble of `members` with its MLflow model, in
    `<experiment>-ensembles-selected` (`mmtrack select --register-ensemble`): a FINISHED run of exactly these
    members that has its model, else a new one, evaluated like any ensemble: the study's interventions, else
    those its first member was evaluated with."""
    from mmtrack.analysis.ensembles import experiment_name
    from mmtrack.interventions import DEFAULT_SPECS, parse
    from mmtrack.tracking.model_registry import model_source

    study = tracking.experiment_study(client, tracking.experiment_id(client, experiment)) or {}
    exp_id = tracking.experiment_id(client, experiment_name(experiment, selected=True), create=True)
    for run in tracking.search_all_runs(client, exp_id, "attributes.status = 'FINISHED'"):
        if json.loads(run.data.tags.get(MEMBERS_TAG, "[]")) == members:
            try:
                model_source(client, run.info.run_id)
            except MMTrackError:
                continue  # logged by `mmtrack ensemble`, without a model to register
            return run.info.run_id, False
    planned = explicit(client, members)
    data = members_data(client, members, data_dir)
    own = tracking.get_run(client, members[0]).data.params.get("eval.interventions")
    specs = study.get("interventions") or (own.split(";") if own else DEFAULT_SPECS)
    ivs, settings = parse(specs), EvalSettings(**study.get("eval", {}))
    result = log_ensemble(client, exp_id, planned, "selection", experiment, data, ivs, settings, with_model=True)
    tracking.mark_changed(client, exp_id)
    return result.run_id, True
