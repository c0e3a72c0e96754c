"""Trained weights kept on this machine until their run is logged.

A worker that loses the tracking server after a model is trained, for longer than its `--server-wait`, must not
throw the training away: `keep` writes `<spool>/<config hash>/` ($MMTRACK_SPOOL, default `<tracking dir>/spool`)
with the model as `weights/` (`models.save_weights`: safetensors, no pickle), its training curves and timings,
and the fingerprint of the data it was trained on. The next run of the same configuration on this machine
(`take`, from `run.run_config`: a rerun of the sweep, or a worker that claims it again) builds the model from
there instead of training it, logs the curves as they were measured, evaluates and logs the rest; once its run is
FINISHED, `drop` removes the folder. The configuration hash covers every training input (seed included), and
the data fingerprint and mmtrack version must match too, else the spooled model is ignored and removed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from mmtrack import settings
from mmtrack._version import __version__
from mmtrack.data import Dataset
from mmtrack.models import load_weights, model_spec, save_weights
from mmtrack.training.config import RunConfig
from mmtrack.training.train import EpochStats

log = logging.getLogger(__name__)
STATE = "spool.json"


@dataclass
class Spooled:
    model: torch.nn.Module
    epochs: list[EpochStats]
    seconds: dict[str, float]
    folder: Path


def folder(cfg: RunConfig) -> Path:
    return settings.spool_dir() / cfg.hash


def keep(
    cfg: RunConfig, data: Dataset, model: torch.nn.Module, epochs: list[EpochStats], seconds: dict[str, float]
) -> Path:
    """Write the trained `model` of `cfg`, its training curves and timings; returns the folder."""
    out = folder(cfg)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_weights(model, model_spec(cfg.arch, data.num_classes, data.image_size, cfg.width), tmp / "weights")
    state = {
        "config": cfg.params(),
        "data_fingerprint": data.fingerprint,
        "mmtrack": __version__,
        "epochs": [dataclasses.asdict(e) for e in epochs],
        "seconds": seconds,
    }
    (tmp / STATE).write_text(json.dumps(state, indent=1, default=str))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # complete or absent: a kill while writing leaves only the .tmp folder
    return out


def take(cfg: RunConfig, data: Dataset) -> Spooled | None:
    """The spooled model of `cfg`, if this machine has one trained on the same data by this mmtrack version."""
    path = folder(cfg)
    if not (path / STATE).is_file():
        return None
    try:
        state = json.loads((path / STATE).read_text())
        if state.get("data_fingerprint") != data.fingerprint or state.get("mmtrack") != __version__:
            log.warning("ignoring the spooled model in %s: trained on other data or by another mmtrack", path)
            drop(cfg)
            return None
        model = load_weights(path / "weights")
        epochs = [EpochStats(**e) for e in state["epochs"]]
        return Spooled(model, epochs, {k: float(v) for k, v in state["seconds"].items()}, path)
    except Exception as exc:  # noqa: BLE001 - a damaged spool is retrained, not fatal
        log.warning("ignoring the unreadable spooled model in %s (%s); training it again", path, exc)
        drop(cfg)
        return None


def drop(cfg: RunConfig) -> None:
    shutil.rmtree(folder(cfg), ignore_errors=True)
