"""Everything the one-page report says about an experiment, computed once: the study design, every sheet with its
axis effects, the summary, the selection experiment, prediction multiplicity (whole experiment, each
configuration's seeds alone, each fairness group) and the most contested test examples.

Pure: it takes the runs table, the study dict (or None), and the runs' stored predictions as DataFrames
(`index, label, pred, group/<attribute>...`; {} when the runs stored none, None when not asked for), and returns an `Audit` that
`mmtrack.report.audit_page` renders. What cannot be computed is said in `Audit.notes`, one line each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from mmtrack.analysis.cells import Cells, Design, assign_cells, format_value, sheet_metrics
from mmtrack.analysis.ensembles import EnsembleFindings
from mmtrack.analysis.multiplicity import Multiplicity, contested_examples, multiplicity
from mmtrack.analysis.run_table import finished_run_ids
from mmtrack.analysis.selection import SelectionReport, analyse
from mmtrack.analysis.sheet import Sheet, sheet_stats, summary
from mmtrack.errors import MMTrackError

GROUP_PREFIX = "group/"  # predictions columns holding each example's group value


@dataclass
class ConfigMultiplicity:
    """Prediction multiplicity among the seeds of one configuration (multiplicity from the seed alone)."""

    label: str  # "default", "lr=0.05", ...
    run_ids: list[str]
    multiplicity: Multiplicity


@dataclass
class Audit:
    experiment: str
    study: dict | None
    design: Design
    n_runs: int  # FINISHED runs
    sheets: list[Sheet]
    summary: pd.DataFrame
    selection: SelectionReport | None
    reference: str | None  # the reference model of prediction multiplicity
    overall: Multiplicity | None  # over every FINISHED run with predictions
    per_config: list[ConfigMultiplicity] = field(default_factory=list)
    per_group: dict[str, Multiplicity] = field(default_factory=dict)  # "attribute/value" -> over its examples
    # where per_group was measured: "group" (the population the fairness metrics are measured on) or "test"
    group_population: str = "test"
    contested: list[dict] = field(default_factory=list)  # contested_examples(), plus "groups" {attribute: value}
    notes: list[str] = field(default_factory=list)
    ensembles: EnsembleFindings | None = None  # "Does ensembling help?", when the experiment has ensembles
    # with --rashomon: the set the page is of (analysis.rashomon.RashomonSet) and each metric's Δmax^all against ε
    # over every model (analysis.rashomon.spread_by_epsilon)
    rashomon: object | None = None
    rashomon_curve: pd.DataFrame | None = None
    # with --selective: "Which model do I ship?", single models beside ensembles and selective ensembles per group
    # (analysis.shipping.ship_table), and the selective ensembles' level
    shipping: pd.DataFrame | None = None
    selective_alpha: float | None = None

    def to_dict(self) -> dict:
        from mmtrack.analysis.run_table import jsonable

        return jsonable(
            {
                "experiment": self.experiment,
                "study": self.study,
                "n_runs": self.n_runs,
                "summary": self.summary.to_dict(orient="records"),
                "sheets": [s.to_dict() for s in self.sheets],
                "selection": None if self.selection is None else self.selection.to_dict(),
                "prediction_multiplicity": None
                if self.overall is None
                else {
                    "reference": self.reference,
                    "overall": self.overall.to_dict(),
                    "per_config": {c.label: c.multiplicity.to_dict() for c in self.per_config},
                    "per_group": {g: m.to_dict() for g, m in self.per_group.items()},
                    "group_population": self.group_population,
                },
                "contested": self.contested,
                "ensembles": None if self.ensembles is None else self.ensembles.to_dict(),
                **({} if self.shipping is None else {"shipping": self.shipping.to_dict(orient="records")}),
                "notes": self.notes,
            }
        )


def configurations(cells: Cells) -> list[tuple[str, list[str]]]:
    """(label, run ids over the seeds) of each configuration of the design: the default first, then each axis
    value that differs from it."""
    ids = cells.runs["run_id"].astype(str).to_numpy()
    out, seen = [], set()
    for axis, grid in cells.rows.items():
        for j, value in enumerate(cells.design.axes[axis]):
            label = "default" if value == cells.design.default.get(axis) else f"{axis}={format_value(value)}"
            if label in seen:
                continue
            seen.add(label)
            out.append((label, [str(ids[p]) for p in grid[:, j] if p >= 0]))
    return out


def selection_settings(
    study: Mapping | None, by: Sequence[str] | None, unseen: Sequence[str] | None, tops: Sequence[float] | None
) -> tuple[list[str] | None, list[str] | None, list[float]]:
    """--by/--unseen/--top when given, else the study's `selection:` block (by, unseen, top)."""
    block = (study or {}).get("selection") or {}
    by = list(by) if by else list(block.get("by") or []) or None
    unseen = list(unseen) if unseen else (list(block["unseen"]) if block.get("unseen") else None)
    tops = list(tops) if tops else [float(t) for t in block.get("top", (75, 50))]
    return by, unseen, tops


# Long: the report's sections assembled in the order the page shows them, each from one analysis call; the
# function is the table of contents, the statistics live in the functions it calls.
def build_audit(
    runs: pd.DataFrame,
    design: Design,
    experiment: str = "",
    study: Mapping | None = None,
    predictions: Mapping[str, pd.DataFrame] | None = None,
    group_predictions: Mapping[str, pd.DataFrame] | None = None,
    by: Sequence[str] | None = None,
    unseen: Sequence[str] | None = None,
    tops: Sequence[float] | None = None,
    reference: str | None = None,
    metrics: Sequence[str] | None = None,
    top_contested: int = 12,
) -> Audit:
    """The whole audit of an experiment (see the module docstring). `group_predictions` (the runs' predictions
    on the group evaluation set, `predictions/group.parquet`) measure per-group multiplicity on the population
    the fairness metrics are measured on; without them it falls back to the test split's groups, said in a note."""
    notes: list[str] = []
    cells = assign_cells(runs, design, experiment)
    labels = {rid: df["pred"].to_numpy() for rid, df in (predictions or {}).items()}
    metric_names = sheet_metrics(runs, metrics)
    sheets = [sheet_stats(cells, m, predictions=labels or None) for m in metric_names]
    df = summary(sheets, cells)
    finished = finished_run_ids(runs)
    reference = reference or cells.reference_run()
    by, unseen, tops = selection_settings(study, by, unseen, tops)
    selection = None
    if by:
        selection = analyse(
            runs, by, unseen, tops=tops, experiment=experiment, predictions=labels or None, reference=reference
        )
    else:
        notes.append("selection: no selection metrics (give --by, or a `selection:` block with `by:` in the study)")
    audit = Audit(
        experiment,
        dict(study) if study else None,
        cells.design,
        len(finished),
        sheets,
        df,
        selection,
        reference if labels else None,
        None,
        notes=notes,
    )
    missing = [r for r in finished if r not in labels]
    if predictions is None:
        notes.append("prediction multiplicity: not computed (--no-predictions)")
        return audit
    if not labels:
        notes.append(
            "prediction multiplicity: these runs stored no predictions (predictions/test.parquet); "
            "only score-based sections are shown"
        )
        return audit
    if missing:
        notes.append(
            f"prediction multiplicity: {len(missing)} of {len(finished)} FINISHED runs stored no "
            "predictions and are left out"
        )
    with_preds = [r for r in finished if r in labels]
    try:
        audit.overall = multiplicity(labels, with_preds, reference)
    except MMTrackError as exc:
        notes.append(f"prediction multiplicity: {exc.message}")
        return audit
    for label, ids in configurations(cells):
        ids = [r for r in ids if r in labels]
        if len(ids) >= 2:
            audit.per_config.append(ConfigMultiplicity(label, ids, multiplicity(labels, ids, ids[0])))
    _per_group(audit, predictions, group_predictions, with_preds, reference)
    first = predictions[with_preds[0]]
    group_columns = [c for c in first.columns if c.startswith(GROUP_PREFIX)]
    audit.contested = contested_examples(labels, first["label"].to_numpy(), with_preds, top=top_contested)
    for example in audit.contested:
        example["groups"] = {
            c[len(GROUP_PREFIX) :]: first[c].iloc[example["index"]]
            for c in group_columns
            if pd.notna(first[c].iloc[example["index"]])
        }
    return audit


def _per_group(
    audit: Audit,
    predictions: Mapping[str, pd.DataFrame],
    group_predictions: Mapping[str, pd.DataFrame] | None,
    with_preds: list[str],
    reference: str | None,
) -> None:
    """audit.per_group from the group evaluation set's predictions of the runs that stored them (the others left
    out, said in a note), else from the test split's group columns (said in a note)."""
    frames, audit.group_population = predictions, "test"
    stored = [r for r in with_preds if r in (group_predictions or {})]
    if stored:
        frames, audit.group_population = group_predictions, "group"
        if len(stored) < len(with_preds):
            audit.notes.append(
                f"prediction multiplicity per group: {len(with_preds) - len(stored)} of {len(with_preds)} runs "
                "stored no predictions of the group evaluation set (predictions/group.parquet; `mmtrack evaluate "
                "-i group` adds them) and are left out of it"
            )
    elif group_predictions is not None:
        audit.notes.append(
            "prediction multiplicity per group: measured on the test split's examples of each group; these runs "
            "stored no predictions of the group evaluation set, where the fairness metrics are measured "
            "(predictions/group.parquet; `mmtrack evaluate -i group` adds them)"
        )
    ids = stored or with_preds
    labels = {r: frames[r]["pred"].to_numpy() for r in ids}
    first = frames[ids[0]]
    group_columns = [c for c in first.columns if c.startswith(GROUP_PREFIX)]
    if not group_columns:
        audit.notes.append(
            "prediction multiplicity per group: the stored predictions carry no group columns (runs "
            "logged before mmtrack stored them)"
        )
    try:
        for col in group_columns:
            values = first[col]
            for value in sorted(v for v in values.dropna().unique()):
                mask = (values == value).to_numpy()
                audit.per_group[f"{col[len(GROUP_PREFIX) :]}/{value}"] = multiplicity(labels, ids, reference, mask)
    except MMTrackError as exc:
        audit.per_group.clear()
        audit.notes.append(f"prediction multiplicity per group: {exc.message}")


def contested_share_by_group(audit: Audit) -> dict[str, float | None]:
    """Contested rate per group (the question "are minority-group examples contested more often?")."""
    return {g: m.contested for g, m in audit.per_group.items()}


__all__ = [
    "Audit",
    "ConfigMultiplicity",
    "build_audit",
    "configurations",
    "contested_share_by_group",
    "selection_settings",
]
