"""The ε-Rashomon set (Marx, Calmon & Ustun, ICML 2020; Semenova, Rudin & Parr 2022): the models whose clean
accuracy (or another metric) is within ε percentage points of the best model's. The paper's premise is "many models
of similar accuracy"; restricted to that set, every sheet, summary, selection and report measures how far the trust
metrics still spread among near-equal models, not how far plain accuracy does. Pure pandas."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmtrack.analysis.run_table import FINISHED, finished_mask, metric_column
from mmtrack.errors import MMTrackError
from mmtrack.metrics import is_accuracy, scale
from mmtrack.tags import RUN_NAME_TAG, column


@dataclass
class RashomonSet:
    """Which FINISHED runs are within `epsilon` points of the best `metric` (both in the metric's own unit: pp for
    accuracies), and which fell out (run id, name, score)."""

    metric: str
    epsilon: float
    best: float
    kept: list[str]
    dropped: list[tuple[str, str, float]] = field(default_factory=list)

    def note(self, shown: int = 6) -> str:
        """One line: how many stayed, and which fell out (the worst first)."""
        total = len(self.kept) + len(self.dropped)
        unit = " pp" if is_accuracy(self.metric) else ""
        head = (
            f"Rashomon set: {len(self.kept)} of {total} models within {self.epsilon:g}{unit} of the best "
            f"{self.metric} ({self.best:.2f}{unit})"
        )
        if not self.dropped:
            return head + "; none fell out"
        worst = sorted(self.dropped, key=lambda d: d[2])
        listed = ", ".join(f"{name} ({score:.2f})" for _, name, score in worst[:shown])
        more = f" and {len(worst) - shown} more" if len(worst) > shown else ""
        return f"{head}; fell out: {listed}{more}"

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "epsilon": self.epsilon,
            "best": self.best,
            "kept": len(self.kept),
            "dropped": [{"run_id": r, "name": n, "score": s} for r, n, s in self.dropped],
        }


def rashomon_set(runs: pd.DataFrame, epsilon: float, metric: str = "acc") -> RashomonSet:
    """The ε-Rashomon set of the FINISHED runs of `runs` on `metric` (ε in the metric's unit: pp for accuracies).
    A FINISHED run without the metric falls out."""
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not epsilon >= 0 or math.isinf(epsilon):
        raise MMTrackError(f"--rashomon must be a number of points >= 0, got {epsilon!r}")
    col = metric_column(runs, metric)
    metric = col.removeprefix("metrics.")
    fin = runs[finished_mask(runs)]
    scores = pd.to_numeric(fin[col], errors="coerce") * scale(metric)
    if scores.notna().sum() == 0:
        raise MMTrackError(f"no FINISHED run has {metric!r}: the Rashomon set needs it (--rashomon-metric)")
    best = float(scores.max())
    inside = (scores >= best - epsilon - 1e-9).to_numpy()
    names = fin[column(RUN_NAME_TAG)] if column(RUN_NAME_TAG) in fin else fin["run_id"]
    ids = fin["run_id"].astype(str).to_numpy()
    dropped = [
        (rid, str(name), float(score))
        for rid, name, score, keep in zip(ids, names, scores.to_numpy(), inside)
        if not keep
    ]
    return RashomonSet(metric, float(epsilon), best, [r for r, keep in zip(ids, inside) if keep], dropped)


def within(runs: pd.DataFrame, rs: RashomonSet) -> pd.DataFrame:
    """`runs` without the FINISHED runs outside the set (other runs, e.g. FAILED ones, stay as they were)."""
    out = set(r for r, _, _ in rs.dropped)
    keep = ~(runs["run_id"].astype(str).isin(out) & (runs["status"] == FINISHED))
    return runs[keep.to_numpy()]


def spread_by_epsilon(runs: pd.DataFrame, metrics: Sequence[str], rashomon_metric: str = "acc") -> pd.DataFrame:
    """Δmax^all (max − min over the models of the set, in the metric's unit) of each of `metrics` against ε, at
    every ε where a model joins the set (0: the best model alone; the last: every model): how much of the spread
    survives among near-equal models. Columns: epsilon, models, metric, delta_max_all."""
    fin = runs[finished_mask(runs)]
    col = metric_column(runs, rashomon_metric)
    base = (pd.to_numeric(fin[col], errors="coerce") * scale(col.removeprefix("metrics."))).dropna()
    gaps = np.unique(np.round(float(base.max()) - base.to_numpy(), 10)) if len(base) else np.array([0.0])
    rows = []
    for eps in gaps:
        rs = rashomon_set(runs, float(eps), rashomon_metric)
        kept = fin[fin["run_id"].astype(str).isin(rs.kept)]
        for m in metrics:
            col = metric_column(runs, m)
            values = pd.to_numeric(kept[col], errors="coerce").dropna() * scale(col.removeprefix("metrics."))
            spread = float(values.max() - values.min()) if len(values) > 1 else math.nan
            rows.append({"epsilon": float(eps), "models": len(rs.kept), "metric": m, "delta_max_all": spread})
    return pd.DataFrame(rows, columns=["epsilon", "models", "metric", "delta_max_all"])
