"""`mmtrack evaluate`: more intervention metrics on logged runs (each model reloaded from its safe weights)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape as esc
from rich.table import Table

from mmtrack.cli._app import app, console, err, fmt_metric, quiet
from mmtrack.cli._options import (
    EVAL,
    DataDir,
    InterventionOpt,
    InterventionPredictions,
    NoiseDraws,
    PgdMaxExamples,
    PgdSteps,
    TrackingUri,
    eval_settings,
    parse_interventions,
)
from mmtrack.errors import MMTrackError


@app.command()
def evaluate(
    run_id: Annotated[
        Optional[str], typer.Option(metavar="RUN_ID", help="The run whose logged model to evaluate.")
    ] = None,
    experiment: Annotated[
        Optional[str], typer.Option(metavar="NAME", help="Evaluate every FINISHED run of this experiment.")
    ] = None,
    intervention: InterventionOpt = None,
    pgd_steps: PgdSteps = EVAL.pgd_steps,
    pgd_max_examples: PgdMaxExamples = EVAL.pgd_max_examples,
    noise_draws: NoiseDraws = EVAL.noise_draws,
    intervention_predictions: InterventionPredictions = False,
    trust_pickle: Annotated[
        bool,
        typer.Option(
            "--trust-pickle",
            help="Runs logged before safe weights existed: "
            "load their pickled model (runs code from the store; only for a "
            "store you control; recorded on the run).",
        ),
    ] = False,
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
):
    """Add intervention metrics to already-logged runs (reloads each model; other metrics are untouched)."""
    from mmtrack import tracking
    from mmtrack.jobs.evaluate_run import evaluate_run

    quiet()
    if (run_id is None) == (experiment is None):
        raise MMTrackError("give exactly one of --run-id or --experiment")
    ivs = parse_interventions(intervention)
    settings = eval_settings(pgd_steps, pgd_max_examples, noise_draws, intervention_predictions)
    client = tracking.connect(tracking_uri)
    if run_id:
        names = {run_id: tracking.get_run(client, run_id).info.run_name}
    else:
        exp_id = tracking.experiment_id(client, experiment)
        runs = tracking.search_all_runs(client, exp_id, "attributes.status = 'FINISHED'")
        names = {r.info.run_id: r.info.run_name for r in runs if tracking.REPORT_TAG not in r.data.tags}
        if not names:
            raise MMTrackError(f"experiment {experiment!r} has no FINISHED runs to evaluate")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results, failed = {}, 0
    columns = (
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("", total=len(names))
        for rid, name in sorted(names.items(), key=lambda kv: kv[1] or kv[0]):
            progress.update(task, description=esc(name or rid))
            result = evaluate_run(client, rid, ivs, settings, data_dir, trust_pickle)
            results[rid] = result
            for iv_name, error in result.failed_interventions.items():
                failed += 1
                progress.console.print(
                    f"[yellow]warning:[/] {esc(name or rid)}: intervention {esc(iv_name)} failed: {esc(error)}"
                )
            progress.advance(task)
    metrics = sorted({m for r in results.values() for m in r.metrics}, key=lambda m: (m != "acc", m))
    table = Table(title=f"{len(results)} run(s) evaluated", show_edge=False)
    table.add_column("run")
    for m in metrics:
        table.add_column(esc(m), justify="right")
    for rid, result in sorted(results.items(), key=lambda kv: names[kv[0]] or kv[0]):
        table.add_row(esc(names[rid] or rid), *(fmt_metric(m, result.metrics.get(m)) for m in metrics))
    console.print(table)
    added = sorted({p for r in results.values() for p in r.stored_predictions})
    if added:
        n = sum(1 for r in results.values() if r.stored_predictions)
        console.print(f"stored predictions of {esc(', '.join(added))} for {n} run(s) that lacked them")
    if failed:
        raise typer.Exit(1)
