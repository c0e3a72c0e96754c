"""Option types and option parsing shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mmtrack.errors import MMTrackError
from mmtrack.interventions.specs import EvalSettings

EVAL = EvalSettings()  # the eval options' defaults are EvalSettings'

TrackingUri = Annotated[
    Optional[str],
    typer.Option(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the local store under tracking/).",
    ),
]
DataDir = Annotated[
    Optional[str],
    typer.Option(
        "--data-dir", metavar="DIR", help="Root folder of real datasets (default: $MMTRACK_DATA, else ./data)."
    ),
]
InterventionOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--intervention",
        "-i",
        metavar="SPEC",
        help="Intervention spec, repeatable or ';'-separated, e.g. pgd_linf:0.005,0.01 "
        "output_noise:5 group:race/asian ood:fairface mia. Default: all defaults.",
    ),
]
PgdSteps = Annotated[int, typer.Option(metavar="INTEGER", help="PGD iterations.")]
PgdMaxExamples = Annotated[int, typer.Option(metavar="INTEGER", help="Test images attacked by PGD (fixed subset).")]
NoiseDraws = Annotated[int, typer.Option(metavar="INTEGER", help="Seeded noise draws averaged per noise metric.")]
StudyArg = Annotated[
    str,
    typer.Argument(
        metavar="STUDY", help="Study file (YAML), or a name: ./studies/NAME.yaml, else a preset (`mmtrack study list`)."
    ),
]
ExperimentOpt = Annotated[str, typer.Option(metavar="NAME", help="MLflow experiment holding the study's runs.")]
RefreshOpt = Annotated[bool, typer.Option("--refresh", help="Drop the local runs cache first.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", metavar="FILE", help="Write the output to this file.")]

ReferenceOpt = Annotated[
    Optional[str],
    typer.Option(
        metavar="RUN_ID",
        help="Reference model of prediction multiplicity (default: the default configuration's first seed).",
    ),
]


def parse_interventions(specs: list[str] | None):
    from mmtrack.interventions import DEFAULT_SPECS, parse

    if not specs or specs == ["default"]:
        return parse(DEFAULT_SPECS)
    flat = [s for spec in specs for s in spec.split(";") if s.strip()]
    return parse(DEFAULT_SPECS if flat == ["default"] else flat)


InterventionPredictions = Annotated[
    bool,
    typer.Option(
        "--intervention-predictions",
        help="Also store each example's predictions under output/input noise and PGD "
        "(predictions/<kind>/<value>.parquet).",
    ),
]


def eval_settings(pgd_steps: int, pgd_max_examples: int, noise_draws: int, intervention_predictions: bool = False):
    if min(pgd_steps, pgd_max_examples, noise_draws) <= 0:  # named as the user typed them
        raise MMTrackError("--pgd-steps, --pgd-max-examples and --noise-draws must be positive")
    return EvalSettings(
        pgd_steps=pgd_steps,
        pgd_max_examples=pgd_max_examples,
        noise_draws=noise_draws,
        intervention_predictions=intervention_predictions,
    )


ServerWaitOpt = Annotated[
    Optional[float],
    typer.Option(
        "--server-wait",
        metavar="SECONDS",
        help="How long a worker waits for an unreachable tracking server or Optuna storage (a restart) before it "
        "stops and hands its configuration back; training metrics are kept meanwhile, and a model trained by then "
        "is kept in $MMTRACK_SPOOL for the rerun (default $MMTRACK_SERVER_WAIT, 600).",
    ),
]

DevicesOpt = Annotated[
    Optional[str],
    typer.Option(
        metavar="LIST",
        help="Devices to train on, e.g. cuda:0,cuda:1: --workers-per-device workers on each (replaces "
        "--workers; default: one device, $MMTRACK_DEVICE or CUDA when present).",
    ),
]
WorkersPerDeviceOpt = Annotated[
    int, typer.Option(metavar="INTEGER", help="Workers on each of --devices (stacks trained at once per device).")
]

RashomonOpt = Annotated[
    Optional[float],
    typer.Option(
        "--rashomon",
        metavar="EPS",
        help="Only the ε-Rashomon set: the models whose clean accuracy (or --rashomon-metric) is within EPS "
        "points of the best; sheets, summaries, selections and reports are then of that set.",
    ),
]
RashomonMetricOpt = Annotated[
    str, typer.Option("--rashomon-metric", metavar="METRIC", help="The metric the Rashomon set is taken on.")
]
