"""`mmtrack select`: model selection over an experiment's runs, and with `--register` the chosen model shipped to
MLflow's Model Registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape as esc

from mmtrack.cli._app import app, console, emit_text, err, experiment_runs, quiet
from mmtrack.cli._options import (
    ExperimentOpt,
    OutOpt,
    RashomonMetricOpt,
    RashomonOpt,
    ReferenceOpt,
    RefreshOpt,
    TrackingUri,
)
from mmtrack.cli.report_cmds import FormatOpt, check_output_format, figure_dir
from mmtrack.errors import MMTrackError
from mmtrack.metrics import is_accuracy

DEFAULT_ALIAS = "champion"


def _predicted_labels(client, run_ids: list[str]):
    """{run id: predicted labels} of the runs that stored predictions (read once, then from the local cache)."""
    from mmtrack import tracking

    return {rid: df["pred"].to_numpy() for rid, df in tracking.load_predictions(client, run_ids).items()}


def _default_reference(runs, study: dict | None, experiment: str) -> str | None:
    """The default configuration's first seed, when the experiment's design can be worked out."""
    from mmtrack import analysis

    try:
        return analysis.assign_cells(runs, analysis.choose_design(runs, study), experiment).reference_run()
    except MMTrackError:  # no design (e.g. runs logged by other tools): reference-free numbers only
        return None


@app.command("select")
def select_cmd(
    experiment: ExperimentOpt,
    by: Annotated[str, typer.Option(metavar="METRICS", help="Selection metrics, comma-separated (higher is better).")],
    top: Annotated[str, typer.Option(metavar="PERCENTS", help="Top-k% rules, comma-separated percentages.")] = "75,50",
    unseen: Annotated[
        Optional[str],
        typer.Option(
            metavar="METRICS",
            help="Unseen metrics, comma-separated (default: every other "
            "accuracy, acc/...; others are shown in their own unit).",
        ),
    ] = None,
    within: Annotated[
        Optional[str],
        typer.Option(
            metavar="EPS",
            help="Rashomon rules: keep runs within EPS points of the best on "
            "every --by metric (comma-separated EPS values).",
        ),
    ] = None,
    pareto: Annotated[bool, typer.Option("--pareto", help="Also keep the Pareto front over the --by metrics.")] = False,
    rounding: Annotated[
        str, typer.Option(metavar="ceil|floor", help="ceil (default) or floor for ⌈k·n/100⌉.")
    ] = "ceil",
    fmt: FormatOpt = "rich",
    out: OutOpt = None,
    figure: Annotated[
        Optional[Path], typer.Option(metavar="DIR", help="Folder for the figure: DIR/selection.png and .svg.")
    ] = None,
    log: Annotated[bool, typer.Option("--log", help="Record table, JSON and figure as a run in MLflow.")] = False,
    register: Annotated[
        Optional[str],
        typer.Option(
            "--register",
            metavar="NAME",
            help="Register the chosen model in MLflow's Model Registry as a new version of NAME, tagged with the "
            "rule, the experiment, the --by metrics and the spread left on the unseen metrics. The chosen model: "
            "among the runs the LAST (strictest) rule keeps (--top 75,50: the top 50%; then --within, then "
            "--pareto), the one with the best mean of the --by metrics (ties: the lowest run id). Rerun with the "
            "same rule, the version of that run is reused (only the alias is set again).",
        ),
    ] = None,
    register_ensemble: Annotated[
        bool,
        typer.Option(
            "--register-ensemble",
            help="With --register: register the ensemble (mean softmax) of every run the last rule keeps instead "
            "of its best model; logged with its model in <experiment>-ensembles-selected (reused when there).",
        ),
    ] = False,
    alias: Annotated[
        Optional[str],
        typer.Option(
            metavar="ALIAS",
            help=f"With --register: the version's alias, models:/NAME@ALIAS (default: {DEFAULT_ALIAS}).",
        ),
    ] = None,
    predictions: Annotated[
        bool, typer.Option(help="Prediction multiplicity of each set from stored predictions.")
    ] = True,
    reference: ReferenceOpt = None,
    rashomon: RashomonOpt = None,
    rashomon_metric: RashomonMetricOpt = "acc",
    refresh: RefreshOpt = False,
    tracking_uri: TrackingUri = None,
):
    """Model selection: keep the runs good on several metrics at once; how much do unseen metrics still vary?"""

    from mmtrack import analysis, report, tracking

    quiet()
    check_output_format(fmt)

    def numbers(text: str | None, what: str) -> list[float]:
        try:
            return [float(x) for x in (text or "").split(",") if x.strip()]
        except ValueError:
            raise MMTrackError(f"{what} takes comma-separated numbers, got {text!r}") from None

    if rounding not in ("ceil", "floor"):
        raise MMTrackError(f"--rounding must be ceil or floor, got {rounding!r}")
    if register_ensemble and register is None:
        raise MMTrackError("--register-ensemble registers the selection's ensemble: give --register NAME too")
    if alias is not None and register is None:
        raise MMTrackError("--alias names the alias of a registered version: give --register NAME too")
    if register is not None:
        tracking.check_registry_names(register, alias or DEFAULT_ALIAS)
    client, exp_id, _study, runs = experiment_runs(experiment, tracking_uri, refresh, rashomon, rashomon_metric)
    by_list = [m.strip() for m in by.split(",") if m.strip()]
    unseen_list = [m.strip() for m in unseen.split(",") if m.strip()] if unseen else None
    preds, ref = None, reference
    if predictions:
        finished = analysis.finished_run_ids(runs)
        if ref is None:
            ref = _default_reference(runs, _study, experiment)
        elif ref not in finished:
            raise MMTrackError(f"--reference {ref} is not a FINISHED run of experiment {experiment!r}")
        preds = _predicted_labels(client, finished) or None
    rep = analysis.analyse(
        runs,
        by_list,
        unseen_list,
        tops=numbers(top, "--top"),
        within=numbers(within, "--within"),
        pareto=pareto,
        experiment=experiment,
        rounding=rounding,
        predictions=preds,
        reference=ref,
    )
    if fmt == "rich" and out is None:
        console.print(report.rich_table(rep))
        for line in rep.warnings:
            err.print(f"[yellow]warning:[/] {esc(line)}")
    else:
        emit_text(report.render(rep, "markdown" if fmt == "rich" else fmt), out)
    if figure is not None or log:
        with figure_dir(figure) as fig_dir:
            figs = report.save_figure(report.selection_figure(rep), fig_dir / "selection")
            if figure is not None:
                err.print(f"wrote {len(figs)} figure files to {esc(str(fig_dir))}")
            if log:
                files, metrics = report.selection_log(rep)
                rep_exp, rid = tracking.log_report(client, experiment, "select", files, figs, metrics)
                err.print(
                    f"logged selection as run {rid} in experiment {esc(experiment)}-reports: "
                    f"{tracking.ui_url(tracking.ui_base(client.tracking_uri), rep_exp, rid)}"
                )
    if register is not None:
        pool = f"the ε-Rashomon set (within {rashomon:g} points on {rashomon_metric})" if rashomon is not None else None
        choice = analysis.champion(runs, rep, rounding, pool)
        if register_ensemble:
            choice = _ensemble_of(client, experiment, choice)
        _ship(client, choice, register, alias or DEFAULT_ALIAS)


def _list_after(anchor: str, command: str) -> None:
    """`mmtrack --help` lists commands as they registered: list `command` right after `anchor` (select stays
    between sheet and report, where it was when report_cmds held it)."""
    cmds = app.registered_commands
    names = [c.name or c.callback.__name__.replace("_", "-") for c in cmds]
    if anchor in names and command in names:
        moved = cmds.pop(names.index(command))
        cmds.insert([c.name or c.callback.__name__.replace("_", "-") for c in cmds].index(anchor) + 1, moved)


_list_after("sheet", "select")


def _ensemble_of(client, experiment: str, choice):
    """`choice` turned into the ensemble of its selection: the ensemble's run (logged with its model when needed),
    its own mean of the --by metrics, and the rule prefixed "ensemble of"."""
    import dataclasses

    from mmtrack import tracking
    from mmtrack.jobs.ensemble_run import shipped_ensemble

    members = sorted(choice.outcome.selection.run_ids)
    if len(members) < 2:
        raise MMTrackError(f"{choice.rule} keeps {len(members)} run: an ensemble needs 2; loosen the last rule")
    err.print(f"ensemble of the {len(members)} selected runs ...")
    run_id, logged = shipped_ensemble(client, experiment, members)
    metrics = tracking.get_run(client, run_id).data.metrics
    scores = [metrics[m] for m in choice.by if m in metrics]
    score = sum(scores) / len(scores) if len(scores) == len(choice.by) else float("nan")
    err.print(f"{'logged' if logged else 'found'} the ensemble as run {run_id}")
    return dataclasses.replace(choice, run_id=run_id, score=score, rule=f"ensemble of {choice.rule}")


def _ship(client, choice, name: str, alias: str) -> None:
    """Register `choice` (an `analysis.Champion`) as a version of `name` with `alias`, and say what was done."""
    from mmtrack import tracking

    done = tracking.register_model(client, name, choice.run_id, alias, choice.tags())
    score = f"{100 * choice.score:.2f}%" if all(is_accuracy(m) for m in choice.by) else f"{choice.score:.4g}"
    spread = ", ".join(
        f"{m} {d:.2f}{' pp' if is_accuracy(m) else ''}" for m, d in choice.spread.items() if d is not None
    )
    url = tracking.version_url(tracking.ui_base(client.tracking_uri), name, done.version)
    chosen = f"run {choice.run_id} ({esc(choice.rule)}: best mean of --by, {score})"
    if done.created:
        err.print(f"registered {chosen} as {esc(name)} version {done.version}, alias @{esc(alias)}: {esc(done.uri)}")
    else:
        err.print(
            f"{esc(name)} version {done.version} already holds {chosen}: no new version; alias @{esc(alias)} set to "
            f"it: {esc(done.uri)}"
        )
    left = f"Δmax left among the {choice.outcome.selection.n_selected} selected runs: {esc(spread)}; " if spread else ""
    err.print(f"  {left}{url}")
