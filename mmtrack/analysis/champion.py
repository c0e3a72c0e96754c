"""The one model a selection ships (`mmtrack select --register`): which run of a selection report, and the
model-version tags that say how it was chosen.

The rule: within the report's LAST selection (the strictest rule asked for: the `tops` in order, then `within`,
then `pareto`; `--top 75,50` ships from the top 50%), the run with the best mean of the `by` metrics as logged
(fractions for accuracies); ties go to the lowest run id. An empty selection ships nothing (one-line error).
Pure: it reads the runs table and the report, never MLflow."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from mmtrack.analysis.run_table import finished, jsonable, metric_values
from mmtrack.analysis.selection import TOLERANCE, SelectionOutcome, SelectionReport
from mmtrack.errors import MMTrackError
from mmtrack.tags import (
    SELECTION_BY_TAG,
    SELECTION_EXPERIMENT_TAG,
    SELECTION_RULE_TAG,
    SELECTION_SCORE_TAG,
    SELECTION_SIZE_TAG,
    SELECTION_SPREAD_TAG,
)

__all__ = ["Champion", "champion"]


@dataclass
class Champion:
    """Run `run_id` of `outcome`, the model to register."""

    experiment: str
    by: list[str]
    outcome: SelectionOutcome  # the report's last (strictest) selection
    run_id: str
    score: float  # the run's mean of the `by` metrics as logged (fractions for accuracies)
    rule: str  # the rule in words, e.g. "top 50% on acc/ood/x": with the run, the registered version's identity

    @property
    def spread(self) -> dict[str, float | None]:
        """Δmax (pp; a non-accuracy in its own unit) of each unseen metric among the selected runs."""
        return {m: s.delta_max for m, s in self.outcome.unseen.items()}

    def tags(self) -> dict[str, str]:
        """The model-version tags: the rule, the experiment, the `by` metrics, the spread left, the set's size
        and the model's score."""
        return {
            SELECTION_RULE_TAG: self.rule,
            SELECTION_EXPERIMENT_TAG: self.experiment,
            SELECTION_BY_TAG: ",".join(self.by),
            SELECTION_SPREAD_TAG: json.dumps(jsonable(self.spread), ensure_ascii=False),
            SELECTION_SIZE_TAG: str(self.outcome.selection.n_selected),
            SELECTION_SCORE_TAG: f"{self.score:.6g}",
        }


def champion(runs: pd.DataFrame, report: SelectionReport, rounding: str = "ceil", pool: str | None = None) -> Champion:
    """The model to ship from `report`, made from `runs` (the rule in the module docstring). `rounding` is the
    report's top-k rounding and `pool` how the runs were narrowed before selecting (an ε-Rashomon set): both are
    part of the rule's words."""
    if not report.selections:
        raise MMTrackError("no selection rule to register a model from; give --top, --within or --pareto")
    outcome = report.selections[-1]
    sel = outcome.selection
    if not sel.run_ids:
        raise MMTrackError(
            f"{sel.label} on {', '.join(report.by)} selected no run, so there is no model to register; loosen the "
            "last rule (a larger --top or --within) or choose other --by metrics"
        )
    means = metric_values(finished(runs), report.by).loc[sel.run_ids].mean(axis=1)
    best = float(means.max())
    run_id = min(str(r) for r, m in means.items() if m >= best - TOLERANCE)
    rule = f"{sel.label} on {','.join(report.by)}"
    if sel.rule == "top" and rounding == "floor":
        rule += " (floor)"
    if pool:
        rule += f" among {pool}"
    return Champion(report.experiment, list(report.by), outcome, run_id, float(means[run_id]), rule)
