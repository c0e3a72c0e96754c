"""One configuration, one MLflow run: load the data, train, log the model and predictions, then compute and
log every intervention (each logged as soon as it is computed; a failing intervention is recorded and the
others are kept)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from mmtrack import interventions as iv_mod
from mmtrack import settings as mm_settings
from mmtrack import spool, tracking
from mmtrack._version import __version__
from mmtrack.config import RunConfig
from mmtrack.data import Dataset, Split, load_dataset
from mmtrack.interventions import EvalSettings, Evaluator, Intervention, SharedForward
from mmtrack.models import SPEC_FILE, WEIGHTS_FILE, memory_format, model_spec
from mmtrack.train import EpochStats, pick_device, precision, train_model, train_models

log = logging.getLogger("mmtrack")


@dataclass
class RunResult:
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    failed_interventions: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall seconds (also logged, `seconds/...`)
    stored_predictions: list[str] = field(default_factory=list)  # populations `evaluate` added predictions for


def versions() -> dict[str, str]:
    from importlib.metadata import version

    pkgs = ("torch", "torchvision", "mlflow", "adversarial-robustness-toolbox", "numpy", "scikit-learn")
    tags = {f"mmtrack.version.{p}": version(p) for p in pkgs}
    tags.update({"mmtrack.version.mmtrack": __version__, "mmtrack.version.python": platform.python_version()})
    return tags


def environment(device: torch.device) -> dict[str, str]:
    """Tags naming the machine behind a run's numbers: CPU model, the vector ISA torch's kernels use, and (JSON)
    platform, CPUs, thread counts, GPU and torch's determinism settings. The same config and seed reproduce
    on the same machine and thread count; another CPU or thread count may move the last digits of a metric."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    env = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }
    return {
        tracking.CPU_TAG: cpu[:250],
        tracking.ISA_TAG: torch.backends.cpu.get_cpu_capability(),
        tracking.ENV_TAG: json.dumps(env, sort_keys=True),
    }


def dataset_profile(data: Dataset) -> dict:
    """What a run's dataset input shows in MLflow: sizes, classes, groups (with their sizes) and OOD sets."""
    groups = data.group_split
    return {
        "classes": len(data.classes),
        "image_size": data.image_size,
        "train": len(data.train),
        "test": len(data.test),
        "group_test": len(groups),
        "groups": {
            attr: {v: int(groups.group_mask(attr, v).sum()) for v in values}
            for attr, values in groups.group_values.items()
        },
        "ood": {name: len(split) for name, split in data.ood.items()},
        "fairness_group": "/".join(data.fairness_group) if data.fairness_group else None,
    }


TOP_K = 5  # above MAX_PROB_CLASSES classes, predictions keep the top-k classes and probabilities only
MAX_PROB_CLASSES = 20


def predictions_frame(logits: torch.Tensor, split: Split) -> pd.DataFrame:
    """One row per example of a population: index, label, pred, `group/<attribute>` (the example's group value,
    None where it has none; prediction multiplicity per group reads them) and `prob_<class>` (float16), or for
    more than MAX_PROB_CLASSES classes `top<i>` / `top<i>_prob` for i = 1..TOP_K. Compact: int16 labels and
    predictions, categorical groups."""
    proba = torch.softmax(logits.float(), 1)
    df = pd.DataFrame(
        {
            "index": np.arange(len(split), dtype=np.int32),
            "label": split.labels.numpy().astype(np.int16),
            "pred": logits.argmax(1).numpy().astype(np.int16),
        }
    )
    for attr, values in split.group_values.items():
        codes = split.groups[attr].numpy()
        df[f"group/{attr}"] = pd.Categorical.from_codes(np.where(codes >= 0, codes, -1), categories=list(values))
    if proba.shape[1] <= MAX_PROB_CLASSES:
        probs = {f"prob_{c}": proba[:, c].numpy().astype(np.float16) for c in range(proba.shape[1])}
    else:
        top = proba.topk(TOP_K, dim=1)
        probs = {}
        for i in range(TOP_K):
            probs[f"top{i + 1}"] = top.indices[:, i].numpy().astype(np.int16)
            probs[f"top{i + 1}_prob"] = top.values[:, i].numpy().astype(np.float16)
    return pd.concat([df, pd.DataFrame(probs)], axis=1)


def intervention_frame(index: np.ndarray | None, pred: np.ndarray, labels: torch.Tensor) -> pd.DataFrame:
    """Predictions under an intervention: index (into the test split), label, and `pred` (one draw) or
    `pred_<d>` for each of the seeded draws a noise accuracy averages."""
    index = np.arange(pred.shape[-1]) if index is None else index
    df = pd.DataFrame({"index": index.astype(np.int32), "label": labels.numpy()[index].astype(np.int16)})
    if pred.ndim == 1:
        df["pred"] = pred.astype(np.int16)
    else:
        for d, row in enumerate(pred):
            df[f"pred_{d}"] = row.astype(np.int16)
    return df


def populations(interventions: list[Intervention], data: Dataset, measured: Iterable[str] = ()) -> list[str]:
    """The populations whose clean predictions a run stores: the test split always, the group evaluation set with
    a group intervention, each OOD set measured; also those behind the metric names `measured` (acc/group/...,
    acc/ood/<set>) a run already has."""
    out = ["test"]
    measured = list(measured)
    if any(iv.kind == "group" for iv in interventions) or any(m.startswith("acc/group/") for m in measured):
        out.append("group")
    sets = [n for iv in interventions if iv.kind == "ood" for n in ([iv.arg] if iv.arg is not None else data.ood)]
    sets += [m[len("acc/ood/") :] for m in measured if m.startswith("acc/ood/")]
    out += [f"ood/{n}" for n in dict.fromkeys(sets) if n in data.ood]
    return out


def log_populations(
    logger: tracking.RunLogger,
    evaluator: Evaluator,
    names: list[str],
    skip: set[str] = frozenset(),
    required: bool = False,
) -> list[str]:
    """Store `predictions/<population>.parquet` for each population in `names` (not in `skip`), then those the
    evaluator recorded under interventions; returns the populations stored. With `required` (a training run: it
    may not be FINISHED without them) a failed upload raises; otherwise (`evaluate` adding to a finished run) it
    is a warning and the others are still stored."""
    stored = []
    frames = {n: lambda n=n: predictions_frame(*evaluator.population(n)) for n in names}
    for name, (index, pred) in evaluator.recorded.items():
        frames[name] = lambda index=index, pred=pred: intervention_frame(index, pred, evaluator.data.test.labels)
    for name, frame in frames.items():
        if name in skip:
            continue
        try:
            logger.log_dataframe(frame(), tracking.predictions_path(name))
        except Exception as exc:  # noqa: BLE001 - beyond the test split's, predictions are kept where they can be
            if required:
                raise
            log.warning("predictions of %s not stored: %s", name, exc)
            continue
        stored.append(name)
    return stored


def log_interventions(
    logger: tracking.RunLogger,
    evaluator: Evaluator,
    interventions: list[Intervention],
    result: RunResult,
    counts: dict[str, int],
    log_seconds: bool = True,
) -> None:
    """Compute and log each intervention; failures are recorded on the run and do not lose other metrics.
    With `log_seconds`, each intervention's wall time is logged too (`seconds/eval/<kind>`)."""
    for iv in interventions:
        start = time.perf_counter()
        try:
            metrics, n = evaluator.run(iv)
        except Exception as exc:  # noqa: BLE001 - one failing intervention must not lose the others
            result.failed_interventions[str(iv)] = f"{type(exc).__name__}: {exc}"
            log.warning("intervention %s failed: %s", iv, exc)
            continue
        stage = f"seconds/eval/{iv.kind}"  # summed over the intervention's values (e.g. every PGD budget)
        result.seconds[stage] = result.seconds.get(stage, 0.0) + time.perf_counter() - start
        logger.log_metrics(metrics, to_model=True)
        mm_settings.crash_point("evaluate")
        if log_seconds:
            logger.log_metrics({stage: result.seconds[stage]})
        result.metrics.update(metrics)
        counts.update(n)
    logger.set_tags({tracking.EVAL_N_TAG: json.dumps(counts, sort_keys=True)})
    if result.failed_interventions:
        logger.set_tags({tracking.FAILED_INTERVENTIONS_TAG: json.dumps(result.failed_interventions)})


def _tags(cfg: RunConfig, data: Dataset, device: torch.device, extra_tags: dict | None) -> dict[str, str]:
    return {
        tracking.HASH_TAG: cfg.hash,
        tracking.DATA_FINGERPRINT_TAG: data.fingerprint,
        tracking.DEVICE_TAG: str(device),
        tracking.THREADS_TAG: str(torch.get_num_threads()),
        tracking.MEMORY_FORMAT_TAG: memory_format(),
        tracking.PRECISION_TAG: precision(device),
        tracking.COMMAND_TAG: " ".join(sys.argv)[:500],
        tracking.CONFIG_NAME_TAG: cfg.run_name,
        **versions(),
        **environment(device),
        **(extra_tags or {}),
    }


def _log_inputs(
    logger: tracking.RunLogger, cfg: RunConfig, data: Dataset, settings: EvalSettings, interventions: list[Intervention]
) -> None:
    logger.log_params({**cfg.params(), **settings.params(), "eval.interventions": ";".join(map(str, interventions))})
    logger.log_dataset(data.name, data.fingerprint, data.description, dataset_profile(data))


def _log_epoch(logger: tracking.RunLogger, stats: EpochStats) -> None:
    logger.log_metrics(
        {"train_loss": stats.train_loss, "train_acc": stats.train_acc, "epoch_seconds": stats.seconds}, step=stats.epoch
    )
    mm_settings.crash_point("train")


def _log_trained(
    logger: tracking.RunLogger,
    cfg: RunConfig,
    model: torch.nn.Module,
    evaluator: Evaluator,
    data: Dataset,
    interventions: list[Intervention],
    result: RunResult,
) -> None:
    """Predictions, weights and model, then every intervention, into the active run of `logger`."""
    start = time.perf_counter()
    logger.log_dataframe(predictions_frame(*evaluator.population("test")), tracking.predictions_path("test"))
    mm_settings.crash_point("artifacts")
    example = data.test.images[:2].float().div(255).numpy()
    logger.log_weights(model, model_spec(cfg.arch, data.num_classes, data.image_size, cfg.width))
    device = next(model.parameters()).device
    logger.log_model(model.cpu(), example)
    model.to(device)
    result.seconds["seconds/log_model"] = time.perf_counter() - start
    logger.log_metrics(result.seconds)
    log_interventions(logger, evaluator, interventions, result, {})
    stored = log_populations(logger, evaluator, populations(interventions, data), skip={"test"}, required=True)
    # no FINISHED run without its model and predictions: what was uploaded is listed back before the run ends
    weights = [f"{tracking.WEIGHTS}/{name}" for name in (WEIGHTS_FILE, SPEC_FILE)]
    logger.verify_artifacts([*weights, *(tracking.predictions_path(n) for n in ["test", *stored])])


def _kept(exc: tracking.TrackingUnavailable, path) -> tracking.TrackingUnavailable:
    return tracking.TrackingUnavailable(
        f"{exc.message}; the trained weights are kept in {path} (a rerun on this machine logs them without training)"
    )


def run_config(
    cfg: RunConfig,
    client,
    exp_id: str | None,
    interventions: list[Intervention],
    settings: EvalSettings = EvalSettings(),
    data_dir: str | None = None,
    data: Dataset | None = None,
    extra_tags: dict | None = None,
    on_epoch=None,
    run_id: str | None = None,
    run_name: str | None = None,
    device: str | None = None,
) -> RunResult:
    """Train and evaluate `cfg` as one MLflow run in experiment `exp_id` (or into the existing run `run_id`, the
    one `mlflow run` created) and return its metrics. A model of `cfg` that this machine trained before but could
    not log (`mmtrack.spool`) is logged instead of trained again; one that cannot be logged now is kept there."""
    start = time.perf_counter()
    data = data or load_dataset(cfg.dataset, data_dir, cfg.image_size)
    data_seconds = time.perf_counter() - start
    iv_mod.check_available(interventions, data)
    device = torch.device(device) if device else pick_device()
    tags = _tags(cfg, data, device, extra_tags)
    spooled = spool.take(cfg, data)
    if spooled is not None:
        tags[tracking.SPOOLED_TAG] = str(spooled.folder)
    with tracking.RunLogger.start(client, exp_id, run_name or cfg.short_name(), tags, run_id=run_id) as logger:
        result = RunResult(logger.run_id)
        _log_inputs(logger, cfg, data, settings, interventions)
        epochs: list[EpochStats] = []

        def epoch_logged(stats: EpochStats) -> None:
            epochs.append(stats)
            _log_epoch(logger, stats)
            if on_epoch is not None:
                on_epoch(stats)

        if spooled is not None:  # the curves as they were measured, then the model as it was trained
            for stats in spooled.epochs:
                epoch_logged(stats)
            model = spooled.model.to(device).eval()
            result.seconds.update(spooled.seconds)
        else:
            start = time.perf_counter()
            model = train_model(cfg, data, device, on_epoch=epoch_logged)
            result.seconds.update({"seconds/data": data_seconds, "seconds/train": time.perf_counter() - start})
        try:
            _log_trained(logger, cfg, model, Evaluator(model, data, settings), data, interventions, result)
        except tracking.TrackingUnavailable as exc:
            raise _kept(exc, spool.keep(cfg, data, model, epochs, _train_seconds(result))) from None
    spool.drop(cfg)
    return result


def _train_seconds(result: RunResult) -> dict[str, float]:
    return {k: v for k, v in result.seconds.items() if k in ("seconds/data", "seconds/train", "seconds/train_stack")}


def run_configs(
    cfgs: list[RunConfig],
    client,
    exp_id: str,
    interventions: list[Intervention],
    settings: EvalSettings = EvalSettings(),
    data_dir: str | None = None,
    data: Dataset | None = None,
    extra_tags: dict | None = None,
    run_names: list[str] | None = None,
    device: str | None = None,
) -> list[RunResult | Exception]:
    """Train configurations that differ only in their seed together, as one stacked network
    (`train.train_models`), each into its own MLflow run (params, per-epoch metrics, predictions, weights, model
    and every intervention, exactly as `run_config` logs them; tag `mmtrack.stack` names the runs trained
    together). Returns each configuration's result, or the error its run FAILED with (a diverged seed fails
    alone). An error of the whole stack (before training ends) fails every run and propagates."""
    start = time.perf_counter()
    data = data or load_dataset(cfgs[0].dataset, data_dir, cfgs[0].image_size)
    data_seconds = time.perf_counter() - start
    iv_mod.check_available(interventions, data)
    device = torch.device(device) if device else pick_device()
    stack_tags = {
        tracking.STACK_TAG: uuid.uuid4().hex[:12],
        tracking.STACK_SEEDS_TAG: ",".join(str(c.seed) for c in cfgs),
    }
    names = run_names or [cfg.short_name() for cfg in cfgs]
    loggers: list[tracking.RunLogger] = []
    ended: set[int] = set()
    try:
        for cfg, name in zip(cfgs, names):
            loggers.append(
                tracking.RunLogger.create(client, exp_id, name, {**_tags(cfg, data, device, extra_tags), **stack_tags})
            )
            _log_inputs(loggers[-1], cfg, data, settings, interventions)
        start = time.perf_counter()
        epochs: list[list[EpochStats]] = [[] for _ in cfgs]

        def epoch_logged(k: int, stats: EpochStats) -> None:
            epochs[k].append(stats)
            _log_epoch(loggers[k], stats)

        models = train_models(cfgs, data, device, on_epoch=epoch_logged)
        train_seconds = time.perf_counter() - start
        live = [m for m in models if not isinstance(m, Exception)]
        shared = SharedForward(live, settings.batch_size) if live else None
        results: list[RunResult | Exception] = []
        gone: tracking.TrackingUnavailable | None = None
        for k, (cfg, logger, model) in enumerate(zip(cfgs, loggers, models)):
            ended.add(k)
            if isinstance(model, Exception):
                logger.fail(model)
                results.append(tracking.failed_run(model, logger.run_id))
                continue
            result = RunResult(logger.run_id)
            # the stack's training time, and each run's share of it (what the run cost)
            result.seconds.update(
                {
                    "seconds/data": data_seconds,
                    "seconds/train": train_seconds / len(cfgs),
                    "seconds/train_stack": train_seconds,
                }
            )
            evaluator = Evaluator(model, data, settings, shared=shared, member=live.index(model))
            if gone is not None:  # the server is away: keep the model without waiting for it once more
                logger.fail(gone)
                kept = _kept(gone, spool.keep(cfg, data, model, epochs[k], _train_seconds(result)))
                results.append(tracking.failed_run(kept, logger.run_id))
                continue
            try:
                with logger.resume():
                    _log_trained(logger, cfg, model, evaluator, data, interventions, result)
            except tracking.TrackingUnavailable as exc:  # kept locally, so that a retry need not train it again
                gone = exc
                kept = _kept(exc, spool.keep(cfg, data, model, epochs[k], _train_seconds(result)))
                results.append(tracking.failed_run(kept, logger.run_id))
                continue
            except Exception as exc:  # noqa: BLE001 - its run is FAILED with the error; the others go on
                results.append(exc)
                continue
            spool.drop(cfg)
            results.append(result)
        return results
    except BaseException as exc:
        for k, logger in enumerate(loggers):
            if k not in ended:
                logger.fail(exc)
        raise
