"""The analysis layer: numbers computed from a runs table (``mlflow.search_runs`` format), nothing drawn or written.

``cells`` decides which run fills which cell of a sheet, ``sheet`` computes per metric Δmax, noise floors (``noise``),
prediction disagreement and axis effects (``effects``) and their summary; ``selection`` simulates model selection and the
multiplicity left on unseen metrics; ``multiplicity`` measures prediction multiplicity from stored predictions. Both return dataclasses and DataFrames that ``mmtrack.report`` renders. This layer imports pandas, numpy,
scipy (and Optuna's public API for the Pareto front, lazily), never torch, MLflow, matplotlib or rich, so it can be
used and tested without a training stack or a tracking server."""

from mmtrack.analysis.audit import Audit, build_audit
from mmtrack.analysis.cells import Cells, Design, assign_cells, choose_design, infer_design, sheet_metrics
from mmtrack.analysis.champion import Champion, champion
from mmtrack.analysis.effects import AxisEffect, axis_effect, top_axis
from mmtrack.analysis.ensembles import EnsembleFindings, ensemble_comparison, ensemble_findings
from mmtrack.analysis.multiplicity import Multiplicity, contested_examples, multiplicity, vote_shares
from mmtrack.analysis.noise_floor import noise_floor
from mmtrack.analysis.run_table import finished_run_ids
from mmtrack.analysis.selection import (
    RangeStats,
    Selection,
    SelectionOutcome,
    SelectionReport,
    analyse,
    default_unseen,
    select_pareto,
    select_top,
    select_within,
    top_count,
)
from mmtrack.analysis.sheet import Sheet, Table, build_sheet, disagreement, sheet_stats, summary

__all__ = [
    "Audit",
    "build_audit",
    "finished_run_ids",
    "AxisEffect",
    "Champion",
    "champion",
    "Multiplicity",
    "axis_effect",
    "contested_examples",
    "ensemble_comparison",
    "ensemble_findings",
    "EnsembleFindings",
    "multiplicity",
    "top_axis",
    "vote_shares",
    "Cells",
    "Design",
    "RangeStats",
    "Selection",
    "SelectionOutcome",
    "SelectionReport",
    "Sheet",
    "Table",
    "analyse",
    "assign_cells",
    "build_sheet",
    "choose_design",
    "default_unseen",
    "disagreement",
    "infer_design",
    "noise_floor",
    "select_pareto",
    "select_top",
    "select_within",
    "sheet_metrics",
    "sheet_stats",
    "summary",
    "top_count",
]
