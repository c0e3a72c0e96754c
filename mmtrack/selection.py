"""Model selection under multiplicity: does a checklist of specifications remove it on unseen criteria?

This is the "Model Selection" experiment of Ganesh (WACV 2024, §4; /work/shared/paper.md §5). From a pool of
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
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mmtrack.metrics import is_accuracy, scale
from mmtrack.errors import MMTrackError

METRIC_PREFIX = "metrics."
FINISHED = "FINISHED"
TOLERANCE = 1e-9  # float-equality tolerance for ties and within-eps comparisons (on fractions / pp)
PP_DECIMALS = 10  # reported percentage points are rounded to this many decimals
FORMATS = ("csv", "markdown", "latex", "html", "json")

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
            selections.append(entry)
        return _strict(
            {
                "experiment": self.experiment,
                "by": list(self.by),
                "unseen": list(self.unseen),
                "before": {m: s.to_dict(with_n=True) for m, s in self.before.items()},
                "selections": selections,
                "excluded": {run_id: list(missing) for run_id, missing in self.excluded.items()},
                "warnings": list(self.warnings),
            }
        )


# --------------------------------------------------------------------------------------------- helpers


def _strict(value: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _strip(name: str) -> str:
    return name[len(METRIC_PREFIX) :] if name.startswith(METRIC_PREFIX) else name


def available_metrics(runs: pd.DataFrame) -> list[str]:
    """Metric names (without the ``metrics.`` prefix) present as columns of the runs table, sorted."""
    return sorted(_strip(c) for c in runs.columns if str(c).startswith(METRIC_PREFIX))


def _check_runs(runs: pd.DataFrame) -> None:
    missing = [c for c in ("run_id", "status") if c not in runs.columns]
    if missing:
        raise MMTrackError(
            f"the runs table lacks column(s) {', '.join(missing)}; pass a table in mlflow.search_runs format"
        )


def _check_metrics(runs: pd.DataFrame, names: Sequence[str], what: str) -> list[str]:
    """Strip prefixes, deduplicate (keeping order) and check every name is a metric column."""
    if isinstance(names, str):
        names = [names]
    cleaned = list(dict.fromkeys(_strip(n) for n in names))
    existing = available_metrics(runs)
    unknown = [n for n in cleaned if n not in existing]
    if unknown:
        raise MMTrackError(
            f"unknown {what} metric(s) {', '.join(unknown)}; metrics in these runs: "
            f"{', '.join(existing) if existing else '(none)'}"
        )
    return cleaned


def _finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.loc[runs["status"].astype(str) == FINISHED]


def _scaled(values: pd.DataFrame) -> pd.DataFrame:
    """Accuracies (``acc``, ``acc/...``) in percentage points; other metrics in their own unit."""
    return values.mul(pd.Series({c: scale(c) for c in values.columns}), axis=1)


def _values(runs: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Metric values (fractions) indexed by run id; NaN where a run lacks a metric."""
    cols = [METRIC_PREFIX + m for m in metrics]
    values = runs[cols].apply(pd.to_numeric, errors="coerce").astype(float)
    values.columns = list(metrics)
    values.index = runs["run_id"].astype(str).to_numpy()
    return values


def _prepare(runs: pd.DataFrame, by: Sequence[str]) -> tuple[list[str], pd.DataFrame, dict[str, list[str]]]:
    """Validate ``by``; return it cleaned, the FINISHED runs' ``by`` values and the runs missing some."""
    _check_runs(runs)
    by = _check_metrics(runs, by, "selection (by)")
    if not by:
        raise MMTrackError("no selection metric given; pass at least one metric name in `by`")
    values = _values(_finished(runs), by)
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
    pp = _scaled(values)
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
    pp = _scaled(values)
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
    by_set = {_strip(b) for b in by}
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
) -> SelectionReport:
    """Select runs with every requested rule and report each unseen metric's spread before and after."""
    by, by_values, excluded = _prepare(runs, by)
    unseen = default_unseen(runs, by) if unseen is None else _check_metrics(runs, unseen, "unseen")
    finished = _finished(runs)
    if finished.empty:
        statuses = ", ".join(sorted(runs["status"].astype(str).unique())) or "no runs at all"
        raise MMTrackError(f"no FINISHED runs to select from (run statuses: {statuses}); finish some runs first")

    warnings: list[str] = []
    n_other = len(runs) - len(finished)
    if n_other:
        warnings.append(f"{n_other} run(s) not FINISHED were ignored")
    names = dict(zip(finished["run_id"].astype(str), finished.get("run_name", finished["run_id"]).astype(str)))
    for run_id, missing in excluded.items():
        warnings.append(
            f"run {run_id} ({names.get(run_id, '')}) lacks selection metric(s) {', '.join(missing)}: "
            "never selected"
        )
    if rounding == "floor":
        warnings.append("top-k cut uses floor(k*n/100) runs per metric (default is ceil)")

    unseen_values = _values(finished, unseen)
    before = _range_stats(unseen_values)
    for metric, stats in before.items():
        if stats.n < len(finished):
            warnings.append(f"unseen metric {metric} missing in {len(finished) - stats.n} of {len(finished)} runs")

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
        outcomes.append(SelectionOutcome(sel, stats))

    return SelectionReport(
        experiment=experiment,
        by=by,
        unseen=list(unseen),
        n_runs=len(finished),
        before=before,
        selections=outcomes,
        excluded=excluded,
        warnings=warnings,
    )


# --------------------------------------------------------------------------------------------- output


def _cell(stats: RangeStats) -> str:
    if stats.min is None:
        return "n/a"
    return f"{stats.min:.2f}–{stats.max:.2f} (Δ {stats.delta_max:.2f})"


def column_labels(report: SelectionReport) -> list[str]:
    """``before (n=…)`` then one label per selection, e.g. ``top 75% (n=17)``."""
    return [f"before (n={report.n_runs})"] + [
        f"{o.selection.label} (n={o.selection.n_selected})" for o in report.selections
    ]


def wide_table(report: SelectionReport) -> pd.DataFrame:
    """One row per unseen metric; one text column per group: ``min–max (Δ x.xx)``."""
    labels = column_labels(report)
    rows = [
        [metric, _cell(report.before[metric])] + [_cell(o.unseen[metric]) for o in report.selections]
        for metric in report.unseen
    ]
    return pd.DataFrame(rows, columns=["metric", *labels])


def long_table(report: SelectionReport) -> pd.DataFrame:
    """Tidy numeric table: one row per (group, unseen metric), values in percentage points."""
    groups: list[tuple[str, str, float | None, float | None, int, dict[str, RangeStats]]] = [
        ("before", "before", None, None, report.n_runs, report.before)
    ]
    for o in report.selections:
        s = o.selection
        groups.append((s.label, s.rule, s.k, s.eps, s.n_selected, o.unseen))
    rows = [
        {
            "selection": label,
            "rule": rule,
            "k": k,
            "eps": eps,
            "n_selected": n_sel,
            "metric": metric,
            "min": stats[metric].min,
            "max": stats[metric].max,
            "delta_max": stats[metric].delta_max,
            "n": stats[metric].n,
        }
        for label, rule, k, eps, n_sel, stats in groups
        for metric in report.unseen
    ]
    columns = ["selection", "rule", "k", "eps", "n_selected", "metric", "min", "max", "delta_max", "n"]
    return pd.DataFrame(rows, columns=columns)


def _markdown(table: pd.DataFrame) -> str:
    def esc(text: Any) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "–": "--", "Δ": r"$\Delta$"}


def _latex(table: pd.DataFrame, caption: str) -> str:
    def esc(text: Any) -> str:
        return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))

    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{l" + "c" * (len(table.columns) - 1) + "}",
        r"\toprule",
        " & ".join(esc(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(esc(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{esc(caption)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _html(table: pd.DataFrame, caption: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>\n"
        for row in table.itertuples(index=False)
    )
    return (
        f'<table class="mmtrack-selection">\n<caption>{html.escape(caption)}</caption>\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"
    )


def _caption(report: SelectionReport) -> str:
    where = f" in {report.experiment}" if report.experiment else ""
    return (
        f"Spread (min–max, Δmax; accuracies in percentage points) of unseen metrics{where} before and after "
        f"model selection on {', '.join(report.by)}"
    )


def render(report: SelectionReport, fmt: str) -> str:
    """The report as text: ``csv`` (tidy numeric, one row per group × metric), ``markdown``/``latex``/``html``
    (one row per unseen metric, one column per group) or ``json`` (:meth:`SelectionReport.to_dict`)."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        long_table(report).to_csv(buf, index=False)
        return buf.getvalue()
    if fmt == "markdown":
        return _markdown(wide_table(report))
    if fmt == "latex":
        return _latex(wide_table(report), _caption(report))
    if fmt == "html":
        return _html(wide_table(report), _caption(report))
    raise MMTrackError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")


def rich_table(report: SelectionReport) -> Any:
    """A ``rich.table.Table``: one row per unseen metric, columns "before" then each selection."""
    from rich.table import Table

    table = Table(title=_caption(report))
    table.add_column("metric", style="bold", no_wrap=True)  # metric names and numbers are never cut
    for label in column_labels(report):
        table.add_column(label, justify="center", overflow="fold", min_width=11)
    for row in wide_table(report).itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    return table


def figure(report: SelectionReport, runs: pd.DataFrame, path_stem: str | Path) -> list[Path]:
    """Fig. 9-style strip plot: one panel per unseen metric; x = before, then each selection; every run's value
    (percentage points) is a dot with a small deterministic jitter, and the min–max range is a bar with caps.
    Writes ``<path_stem>.png`` and ``<path_stem>.svg`` and returns both paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _check_runs(runs)
    metrics = list(report.unseen)
    if not metrics:
        raise MMTrackError("the report has no unseen metric to plot; pass --unseen or log more metrics")
    finished = _finished(runs)
    values = _scaled(_values(finished, _check_metrics(runs, metrics, "unseen")))
    groups = [(f"before\n(n={len(values)})", values.index.tolist())] + [
        (f"{o.selection.label}\n(n={o.selection.n_selected})", o.selection.run_ids) for o in report.selections
    ]
    unknown = sorted({r for _, ids in groups[1:] for r in ids} - set(values.index))
    if unknown:
        raise MMTrackError(
            f"run(s) {', '.join(unknown[:5])} of the report are not FINISHED runs of this table; "
            "plot with the same runs table the report was built from"
        )

    n_cols = min(4, len(metrics))
    n_rows = math.ceil(len(metrics) / n_cols)
    panel_width = max(3.2, 1.0 * len(groups) + 0.6)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(panel_width * n_cols, 3.6 * n_rows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes.ravel(), metrics):
        for x, (_, ids) in enumerate(groups):
            y = values.loc[ids, metric].dropna().to_numpy()
            if y.size == 0:
                continue
            jitter = rng.uniform(-0.12, 0.12, size=y.size)
            ax.scatter(x + jitter, y, s=12, alpha=0.7, color=f"C{x}", zorder=3)
            ax.errorbar(x + 0.25, (y.max() + y.min()) / 2, yerr=(y.max() - y.min()) / 2, color="black",
                        capsize=4, linewidth=1.2, zorder=2)
            ax.annotate(f"Δ {y.max() - y.min():.2f}", (x + 0.25, y.max()), textcoords="offset points",
                        xytext=(0, 4), ha="center", fontsize=7)
        ax.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=8)
        ax.set_xlim(-0.5, len(groups) - 0.5)
        ax.set_title(metric, fontsize=9)
        ax.set_ylabel("percentage points" if is_accuracy(metric) else "own unit", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.12)
    for ax in axes.ravel()[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle(f"Selection on {', '.join(report.by)}", fontsize=10)
    fig.tight_layout()

    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [Path(f"{stem}.png"), Path(f"{stem}.svg")]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths
