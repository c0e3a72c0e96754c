"""`mmtrack train`: one configuration as one MLflow run (its options and their defaults come from `RunConfig`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape as esc

from mmtrack.cli._app import app, console, err, metrics_table, quiet
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
from mmtrack.training.config import ARCHS, AUGMENTS, OPTIMIZERS, RunConfig

DEFAULT = RunConfig()  # every option's default is RunConfig's


@app.command()
def train(
    dataset: Annotated[
        str, typer.Option(metavar="NAME", help="Dataset name (`mmtrack datasets` lists them).")
    ] = DEFAULT.dataset,
    arch: Annotated[str, typer.Option(metavar="ARCH", help=" | ".join(ARCHS))] = DEFAULT.arch,
    width: Annotated[
        float, typer.Option(metavar="FLOAT", help="Channel-count factor (1 = torchvision's widths).")
    ] = DEFAULT.width,
    lr: Annotated[float, typer.Option(metavar="FLOAT", help="Learning rate.")] = DEFAULT.lr,
    batch_size: Annotated[int, typer.Option(metavar="INTEGER", help="Batch size.")] = DEFAULT.batch_size,
    augment: Annotated[str, typer.Option(metavar="AUGMENT", help=" | ".join(AUGMENTS))] = DEFAULT.augment,
    optimizer: Annotated[str, typer.Option(metavar="OPTIMIZER", help=" | ".join(OPTIMIZERS))] = DEFAULT.optimizer,
    epochs: Annotated[int, typer.Option(metavar="INTEGER", help="Training epochs.")] = DEFAULT.epochs,
    seed: Annotated[int, typer.Option(metavar="INTEGER", help="The one seed behind all randomness.")] = DEFAULT.seed,
    image_size: Annotated[
        Optional[int], typer.Option(metavar="PIXELS", help="Image size (default: the dataset's).")
    ] = DEFAULT.image_size,
    experiment: Annotated[
        Optional[str], typer.Option(metavar="NAME", help="MLflow experiment (default: the dataset name).")
    ] = None,
    intervention: InterventionOpt = None,
    pgd_steps: PgdSteps = EVAL.pgd_steps,
    pgd_max_examples: PgdMaxExamples = EVAL.pgd_max_examples,
    noise_draws: NoiseDraws = EVAL.noise_draws,
    intervention_predictions: InterventionPredictions = False,
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
):
    """Train and evaluate one configuration as one MLflow run."""
    from mmtrack import settings as env
    from mmtrack import tracking
    from mmtrack.data import load_dataset
    from mmtrack.interventions import check_available
    from mmtrack.jobs.train_run import run_config

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
