"""`mmtrack archs`: the architectures a study's `arch:` takes, and for one of them on a dataset, whether it takes
the images and whether its seeds train as one stack."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape as esc
from rich.table import Table

from mmtrack.cli._app import app, console
from mmtrack.cli._options import DataDir


@app.command("archs")
def archs_command(
    arch: Annotated[
        Optional[str], typer.Argument(metavar="[ARCH]", help="Check this architecture on --dataset.")
    ] = None,
    dataset: Annotated[str, typer.Option(metavar="NAME", help="The dataset ARCH is checked on.")] = "digits-skewed",
    image_size: Annotated[
        Optional[int], typer.Option(metavar="PIXELS", help="Image size (default: the dataset's).")
    ] = None,
    width: Annotated[float, typer.Option(metavar="FLOAT", help="Width (mmtrack's ResNets only).")] = 0.125,
    data_dir: DataDir = None,
):
    """List the architectures (mmtrack's width-scaled ResNets, torchvision's classification builders, builders
    registered under the entry-point group `mmtrack.architectures`); with ARCH, check it on a dataset: one forward
    pass at its image size, parameters, and whether its seeds train stacked or one at a time."""
    from mmtrack.models import catalog

    if arch is None:
        table = Table(title="architectures (a study's `arch:`)", show_edge=False)
        for column in ("arch", "builder", "width"):
            table.add_column(column)
        for name in catalog.names():
            table.add_row(name, catalog.source(name), "yes" if catalog.has_width(name) else "—")
        console.print(table)
        return
    from mmtrack.data import load_dataset
    from mmtrack.models import build_model
    from mmtrack.models.fit import check_fits
    from mmtrack.models.stacking import arch_reason
    from mmtrack.training.config import RunConfig

    RunConfig(arch=arch, width=width, dataset=dataset, image_size=image_size)  # one line for a bad value
    data = load_dataset(dataset, data_dir, image_size)
    check_fits(arch, data.num_classes, data.image_size, width)
    model = build_model(arch, data.num_classes, data.image_size, width)
    why = arch_reason(arch, data.num_classes, data.image_size, width)
    console.print(
        f"{esc(arch)} ({catalog.source(arch)}) on {esc(dataset)}: takes {data.image_size} px images, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters; seeds train "
        + ("as one stack" if why is None else f"one at a time ({esc(why)})")
    )
