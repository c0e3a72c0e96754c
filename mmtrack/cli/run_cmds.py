"""`mmtrack train` and `mmtrack evaluate`: one configuration as one MLflow run; more metrics on logged runs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape as esc
from rich.table import Table

from mmtrack.cli._app import app, console, err, fmt_metric, metrics_table, quiet
from mmtrack.cli._options import (
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
def train(
    dataset: Annotated[
        str, typer.Option(metavar="NAME", help="Dataset name (`mmtrack datasets` lists them).")
    ] = "digits-skewed",
    arch: Annotated[str, typer.Option(metavar="ARCH", help="resnet18 | resnet50 | wide_resnet50_2")] = "resnet18",
    width: Annotated[
        float, typer.Option(metavar="FLOAT", help="Channel-count factor (1 = torchvision's widths).")
    ] = 0.125,
    lr: Annotated[float, typer.Option(metavar="FLOAT", help="Learning rate.")] = 0.1,
    batch_size: Annotated[int, typer.Option(metavar="INTEGER", help="Batch size.")] = 128,
    augment: Annotated[
        str, typer.Option(metavar="AUGMENT", help="randaugment | trivialaugment | none")
    ] = "randaugment",
    optimizer: Annotated[str, typer.Option(metavar="OPTIMIZER", help="sgd | adam")] = "sgd",
    epochs: Annotated[int, typer.Option(metavar="INTEGER", help="Training epochs.")] = 20,
    seed: Annotated[int, typer.Option(metavar="INTEGER", help="The one seed behind all randomness.")] = 0,
    image_size: Annotated[
        Optional[int], typer.Option(metavar="PIXELS", help="Image size (default: the dataset's).")
    ] = None,
    experiment: Annotated[
        Optional[str], typer.Option(metavar="NAME", help="MLflow experiment (default: the dataset name).")
    ] = None,
    intervention: InterventionOpt = None,
    pgd_steps: PgdSteps = 10,
    pgd_max_examples: PgdMaxExamples = 500,
    noise_draws: NoiseDraws = 5,
    intervention_predictions: InterventionPredictions = False,
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
):
    """Train and evaluate one configuration as one MLflow run."""
    from mmtrack import settings as env
    from mmtrack import tracking
    from mmtrack.config import RunConfig
    from mmtrack.data import load_dataset
    from mmtrack.interventions import check_available
    from mmtrack.run import run_config

    quiet()
    cfg = RunConfig(
        dataset=dataset,
        arch=arch,
        width=width,
        lr=lr,
        batch_size=batch_size,
        augment=augment,
        optimizer=optimizer,
        epochs=epochs,
        seed=seed,
        image_size=image_size,
    )
    ivs = parse_interventions(intervention)
    settings = eval_settings(pgd_steps, pgd_max_examples, noise_draws, intervention_predictions)
    uri = tracking.resolve_uri(tracking_uri)  # before MLFLOW_RUN_ID is taken out of the environment
    launcher = env.take_mlflow_run_id()  # `mlflow run` created this run for us
    launcher_uri = env.mlflow_tracking_uri() or uri
    client = tracking.connect(uri)
    data = load_dataset(cfg.dataset, data_dir, cfg.image_size)  # missing data: fail before any experiment exists
    check_available(ivs, data)
    name = experiment or dataset
    adopt = launcher if launcher and tracking.can_adopt(client, launcher, name) else None
    exp_id = None if adopt else tracking.experiment_id(client, name, create=True)
    console.print(f"[bold]{esc(cfg.run_name)}[/] on {esc(dataset)} (config {cfg.hash})")
    result = run_config(
        cfg,
        client,
        exp_id,
        ivs,
        settings,
        data=data,
        run_id=adopt,
        on_epoch=lambda s: console.print(
            f"  epoch {s.epoch + 1}/{cfg.epochs}  loss {s.train_loss:.4f}  "
            f"acc {100 * s.train_acc:.2f}%  ({s.seconds:.1f}s)"
        ),
    )
    console.print(metrics_table(result.metrics, f"run {result.run_id}"))
    for name, error in result.failed_interventions.items():
        err.print(f"[yellow]warning:[/] intervention {esc(name)} failed: {esc(error)}")
    exp_id = exp_id or tracking.get_run(client, result.run_id).info.experiment_id
    if launcher and not adopt:  # the launcher run (other store, or the Default experiment) points to the real one
        tracking.point_launcher(launcher_uri, launcher, uri, name, result.run_id)
    console.print(
        f"run {result.run_id} FINISHED in experiment {esc(name)} of {esc(uri)}\n"
        f"open it: {esc(tracking.open_hint(uri, exp_id, result.run_id))}"
    )


@app.command()
def evaluate(
    run_id: Annotated[
        Optional[str], typer.Option(metavar="RUN_ID", help="The run whose logged model to evaluate.")
    ] = None,
    experiment: Annotated[
        Optional[str], typer.Option(metavar="NAME", help="Evaluate every FINISHED run of this experiment.")
    ] = None,
    intervention: InterventionOpt = None,
    pgd_steps: PgdSteps = 10,
    pgd_max_examples: PgdMaxExamples = 500,
    noise_draws: NoiseDraws = 5,
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
    from mmtrack.evaluate_run import evaluate_run

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
