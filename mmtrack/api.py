"""The Python API for notebooks and scripts: an experiment's runs, its sheets, a selection, the one-page audit.

    import mmtrack

    exp = mmtrack.open_experiment("digits-skewed")          # runs table + study, from the tracking store
    sheet = exp.sheet("acc/group/skew/gs-minority")          # a Sheet (the study's design)
    print(mmtrack.render(sheet, "markdown"))                 # or "json", "csv", "latex", "html"
    sel = exp.select(by=["acc/ood/digits-warped"], unseen=["acc/group/color/gray"], tops=[50])
    print(mmtrack.render(sel, "markdown"))
    exp.runs                                                 # the runs table (pandas, mlflow.search_runs format)

Everything else (`analysis`, `report`, `tracking`, ...) stays importable for more control; this module only wires
them together, exactly as the `mmtrack` commands do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mmtrack import analysis, tracking
from mmtrack.errors import MMTrackError


@dataclass
class Experiment:
    """One experiment of the tracking store: its runs (report runs left out) and the study that made them."""

    name: str
    experiment_id: str
    runs: pd.DataFrame
    study: dict | None
    client: Any = field(repr=False)
    rashomon: Any = None  # the analysis.rashomon.RashomonSet the runs were restricted to (None: every run)

    @property
    def design(self) -> analysis.Design:
        return analysis.choose_design(self.runs, self.study)

    def predictions(self, run_ids: Sequence[str] | None = None, population: str = "test") -> dict[str, pd.DataFrame]:
        """The stored predictions of the FINISHED runs (or of `run_ids`) on `population`: `test`, `group` (the
        group evaluation set), `ood/<set>`, or with `eval.intervention_predictions` `output_noise/<λ>`,
        `input_noise/<λ>`, `pgd_linf/<δ>`; read once then cached locally. Runs without them are left out."""
        ids = list(run_ids) if run_ids is not None else analysis.finished_run_ids(self.runs)
        return tracking.load_predictions(self.client, ids, population=population)

    def sheet(self, metric: str, predictions: bool = False) -> analysis.Sheet:
        """The multiplicity sheet of `metric` (with prediction disagreement when `predictions`)."""
        cells = analysis.assign_cells(self.runs, self.design, self.name)
        preds = (
            {r: df["pred"].to_numpy() for r, df in self.predictions(cells.run_ids()).items()} if predictions else None
        )
        return analysis.sheet_stats(cells, metric, predictions=preds)

    def sheets(self, metrics: Sequence[str] | None = None) -> list[analysis.Sheet]:
        """Every acc* sheet (or those of `metrics`), the cells assigned once."""
        cells = analysis.assign_cells(self.runs, self.design, self.name)
        return [analysis.sheet_stats(cells, m) for m in analysis.sheet_metrics(self.runs, metrics)]

    def summary(self, metrics: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per metric (Δmax^all, ratio to accuracy, top axis), exactly as `mmtrack sheet --summary`:
        the ratio is to accuracy's Δmax^all even when `metrics` leaves `acc` out."""
        cells = analysis.assign_cells(self.runs, self.design, self.name)
        return analysis.summary(
            [analysis.sheet_stats(cells, m) for m in analysis.sheet_metrics(self.runs, metrics)], cells
        )

    def select(
        self,
        by: Sequence[str],
        unseen: Sequence[str] | None = None,
        tops: Sequence[float] = (75, 50),
        within: Sequence[float] = (),
        pareto: bool = False,
        predictions: bool = False,
        reference: str | None = None,
    ) -> analysis.SelectionReport:
        """The model-selection experiment (with prediction multiplicity of each set when `predictions`)."""
        preds = None
        if predictions:
            preds = {r: df["pred"].to_numpy() for r, df in self.predictions().items()}
            reference = reference or analysis.assign_cells(self.runs, self.design, self.name).reference_run()
        return analysis.analyse(
            self.runs,
            list(by),
            list(unseen) if unseen else None,
            tops=tops,
            within=within,
            pareto=pareto,
            experiment=self.name,
            predictions=preds,
            reference=reference,
        )

    def ensembles(self, size: int | None = None) -> pd.DataFrame:
        """The runs of the experiment's ensembles (`mmtrack ensemble [--size K]`, experiment `<name>-ensembles[-kK]`):
        the frame `mmtrack sheet --ensembles` assigns to cells, one row per ensemble, `params.seed` = its draw."""
        from mmtrack.analysis.ensembles import experiment_name

        return open_experiment(experiment_name(self.name, size), self.client.tracking_uri).runs

    def audit(self, **options: Any) -> analysis.Audit:
        """Everything `mmtrack report` shows, as data (options: by, unseen, tops, reference, metrics)."""
        preds, groups = self.predictions(), self.predictions(population="group")
        return analysis.build_audit(self.runs, self.design, self.name, self.study, preds, groups, **options)


def open_experiment(
    name: str,
    tracking_uri: str | None = None,
    refresh: bool = False,
    rashomon: float | None = None,
    rashomon_metric: str = "acc",
) -> Experiment:
    """The experiment `name` of the tracking store (--tracking-uri / $MLFLOW_TRACKING_URI / the local store). With
    `rashomon` ε, only its ε-Rashomon set: the FINISHED runs within ε points of the best `rashomon_metric`
    (`Experiment.rashomon` says which fell out); every sheet, summary, selection and audit is then of that set."""
    client = tracking.connect(tracking_uri)
    exp_id = tracking.experiment_id(client, name)
    if refresh:
        tracking.drop_cache()
    runs = tracking.load_runs(client, exp_id)
    column = tracking.column(tracking.REPORT_TAG)
    if column in runs:
        runs = runs[runs[column].isna()]
    if runs.empty:
        raise MMTrackError(
            f"experiment {name!r} has no finished runs yet; run `mmtrack sweep` or "
            "`mmtrack train --experiment ...` first"
        )
    rs = None
    if rashomon is not None:
        from mmtrack.analysis import rashomon as rashomon_mod

        rs = rashomon_mod.rashomon_set(runs, rashomon, rashomon_metric)
        runs = rashomon_mod.within(runs, rs)
    return Experiment(name, exp_id, runs, tracking.experiment_study(client, exp_id), client, rs)
