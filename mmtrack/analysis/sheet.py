"""Multiplicity sheets: one metric tabulated over random seeds x hyperparameter values.

A *multiplicity sheet* (Ganesh, WACV 2024, §2.2) is drawn for one (dataset, metric). It is a set of tables,
one per hyperparameter *axis*, each comparing that axis with the random seed:

* rows = seeds, columns = the axis's values (the design's default first);
* each cell = the score of the run trained with the design default on every *other* axis, this axis's value
  and this seed (one-factor-at-a-time: the default configuration appears in every table);
* an extra right-hand column Δmax = max - min across the row (the spread caused by the axis, seed fixed);
* an extra bottom row Δmax = max - min down the column (the spread caused by the seed, value fixed);
* Δmax^all = max - min over every score in the sheet, a single number per metric comparable across metrics
  when every metric is an "accuracy under intervention".

Scores are in percentage points (metric x 100). A cell without a FINISHED run (or whose run lacks the metric)
is NaN and listed in ``Sheet.missing``, never 0. When two FINISHED runs fill one cell the latest (by
``end_time``) is used and ``Sheet.warnings`` names both.

Beyond the paper, two extra readings help decide whether a Δmax means anything:

* **Noise floor.** A metric measured on n test examples has sampling noise sigma = sqrt(p(1-p)/n) even for
  one fixed model. The range of k iid normals with that sigma exceeds q_0.95(k) * sigma only 5% of the time,
  where q is the studentized range quantile with infinite degrees of freedom. A Δmax at or below that floor
  is "within noise" (marked "~") -- test-set sampling alone could produce it. n comes from the run tag
  ``mmtrack.eval_n`` (a JSON object metric -> n); without it the floor is unknown (None).
* **Prediction-level multiplicity.** Given each run's predicted labels on the test set, the disagreement of
  a row/column is the share of test examples on which its runs do not all predict the same label. Two models
  of equal accuracy can still disagree on many examples.
* **Axis effect.** Each table carries η² (the share of its variance between axis values) and a permutation
  p-value for "the axis values don't matter" (:mod:`mmtrack.analysis.effects`): does the axis move the metric
  more than changing the seed does? The summary's top axis is the largest significant effect, else "seed".

The work is split in two so that nothing is computed twice: :func:`assign_cells` decides which run fills which
cell (the same for every metric, and the run ids whose predictions are worth downloading), then
:func:`sheet_stats` computes one metric's scores, Δmax, noise floors and disagreement over those cells.
:func:`build_sheet` does both for one metric. Everything here is a pure function of the runs table
(``mlflow.search_runs`` format); nothing calls MLflow, and nothing here renders (see ``mmtrack.report``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from mmtrack.analysis._runs import (
    PP_DECIMALS,
    finished_mask,
    jsonable,
    metric_column,
    norm_series,
    normalise,
    param_names,
    sort_key,
)
from mmtrack.analysis.effects import AxisEffect, axis_effect
from mmtrack.analysis.effects import top_axis as effects_top_axis
from mmtrack.config import AXES
from mmtrack.errors import MMTrackError
from mmtrack.metrics import is_accuracy, scale

UNIT = "%"
NOISE_LEVEL = 0.95  # quantile of the range of k iid normals used as the noise floor
AXIS_ORDER = AXES  # the paper's table order
MISSING = "—"  # how a missing value is shown (also in the messages of Sheet.missing)

__all__ = [
    "AXIS_ORDER",
    "MISSING",
    "NOISE_LEVEL",
    "UNIT",
    "Cells",
    "Design",
    "Sheet",
    "Table",
    "assign_cells",
    "build_sheet",
    "choose_design",
    "disagreement",
    "format_value",
    "infer_design",
    "noise_floor",
    "normalise",
    "range_quantile",
    "sheet_metrics",
    "sheet_stats",
    "summary",
    "top_axis",
]


def format_value(value: Any) -> str:
    """A normalised param value as shown in a sheet and its messages (0.1, 128, randaugment)."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --------------------------------------------------------------------------------------------------------
# Design
# --------------------------------------------------------------------------------------------------------


@dataclass
class Design:
    """Which runs make up a sheet: the axes (values listed default first), the default configuration, the
    seed param and the seeds (None: every seed found among the FINISHED runs). ``default`` may hold keys that
    are not axes; those are fixed constraints every cell's run must meet."""

    axes: dict[str, list]
    default: dict[str, object]
    seed_param: str = "seed"
    seeds: list | None = None

    @classmethod
    def from_study(cls, study: Mapping) -> Design:
        """The design of a study dict (the experiment tag ``mmtrack.study``). Its ``fixed`` params (non-axis
        training params every run shares) are constraints too; ``default`` wins over ``fixed``."""
        axes = study.get("axes")
        if not isinstance(axes, Mapping) or not axes:
            raise MMTrackError("the study has no 'axes' (a mapping axis -> list of values); add them to the study")
        default = {**(study.get("fixed") or {}), **(study.get("default") or {})}
        for axis, values in axes.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise MMTrackError(f"study axis {axis!r} has no values; list them, default first")
            default.setdefault(axis, values[0])
        return cls(
            axes={a: list(v) for a, v in axes.items()},
            default=default,
            seed_param=study.get("seed_param", "seed"),
            seeds=study.get("seeds"),
        ).normalised()

    def normalised(self) -> Design:
        """A copy with every value normalised and each axis's default moved first."""
        default = {str(k).removeprefix("params."): normalise(v) for k, v in self.default.items()}
        axes: dict[str, list] = {}
        for axis, values in self.axes.items():
            axis = str(axis).removeprefix("params.")
            vals = list(dict.fromkeys(normalise(v) for v in values))
            if not vals:
                raise MMTrackError(f"design axis {axis!r} has no values")
            dflt = default.setdefault(axis, vals[0])
            if dflt not in vals:
                raise MMTrackError(
                    f"default {axis}={format_value(dflt)} is not among the axis values "
                    f"{', '.join(map(format_value, vals))}; add it or change the default"
                )
            axes[axis] = [dflt] + [v for v in vals if v != dflt]
        seed_param = str(self.seed_param).removeprefix("params.")
        if seed_param in axes:
            raise MMTrackError(f"the seed param {seed_param!r} cannot also be an axis")
        seeds = None if self.seeds is None else list(dict.fromkeys(normalise(s) for s in self.seeds))
        return Design(axes=axes, default=default, seed_param=seed_param, seeds=seeds)

    @property
    def keys(self) -> list[str]:
        """The params a cell's run is matched on (besides the seed): axes, then fixed default keys."""
        return list(self.axes) + [k for k in self.default if k not in self.axes]

    def describe(self, **changes: Any) -> str:
        """One configuration as "lr=0.1, batch_size=128, ..." (the default with `changes` applied)."""
        cfg = {**{k: self.default[k] for k in self.keys}, **changes}
        return ", ".join(f"{k}={format_value(v)}" for k, v in cfg.items())


def infer_design(
    runs: pd.DataFrame,
    seed_param: str = "seed",
    defaults: Mapping[str, Any] | None = None,
    ignore: Iterable[str] = ("epochs",),
) -> Design:
    """Infer an OFAT design from the FINISHED runs.

    Axes = the params whose normalised values vary (except `seed_param` and `ignore`), in the paper's order
    (lr, batch_size, augment, optimizer, arch, width) then alphabetically. Each axis's default is its most
    frequent value (ties: first in sorted order) unless `defaults` names it; values are listed default first,
    then sorted (numbers numerically). Seeds are sorted numerically.
    """
    fin = runs[finished_mask(runs)]
    if fin.empty:
        raise MMTrackError("no FINISHED runs to infer a design from; train some runs first")
    names = param_names(runs)
    if seed_param not in names:
        raise MMTrackError(f"the runs have no param {seed_param!r} (the seed); params: {', '.join(names) or 'none'}")
    ignored = set(ignore) | {seed_param}
    observed = {name: norm_series(fin[f"params.{name}"]).dropna() for name in names}
    axes_found = [n for n in names if n not in ignored and observed[n].nunique() > 1]
    axes_found.sort(key=lambda n: (AXIS_ORDER.index(n) if n in AXIS_ORDER else len(AXIS_ORDER), n))

    default: dict[str, Any] = {}
    for axis in axes_found:
        counts = observed[axis].value_counts()
        top = counts[counts == counts.max()].index
        default[axis] = normalise(min(top, key=sort_key))
    for key, value in (defaults or {}).items():
        key, value = str(key).removeprefix("params."), normalise(value)
        if key in default:
            present = set(observed[key])
            if value not in present:
                raise MMTrackError(
                    f"default {key}={format_value(value)} matches no FINISHED run; values present: "
                    f"{', '.join(format_value(v) for v in sorted(present, key=sort_key))}"
                )
            default[key] = value
        elif key in observed and key != seed_param and set(observed[key]) == {value}:
            continue  # a constant param at that value: nothing to choose
        else:
            raise MMTrackError(
                f"cannot set a default for {key!r}: it is not an axis of these runs "
                f"(axes: {', '.join(axes_found) or 'none'})"
            )
    axes = {a: [default[a]] + sorted(set(observed[a]) - {default[a]}, key=sort_key) for a in axes_found}
    seeds = sorted(set(observed[seed_param]), key=sort_key)
    return Design(axes=axes, default=default, seed_param=seed_param, seeds=seeds)


def choose_design(
    runs: pd.DataFrame,
    study: Mapping | None = None,
    seed_param: str = "seed",
    defaults: Mapping[str, Any] | None = None,
) -> Design:
    """The design `mmtrack sheet` uses: the experiment's study when there is one and nothing overrides it
    (no `defaults`, the study's own seed param), else one inferred from the runs."""
    if study and not defaults and seed_param == study.get("seed_param", "seed"):
        return Design.from_study(study)
    return infer_design(runs, seed_param=seed_param, defaults=defaults)


def sheet_metrics(runs: pd.DataFrame, names: Sequence[str] | None = None) -> list[str]:
    """The metrics to draw sheets of: `names` checked to exist (prefix stripped); by default every accuracy under
    intervention (``metrics.acc*``), ``acc`` first."""
    if names:
        return [metric_column(runs, n).removeprefix("metrics.") for n in names]
    names = sorted(c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.acc"))
    return (["acc"] if "acc" in names else []) + [n for n in names if n != "acc"]


# --------------------------------------------------------------------------------------------------------
# Which run fills which cell (the same for every metric)
# --------------------------------------------------------------------------------------------------------


@dataclass
class Cells:
    """The runs of a sheet before any metric is read: per axis, a grid (seeds x values) of row positions in
    ``runs`` (-1: no FINISHED run), and the messages the assignment produced, per axis in table order."""

    experiment: str
    design: Design  # normalised
    seeds: list
    runs: pd.DataFrame  # the runs table, index reset (positions index it)
    rows: dict[str, np.ndarray]  # axis -> int grid (len(seeds), len(values)) of positions in `runs`, -1 where empty
    no_run: dict[str, list[str]]  # axis -> "no FINISHED run for ..." messages
    duplicates: dict[str, list[str]]  # axis -> "2 FINISHED runs for ...: using ..." messages

    def run_ids(self) -> list[str]:
        """Every run filling some cell, sorted (the runs whose predictions a sheet can use)."""
        ids = self.runs["run_id"].astype(str).to_numpy()
        return sorted({ids[p] for grid in self.rows.values() for p in grid.ravel() if p >= 0})

    def reference_run(self) -> str | None:
        """The run of the default configuration with the first seed (the reference model of prediction
        multiplicity), or None when that cell is empty."""
        for grid in self.rows.values():
            if grid.size and grid[0, 0] >= 0:
                return str(self.runs["run_id"].iloc[grid[0, 0]])
        return None


def assign_cells(runs: pd.DataFrame, design: Design, experiment: str = "") -> Cells:
    """Which FINISHED run fills each cell of each table of `design` (the latest by ``end_time`` when several do).
    Metric-independent: build it once, then call :func:`sheet_stats` per metric."""
    design = design.normalised()
    names = set(param_names(runs))
    for key in design.keys + [design.seed_param]:
        if key not in names:
            raise MMTrackError(
                f"the runs have no param {key!r} named by the design; "
                f"params present: {', '.join(sorted(names)) or 'none'}"
            )
    finished = finished_mask(runs)
    if not finished.any():
        raise MMTrackError("no FINISHED runs to build a sheet from; train some runs first")
    runs = runs.reset_index(drop=True)
    params = pd.DataFrame({k: norm_series(runs[f"params.{k}"]) for k in design.keys + [design.seed_param]})
    seeds = (
        design.seeds
        if design.seeds is not None
        else sorted(set(params.loc[finished, design.seed_param].dropna()), key=sort_key)
    )
    frame = pd.DataFrame(
        {
            "run_id": runs["run_id"].astype(str),
            "status": runs["status"],
            "end_time": pd.to_datetime(runs["end_time"], utc=True) if "end_time" in runs else pd.NaT,
        }
    )
    rows, no_run, duplicates = {}, {}, {}
    for axis in design.axes:
        rows[axis], no_run[axis], duplicates[axis] = _assign_table(axis, design, seeds, params, frame, finished)
    return Cells(
        experiment=experiment,
        design=design,
        seeds=list(seeds),
        runs=runs,
        rows=rows,
        no_run=no_run,
        duplicates=duplicates,
    )


def _assign_table(
    axis: str, design: Design, seeds: list, params: pd.DataFrame, frame: pd.DataFrame, finished: np.ndarray
) -> tuple[np.ndarray, list[str], list[str]]:
    values = design.axes[axis]
    vindex = {v: i for i, v in enumerate(values)}
    sindex = {s: i for i, s in enumerate(seeds)}
    match = np.ones(len(frame), dtype=bool)
    for key in design.keys:
        if key != axis:
            match &= (params[key] == design.default[key]).to_numpy()
    vi = np.array([vindex.get(v, -1) for v in params[axis]], dtype=int)
    si = np.array([sindex.get(s, -1) for s in params[design.seed_param]], dtype=int)
    cand = match & (vi >= 0) & (si >= 0)
    tagged = frame.assign(vi=vi, si=si, pos=np.arange(len(frame)))
    sub = tagged[cand & finished].sort_values(["vi", "si", "end_time"], na_position="first", kind="stable")
    others = tagged[cand & ~finished]

    def where(v: int, s: int) -> str:
        return design.describe(**{axis: values[v], design.seed_param: seeds[s]})

    duplicates = []
    dup = sub[sub.duplicated(["vi", "si"], keep=False)]
    for (v, s), ids in dup.groupby(["vi", "si"])["run_id"]:
        ids = list(ids)
        duplicates.append(
            f"{len(ids)} FINISHED runs for {where(v, s)}: using {ids[-1]} (latest end_time), "
            f"ignoring {', '.join(ids[:-1])}"
        )
    chosen = sub.drop_duplicates(["vi", "si"], keep="last")
    grid = np.full((len(seeds), len(values)), -1, dtype=int)
    grid[chosen["si"].to_numpy(), chosen["vi"].to_numpy()] = chosen["pos"].to_numpy()
    no_run = []
    for s, v in zip(*np.nonzero(grid < 0)):
        found = others[(others["si"] == s) & (others["vi"] == v)]
        extra = (
            f" (found {', '.join(f'{st} {r}' for st, r in zip(found['status'], found['run_id']))})"
            if len(found)
            else ""
        )
        no_run.append(f"no FINISHED run for {where(v, s)}{extra}")
    return grid, no_run, duplicates


# --------------------------------------------------------------------------------------------------------
# Statistics over the cells, per metric
# --------------------------------------------------------------------------------------------------------


@dataclass
class Table:
    """One table of a sheet: rows = seeds, columns = the axis's values (default first); scores in pp."""

    axis: str
    values: list
    seeds: list
    scores: np.ndarray  # (len(seeds), len(values)), NaN where missing
    run_ids: list[list[str | None]]  # same shape, None where missing
    delta_max_per_seed: np.ndarray  # one per row, NaN with < 2 scores
    delta_max_per_value: np.ndarray  # one per column
    noise_floor_per_seed: list[float | None]
    noise_floor_per_value: list[float | None]
    within_noise_per_seed: list[bool | None]
    within_noise_per_value: list[bool | None]
    disagreement_per_seed: list[float | None]
    disagreement_per_value: list[float | None]
    axis_effect: AxisEffect = AxisEffect(None, None, 0, True)  # η² and permutation p of the axis (effects.py)

    def frame(self) -> pd.DataFrame:
        """The scores as a DataFrame (index = seeds, columns = values)."""
        return pd.DataFrame(
            self.scores, index=pd.Index(self.seeds, name="seed"), columns=pd.Index(self.values, name=self.axis)
        )

    def to_dict(self) -> dict:
        return jsonable(
            {
                "axis": self.axis,
                "values": self.values,
                "seeds": self.seeds,
                "scores": self.scores.tolist(),
                "delta_max_per_seed": self.delta_max_per_seed.tolist(),
                "delta_max_per_value": self.delta_max_per_value.tolist(),
                "run_ids": self.run_ids,
                "noise_floor_per_seed": self.noise_floor_per_seed,
                "noise_floor_per_value": self.noise_floor_per_value,
                "within_noise_per_seed": self.within_noise_per_seed,
                "within_noise_per_value": self.within_noise_per_value,
                "disagreement_per_seed": self.disagreement_per_seed,
                "disagreement_per_value": self.disagreement_per_value,
                "axis_effect": self.axis_effect.to_dict(),
            }
        )

    def top_delta_max(self) -> float:
        """The largest Δmax of the table, over its rows and columns (NaN when it has none)."""
        d = np.r_[self.delta_max_per_seed, self.delta_max_per_value]
        d = d[~np.isnan(d)]
        return float(d.max()) if len(d) else math.nan


@dataclass
class Sheet:
    """A multiplicity sheet for one metric: its tables, Δmax^all and what was missing or odd."""

    experiment: str
    metric: str
    design: Design
    tables: list[Table]
    delta_max_all: float
    noise_floor_all: float | None = None
    within_noise_all: bool | None = None
    disagreement_all: float | None = None
    n_models: int = 0  # distinct runs with a score
    eval_n: int | None = None  # smallest known number of test examples behind the metric
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unit: str = UNIT

    @property
    def default(self) -> dict:
        return dict(self.design.default)

    def to_dict(self) -> dict:
        """The sheet as strict-JSON-ready data (NaN -> None)."""
        return jsonable(
            {
                "experiment": self.experiment,
                "metric": self.metric,
                "unit": self.unit,
                "default": self.default,
                "seed_param": self.design.seed_param,
                "tables": [t.to_dict() for t in self.tables],
                "delta_max_all": self.delta_max_all,
                "noise_floor_all": self.noise_floor_all,
                "within_noise_all": self.within_noise_all,
                "noise_level": NOISE_LEVEL,
                "eval_n": self.eval_n,
                "disagreement_all": self.disagreement_all,
                "n_models": self.n_models,
                "missing": self.missing,
                "warnings": self.warnings,
            }
        )


def _eval_n(runs: pd.DataFrame, metric: str) -> tuple[np.ndarray, list[str]]:
    """Per run, the number of test examples `metric` was measured on (NaN when unknown)."""
    col = "tags.mmtrack.eval_n"
    if col not in runs.columns:
        return np.full(len(runs), np.nan), []
    out, bad = np.full(len(runs), np.nan), []
    for i, (rid, raw) in enumerate(zip(runs["run_id"], runs[col])):
        if raw is None or (not isinstance(raw, str) and pd.isna(raw)):
            continue
        try:
            n = json.loads(raw).get(metric) if isinstance(raw, str) else raw.get(metric)
        except (ValueError, AttributeError):
            bad.append(f"run {rid}: tag mmtrack.eval_n is not a JSON object; its noise floor is unknown")
            continue
        if isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0:
            out[i] = n
    return out, bad


def _range(a: np.ndarray, axis: int) -> np.ndarray:
    """max - min along `axis`, ignoring NaN; NaN where fewer than 2 values."""
    r = np.round(np.fmax.reduce(a, axis=axis) - np.fmin.reduce(a, axis=axis), PP_DECIMALS)
    return np.where((~np.isnan(a)).sum(axis=axis) >= 2, r, np.nan)


@cache
def range_quantile(k: int, level: float = NOISE_LEVEL) -> float:
    """The `level` quantile of the range of k iid standard normals (studentized range, df = inf)."""
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(level, k, np.inf))


def noise_floor(scores: np.ndarray, n: float | None) -> float | None:
    """The Δmax (pp) that test-set sampling alone exceeds with probability 1 - NOISE_LEVEL, for these
    scores (pp; NaN ignored) of a metric measured on n examples; None if n is unknown or < 2 scores."""
    s = np.asarray(scores, dtype=float)
    s = s[~np.isnan(s)]
    if n is None or not np.isfinite(n) or n <= 0 or len(s) < 2:
        return None
    p = float(np.clip(s.mean() / 100.0, 0.0, 1.0))
    return range_quantile(len(s)) * math.sqrt(p * (1 - p) / n) * 100.0


def _group_n(n: np.ndarray) -> float | None:
    n = n[~np.isnan(n)]
    return float(n.min()) if len(n) else None


def _within(delta: float, floor: float | None) -> bool | None:
    return None if floor is None or math.isnan(delta) else bool(delta <= floor)


def disagreement(run_ids: Iterable[str | None], predictions: Mapping[str, np.ndarray] | None) -> float | None:
    """Share of test examples on which the given runs do not all predict the same label (runs without
    predictions are left out); None with fewer than 2 runs."""
    if predictions is None:
        return None
    arrays = [predictions[r] for r in run_ids if r is not None and r in predictions]
    if len(arrays) < 2:
        return None
    stacked = np.stack(arrays)
    return float((stacked != stacked[0]).any(axis=0).mean())


def sheet_stats(cells: Cells, metric: str, predictions: Mapping[str, np.ndarray] | None = None) -> Sheet:
    """The multiplicity sheet of `metric` over already assigned `cells`: scores, Δmax, noise floors and, given
    each cell run's predicted labels (run id -> array), prediction disagreement."""
    runs, design = cells.runs, cells.design
    col = metric_column(runs, metric)
    metric = col.removeprefix("metrics.")
    score = (pd.to_numeric(runs[col], errors="coerce") * scale(metric)).round(PP_DECIMALS).to_numpy(dtype=float)
    n_eval, notes = _eval_n(runs, metric)
    if not is_accuracy(metric):  # the binomial noise floor is for accuracies only
        n_eval = np.full(len(runs), np.nan)
    if predictions is not None:
        predictions = {str(k): np.asarray(v).ravel() for k, v in predictions.items()}
        lengths = {len(v) for v in predictions.values()}
        if len(lengths) > 1:
            raise MMTrackError(
                f"predictions have different lengths ({', '.join(map(str, sorted(lengths)))}); "
                "they must all cover the same test set in the same order"
            )
    ids = runs["run_id"].astype(str).to_numpy()
    missing: list[str] = []
    warns: list[str] = list(notes)
    tables = []
    for axis, grid in cells.rows.items():
        table, lacking = _table(axis, design, cells.seeds, grid, ids, score, n_eval, metric, predictions)
        missing += lacking + cells.no_run[axis]
        warns += cells.duplicates[axis]
        tables.append(table)

    # Sheet level: every distinct run once (the default configuration sits in every table).
    models: dict[str, tuple[float, float]] = {}
    for grid in cells.rows.values():
        for p in grid.ravel():
            if p >= 0 and not math.isnan(score[p]):
                models[ids[p]] = (score[p], n_eval[p])
    all_scores = np.array([s for s, _ in models.values()], dtype=float)
    all_n = np.array([n for _, n in models.values()], dtype=float)
    delta_all = float(_range(all_scores, 0)) if len(all_scores) else math.nan
    known_n = sorted(set(all_n[~np.isnan(all_n)].tolist()))
    if len(known_n) > 1:
        warns.append(
            f"eval_n of {metric!r} differs across runs ({', '.join(f'{n:g}' for n in known_n)}); "
            f"noise floors use the smallest"
        )
    floor_all = noise_floor(all_scores, _group_n(all_n))
    if predictions is not None:
        warns.extend(f"no predictions for run {r}; left out of disagreement" for r in models if r not in predictions)
    return Sheet(
        experiment=cells.experiment,
        metric=metric,
        design=design,
        tables=tables,
        delta_max_all=delta_all,
        noise_floor_all=floor_all,
        within_noise_all=_within(delta_all, floor_all),
        disagreement_all=disagreement(models, predictions),
        n_models=len(models),
        eval_n=int(known_n[0]) if known_n else None,
        missing=list(dict.fromkeys(missing)),
        warnings=list(dict.fromkeys(warns)),
        unit=UNIT if is_accuracy(metric) else "own unit",
    )


def _table(
    axis: str,
    design: Design,
    seeds: list,
    grid: np.ndarray,
    ids: np.ndarray,
    score: np.ndarray,
    n_eval: np.ndarray,
    metric: str,
    predictions: Mapping[str, np.ndarray] | None,
) -> tuple[Table, list[str]]:
    values = design.axes[axis]
    shape = grid.shape
    have = grid >= 0
    scores, n = np.full(shape, np.nan), np.full(shape, np.nan)
    scores[have], n[have] = score[grid[have]], n_eval[grid[have]]
    run_ids: list[list[str | None]] = [[None] * len(values) for _ in seeds]
    lacking = []
    for v, s in sorted(zip(*np.nonzero(have.T))):  # by value, then seed: the order runs were chosen in
        rid = ids[grid[s, v]]
        if math.isnan(scores[s, v]):
            where = design.describe(**{axis: values[v], design.seed_param: seeds[s]})
            lacking.append(f"run {rid} ({where}) has no metric {metric!r}")
        else:
            run_ids[s][v] = rid
    dps, dpv = _range(scores, 1), _range(scores, 0)
    nf_s = [noise_floor(scores[i], _group_n(n[i])) for i in range(shape[0])]
    nf_v = [noise_floor(scores[:, j], _group_n(n[:, j])) for j in range(shape[1])]
    return Table(
        axis=axis,
        values=list(values),
        seeds=list(seeds),
        scores=scores,
        run_ids=run_ids,
        delta_max_per_seed=dps,
        delta_max_per_value=dpv,
        noise_floor_per_seed=nf_s,
        noise_floor_per_value=nf_v,
        within_noise_per_seed=[_within(d, f) for d, f in zip(dps, nf_s)],
        within_noise_per_value=[_within(d, f) for d, f in zip(dpv, nf_v)],
        disagreement_per_seed=[disagreement(row, predictions) for row in run_ids],
        disagreement_per_value=[disagreement([row[j] for row in run_ids], predictions) for j in range(shape[1])],
        axis_effect=axis_effect(scores),
    ), lacking


def build_sheet(
    runs: pd.DataFrame,
    metric: str,
    design: Design,
    experiment: str = "",
    predictions: Mapping[str, np.ndarray] | None = None,
) -> Sheet:
    """The multiplicity sheet of `metric` over `design`, from the FINISHED runs of a runs table (for several
    metrics, call :func:`assign_cells` once and :func:`sheet_stats` per metric)."""
    metric_column(runs, metric)  # an unknown metric is the first thing to report
    return sheet_stats(assign_cells(runs, design, experiment), metric, predictions)


# --------------------------------------------------------------------------------------------------------
# Summary across metrics
# --------------------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = (
    "metric",
    "delta_max_all",
    "ratio_to_acc",
    "top_axis",
    "top_axis_eta_squared",
    "top_axis_p_value",
    "top_axis_delta_max",
    "noise_floor_all",
)
SEED = "seed"  # the top "axis" when no axis moves the metric beyond seed noise


def top_axis(sheet: Sheet) -> tuple[str | None, AxisEffect | None, float]:
    """The axis with the largest significant effect (η², p < 0.05), its effect and its table's largest Δmax; when
    no axis is significant, "seed" with the largest Δmax between seeds of one configuration (a column's Δmax)."""
    if not sheet.tables or all(np.isnan(t.scores).all() for t in sheet.tables):
        return None, None, math.nan
    name = effects_top_axis({t.axis: t.axis_effect for t in sheet.tables})
    if name != SEED:
        table = next(t for t in sheet.tables if t.axis == name)
        return name, table.axis_effect, table.top_delta_max()
    columns = np.concatenate([t.delta_max_per_value for t in sheet.tables])
    columns = columns[~np.isnan(columns)]
    return SEED, None, float(columns.max()) if len(columns) else math.nan


def summary(sheets: Sequence[Sheet], cells: Cells | None = None) -> pd.DataFrame:
    """One row per sheet: Δmax^all, its ratio to accuracy's Δmax^all, the top axis (largest significant η²; "seed"
    when no axis beats the seed noise) with its η², p and largest Δmax, and the noise floor of Δmax^all. Accuracy is the ``acc`` sheet among `sheets`; without
    one it is computed from `cells` when their runs log ``acc`` (the ratio is NaN otherwise)."""
    rows = []
    for sheet in sheets:
        axis, effect, top = top_axis(sheet)
        eta = effect.eta_squared if effect is not None and effect.eta_squared is not None else math.nan
        p = effect.p_value if effect is not None and effect.p_value is not None else math.nan
        rows.append(
            {
                "metric": sheet.metric,
                "delta_max_all": sheet.delta_max_all,
                "top_axis": axis,
                "top_axis_eta_squared": eta,
                "top_axis_p_value": p,
                "top_axis_delta_max": top,
                "noise_floor_all": math.nan if sheet.noise_floor_all is None else sheet.noise_floor_all,
            }
        )
    acc = next((s.delta_max_all for s in sheets if s.metric == "acc"), None)
    if acc is None:
        acc = sheet_stats(cells, "acc").delta_max_all if cells is not None and "metrics.acc" in cells.runs else math.nan
    df = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c != "ratio_to_acc"])
    df.insert(2, "ratio_to_acc", df["delta_max_all"] / acc if acc and not math.isnan(acc) else math.nan)
    return df
