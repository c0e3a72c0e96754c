"""`mmtrack train`: one configuration as one MLflow run. Its training options are generated from the one
declaration of each training parameter (`training.config.PARAMS`: name, type, default, allowed values, help), so a
new recipe choice is an option here, a `-P` of `mlflow run` and a study key without more code."""

from __future__ import annotations

import inspect
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
from mmtrack.training.config import PARAMS, RunConfig, coerce

METAVARS = {int: "INTEGER", float: "FLOAT", bool: "BOOL", str: "TEXT"}


def _option(param) -> inspect.Parameter:
    """The typer option of one training parameter: text parsed by `coerce` (so `mlflow run -P nesterov=true`,
    `-P epochs=20.0` and an empty optional value all work), then validated by RunConfig."""
    allowed = f" One of: {', '.join(param.choices)}." if param.choices else ""
    metavar = param.name.upper() if param.choices else METAVARS[param.type]
    default = (
        None if param.default is None else str(param.default).lower() if param.type is bool else str(param.default)
    )
    return inspect.Parameter(
        param.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[
            Optional[str], typer.Option(metavar=metavar, help=param.help + allowed, show_default=True)
        ],
    )


def train(
    experiment: Optional[str] = None,
    intervention: Optional[list[str]] = None,
    pgd_steps: int = EVAL.pgd_steps,
    pgd_max_examples: int = EVAL.pgd_max_examples,
    noise_draws: int = EVAL.noise_draws,
    intervention_predictions: bool = False,
    data_dir: Optional[str] = None,
    tracking_uri: Optional[str] = None,
    **training,
):
    """Train and evaluate one configuration as one MLflow run."""
    from mmtrack import settings as env
    from mmtrack import tracking
    from mmtrack.data import load_dataset
    from mmtrack.interventions import check_available
    from mmtrack.jobs.train_run import run_config

    quiet()
    cfg = RunConfig(**{name: coerce(name, text) if text is not None else None for name, text in training.items()})
    dataset = cfg.dataset
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


_OTHERS = inspect.signature(train).parameters
train.__signature__ = inspect.Signature(
    [
        *(_option(p) for p in PARAMS),
        inspect.Parameter(
            "experiment",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Optional[str], typer.Option(metavar="NAME", help="MLflow experiment (default: the dataset name).")
            ],
        ),
        *(
            _OTHERS[name].replace(annotation=annotation, kind=inspect.Parameter.KEYWORD_ONLY)
            for name, annotation in (
                ("intervention", InterventionOpt),
                ("pgd_steps", PgdSteps),
                ("pgd_max_examples", PgdMaxExamples),
                ("noise_draws", NoiseDraws),
                ("intervention_predictions", InterventionPredictions),
                ("data_dir", DataDir),
                ("tracking_uri", TrackingUri),
            )
        ),
    ]
)
app.command()(train)
