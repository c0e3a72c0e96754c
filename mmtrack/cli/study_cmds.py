"""`mmtrack study list|init` (and `mmtrack studies`): the preset studies shipped inside the package, and a
commented study file to start an audit of your own data from."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape as esc
from rich.table import Table

from mmtrack.cli._app import app, console, err
from mmtrack.errors import MMTrackError

study_app = typer.Typer(
    rich_markup_mode=None,
    help="Studies: `list` the presets (the default), `init` a study file for your own data.",
    context_settings={"max_content_width": 120},
)
app.add_typer(study_app, name="study")
TEMPLATE = "own-data-example"  # the preset `init` copies
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@study_app.callback(invoke_without_command=True)
def study(ctx: typer.Context):
    """List the preset studies (`mmtrack sweep NAME` runs one from any directory); `init NAME` writes a study
    file for your own data."""
    if ctx.invoked_subcommand is None:
        _list()


@study_app.command("list")
def list_studies():
    """List the preset studies: name, design, runs, dataset and what each is for."""
    _list()


@app.command("studies")
def studies():
    """List the preset studies (the same as `mmtrack study list`)."""
    _list()


def _list() -> None:
    import yaml

    from mmtrack.study import load_study, presets

    table = Table(title="Preset studies (mmtrack sweep NAME)", show_edge=False)
    for col in ("study", "design", "runs", "dataset", "about"):
        table.add_column(col, justify="right" if col == "runs" else "left")
    for name, path in presets().items():
        raw = yaml.safe_load(path.read_text())
        about = _about(path)
        try:
            st = load_study(path)
            design, runs, dataset = st.design, str(len(st.configs())), st.dataset
        except MMTrackError:  # the template names files that are yours to provide
            declared = raw.get("dataset")
            design, runs = raw.get("design", "?"), "-"
            dataset = f"{declared.get('name')} (your files)" if isinstance(declared, dict) else str(declared)
            if name == TEMPLATE:
                about = "the template `mmtrack study init NAME --dataset DIR` copies: your own images and groups"
        table.add_row(esc(name), esc(design), runs, esc(dataset), esc(about))
    console.print(table)


def _about(path: Path) -> str:
    """The first sentence of a study file's leading comment."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    text = " ".join(lines)
    return text.split(". ")[0].split(" (")[0].rstrip(".:")[:100]


@study_app.command("init")
def init(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The study's name (its MLflow experiment).")],
    dataset: Annotated[
        Optional[Path],
        typer.Option(
            "--dataset",
            metavar="DIR",
            help="Your images: an ImageFolder tree DIR/<class>/<image> (or DIR/train/..., DIR/test/...), or a CSV "
            "manifest path,label[,split][,<group columns>...].",
        ),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", metavar="FILE", help="Where to write it (default: NAME.yaml).")
    ] = None,
):
    """Write a commented study file to start from (the own-data example), refusing to overwrite one."""
    from mmtrack.data import dataset_info, dataset_names
    from mmtrack.study import presets

    if not NAME.fullmatch(name):
        raise MMTrackError(f"study name {name!r}: use letters, digits, '.', '_' and '-' (e.g. skin-audit)")
    if name in dataset_names() and not dataset_info(name).source:  # declared ones may be re-declared
        raise MMTrackError(f"study name {name!r} is a built-in dataset's name; choose another (e.g. {name}-audit)")
    target = out or Path(f"{name}.yaml")
    if target.exists():
        raise MMTrackError(f"{target} exists; choose another NAME or --out FILE (init never overwrites)")
    if dataset is not None and not dataset.exists():
        raise MMTrackError(f"--dataset {dataset} not found; give an image folder or a CSV manifest")
    text = render_template(presets()[TEMPLATE].read_text(), name, target, dataset)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "x") as fh:  # "x": never overwrite, even if it appeared meanwhile
        fh.write(text)
    err.print(f"wrote {esc(str(target))}")
    console.print(f"next: mmtrack datasets show {esc(str(target))}   # sizes and noise floors, before training")
    console.print(f"      mmtrack sweep {esc(str(target))} --workers 2")


def render_template(text: str, name: str, target: Path, dataset: Path | None) -> str:
    """The own-data example renamed to `name`, its commands naming `target`. With `dataset`, its data lines point
    there (relative to the study file, as the example's are) and the example's group and OOD declarations,
    which name the example's columns and folders, are commented out for you to fill in."""
    example = f"studies/{TEMPLATE}.yaml"
    text = text.replace(example, str(target)).replace(f"--experiment {TEMPLATE}", f"--experiment {name}")
    lines = text.splitlines()
    out, in_groups = [], False
    for i, line in enumerate(lines):
        if i == 0:
            line = (
                f"# {name}: a multiplicity audit of your own images (`mmtrack study init`, from the own-data example)."
            )
        elif line.startswith("name: "):
            line = f"name: {name}"
        elif line.startswith("  name: "):
            line = f"  name: {name}".ljust(38) + line[line.index("#") :] if "#" in line else f"  name: {name}"
        elif dataset is not None:
            rel = os.path.relpath(dataset.resolve(), target.resolve().parent)
            if line.startswith("  manifest: "):
                line = f"  manifest: {rel}" if dataset.is_file() else "  # manifest: labels.csv"
            elif line.startswith("  # images: ") and dataset.is_dir():
                line = f"  images: {rel}"
            elif line.startswith("  groups:"):
                in_groups = True
                out.append("  # Groups and OOD sets of the example, to adapt to your columns and folders:")
            elif line and not line.startswith(" "):
                in_groups = False
            if in_groups:
                line = "  # " + line[2:]
        out.append(line)
    return "\n".join(out) + "\n"
