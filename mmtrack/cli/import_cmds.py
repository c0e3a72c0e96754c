"""`mmtrack import`: models trained elsewhere (safetensors or PyTorch state dicts) logged as runs of an
experiment, ready for `evaluate`, `sheet`, `select`, `report` and `ensemble`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape as esc
from rich.table import Table

from mmtrack.cli._app import app, console, err, fmt_metric, quiet
from mmtrack.cli._options import DataDir, TrackingUri


@app.command("import")
def import_cmd(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE",
            help="A folder of weights files (params from the path: lr=0.05/seed=1.pt), or a CSV with a 'path' "
            "column and one column per param (arch and width columns set those per model).",
        ),
    ],
    experiment: Annotated[str, typer.Option(metavar="NAME", help="Experiment to log the models into.")],
    dataset: Annotated[str, typer.Option(metavar="NAME", help="The dataset the models were trained on.")],
    arch: Annotated[
        Optional[str], typer.Option(metavar="NAME", help="Their architecture (`mmtrack archs`), unless a CSV column.")
    ] = None,
    width: Annotated[
        Optional[float], typer.Option(metavar="FLOAT", help="Width factor of mmtrack's ResNets (default 1).")
    ] = None,
    image_size: Annotated[
        Optional[int], typer.Option(metavar="PX", help="Image size they were trained at (default: the dataset's).")
    ] = None,
    mean: Annotated[
        Optional[str],
        typer.Option(metavar="M[,M,M]", help="Per-channel mean they standardised inputs in [0, 1] with (default 0)."),
    ] = None,
    std: Annotated[
        Optional[str],
        typer.Option(metavar="S[,S,S]", help="Per-channel std they standardised inputs with (default 1)."),
    ] = None,
    seed_param: Annotated[str, typer.Option(metavar="NAME", help="The param that holds each model's seed.")] = "seed",
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
):
    """Log models trained elsewhere as runs of an experiment: checked first, then one run each (clean accuracy,
    test predictions, weights, model); then `mmtrack evaluate --experiment NAME` adds every intervention."""
    from mmtrack import tracking
    from mmtrack.jobs.import_run import import_models

    quiet()
    client = tracking.connect(tracking_uri)
    table = Table(title=f"models of {esc(str(source))} in experiment {esc(experiment)}", show_edge=False)
    for column in ("model", "params", "run", "acc", ""):
        table.add_column(column, justify="right" if column == "acc" else "left")

    def shown(result) -> None:
        err.print(f"{'already imported' if result.skipped else 'imported'} {esc(result.model.label)}")
        table.add_row(
            esc(result.model.label),
            esc(result.model.describe()),
            result.run_id,
            fmt_metric("acc", result.acc),
            "already imported" if result.skipped else "new",
        )

    results = import_models(
        client,
        experiment,
        source,
        dataset,
        arch=arch,
        width=width,
        image_size=image_size,
        seed_param=seed_param,
        mean=mean,
        std=std,
        data_dir=data_dir,
        on_model=shown,
    )
    console.print(table)
    new = sum(not r.skipped for r in results)
    console.print(
        f"{new} model(s) imported, {len(results) - new} already there; next: "
        f"mmtrack evaluate --experiment {esc(experiment)}, then mmtrack sheet --experiment {esc(experiment)}"
    )
