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

Everything here is a pure function of the runs table (``mlflow.search_runs`` format); nothing calls MLflow.
"""

from __future__ import annotations

import functools
import html as html_lib
import json
import math
import warnings as _warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from mmtrack.metrics import is_accuracy, scale
from mmtrack.errors import MMTrackError

UNIT = "%"
FORMATS = ("csv", "markdown", "latex", "html", "json")
NOISE_LEVEL = 0.95  # quantile of the range of k iid normals used as the noise floor
AXIS_ORDER = ("lr", "batch_size", "augment", "optimizer", "arch", "width")  # the paper's table order
MISSING = "—"  # how a missing cell is shown
WITHIN_NOISE_MARK = "~"  # appended to a Δmax at or below its noise floor
SCORE_CMAP = "Blues"
DELTA_CMAP = "YlOrBr"
ROUND = 10  # decimals kept on scores and Δmax (drops float noise such as 92.80000000000001)
CSV_COLUMNS = ("kind", "axis", "seed", "value", "score", "run_id", "noise_floor", "within_noise", "disagreement")


# --------------------------------------------------------------------------------------------------------
# Param values
# --------------------------------------------------------------------------------------------------------

def normalise(value: Any) -> Any:
    """A param value in comparable form: numbers as int (when integral) or float, other values as stripped
    strings, missing as None. So "0.1" == "0.10" == 0.1 and "128" == 128.0 == 128."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, bool):
        return str(value)  # MLflow logs True as "True"
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _number(float(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return text if math.isnan(number) else _number(number)


def _number(x: float) -> int | float:
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def _sort_key(value: Any) -> tuple:
    """Numbers first, numerically; then strings."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0, str(value))


def _norm_series(column: pd.Series) -> pd.Series:
    """A param column normalised, as an object Series (no dtype inference: 128 stays int, None stays None)."""
    return pd.Series([normalise(v) for v in column], index=column.index, dtype=object)


def format_value(value: Any) -> str:
    """A normalised param value as shown in a sheet (0.1, 128, randaugment)."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _fmt(x: Any, digits: int = 2) -> str:
    return MISSING if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


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
    def from_study(cls, study: Mapping) -> "Design":
        """The design of a study dict (the experiment tag ``mmtrack.study``)."""
        axes = study.get("axes")
        if not isinstance(axes, Mapping) or not axes:
            raise MMTrackError("the study has no 'axes' (a mapping axis -> list of values); add them to the study")
        default = dict(study.get("default") or {})
        for axis, values in axes.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise MMTrackError(f"study axis {axis!r} has no values; list them, default first")
            default.setdefault(axis, values[0])
        return cls(axes={a: list(v) for a, v in axes.items()}, default=default,
                   seed_param=study.get("seed_param", "seed"), seeds=study.get("seeds")).normalised()

    def normalised(self) -> "Design":
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
                raise MMTrackError(f"default {axis}={format_value(dflt)} is not among the axis values "
                                   f"{', '.join(map(format_value, vals))}; add it or change the default")
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


def _finished(runs: pd.DataFrame) -> pd.DataFrame:
    if "status" not in runs.columns:
        raise MMTrackError("the runs table has no 'status' column; pass mlflow.search_runs output")
    return runs[runs["status"] == "FINISHED"]


def _param_names(runs: pd.DataFrame) -> list[str]:
    return [c.removeprefix("params.") for c in runs.columns if c.startswith("params.")]


def infer_design(runs: pd.DataFrame, seed_param: str = "seed", defaults: Mapping[str, Any] | None = None,
                 ignore: Iterable[str] = ("epochs",)) -> Design:
    """Infer an OFAT design from the FINISHED runs.

    Axes = the params whose normalised values vary (except `seed_param` and `ignore`), in the paper's order
    (lr, batch_size, augment, optimizer, arch, width) then alphabetically. Each axis's default is its most
    frequent value (ties: first in sorted order) unless `defaults` names it; values are listed default first,
    then sorted (numbers numerically). Seeds are sorted numerically.
    """
    fin = _finished(runs)
    if fin.empty:
        raise MMTrackError("no FINISHED runs to infer a design from; train some runs first")
    names = _param_names(runs)
    if seed_param not in names:
        raise MMTrackError(f"the runs have no param {seed_param!r} (the seed); params: {', '.join(names) or 'none'}")
    ignored = set(ignore) | {seed_param}
    observed: dict[str, pd.Series] = {}
    for name in names:
        observed[name] = _norm_series(fin[f"params.{name}"]).dropna()
    axes_found = [n for n in names if n not in ignored and observed[n].nunique() > 1]
    axes_found.sort(key=lambda n: (AXIS_ORDER.index(n) if n in AXIS_ORDER else len(AXIS_ORDER), n))

    default: dict[str, Any] = {}
    for axis in axes_found:
        counts = observed[axis].value_counts()
        top = counts[counts == counts.max()].index
        default[axis] = normalise(min(top, key=_sort_key))
    for key, value in (defaults or {}).items():
        key, value = str(key).removeprefix("params."), normalise(value)
        if key in default:
            present = set(observed[key])
            if value not in present:
                raise MMTrackError(f"default {key}={format_value(value)} matches no FINISHED run; values present: "
                                   f"{', '.join(format_value(v) for v in sorted(present, key=_sort_key))}")
            default[key] = value
        elif key in observed and key != seed_param and set(observed[key]) == {value}:
            continue  # a constant param at that value: nothing to choose
        else:
            raise MMTrackError(f"cannot set a default for {key!r}: it is not an axis of these runs "
                               f"(axes: {', '.join(axes_found) or 'none'})")
    axes = {a: [default[a]] + sorted(set(observed[a]) - {default[a]}, key=_sort_key) for a in axes_found}
    seeds = sorted(set(observed[seed_param]), key=_sort_key)
    return Design(axes=axes, default=default, seed_param=seed_param, seeds=seeds)


# --------------------------------------------------------------------------------------------------------
# The sheet
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

    def frame(self) -> pd.DataFrame:
        """The scores as a DataFrame (index = seeds, columns = values)."""
        return pd.DataFrame(self.scores, index=pd.Index(self.seeds, name="seed"),
                            columns=pd.Index(self.values, name=self.axis))

    def to_dict(self) -> dict:
        return _jsonable({
            "axis": self.axis, "values": self.values, "seeds": self.seeds,
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
        })


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
        return _jsonable({
            "experiment": self.experiment, "metric": self.metric, "unit": self.unit,
            "default": self.default, "seed_param": self.design.seed_param,
            "tables": [t.to_dict() for t in self.tables],
            "delta_max_all": self.delta_max_all,
            "noise_floor_all": self.noise_floor_all, "within_noise_all": self.within_noise_all,
            "noise_level": NOISE_LEVEL, "eval_n": self.eval_n,
            "disagreement_all": self.disagreement_all, "n_models": self.n_models,
            "missing": self.missing, "warnings": self.warnings,
        })


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(obj) else float(obj)
    return obj


def _metric_column(runs: pd.DataFrame, metric: str) -> str:
    metric = metric.removeprefix("metrics.")
    col = f"metrics.{metric}"
    if col not in runs.columns:
        names = [c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.")]
        raise MMTrackError(f"unknown metric {metric!r}; the runs have: {', '.join(names) or 'no metrics at all'}")
    return col


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
    r = np.round(np.fmax.reduce(a, axis=axis) - np.fmin.reduce(a, axis=axis), ROUND)
    return np.where((~np.isnan(a)).sum(axis=axis) >= 2, r, np.nan)


@lru_cache(maxsize=None)
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


def build_sheet(runs: pd.DataFrame, metric: str, design: Design, experiment: str = "",
                predictions: Mapping[str, np.ndarray] | None = None) -> Sheet:
    """The multiplicity sheet of `metric` over `design`, from the FINISHED runs of a runs table."""
    col = _metric_column(runs, metric)
    metric = col.removeprefix("metrics.")
    design = design.normalised()
    names = set(_param_names(runs))
    for key in design.keys + [design.seed_param]:
        if key not in names:
            raise MMTrackError(f"the runs have no param {key!r} named by the design; "
                               f"params present: {', '.join(sorted(names)) or 'none'}")
    if _finished(runs).empty:
        raise MMTrackError("no FINISHED runs to build a sheet from; train some runs first")

    runs = runs.reset_index(drop=True)
    params = pd.DataFrame({k: _norm_series(runs[f"params.{k}"]) for k in design.keys + [design.seed_param]})
    n_eval, notes = _eval_n(runs, metric)
    if not is_accuracy(metric):  # the binomial noise floor is for accuracies only
        n_eval = np.full(len(runs), np.nan)
    frame = pd.DataFrame({
        "run_id": runs["run_id"].astype(str), "status": runs["status"],
        "end_time": pd.to_datetime(runs["end_time"], utc=True) if "end_time" in runs else pd.NaT,
        "score": (pd.to_numeric(runs[col], errors="coerce") * scale(metric)).round(ROUND), "n": n_eval,
    })
    finished = (frame["status"] == "FINISHED").to_numpy()
    seeds = design.seeds if design.seeds is not None else sorted(
        set(params.loc[finished, design.seed_param].dropna()), key=_sort_key)
    if predictions is not None:
        predictions = {str(k): np.asarray(v).ravel() for k, v in predictions.items()}
        lengths = {len(v) for v in predictions.values()}
        if len(lengths) > 1:
            raise MMTrackError(f"predictions have different lengths ({', '.join(map(str, sorted(lengths)))}); "
                               "they must all cover the same test set in the same order")

    missing: list[str] = []
    warns: list[str] = list(notes)
    tables = [_build_table(axis, design, seeds, params, frame, finished, metric, predictions, missing, warns)
              for axis in design.axes]

    # Sheet level: every distinct run once (the default configuration sits in every table).
    n_by_run = dict(zip(frame["run_id"], frame["n"]))
    models: dict[str, tuple[float, float]] = {}
    for t in tables:
        for si, row in enumerate(t.run_ids):
            for vi, rid in enumerate(row):
                if rid is not None:
                    models[rid] = (t.scores[si, vi], n_by_run[rid])
    all_scores = np.array([s for s, _ in models.values()], dtype=float)
    all_n = np.array([n for _, n in models.values()], dtype=float)
    delta_all = float(_range(all_scores, 0)) if len(all_scores) else math.nan
    known_n = sorted(set(all_n[~np.isnan(all_n)].tolist()))
    if len(known_n) > 1:
        warns.append(f"eval_n of {metric!r} differs across runs ({', '.join(f'{n:g}' for n in known_n)}); "
                     f"noise floors use the smallest")
    floor_all = noise_floor(all_scores, _group_n(all_n))
    if predictions is not None:
        warns.extend(f"no predictions for run {r}; left out of disagreement" for r in models if r not in predictions)
    return Sheet(
        experiment=experiment, metric=metric, design=design, tables=tables, delta_max_all=delta_all,
        noise_floor_all=floor_all, within_noise_all=_within(delta_all, floor_all),
        disagreement_all=disagreement(models, predictions), n_models=len(models),
        eval_n=int(known_n[0]) if known_n else None,
        missing=list(dict.fromkeys(missing)), warnings=list(dict.fromkeys(warns)),
        unit=UNIT if is_accuracy(metric) else "own unit",
    )


def _build_table(axis: str, design: Design, seeds: list, params: pd.DataFrame, frame: pd.DataFrame,
                 finished: np.ndarray, metric: str, predictions: Mapping[str, np.ndarray] | None,
                 missing: list[str], warns: list[str]) -> Table:
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
    sub = frame.assign(vi=vi, si=si)[cand & finished]
    sub = sub.sort_values(["vi", "si", "end_time"], na_position="first", kind="stable")
    others = frame.assign(vi=vi, si=si)[cand & ~finished]

    def where(v: int, s: int) -> str:
        return design.describe(**{axis: values[v], design.seed_param: seeds[s]})

    dup = sub[sub.duplicated(["vi", "si"], keep=False)]
    for (v, s), ids in dup.groupby(["vi", "si"])["run_id"]:
        ids = list(ids)
        warns.append(f"{len(ids)} FINISHED runs for {where(v, s)}: using {ids[-1]} (latest end_time), "
                     f"ignoring {', '.join(ids[:-1])}")
    chosen = sub.drop_duplicates(["vi", "si"], keep="last")

    shape = (len(seeds), len(values))
    scores, n = np.full(shape, np.nan), np.full(shape, np.nan)
    run_ids: list[list[str | None]] = [[None] * len(values) for _ in seeds]
    rs, rv = chosen["si"].to_numpy(), chosen["vi"].to_numpy()
    scores[rs, rv] = chosen["score"].to_numpy()
    n[rs, rv] = chosen["n"].to_numpy()
    have_run = np.zeros(shape, dtype=bool)
    have_run[rs, rv] = True
    for s, v, rid, score in zip(rs, rv, chosen["run_id"], chosen["score"]):
        if math.isnan(score):
            missing.append(f"run {rid} ({where(v, s)}) has no metric {metric!r}")
        else:
            run_ids[s][v] = rid
    for s, v in zip(*np.nonzero(~have_run)):
        found = others[(others["si"] == s) & (others["vi"] == v)]
        extra = f" (found {', '.join(f'{st} {r}' for st, r in zip(found['status'], found['run_id']))})" \
            if len(found) else ""
        missing.append(f"no FINISHED run for {where(v, s)}{extra}")

    dps, dpv = _range(scores, 1), _range(scores, 0)
    nf_s = [noise_floor(scores[i], _group_n(n[i])) for i in range(shape[0])]
    nf_v = [noise_floor(scores[:, j], _group_n(n[:, j])) for j in range(shape[1])]
    return Table(
        axis=axis, values=list(values), seeds=list(seeds), scores=scores, run_ids=run_ids,
        delta_max_per_seed=dps, delta_max_per_value=dpv,
        noise_floor_per_seed=nf_s, noise_floor_per_value=nf_v,
        within_noise_per_seed=[_within(d, f) for d, f in zip(dps, nf_s)],
        within_noise_per_value=[_within(d, f) for d, f in zip(dpv, nf_v)],
        disagreement_per_seed=[disagreement(row, predictions) for row in run_ids],
        disagreement_per_value=[disagreement([row[j] for row in run_ids], predictions) for j in range(shape[1])],
    )


def sheet_metrics(runs: pd.DataFrame) -> list[str]:
    """The metrics shown by default: every accuracy under intervention (``metrics.acc*``), ``acc`` first."""
    names = sorted(c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.acc"))
    return (["acc"] if "acc" in names else []) + [n for n in names if n != "acc"]


# --------------------------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------------------------

def _score_range(sheet: Sheet) -> tuple[float, float]:
    allv = np.concatenate([t.scores.ravel() for t in sheet.tables]) if sheet.tables else np.array([])
    allv = allv[~np.isnan(allv)]
    if not len(allv):
        return 0.0, 1.0
    lo, hi = float(allv.min()), float(allv.max())
    return (lo - 0.5, hi + 0.5) if hi - lo < 1e-9 else (lo, hi)


def _delta_max(sheet: Sheet) -> float:
    d = np.concatenate([np.r_[t.delta_max_per_seed, t.delta_max_per_value] for t in sheet.tables] or [[]])
    d = d[~np.isnan(d)]
    return float(d.max()) if len(d) and d.max() > 0 else 1.0


def _colour(cmap: str, x: float, lo: float, hi: float) -> tuple[str, str]:
    """(background, foreground) hex colours for x on colormap `cmap` over [lo, hi] (256 levels)."""
    frac = 0.5 if hi <= lo else min(max((x - lo) / (hi - lo), 0.0), 1.0)
    return _level_colour(cmap, round(255 * frac))


@functools.lru_cache(maxsize=4096)
def _level_colour(cmap: str, level: int) -> tuple[str, str]:
    """Cached: matplotlib rebuilds a colormap's lookup table on every `colormaps[...]` access."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    r, g, b, _ = colormaps[cmap](0.08 + 0.8 * level / 255)
    fg = "#000000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "#ffffff"
    return to_hex((r, g, b)), fg


# --------------------------------------------------------------------------------------------------------
# Text formats
# --------------------------------------------------------------------------------------------------------

def _delta_text(d: float, within: bool | None, digits: int) -> str:
    return MISSING if math.isnan(d) else _fmt(d, digits) + (WITHIN_NOISE_MARK if within else "")


def _footer(sheet: Sheet, digits: int = 2) -> str:
    dflt = ", ".join(f"{k}={format_value(v)}" for k, v in sheet.default.items())
    floor = "" if sheet.noise_floor_all is None else f" (noise floor {_fmt(sheet.noise_floor_all, digits)})"
    exp = f"experiment: {sheet.experiment} · " if sheet.experiment else ""
    return (f"{exp}metric: {sheet.metric} ({sheet.unit}) · default: {dflt} · "
            f"Δmax^all = {_fmt(sheet.delta_max_all, digits)}{floor} over {sheet.n_models} models")


NOISE_NOTE = (f"{WITHIN_NOISE_MARK} = Δmax within the {NOISE_LEVEL:.0%} noise floor of test-set sampling; "
              f"{MISSING} = missing")


def sheet_csv_frame(sheet: Sheet) -> pd.DataFrame:
    """The sheet in long format, one row per number (the CSV layout).

    Columns: kind, axis, seed, value, score, run_id, noise_floor, within_noise, disagreement.
    kind = "score" (one cell: axis, seed, value, score, run_id), "delta_max_per_seed" (axis, seed; score =
    the row's Δmax), "delta_max_per_value" (axis, value; score = the column's Δmax) or "delta_max_all"
    (score = Δmax^all). All numbers are percentage points; empty = missing / not applicable."""
    rows: list[dict] = []
    for t in sheet.tables:
        for i, seed in enumerate(t.seeds):
            for j, value in enumerate(t.values):
                rows.append({"kind": "score", "axis": t.axis, "seed": seed, "value": value,
                             "score": t.scores[i, j], "run_id": t.run_ids[i][j]})
        for i, seed in enumerate(t.seeds):
            rows.append({"kind": "delta_max_per_seed", "axis": t.axis, "seed": seed,
                         "score": t.delta_max_per_seed[i], "noise_floor": t.noise_floor_per_seed[i],
                         "within_noise": t.within_noise_per_seed[i], "disagreement": t.disagreement_per_seed[i]})
        for j, value in enumerate(t.values):
            rows.append({"kind": "delta_max_per_value", "axis": t.axis, "value": value,
                         "score": t.delta_max_per_value[j], "noise_floor": t.noise_floor_per_value[j],
                         "within_noise": t.within_noise_per_value[j], "disagreement": t.disagreement_per_value[j]})
    rows.append({"kind": "delta_max_all", "score": sheet.delta_max_all, "noise_floor": sheet.noise_floor_all,
                 "within_noise": sheet.within_noise_all, "disagreement": sheet.disagreement_all})
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS), dtype=object)  # object: seeds stay ints


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(sheet: Sheet, digits: int) -> str:
    out = [f"## Multiplicity sheet: {_md_cell(sheet.metric)} ({sheet.unit})", ""]
    for t in sheet.tables:
        head = [f"{sheet.design.seed_param} \\ {t.axis}"] + [format_value(v) for v in t.values] + ["Δmax"]
        out += [f"### {_md_cell(t.axis)}", "", "| " + " | ".join(map(_md_cell, head)) + " |",
                "|---|" + "---:|" * (len(t.values) + 1)]
        for i, seed in enumerate(t.seeds):
            cells = [format_value(seed)] + [_fmt(x, digits) for x in t.scores[i]]
            cells.append(_delta_text(t.delta_max_per_seed[i], t.within_noise_per_seed[i], digits))
            out.append("| " + " | ".join(cells) + " |")
        cells = ["**Δmax**"] + [_delta_text(d, w, digits) for d, w in zip(t.delta_max_per_value,
                                                                           t.within_noise_per_value)] + [""]
        out += ["| " + " | ".join(cells) + " |", ""]
    out += [_md_cell(_footer(sheet, digits)).replace("Δmax^all", "**Δmax^all**"), "", NOISE_NOTE]
    out += _notes(sheet, lambda s: f"- {s}")
    return "\n".join(out) + "\n"


def _notes(sheet: Sheet, item) -> list[str]:
    out: list[str] = []
    if sheet.missing:
        out += ["", f"Missing cells ({len(sheet.missing)}):"] + [item(m) for m in sheet.missing]
    if sheet.warnings:
        out += ["", f"Warnings ({len(sheet.warnings)}):"] + [item(w) for w in sheet.warnings]
    return out


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(c, c) for c in str(text))


def _latex(sheet: Sheet, digits: int) -> str:
    def num(x: float) -> str:
        return "--" if math.isnan(x) else _fmt(x, digits)

    def delta(d: float, w: bool | None) -> str:
        return num(d) + (r"\textsuperscript{$\sim$}" if w and not math.isnan(d) else "")

    out = [f"% multiplicity sheet: {sheet.metric} ({sheet.unit}); {NOISE_NOTE}".replace(MISSING, "--"),
           r"\begin{table}[t]", r"\centering\small"]
    for t in sheet.tables:
        ncol = len(t.values) + 2
        out += [r"\begin{tabular}{l|" + "r" * len(t.values) + "|r}",
                rf"\multicolumn{{{ncol}}}{{c}}{{\textbf{{{latex_escape(t.axis)}}}}} \\", r"\hline",
                " & ".join([latex_escape(sheet.design.seed_param)] + [latex_escape(format_value(v)) for v in t.values]
                           + [r"$\Delta_{\max}$"]) + r" \\", r"\hline"]
        for i, seed in enumerate(t.seeds):
            cells = [latex_escape(format_value(seed))] + [num(x) for x in t.scores[i]]
            cells.append(delta(t.delta_max_per_seed[i], t.within_noise_per_seed[i]))
            out.append(" & ".join(cells) + r" \\")
        out += [r"\hline", " & ".join([r"$\Delta_{\max}$"] + [delta(d, w) for d, w in zip(
            t.delta_max_per_value, t.within_noise_per_value)] + [""]) + r" \\", r"\end{tabular}\quad"]
    dflt = ", ".join(f"{latex_escape(k)}={latex_escape(format_value(v))}" for k, v in sheet.default.items())
    exp = f" ({latex_escape(sheet.experiment)})" if sheet.experiment else ""
    floor = "" if sheet.noise_floor_all is None else f" (noise floor {_fmt(sheet.noise_floor_all, digits)})"
    out += [rf"\caption{{Multiplicity sheet{exp} of \texttt{{{latex_escape(sheet.metric)}}} (\%). "
            rf"Default: {dflt}. $\Delta^{{all}}_{{\max}} = {num(sheet.delta_max_all)}${floor}. "
            rf"\textsuperscript{{$\sim$}}: $\Delta_{{\max}}$ within the {NOISE_LEVEL * 100:.0f}\% noise floor of "
            r"test-set sampling; --: missing.}", r"\end{table}"]
    return "\n".join(out) + "\n"


_HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.sheet { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
caption { font-weight: bold; padding: 0.3em; }
th, td { padding: 0.25em 0.55em; text-align: right; border: 1px solid #fff; }
th { background: #f1f1f1; }
td.missing { background: #eee; color: #888; text-align: center; }
td a { color: inherit; text-decoration: none; }
td a:hover { text-decoration: underline; }
tr.delta th, th.delta { background: #f6ead8; }
td.delta small { display: block; font-size: 0.72em; opacity: 0.85; white-space: nowrap; }
nav { margin: 0.5em 0 1em; }
section { margin-bottom: 2em; }
footer { margin-top: 1.2em; }
footer p { margin: 0.3em 0; }
.note { color: #666; font-size: 0.9em; }
"""


def _html(sheet: Sheet, digits: int, ui_url: str | None, experiment_id: str | None) -> str:
    esc = html_lib.escape
    lo, hi = _score_range(sheet)
    dhi = _delta_max(sheet)

    def score_cell(x: float, rid: str | None) -> str:
        if math.isnan(x):
            return f'<td class="missing">{MISSING}</td>'
        bg, fg = _colour(SCORE_CMAP, x, lo, hi)
        text = _fmt(x, digits)
        if rid is not None and ui_url and experiment_id is not None:
            href = f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{rid}?workflowType=machine_learning"
            text = f'<a href="{esc(href)}" title="run {esc(rid)}">{text}</a>'
        title = f' title="run {esc(rid)}"' if rid is not None else ""
        return f'<td class="score" style="background:{bg};color:{fg}"{title}>{text}</td>'

    def delta_cell(d: float, floor: float | None, w: bool | None, dis: float | None) -> str:
        if math.isnan(d):
            return f'<td class="missing">{MISSING}</td>'
        bg, fg = _colour(DELTA_CMAP, d, 0.0, dhi)
        tip = [f"noise floor {_fmt(floor, digits)}" if floor is not None else "noise floor unknown"]
        if dis is not None:
            tip.append(f"disagreement {dis:.1%}")
        mark = WITHIN_NOISE_MARK if w else ""
        shown = [f"floor {_fmt(floor, digits)}" if floor is not None else ""]
        shown.append(f"disagree {dis:.1%}" if dis is not None else "")
        detail = " · ".join(x for x in shown if x)
        return (f'<td class="delta" style="background:{bg};color:{fg}" title="{esc("; ".join(tip))}">'
                f"{_fmt(d, digits)}{mark}" + (f"<small>{esc(detail)}</small>" if detail else "") + "</td>")

    parts = []
    for t in sheet.tables:
        rows = ["<tr><th>" + esc(f"{sheet.design.seed_param} \\ {t.axis}") + "</th>"
                + "".join(f"<th>{esc(format_value(v))}</th>" for v in t.values) + '<th class="delta">Δmax</th></tr>']
        for i, seed in enumerate(t.seeds):
            rows.append(f"<tr><th>{esc(format_value(seed))}</th>"
                        + "".join(score_cell(x, r) for x, r in zip(t.scores[i], t.run_ids[i]))
                        + delta_cell(t.delta_max_per_seed[i], t.noise_floor_per_seed[i],
                                     t.within_noise_per_seed[i], t.disagreement_per_seed[i]) + "</tr>")
        rows.append('<tr class="delta"><th>Δmax</th>' + "".join(
            delta_cell(d, f, w, q) for d, f, w, q in zip(t.delta_max_per_value, t.noise_floor_per_value,
                                                         t.within_noise_per_value, t.disagreement_per_value))
                    + "<td></td></tr>")
        parts.append(f"<table><caption>{esc(t.axis)}</caption>\n" + "\n".join(rows) + "\n</table>")
    notes = _notes(sheet, lambda s: f"<li>{esc(s)}</li>")
    notes_html = "\n".join(n if n.startswith("<li>") else (f"<p>{esc(n)}</p>" if n else "") for n in notes)
    return ('<div class="sheet">\n' + "\n".join(parts) + "\n</div>\n"
            f"<footer>\n<p>{esc(_footer(sheet, digits))}</p>\n<p class=\"note\">{esc(NOISE_NOTE)}</p>\n"
            f"<ul class=\"note\">\n{notes_html}\n</ul>\n</footer>\n")


def _html_page(title: str, body: str) -> str:
    esc = html_lib.escape
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{esc(title)}</title>\n'
            f"<style>{_HTML_STYLE}</style>\n</head>\n<body>\n<h1>{esc(title)}</h1>\n{body}</body>\n</html>\n")


def render_html_report(sheets: Sequence[Sheet], ui_url: str | None = None, experiment_id: str | None = None,
                       digits: int = 2) -> str:
    """Every sheet on one standalone HTML page, one section per metric, with a table of contents."""
    esc = html_lib.escape
    experiment = next((s.experiment for s in sheets if s.experiment), "")
    nav = " · ".join(f'<a href="#sheet-{i}">{esc(s.metric)}</a>' for i, s in enumerate(sheets))
    body = f"<nav>{nav}</nav>\n" + "".join(
        f'<section id="sheet-{i}">\n<h2>{esc(s.metric)} ({esc(s.unit)}) — Δmax^all '
        f"{_fmt(s.delta_max_all, digits)}</h2>\n{_html(s, digits, ui_url, experiment_id)}</section>\n"
        for i, s in enumerate(sheets))
    return _html_page("Multiplicity sheets" + (f" — {experiment}" if experiment else ""), body)


def render(sheet: Sheet, fmt: str, ui_url: str | None = None, experiment_id: str | None = None,
           digits: int = 2) -> str:
    """The sheet as text: csv (long format, see `sheet_csv_frame`), markdown, latex, html (a standalone page;
    score cells link to their MLflow run when `ui_url` and `experiment_id` are given) or json."""
    if fmt == "json":
        return json.dumps(sheet.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if fmt == "csv":
        return sheet_csv_frame(sheet).to_csv(index=False)
    if fmt == "markdown":
        return _markdown(sheet, digits)
    if fmt == "latex":
        return _latex(sheet, digits)
    if fmt == "html":
        title = f"Multiplicity sheet: {sheet.metric}" + (f" — {sheet.experiment}" if sheet.experiment else "")
        return _html_page(title, _html(sheet, digits, ui_url, experiment_id))
    raise MMTrackError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")


# --------------------------------------------------------------------------------------------------------
# Terminal (rich) and figure
# --------------------------------------------------------------------------------------------------------

def rich_tables(sheet: Sheet, digits: int = 2):
    """The sheet for a terminal: tables side by side, scores and Δmax on two colour scales, a footer."""
    from rich.console import Group
    from rich.columns import Columns
    from rich.table import Table as RichTable
    from rich.text import Text

    lo, hi = _score_range(sheet)
    dhi = _delta_max(sheet)

    def score(x: float) -> Text:
        if math.isnan(x):
            return Text(MISSING, style="dim")
        bg, fg = _colour(SCORE_CMAP, x, lo, hi)
        return Text(_fmt(x, digits), style=f"{fg} on {bg}")

    def delta(d: float, w: bool | None) -> Text:
        if math.isnan(d):
            return Text(MISSING, style="dim")
        bg, fg = _colour(DELTA_CMAP, d, 0.0, dhi)
        return Text(_delta_text(d, w, digits), style=f"{fg} on {bg}")

    tables = []
    for t in sheet.tables:
        rt = RichTable(title=t.axis, show_edge=False, pad_edge=False, padding=(0, 1))
        rt.add_column(sheet.design.seed_param, justify="right", style="bold")
        for v in t.values:
            rt.add_column(format_value(v), justify="right")
        rt.add_column("Δmax", justify="right")
        for i, seed in enumerate(t.seeds):
            rt.add_row(format_value(seed), *[score(x) for x in t.scores[i]],
                       delta(t.delta_max_per_seed[i], t.within_noise_per_seed[i]),
                       end_section=i == len(t.seeds) - 1)
        rt.add_row("Δmax", *[delta(d, w) for d, w in zip(t.delta_max_per_value, t.within_noise_per_value)], "")
        tables.append(rt)
    lines = [Columns(tables, padding=(1, 3)), Text(_footer(sheet, digits), style="bold"),
             Text(NOISE_NOTE, style="dim")]
    lines += [Text(n, style="yellow") for n in _notes(sheet, lambda s: f"  {s}") if n]
    return Group(*lines)


def figure(sheet: Sheet, path_stem: str | Path, digits: int = 2, dpi: int = 150) -> list[Path]:
    """A heatmap laid out like the paper's sheet, saved as `path_stem`.png and `path_stem`.svg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    if not sheet.tables:
        raise MMTrackError("the sheet has no tables to draw; the design has no axes")
    lo, hi = _score_range(sheet)
    dhi = _delta_max(sheet)
    widths = [len(t.values) + 1 for t in sheet.tables]
    n_rows = max(len(t.seeds) for t in sheet.tables) + 1
    fig = Figure(figsize=(0.85 * sum(widths) + 2.2, 0.42 * n_rows + 2.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(sheet.tables), width_ratios=widths, squeeze=False)[0]
    im_s = im_d = None
    for ax, t in zip(axes, sheet.tables):
        S, V = t.scores.shape
        grid_s = np.full((S + 1, V + 1), np.nan)
        grid_s[:S, :V] = t.scores
        grid_d = np.full((S + 1, V + 1), np.nan)
        grid_d[:S, V] = t.delta_max_per_seed
        grid_d[S, :V] = t.delta_max_per_value
        blank = np.full((S + 1, V + 1), np.nan)
        blank[:S, :V] = np.where(np.isnan(t.scores), 1.0, np.nan)
        ax.imshow(np.ma.masked_invalid(blank), cmap=ListedColormap(["#e6e6e6"]), aspect="auto")
        im_s = ax.imshow(np.ma.masked_invalid(grid_s), cmap=SCORE_CMAP, vmin=lo, vmax=hi, aspect="auto")
        im_d = ax.imshow(np.ma.masked_invalid(grid_d), cmap=DELTA_CMAP, vmin=0.0, vmax=dhi, aspect="auto")
        within = np.full((S + 1, V + 1), False)
        within[:S, V] = [bool(w) for w in t.within_noise_per_seed]
        within[S, :V] = [bool(w) for w in t.within_noise_per_value]
        for r in range(S + 1):
            for c in range(V + 1):
                if r == S and c == V:
                    continue
                x, cmap, vmin, vmax = ((grid_s[r, c], SCORE_CMAP, lo, hi) if r < S and c < V
                                       else (grid_d[r, c], DELTA_CMAP, 0.0, dhi))
                if math.isnan(x):
                    ax.text(c, r, MISSING, ha="center", va="center", fontsize=8, color="#888888")
                    continue
                _, fg = _colour(cmap, x, vmin, vmax)
                label = _fmt(x, digits) + (WITHIN_NOISE_MARK if within[r, c] else "")
                ax.text(c, r, label, ha="center", va="center", fontsize=8, color=fg)
        ax.axvline(V - 0.5, color="white", lw=3)
        ax.axhline(S - 0.5, color="white", lw=3)
        labels = [format_value(v) for v in t.values] + ["Δmax"]
        long = max(map(len, labels)) > 8  # e.g. trivialaugment, wide_resnet50_2: tilt instead of overlapping
        ax.set_xticks(range(V + 1), labels, fontsize=8, rotation=25 if long else 0, ha="right" if long else "center")
        ax.set_yticks(range(S + 1), [format_value(s) for s in t.seeds] + ["Δmax"], fontsize=8)
        ax.tick_params(length=0)
        ax.set_title(t.axis, fontsize=10)
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0].set_ylabel(f"{sheet.design.seed_param} (changing random seeds)", fontsize=9)
    fig.colorbar(im_s, ax=list(axes), fraction=0.02, pad=0.01, label=f"{sheet.metric} ({sheet.unit})")
    fig.colorbar(im_d, ax=list(axes), fraction=0.02, pad=0.01, label="Δmax (pp)")
    fig.suptitle(f"Multiplicity sheet: {sheet.metric}" + (f" — {sheet.experiment}" if sheet.experiment else ""),
                 fontsize=11)
    fig.supxlabel(_footer(sheet, digits) + "\n" + NOISE_NOTE, fontsize=8)
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [Path(f"{stem}.png"), Path(f"{stem}.svg")]
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", UserWarning)  # constrained layout's "not applied" notes on tiny sheets
        fig.savefig(paths[0], dpi=dpi)
        fig.savefig(paths[1])
    return paths


# --------------------------------------------------------------------------------------------------------
# Summary across metrics
# --------------------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = ("metric", "delta_max_all", "ratio_to_acc", "top_axis", "top_axis_delta_max", "noise_floor_all")


def summary(runs: pd.DataFrame, design: Design, metrics: Sequence[str], experiment: str = "") -> pd.DataFrame:
    """One row per metric: Δmax^all, its ratio to accuracy's Δmax^all (NaN without `acc`), the axis whose
    table holds the largest Δmax (over its rows and columns) with that Δmax, and the noise floor of Δmax^all."""
    rows = []
    sheets = {m: build_sheet(runs, m, design, experiment) for m in metrics}
    for metric, sheet in sheets.items():
        top_axis, top = None, math.nan
        for t in sheet.tables:
            d = np.r_[t.delta_max_per_seed, t.delta_max_per_value]
            d = d[~np.isnan(d)]
            if len(d) and (math.isnan(top) or d.max() > top):
                top_axis, top = t.axis, float(d.max())
        rows.append({"metric": sheet.metric, "delta_max_all": sheet.delta_max_all, "top_axis": top_axis,
                     "top_axis_delta_max": top,
                     "noise_floor_all": math.nan if sheet.noise_floor_all is None else sheet.noise_floor_all})
    acc = math.nan
    if "acc" in sheets:
        acc = sheets["acc"].delta_max_all
    elif "metrics.acc" in runs.columns:
        acc = build_sheet(runs, "acc", design, experiment).delta_max_all
    df = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c != "ratio_to_acc"])
    df.insert(2, "ratio_to_acc", df["delta_max_all"] / acc if acc and not math.isnan(acc) else math.nan)
    return df


def _summary_cells(df: pd.DataFrame, digits: int) -> list[list[str]]:
    out = []
    for r in df.itertuples(index=False):
        out.append([str(r.metric), _fmt(r.delta_max_all, digits),
                    MISSING if pd.isna(r.ratio_to_acc) else f"{r.ratio_to_acc:.1f}×",
                    MISSING if r.top_axis is None else str(r.top_axis), _fmt(r.top_axis_delta_max, digits),
                    _fmt(r.noise_floor_all, digits)])
    return out


_SUMMARY_HEADERS = ["metric", "Δmax^all (pp)", "× acc", "top axis", "its Δmax (pp)", "noise floor (pp)"]


def render_summary(df: pd.DataFrame, fmt: str, digits: int = 2) -> str:
    """The summary table as csv, markdown, latex, html or json (strict: NaN -> null)."""
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return json.dumps(_jsonable(df.to_dict(orient="records")), indent=2, ensure_ascii=False,
                          allow_nan=False) + "\n"
    cells = _summary_cells(df, digits)
    if fmt == "markdown":
        lines = ["| " + " | ".join(_SUMMARY_HEADERS) + " |", "|---|" + "---:|---:|---|---:|---:|"]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in cells]
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        head = ["metric", r"$\Delta^{all}_{\max}$", r"$\times$ acc", "top axis", r"its $\Delta_{\max}$",
                "noise floor"]
        lines = [r"\begin{tabular}{lrrlrr}", r"\hline", " & ".join(head) + r" \\", r"\hline"]
        lines += [" & ".join(latex_escape(c).replace("×", r"$\times$").replace(MISSING, "--") for c in row)
                  + r" \\" for row in cells]
        return "\n".join(lines + [r"\hline", r"\end{tabular}"]) + "\n"
    if fmt == "html":
        esc = html_lib.escape
        rows = ["<tr>" + "".join(f"<th>{esc(h)}</th>" for h in _SUMMARY_HEADERS) + "</tr>"]
        rows += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in cells]
        return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f"<title>Multiplicity summary</title>\n<style>{_HTML_STYLE}</style>\n</head>\n<body>\n"
                "<h1>Multiplicity summary</h1>\n<table>\n" + "\n".join(rows) + "\n</table>\n</body>\n</html>\n")
    raise MMTrackError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def rich_summary(df: pd.DataFrame, digits: int = 2):
    """The summary table for a terminal."""
    from rich.table import Table as RichTable

    rt = RichTable(title="Multiplicity per metric (Δmax^all)")
    for h in _SUMMARY_HEADERS:
        if h == "metric":  # metric names are the point of the table: never cut them
            rt.add_column(h, justify="left", no_wrap=True, min_width=max(map(len, df["metric"]), default=6))
        else:
            rt.add_column(h, justify="left" if h == "top axis" else "right")
    for row in _summary_cells(df, digits):
        rt.add_row(*row)
    return rt
