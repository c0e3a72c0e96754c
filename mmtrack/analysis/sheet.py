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

The work is split in two so that nothing is computed twice: :func:`assign_cells` (:mod:`mmtrack.analysis.cells`)
decides which run fills which cell (the same for every metric, and the run ids whose predictions are worth
downloading), then :func:`sheet_stats` computes one metric's scores, Δmax, noise floors and disagreement over those cells.
:func:`build_sheet` does both for one metric. Everything here is a pure function of the runs table
(``mlflow.search_runs`` format); nothing calls MLflow, and nothing here renders (see ``mmtrack.report``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmtrack.analysis.cells import (
    MISSING,
    Cells,
    Design,
    assign_cells,
    choose_design,
    format_value,
    infer_design,
    sheet_metrics,
)
from mmtrack.analysis.effects import AxisEffect, axis_effect, top_column_spread
from mmtrack.analysis.effects import top_axis as effects_top_axis
from mmtrack.analysis.noise_floor import NOISE_LEVEL, noise_floor, range_quantile
from mmtrack.analysis.run_table import (
    PP_DECIMALS,
    jsonable,
    metric_column,
    normalise,
)
from mmtrack.errors import MMTrackError
from mmtrack.metrics import is_accuracy, scale
from mmtrack.tags import EVAL_N_TAG, column

UNIT = "%"

__all__ = [
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
    col = column(EVAL_N_TAG)
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
            table = (design.tables or {}).get(axis, {"column": axis, "where": {}})
            where = design.describe(**table["where"], **{table["column"]: values[v], design.seed_param: seeds[s]})
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
SOURCE_SEED = "source_seed"  # the rows of a seed-sources sheet (design seed-sources)


def top_axis(sheet: Sheet) -> tuple[str | None, AxisEffect | None, float]:
    """The axis with the largest significant effect (η², p < 0.05), its effect and its table's largest Δmax; when
    no axis is significant, "seed" with the largest Δmax between seeds of one configuration (a column's Δmax)."""
    if not sheet.tables or all(np.isnan(t.scores).all() for t in sheet.tables):
        return None, None, math.nan
    if sheet.design.seed_param == SOURCE_SEED and sheet.design.tables:
        # a seed-sources sheet: the source whose seeds spread the metric most (in any configuration's table),
        # with its permutation p within that table
        best = None
        for table in sheet.tables:
            top, spread, effect = top_column_spread(table.scores)
            if top is not None and (best is None or spread > best[1]):
                where = "" if table.axis == "source" else f" ({table.axis.removeprefix('source · ')})"
                best = (f"source: {table.values[top]}{where}", spread, effect)
        return (best[0], best[2], best[1]) if best else (None, None, math.nan)
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
