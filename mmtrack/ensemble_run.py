"""Ensembles of logged runs, each evaluated like a training run and logged as one MLflow run (`mmtrack ensemble`).

No retraining: the members' weights come from their runs (`weights/model.safetensors`, nothing unpickled), the
combination rule is the mean of their softmax (`mmtrack.ensembles.Ensemble`), and the same `Evaluator` computes
every intervention on the ensemble itself (PGD through ART attacks the ensemble, not one member). An ensemble
run lives in the experiment `<name>-ensembles`, with the params of the configuration its members share and
`seed` = the draw (so the sheets of that experiment have one row per draw), `ensemble.*` params, the members'
run ids as a tag, the same metrics and predictions as a training run, and `ensemble.inference_cost` = K.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from mmtrack import tracking
from mmtrack.analysis.ensembles import config_columns
from mmtrack.data import Dataset, load_dataset
from mmtrack.ensembles import Ensemble
from mmtrack.errors import MMTrackError
from mmtrack.interventions import EvalSettings, Evaluator, Intervention
from mmtrack.run import RunResult, dataset_profile, environment, log_interventions, log_populations, populations
from mmtrack.run import versions as package_versions
from mmtrack.study import register_study_dataset
from mmtrack.train import pick_device

SUFFIX = "-ensembles"  # the ensembles of experiment X live in experiment X-ensembles
RULE = "mean_softmax"
KIND_TAG = "mmtrack.kind"  # "ensemble" on an ensemble run
MEMBERS_TAG = "mmtrack.ensemble.members"  # JSON list of the members' run ids
MEMBER_SEEDS_TAG = "mmtrack.ensemble.seeds"  # the members' seeds, e.g. "0,1,2,3,4"
OF_TAG = "mmtrack.ensemble.of"  # the experiment the members come from


def experiment_name(experiment: str, size: int | None = None, selected: bool | str = False) -> str:
    """Where ensembles of `experiment` go: `-ensembles` (each configuration's seeds, all of them), `-ensembles-k<K>`
    (K of them, several draws), `-ensembles-configs` (every configuration, one per seed), `-ensembles-selected`
    (of a selection, or of given runs). One kind and size per experiment, so its sheets have one cell per
    configuration and draw."""
    if selected:
        return f"{experiment}{SUFFIX}-{selected if isinstance(selected, str) else 'selected'}"
    return f"{experiment}{SUFFIX}" + (f"-k{size}" if size else "")


@dataclass
class Planned:
    """One ensemble to build: its run name, the params its members share (`seed` = the draw), its members."""

    name: str
    params: dict[str, str]
    members: list[str]
    seeds: list[int]
    draw: int


def plan_seed_ensembles(runs: pd.DataFrame, size: int | None = None, draws: int = 5, seed: int = 0) -> list[Planned]:
    """Ensembles over the seeds of each configuration of `runs` (FINISHED runs; a configuration = every param but
    `seed` and `eval.*`): one of all its seeds, or with `size` K up to `draws` ensembles of K distinct seeds
    (every K-subset when there are no more than `draws`, else a fixed-seed draw of them)."""
    fin = runs[runs["status"] == "FINISHED"]
    if "params.seed" not in fin:
        raise MMTrackError("these runs have no seed param; ensembles over seeds need runs of several seeds")
    keys = config_columns(fin)
    rng = np.random.default_rng(seed)
    out = []
    for _, group in fin.groupby(keys, dropna=False, sort=False):
        group = group.assign(_seed=group["params.seed"].astype(int)).sort_values("_seed")
        ids, seeds = group["run_id"].astype(str).tolist(), group["_seed"].tolist()
        k = size or len(ids)
        if k > len(ids) or len(ids) < 2:
            continue
        combos = list(itertools.combinations(range(len(ids)), k))
        if len(combos) > draws:
            combos = [combos[i] for i in sorted(rng.choice(len(combos), draws, replace=False))]
        first = group.iloc[0]
        label = str(first.get("tags.mlflow.runName") or first["run_id"]).split(" · ")[0]
        params = {c[len("params.") :]: str(first[c]) for c in keys if pd.notna(first[c])}
        for d, combo in enumerate(combos):
            name = f"{label} · ens{k}" + (f" #{d}" if len(combos) > 1 else "")
            out.append(Planned(name, params, [ids[i] for i in combo], [seeds[i] for i in combo], d))
    return out


def plan_config_ensembles(runs: pd.DataFrame) -> list[Planned]:
    """One ensemble per seed over every configuration's run of that seed (architectures may differ: the members
    then run one after the other), `seed` = that seed."""
    fin = runs[runs["status"] == "FINISHED"]
    if "params.seed" not in fin:
        raise MMTrackError("these runs have no seed param; ensembles over configurations pair runs by seed")
    keys = config_columns(fin)
    out = []
    for seed, group in fin.groupby(fin["params.seed"].astype(int), sort=True):
        if len(group) < 2:
            continue
        shared = {c[len("params.") :]: str(group[c].iloc[0]) for c in keys if group[c].nunique(dropna=False) == 1}
        ids = group["run_id"].astype(str).tolist()
        out.append(
            Planned(f"every configuration · s{seed} · ens{len(ids)}", shared, ids, [int(seed)] * len(ids), int(seed))
        )
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
) -> RunResult:
    """Build, evaluate and log one ensemble as a run of `exp_id` (FINISHED; FAILED with the error recorded)."""
    device = device or pick_device()
    start = time.perf_counter()
    models = load_members(client, planned.members, data, device)
    ensemble = Ensemble(models).to(device).eval()
    tags = {
        KIND_TAG: "ensemble",
        MEMBERS_TAG: json.dumps(planned.members),
        MEMBER_SEEDS_TAG: ",".join(map(str, planned.seeds)),
        OF_TAG: source,
        tracking.DATA_FINGERPRINT_TAG: data.fingerprint,
        tracking.DEVICE_TAG: str(device),
        tracking.THREADS_TAG: str(torch.get_num_threads()),
        **package_versions(),
        **environment(device),
    }
    logger = tracking.RunLogger.create(client, exp_id, planned.name, tags)
    result = RunResult(logger.run_id)
    with logger.resume():
        logger.log_params(
            {
                **planned.params,
                "seed": planned.draw,
                "ensemble.size": len(planned.members),
                "ensemble.rule": RULE,
                "ensemble.of": of,
                **settings.params(),
                "eval.interventions": ";".join(map(str, interventions)),
            }
        )
        logger.log_dataset(data.name, data.fingerprint, data.description, dataset_profile(data))
        result.seconds["seconds/load_members"] = time.perf_counter() - start
        evaluator = Evaluator(ensemble, data, settings)
        log_interventions(logger, evaluator, interventions, result, {})
        result.stored_predictions = log_populations(logger, evaluator, populations(interventions, data))
        # what shipping it costs: K forward passes per prediction
        logger.log_metrics({**result.seconds, "ensemble.inference_cost": float(len(planned.members))})
    return result


def existing(client, exp_id: str) -> set[tuple[str, ...]]:
    """The member sets of the FINISHED ensembles already logged in `exp_id`."""
    runs = tracking.search_all_runs(client, exp_id, "attributes.status = 'FINISHED'")
    return {tuple(json.loads(r.data.tags[MEMBERS_TAG])) for r in runs if MEMBERS_TAG in r.data.tags}
