"""Model selection under multiplicity: does a checklist of specifications remove it on unseen criteria?

This is the "Model Selection" experiment of Ganesh (WACV 2024, §4; the paper's §5 as summarised for this project). From a pool of
models trained with different hyperparameters and seeds, keep only those that satisfy a set of *selection*
("seen") metrics, then measure how much multiplicity is left on *unseen* metrics: the spread
``Δmax = max − min`` (in percentage points) of each unseen metric over the selected models, compared with the
spread over all models ("before").

Three selection rules, all on metrics where higher is better:

* ``top``: the paper's rule. A model is kept only if it is in the top k% on **every** selection metric (an
  intersection of per-metric top-k% sets, no absolute thresholds). For a metric that ``n`` runs have, the top
  ``ceil(k·n/100)`` runs are kept (the paper does not say how k% of 45 is rounded; ``rounding="floor"``
  reproduces the 17 models at k=75% counted in its Fig. 9, ``ceil`` gives 18), plus every run tied with the
  last kept score.
* ``within``: a Rashomon set in the sense of Ganesh et al. (AIES 2025, Definition 1) with one ε per metric,
  anchored on the best run: keep runs whose score is within ``eps`` percentage points of the best run on every
  selection metric, i.e. ``100·m ≥ 100·best − eps`` (with a 1e-9 tolerance for float equality).
* ``pareto``: the non-dominated set (maximisation) over the selection metrics, computed with Optuna's
  multi-objective machinery (``Study.best_trials``). Semantics in Optuna 5.0
  (``optuna/study/_multi_objective.py``): run A dominates run B iff A ≥ B on every metric and A > B on at
  least one; the front is every run that no other run dominates. Duplicated points are *all* kept (Optuna
  deduplicates with ``np.unique`` and maps the result back to every trial), runs tied on one metric but worse
  on another are dominated, and with a single selection metric the front is every run tied at the best score.

Only FINISHED runs take part. A run lacking a selection metric cannot be ranked on it, so it is never
selected; it is listed in ``excluded`` (run id -> missing metrics) and in the warnings. Missing unseen metrics
are reported and left out of the statistics, never treated as zero. Metric values are fractions in [0, 1]
(MLflow ``metrics.<name>`` columns); reported accuracies (``acc``, ``acc/...``) are in percentage points (× 100),
any other metric named explicitly in its own unit (``mmtrack.metrics``).

Default unseen metrics: every accuracy under intervention (``acc`` and ``acc/...``) except the selection
metrics. That includes overall ``acc`` (whose range among survivors the paper also quotes). Training curves,
timings (``seconds/...``) and ``mia/*`` scores are not accuracies; name them with ``unseen`` to see them.

The functions here are pure: they take the runs table (``mlflow.search_runs`` format) and never talk to MLflow.
The report keeps the per-run unseen values it summarises (``SelectionReport.values``), so tables and figures are
drawn from it alone (``mmtrack.report``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from mmtrack.analysis.multiplicity import Multiplicity, multiplicity
from mmtrack.analysis.run_table import (
    FINISHED,
    PP_DECIMALS,
    available_metrics,
    check_metrics,
    check_runs,
    finished,
    jsonable,
    metric_values,
    scaled,
    strip_metric,
)
from mmtrack.errors import MMTrackError

TOLERANCE = 1e-9  # float-equality tolerance for ties and within-eps comparisons (on fractions / pp)

__all__ = [
    "FINISHED",
    "PP_DECIMALS",
    "TOLERANCE",
    "RangeStats",
    "Rule",
    "Selection",
    "SelectionOutcome",
    "SelectionReport",
    "analyse",
    "available_metrics",
    "default_unseen",
    "select_pareto",
    "select_top",
    "select_within",
    "top_count",
]

Rule = Literal["top", "within", "pareto"]


@dataclass
class Selection:
    """The runs kept by one selection rule. ``k`` is set for ``top``, ``eps`` for ``within``."""

    rule: Rule
    k: float | None
    eps: float | None
    run_ids: list[str]
    n_selected: int
    excluded: dict[str, list[str]] = field(default_factory=dict)  # run id -> missing selection metrics

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``top 75%``, ``within 0.5 pp``, ``pareto``."""
        if self.rule == "top":
            return f"top {self.k:g}%"
        if self.rule == "within":
            return f"within {self.eps:g} pp"
        return "pareto"

    @property
    def key(self) -> str:
        """The label as one word for metric keys: ``top75``, ``within0.5pp``, ``pareto``."""
        return self.label.replace(" ", "").replace("%", "")


@dataclass
class RangeStats:
    """Spread of one metric over a set of runs, in percentage points; ``n`` runs have the metric."""

    min: float | None
    max: float | None
    delta_max: float | None
    n: int

    def to_dict(self, with_n: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"min": self.min, "max": self.max, "delta_max": self.delta_max}
        if with_n:
            out["n"] = self.n
        return out


@dataclass
class SelectionOutcome:
    """One selection and the spread of each unseen metric over the runs it kept."""

    selection: Selection
    unseen: dict[str, RangeStats]
    multiplicity: Multiplicity | None = None  # prediction multiplicity of the kept runs (with predictions)


@dataclass
class SelectionReport:
    """Result of :func:`analyse`: unseen-metric spread before selection and after each selection."""

    experiment: str
    by: list[str]
    unseen: list[str]
    n_runs: int  # FINISHED runs in the pool ("before")
    before: dict[str, RangeStats]
    selections: list[SelectionOutcome]
    excluded: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Every FINISHED run's unseen values (index run id, one column per unseen metric; pp for accuracies, NaN where
    # missing): what the statistics summarise, and what a figure draws. Not part of to_dict().
    values: pd.DataFrame = field(default_factory=pd.DataFrame, compare=False, repr=False)
    multiplicity: Multiplicity | None = None  # prediction multiplicity of all FINISHED runs (None: no predictions)

    def groups(self) -> list[tuple[str, int, pd.DataFrame]]:
        """(label, number of runs, their unseen values) for "before", then each selection."""
        return [("before", self.n_runs, self.values)] + [
            (o.selection.label, o.selection.n_selected, self.values.loc[o.selection.run_ids]) for o in self.selections
        ]

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-ready dict (no NaN: missing values are None), values in percentage points."""
        selections = []
        for outcome in self.selections:
            sel = outcome.selection
            entry: dict[str, Any] = {"rule": sel.rule}
            if sel.rule == "top":
                entry["k"] = sel.k
            elif sel.rule == "within":
                entry["eps"] = sel.eps
            entry["n_selected"] = sel.n_selected
            entry["run_ids"] = list(sel.run_ids)
            entry["unseen"] = {m: s.to_dict(with_n=False) for m, s in outcome.unseen.items()}
            if outcome.multiplicity is not None:
                entry["prediction_multiplicity"] = outcome.multiplicity.to_dict()
            selections.append(entry)
        return jsonable(
            {
                "experiment": self.experiment,
                "by": list(self.by),
                "unseen": list(self.unseen),
                "before": {m: s.to_dict(with_n=True) for m, s in self.before.items()},
                "prediction_multiplicity": None if self.multiplicity is None else self.multiplicity.to_dict(),
                "selections": selections,
                "excluded": {run_id: list(missing) for run_id, missing in self.excluded.items()},
                "warnings": list(self.warnings),
            }
        )


# --------------------------------------------------------------------------------------------- helpers


def _prepare(runs: pd.DataFrame, by: Sequence[str]) -> tuple[list[str], pd.DataFrame, dict[str, list[str]]]:
    """Validate ``by``; return it cleaned, the FINISHED runs' ``by`` values and the runs missing some."""
    check_runs(runs)
    by = check_metrics(runs, by, "selection (by)")
    if not by:
        raise MMTrackError("no selection metric given; pass at least one metric name in `by`")
    values = metric_values(finished(runs), by)
    return by, values, _missing(values)


def _missing(values: pd.DataFrame) -> dict[str, list[str]]:
    """Run id -> sorted names of the metrics it lacks (only runs lacking at least one)."""
    mask = values.isna()
    lacking = mask.any(axis=1)
    return {
        run_id: sorted(values.columns[row].tolist())
        for run_id, row in zip(values.index[lacking], mask.to_numpy()[lacking.to_numpy()])
    }


def _selection(rule: Rule, keep: pd.Series, excluded: dict[str, list[str]], **param: float) -> Selection:
    run_ids = sorted(keep.index[keep.to_numpy()].tolist())
    return Selection(
        rule=rule,
        k=param.get("k"),
        eps=param.get("eps"),
        run_ids=run_ids,
        n_selected=len(run_ids),
        excluded=excluded,
    )


# --------------------------------------------------------------------------------------------- rules


def top_count(k: float, n: int, rounding: Literal["ceil", "floor"] = "ceil") -> int:
    """How many of ``n`` runs make the top ``k`` percent (before ties): ceil (or floor) of k·n/100."""
    x = k * n / 100.0
    return int(math.floor(x + TOLERANCE)) if rounding == "floor" else int(math.ceil(x - TOLERANCE))


def select_top(
    runs: pd.DataFrame, by: Sequence[str], k: float, rounding: Literal["ceil", "floor"] = "ceil"
) -> Selection:
    """Runs in the top ``k``% of FINISHED runs on every ``by`` metric (higher is better), ties at the cut kept."""
    if not 0 < k <= 100:
        raise MMTrackError(f"top-k percentage must be in (0, 100], got {k}")
    if rounding not in ("ceil", "floor"):
        raise MMTrackError(f"rounding must be 'ceil' or 'floor', got {rounding!r}")
    by, values, excluded = _prepare(runs, by)
    keep = pd.Series(True, index=values.index)
    for metric in by:
        col = values[metric]
        scores = np.sort(col.dropna().to_numpy())[::-1]
        cut = top_count(k, len(scores), rounding)
        if cut == 0:
            keep &= False
            continue
        threshold = scores[cut - 1]
        keep &= (col >= threshold - TOLERANCE).fillna(False)  # NaN >= x is False: missing runs dropped
    return _selection("top", keep, excluded, k=float(k))


def select_within(runs: pd.DataFrame, by: Sequence[str], eps: float) -> Selection:
    """Runs within ``eps`` percentage points of the best FINISHED run on every ``by`` metric."""
    if not eps >= 0:
        raise MMTrackError(f"eps (percentage points) must be >= 0, got {eps}")
    by, values, excluded = _prepare(runs, by)
    pp = scaled(values)
    best = pp.max(axis=0, skipna=True)
    keep = pp.ge(best - eps - TOLERANCE, axis=1).all(axis=1)
    keep &= ~values.isna().any(axis=1)
    return _selection("within", keep, excluded, eps=float(eps))


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[Any]:
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield optuna
    finally:
        optuna.logging.set_verbosity(previous)


def select_pareto(runs: pd.DataFrame, by: Sequence[str]) -> Selection:
    """Non-dominated FINISHED runs on the ``by`` metrics (maximisation), via Optuna's ``best_trials``.

    Duplicated points are all kept; see the module docstring for the exact dominance relation.
    """
    by, values, excluded = _prepare(runs, by)
    complete = values.dropna()
    keep = pd.Series(False, index=values.index)
    if len(complete):
        with _quiet_optuna() as optuna:
            study = optuna.create_study(directions=["maximize"] * len(by))
            study.add_trials(
                [
                    optuna.trial.create_trial(
                        values=[float(v) for v in row],
                        state=optuna.trial.TrialState.COMPLETE,
                        user_attrs={"run_id": run_id},
                    )
                    for run_id, row in zip(complete.index, complete.to_numpy())
                ]
            )
            front = {t.user_attrs["run_id"] for t in study.best_trials}
        keep = pd.Series(values.index.isin(list(front)), index=values.index)
    return _selection("pareto", keep, excluded)


# --------------------------------------------------------------------------------------------- analysis


def _range_stats(values: pd.DataFrame) -> dict[str, RangeStats]:
    """Per column: min, max, max − min (percentage points for accuracies, else the metric's own unit) and the
    count of non-missing values."""
    pp = scaled(values)
    lo, hi, n = pp.min(axis=0), pp.max(axis=0), pp.notna().sum(axis=0)
    lo, hi = lo.round(PP_DECIMALS), hi.round(PP_DECIMALS)  # drop float noise such as 55.00000000000001
    out = {}
    for metric in values.columns:
        if n[metric] == 0:
            out[metric] = RangeStats(None, None, None, 0)
        else:
            low, high = float(lo[metric]), float(hi[metric])
            out[metric] = RangeStats(low, high, round(high - low, PP_DECIMALS), int(n[metric]))
    return out


def default_unseen(runs: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """Every accuracy under intervention (``acc``, ``acc/...``) except the selection metrics."""
    by_set = {strip_metric(b) for b in by}
    return [m for m in available_metrics(runs) if m not in by_set and (m == "acc" or m.startswith("acc/"))]


def analyse(
    runs: pd.DataFrame,
    by: Sequence[str],
    unseen: Sequence[str] | None = None,
    tops: Sequence[float] = (75, 50),
    within: Sequence[float] = (),
    pareto: bool = False,
    experiment: str = "",
    rounding: Literal["ceil", "floor"] = "ceil",
    predictions: Mapping[str, np.ndarray] | None = None,
    reference: str | None = None,
) -> SelectionReport:
    """Select runs with every requested rule and report each unseen metric's spread before and after; with
    `predictions` ({run id: predicted labels}), also the prediction multiplicity of each set against `reference`
    (a run id; default: none, contested rate only)."""
    by, by_values, excluded = _prepare(runs, by)
    unseen = default_unseen(runs, by) if unseen is None else check_metrics(runs, unseen, "unseen")
    fin = finished(runs)
    if fin.empty:
        statuses = ", ".join(sorted(runs["status"].astype(str).unique())) or "no runs at all"
        raise MMTrackError(f"no FINISHED runs to select from (run statuses: {statuses}); finish some runs first")

    warnings: list[str] = []
    n_other = len(runs) - len(fin)
    if n_other:
        warnings.append(f"{n_other} run(s) not FINISHED were ignored")
    names = dict(zip(fin["run_id"].astype(str), fin.get("run_name", fin["run_id"]).astype(str)))
    for run_id, missing in excluded.items():
        warnings.append(
            f"run {run_id} ({names.get(run_id, '')}) lacks selection metric(s) {', '.join(missing)}: never selected"
        )
    if rounding == "floor":
        warnings.append("top-k cut uses floor(k*n/100) runs per metric (default is ceil)")

    unseen_values = metric_values(fin, unseen)
    before = _range_stats(unseen_values)
    for metric, stats in before.items():
        if stats.n < len(fin):
            warnings.append(f"unseen metric {metric} missing in {len(fin) - stats.n} of {len(fin)} runs")

    selections = [select_top(runs, by, k, rounding) for k in tops]
    selections += [select_within(runs, by, eps) for eps in within]
    if pareto:
        selections.append(select_pareto(runs, by))

    outcomes = []
    for sel in selections:
        chosen = unseen_values.loc[sel.run_ids]
        stats = _range_stats(chosen)
        for metric, s in stats.items():
            if s.n < sel.n_selected:
                warnings.append(
                    f"unseen metric {metric} missing in {sel.n_selected - s.n} of {sel.n_selected} runs "
                    f"selected by {sel.label}"
                )
        outcomes.append(
            SelectionOutcome(sel, stats, multiplicity(predictions, sel.run_ids, reference) if predictions else None)
        )

    return SelectionReport(
        experiment=experiment,
        by=by,
        unseen=list(unseen),
        n_runs=len(fin),
        before=before,
        selections=outcomes,
        excluded=excluded,
        warnings=warnings,
        values=scaled(unseen_values),
        multiplicity=multiplicity(predictions, list(fin["run_id"].astype(str)), reference) if predictions else None,
    )
