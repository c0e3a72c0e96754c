"""Models trained elsewhere, declared for `mmtrack import`: which weights files, with which params, and whether
those params make one design (no torch here; reading and logging the weights is `mmtrack.jobs.import_run`).

Two ways to list models:

- a **folder**: every `*.safetensors`, `*.pt`, `*.pth` under it; a model's params come from its path, Hive-style:
  each folder named `key=value` and each `,`-separated `key=value` part of the file name
  (`lr=0.05/seed=1.pt`, `lr=0.05,seed=1.safetensors`);
- a **CSV** with a `path` column (relative to the CSV's folder) and one column per param; columns `arch` and
  `width` set those per model (else the command's options do).

Every model of an experiment names the same params, one of them the seed (`seed_param`), and the params that
vary are the sheet's axes, one at a time around the most common value (`analysis.infer_design`), exactly as for
runs mmtrack trained. So each model must fill one cell of that design, no two models the same cell.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mmtrack.errors import MMTrackError

WEIGHTS_SUFFIXES = (".safetensors", ".pt", ".pth")
RESERVED = ("dataset", "image_size")  # params the command sets for every model; a listing may not
OWN_KEYS = ("arch", "width")  # per-model settings a listing may give (else the command's options)
PREFIXES = ("eval.", "import.")  # logged by mmtrack on every imported run: never a user's param


@dataclass
class ModelFile:
    """One model to import: its weights file, the label it is known by in messages, its params (as text, the
    way MLflow stores them) and the sha256 of the file (a model imported twice is the same file)."""

    path: Path
    label: str
    params: dict[str, str] = field(default_factory=dict)
    sha256: str = ""

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items())


def _hive_params(rel: Path) -> dict[str, str]:
    parts = [*rel.parent.parts, *rel.name.removesuffix(rel.suffix).split(",")]
    return dict(p.split("=", 1) for p in parts if "=" in p)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def list_models(source: Path) -> list[ModelFile]:
    """The models a folder or a CSV lists (see the module doc), each with its file's sha256; one error line for
    a missing source or file, an unreadable CSV, or a folder without weights."""
    source = Path(source)
    if not source.exists():
        raise MMTrackError(f"{source} does not exist; give a folder of weights files or a CSV listing them")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHTS_SUFFIXES)
        if not files:
            raise MMTrackError(f"{source} holds no weights files ({', '.join('*' + s for s in WEIGHTS_SUFFIXES)})")
        models = [ModelFile(p, str(p.relative_to(source)), _hive_params(p.relative_to(source))) for p in files]
    else:
        models = _from_csv(source)
    for m in models:
        if not m.path.is_file():
            raise MMTrackError(f"model {m.label}: weights file {m.path} does not exist; fix the path in {source}")
        if m.path.suffix.lower() not in WEIGHTS_SUFFIXES:
            raise MMTrackError(
                f"model {m.label}: {m.path.name} is not a weights file; give safetensors or a PyTorch state dict "
                f"({', '.join(WEIGHTS_SUFFIXES)})"
            )
        m.sha256 = _digest(m.path)
    return models


def _from_csv(source: Path) -> list[ModelFile]:
    try:
        with open(source, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MMTrackError(f"cannot read {source} as a CSV ({exc})") from None
    if not rows or "path" not in rows[0]:
        raise MMTrackError(f"{source} needs a header with a 'path' column and one row per weights file")
    models = []
    for i, row in enumerate(rows, start=2):
        if None in row or any(v is None for v in row.values()):
            raise MMTrackError(f"{source} line {i}: the row does not have one value per column")
        path = row.pop("path").strip()
        if not path:
            raise MMTrackError(f"{source} line {i}: empty path")
        full = Path(path) if Path(path).is_absolute() else source.parent / path
        models.append(ModelFile(full, path, {k.strip(): v.strip() for k, v in row.items() if v.strip() != ""}))
    return models


def check_models(models: Sequence[ModelFile], seed_param: str, existing: pd.DataFrame | None = None) -> None:
    """The listed models (their `arch` and `width` resolved into their params) make one design with the experiment's runs `existing` (a runs table, or None): the
    same param names everywhere, the seed among them, each model filling its own cell, no file twice. One error
    line naming the model otherwise."""
    from mmtrack.analysis.cells import assign_cells, infer_design

    for m in models:
        bad = [k for k in m.params if k in RESERVED or k.startswith(PREFIXES)]
        if bad:
            raise MMTrackError(
                f"model {m.label}: param {bad[0]!r} is set by mmtrack import (--dataset/--image-size, eval.*, "
                "import.*); rename that column"
            )
    names = user_params(models[0].params)
    for m in models[1:]:
        if user_params(m.params) != names:
            diff = sorted(set(user_params(m.params)) ^ set(names))
            raise MMTrackError(
                f"model {m.label} names params {', '.join(user_params(m.params)) or 'none'}, model {models[0].label} "
                f"{', '.join(names) or 'none'} (differ: {', '.join(diff)}); every model of an experiment names the "
                "same params"
            )
    if seed_param not in names:
        raise MMTrackError(
            f"the models name no {seed_param!r} param (the seed each was trained with); add it as a column or "
            "key=value (0 for every model when unknown), or name another with --seed-param"
        )
    seen: dict[str, str] = {}
    for m in models:
        if m.sha256 in seen:
            raise MMTrackError(f"duplicate model: {m.label} is the same file as {seen[m.sha256]}; list it once")
        seen[m.sha256] = m.label
    frame = pd.DataFrame(
        [{"run_id": m.label, "status": "FINISHED", "end_time": pd.Timestamp(0), **_as_params(m.params)} for m in models]
    )
    if existing is not None and len(existing):
        old = existing[existing["status"] == "FINISHED"]
        old_names = sorted(
            c.removeprefix("params.")
            for c in old.columns
            if c.startswith("params.") and old[c].notna().any() and not c.removeprefix("params.").startswith(PREFIXES)
        )
        old_names = [n for n in old_names if n not in RESERVED]
        if old_names and old_names != names:
            raise MMTrackError(
                f"the experiment's runs name params {', '.join(old_names)}, the models {', '.join(names)}; one "
                "design per experiment: import into another experiment, or name the same params"
            )
        cols = ["run_id", "status", "end_time", *(f"params.{n}" for n in names)]
        if old_names:
            frame = pd.concat([old.assign(end_time=pd.Timestamp(0))[cols], frame], ignore_index=True)
    if frame[[f"params.{n}" for n in names]].drop_duplicates().shape[0] < len(frame):
        dup = frame[frame.duplicated([f"params.{n}" for n in names], keep=False)]["run_id"].tolist()
        raise MMTrackError(
            f"duplicate model: {' and '.join(map(str, dup[:2]))} have the same params "
            f"({_describe(frame, dup[0], names)}); give them different params (e.g. their seeds)"
        )
    design = infer_design(frame, seed_param=seed_param, ignore=())
    if not design.axes:  # one configuration, its seeds: nothing to place
        return
    cells = assign_cells(frame, design)
    placed = {p for grid in cells.rows.values() for p in grid.ravel() if p >= 0}
    for pos in range(len(frame)):
        if pos not in placed:
            label = frame["run_id"].iloc[pos]
            off = [a for a in design.axes if _norm(frame[f"params.{a}"].iloc[pos]) != design.default[a]]
            raise MMTrackError(
                f"model {label} ({_describe(frame, label, names)}) differs from the default configuration "
                f"({design.describe()}) in {len(off)} params ({', '.join(off)}); a sheet varies one at a time: "
                "import it into its own experiment"
            )


def user_params(params: dict[str, str]) -> list[str]:
    """The names of a model's params (its arch and width among them, once resolved), sorted."""
    return sorted(params)


def _as_params(params: dict[str, str]) -> dict[str, str]:
    return {f"params.{k}": v for k, v in params.items()}


def _norm(value):
    from mmtrack.analysis.run_table import normalise

    return normalise(value)


def _describe(frame: pd.DataFrame, label: str, names: list[str]) -> str:
    row = frame[frame["run_id"] == label].iloc[0]
    return ", ".join(f"{n}={row[f'params.{n}']}" for n in names)
