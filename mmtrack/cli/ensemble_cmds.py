"""`mmtrack ensemble`: ensembles of logged runs as first-class models, measured under every intervention."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape as esc
from rich.table import Table

from mmtrack.cli._app import app, console, emit_text, err, experiment_runs, fmt_metric, quiet
from mmtrack.cli._options import DataDir, ExperimentOpt, InterventionOpt, TrackingUri, parse_interventions
from mmtrack.errors import MMTrackError

OF = ("seeds", "configs", "selection")


@app.command()
def ensemble(
    experiment: ExperimentOpt,
    of: Annotated[
        str,
        typer.Option(
            "--of",
            metavar="seeds|configs|selection",
            help="seeds: ensembles of each configuration's seeds; configs: one ensemble per seed of every "
            "configuration's run of that seed; selection: one ensemble of the runs in the top --top % on every "
            "--by metric.",
        ),
    ] = "seeds",
    size: Annotated[
        Optional[int],
        typer.Option(metavar="K", help="Members per ensemble (default: all of a configuration's seeds)."),
    ] = None,
    draws: Annotated[
        int, typer.Option(metavar="N", help="With --size: at most N ensembles of K seeds per configuration.")
    ] = 5,
    runs: Annotated[
        Optional[str], typer.Option(metavar="RUN_ID,...", help="One ensemble of exactly these runs.")
    ] = None,
    by: Annotated[
        Optional[str], typer.Option(metavar="METRIC,...", help="--of selection: metrics to select on.")
    ] = None,
    top: Annotated[float, typer.Option(metavar="PCT", help="--of selection: keep the top PCT % on every --by.")] = 50,
    selective: Annotated[
        Optional[float],
        typer.Option(
            metavar="ALPHA",
            help="Selective ensembles (Black et al. 2022): answer the members' most voted class only where a "
            "binomial test of its votes against the runner-up's rejects at level ALPHA, else abstain; logs "
            "abstain/... and answered_acc/... beside every accuracy (which counts abstentions as errors), into "
            "<ensembles experiment>-selective<ALPHA>. Two-sided: K members answer at all only when 2·0.5^K <= ALPHA.",
        ),
    ] = None,
    intervention: InterventionOpt = None,
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
):
    """Ensembles (mean of softmax) of logged runs, without retraining: each one an MLflow run with the metrics of a
    training run, PGD attacking the ensemble itself. Ensembles of all seeds go to <experiment>-ensembles, of K
    seeds to <experiment>-ensembles-k<K>, of a selection or of --runs to <experiment>-ensembles-selected."""
    from mmtrack import analysis, tracking
    from mmtrack.analysis import ensembles as planning
    from mmtrack.api import open_experiment
    from mmtrack.interventions import DEFAULT_SPECS, EvalSettings, parse
    from mmtrack.jobs import ensemble_run

    quiet()
    if of not in OF:
        raise MMTrackError(f"--of must be one of {', '.join(OF)}, got {of!r}")
    if size is not None and size < 1 or draws < 1:
        raise MMTrackError("--size and --draws must be positive")
    if selective is not None and not 0 < selective < 1:
        raise MMTrackError(f"--selective takes a significance level ALPHA in (0, 1), e.g. 0.05; got {selective:g}")
    exp = open_experiment(experiment, tracking_uri)
    client, study = exp.client, exp.study
    if runs:
        planned = [ensemble_run.explicit(client, [r.strip() for r in runs.split(",") if r.strip()])]
    elif of == "selection":
        if not by:
            raise MMTrackError("--of selection needs --by METRIC,... (and --top PCT)")
        kept = analysis.select_top(exp.runs, [m.strip() for m in by.split(",")], top)
        if kept.n_selected < 2:
            raise MMTrackError(f"the top {top:g}% on {by} keeps {kept.n_selected} run(s); an ensemble needs 2")
        planned = [ensemble_run.explicit(client, kept.run_ids)]
        planned[0].name = f"{kept.label} on {by} · ens{kept.n_selected}"
    elif of == "configs":
        planned = planning.plan_config_ensembles(exp.runs)
        if not planned:
            raise MMTrackError(f"experiment {experiment!r} has no seed with 2+ FINISHED configurations to ensemble")
    else:
        planned = planning.plan_seed_ensembles(exp.runs, size, draws)
        if not planned:
            raise MMTrackError(
                f"experiment {experiment!r} has no configuration with {size or 2}+ FINISHED seeds to ensemble"
            )
    ivs = (
        parse_interventions(intervention) if intervention else parse((study or {}).get("interventions", DEFAULT_SPECS))
    )
    settings = EvalSettings(**(study or {}).get("eval", {}))
    kind = "selected" if runs or of == "selection" else ("configs" if of == "configs" else False)
    name = planning.experiment_name(experiment, None if kind else size, kind, selective)
    ens_study = _ensembles_study(study, name, max(p.draw for p in planned) + 1) if of == "seeds" and not runs else None
    exp_tags = {tracking.STUDY_TAG: ens_study} if ens_study else None
    exp_id = tracking.experiment_id(client, name, create=True, tags=exp_tags)
    done = ensemble_run.existing(client, exp_id)
    todo = [p for p in planned if tuple(p.members) not in done]
    data = ensemble_run.members_data(client, planned[0].members, data_dir) if todo else None
    results = {}
    for p in todo:
        err.print(f"  evaluating {esc(p.name)} ({len(p.members)} members)")
        results[p.name] = ensemble_run.log_ensemble(
            client, exp_id, p, "runs" if runs else of, experiment, data, ivs, settings, alpha=selective
        )
    tracking.mark_changed(client, exp_id)
    _print(results, len(planned) - len(todo), name)
    ui = tracking.ui_base(client.tracking_uri)
    console.print(f"open it: {tracking.ui_url(ui, exp_id)}")


def _ensembles_study(study: dict | None, name: str, draws: int) -> str | None:
    """The study tag of the ensembles experiment: the members' design, its rows the draws (`seed` = draw)."""
    import json

    if not study:
        return None
    return json.dumps({**study, "name": name, "seeds": list(range(draws))})


def _print(results: dict, skipped: int, name: str) -> None:
    metrics = sorted({m for r in results.values() for m in r.metrics if m.startswith("acc")})
    metrics = sorted(metrics, key=lambda m: (m != "acc", m))[:6]
    table = Table(title=f"{len(results)} ensemble(s) logged in {name}", show_edge=False)
    table.add_column("ensemble")
    for m in metrics:
        table.add_column(esc(m), justify="right")
    for label, result in results.items():
        table.add_row(esc(label), *(fmt_metric(m, result.metrics.get(m)) for m in metrics))
    if results:
        console.print(table)
    if skipped:
        console.print(f"{skipped} ensemble(s) already logged, skipped")


# ---- used by `mmtrack sheet --ensembles` and `mmtrack report`


def ensemble_sheets(experiment: str, size: int | None, metrics: list[str], tracking_uri: str | None, refresh: bool):
    """The sheets of `<experiment>-ensembles` (or `-ensembles-k<size>`) for `metrics` (those its runs have)."""
    from mmtrack import analysis
    from mmtrack.analysis.ensembles import experiment_name

    name = experiment_name(experiment, size)
    try:
        _, _, study, runs = experiment_runs(name, tracking_uri, refresh)
    except MMTrackError:
        how = f"mmtrack ensemble --experiment {experiment}" + (f" --size {size}" if size else "")
        raise MMTrackError(f"experiment {experiment!r} has no ensembles {name!r} yet; build them: {how}") from None
    cells = analysis.assign_cells(runs, analysis.choose_design(runs, study), name)
    return [analysis.sheet_stats(cells, m) for m in metrics if f"metrics.{m}" in runs]


def ensemble_findings(experiment, audit, runs, preds, group_preds, tracking_uri, refresh):
    """The report's "Does ensembling help?" when `<experiment>-ensembles` exists (None otherwise)."""
    from mmtrack import analysis, tracking
    from mmtrack.analysis.ensembles import experiment_name

    name = experiment_name(experiment)
    try:
        client, _, study, ens_runs = experiment_runs(name, tracking_uri, refresh)
    except MMTrackError:
        return None  # no ensembles: no section
    cells = analysis.assign_cells(ens_runs, analysis.choose_design(ens_runs, study), name)
    ens_sheets = [analysis.sheet_stats(cells, s.metric) for s in audit.sheets if f"metrics.{s.metric}" in ens_runs]
    ids = analysis.finished_run_ids(ens_runs)
    refs = {"single": audit.reference, "ensemble": cells.reference_run()}  # the default configuration's
    ens_group = tracking.load_predictions(client, ids, population="group") if group_preds else {}
    if ens_group:  # per group on the population the fairness metrics are measured on
        return analysis.ensemble_findings(
            audit.sheets, runs, group_preds, ens_sheets, ens_runs, ens_group, "group", refs
        )
    ens_test = tracking.load_predictions(client, ids) if preds else {}
    return analysis.ensemble_findings(audit.sheets, runs, preds, ens_sheets, ens_runs, ens_test, "test", refs)


def ship_findings(experiment: str, alpha: float, single: dict, population: str, tracking_uri, refresh):
    """The report's "Which model do I ship?": the single models' predictions on `population` beside those of the
    experiment's ensembles (when built) and of its selective ensembles of level `alpha` (required)."""
    from mmtrack import analysis, tracking
    from mmtrack.analysis.ensembles import experiment_name
    from mmtrack.analysis.shipping import ship_table

    if not single:
        raise MMTrackError(f"experiment {experiment!r} has no stored predictions to compare models on")
    selective = f"selective ensembles (α={alpha:g})"
    kinds = {"single models": single}
    for label, name in (
        ("ensembles", experiment_name(experiment)),
        (selective, experiment_name(experiment, alpha=alpha)),
    ):
        try:
            client, _, _, runs = experiment_runs(name, tracking_uri, refresh)
        except MMTrackError:
            if label != selective:
                continue  # no plain ensembles: the comparison goes without them
            raise MMTrackError(
                f"experiment {experiment!r} has no selective ensembles of level {alpha:g} ({name!r}); build them: "
                f"mmtrack ensemble --experiment {experiment} --selective {alpha:g}"
            ) from None
        kinds[label] = tracking.load_predictions(client, analysis.finished_run_ids(runs), population=population)
    classes = max(int(df["label"].max()) for df in single.values()) + 1  # the abstain class follows the labels
    return ship_table(kinds, {selective: classes})


def print_comparison(single, ens_sheets, runs, fmt: str, out) -> None:
    from mmtrack import analysis
    from mmtrack.report.ensemble_report import markdown_ensemble_comparison, rich_ensemble_comparison

    df = analysis.ensemble_comparison(single, ens_sheets, runs)
    if fmt == "rich" and out is None:
        console.print(rich_ensemble_comparison(df))
    elif fmt == "json":
        emit_text(df.to_json(orient="records"), None)
    else:
        emit_text(markdown_ensemble_comparison(df), None)
