"""What every run-producing job records, and how: the run's result, its tags (configuration, data, machine,
versions), inputs, per-epoch curves, clean predictions of each population, and the intervention metrics with the
predictions they are measured on. `train_run`, `evaluate_run` and `ensemble_run` all record through here."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from mmtrack import settings as mm_settings
from mmtrack import tracking
from mmtrack._version import __version__
from mmtrack.data import Dataset, Split
from mmtrack.interventions import EvalSettings, Evaluator, Intervention
from mmtrack.models import memory_format
from mmtrack.training.config import RunConfig
from mmtrack.training.device import precision
from mmtrack.training.train import EpochStats

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
    tags = {tracking.VERSION_TAG_PREFIX + p: version(p) for p in pkgs}
    tags.update(
        {
            tracking.VERSION_TAG_PREFIX + "mmtrack": __version__,
            tracking.VERSION_TAG_PREFIX + "python": platform.python_version(),
        }
    )
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
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
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


def run_env_tags(data: Dataset, device: torch.device) -> dict[str, str]:
    """What every run that computes metrics records about how: its data, device, threads, memory layout,
    precision, command line, package versions and machine."""
    return {
        tracking.DATA_FINGERPRINT_TAG: data.fingerprint,
        tracking.DEVICE_TAG: str(device),
        tracking.THREADS_TAG: str(torch.get_num_threads()),
        tracking.MEMORY_FORMAT_TAG: memory_format(),
        tracking.PRECISION_TAG: precision(device),
        tracking.COMMAND_TAG: " ".join(sys.argv)[:500],
        **versions(),
        **environment(device),
    }


def run_tags(cfg: RunConfig, data: Dataset, device: torch.device, extra_tags: dict | None) -> dict[str, str]:
    """A training run's tags: its configuration's hash and full name, how it was computed, and `extra_tags`."""
    return {
        tracking.HASH_TAG: cfg.hash,
        tracking.CONFIG_NAME_TAG: cfg.run_name,
        **run_env_tags(data, device),
        **(extra_tags or {}),
    }


def log_inputs(
    logger: tracking.RunLogger, cfg: RunConfig, data: Dataset, settings: EvalSettings, interventions: list[Intervention]
) -> None:
    logger.log_params({**cfg.params(), **settings.params(), "eval.interventions": ";".join(map(str, interventions))})
    logger.log_dataset(data.name, data.fingerprint, data.description, dataset_profile(data))


def log_epoch(logger: tracking.RunLogger, stats: EpochStats) -> None:
    logger.log_metrics(
        {"train_loss": stats.train_loss, "train_acc": stats.train_acc, "epoch_seconds": stats.seconds}, step=stats.epoch
    )
    mm_settings.crash_point("train")
