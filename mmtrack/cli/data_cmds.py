"""`mmtrack datasets [list|show]`: what datasets exist (built in, and declared in study files), and whether a
dataset's groups are large enough to show anything BEFORE anything is trained.

`show` turns every group's test size n into the 95 % noise floor of a Δmax over k models: the Δmax that
test-set sampling alone exceeds with 5 % probability when every model has the same true accuracy p, i.e.
q_0.95(range of k normals) * sqrt(p(1-p)/n) (the multiplicity sheet's own `noise_floor`). There is no accuracy
before training, so p is an assumption, printed with the result (`--accuracy`, default 0.9; 0.5 is the worst
case); k is the study's number of runs (or `--models`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape as esc
from rich.table import Table

from mmtrack.cli._app import app, console
from mmtrack.cli._options import DataDir
from mmtrack.errors import MMTrackError

datasets_app = typer.Typer(
    rich_markup_mode=None,
    help="Datasets: `list` them (the default), `show` one's sizes and noise floors.",
    context_settings={"max_content_width": 120},
)
app.add_typer(datasets_app, name="datasets")
DEFAULT_MODELS = 45  # the paper's design: 9 configurations x 5 seeds
DEFAULT_ACCURACY = 0.9


@datasets_app.callback(invoke_without_command=True)
def datasets(ctx: typer.Context):
    """List the datasets with their groups (fairness metrics) and OOD sets (robustness metrics); `show NAME` gives
    a dataset's sizes and noise floors."""
    if ctx.invoked_subcommand is None:
        _list([])


@datasets_app.command("list")
def list_datasets(
    paths: Annotated[
        Optional[list[Path]],
        typer.Argument(
            metavar="[PATH]...",
            help="Study or dataset declaration files (or folders of them) to find declared datasets "
            "in (default: ./studies/ and the presets).",
        ),
    ] = None,
):
    """List built-in datasets and those declared in study files, with their groups and OOD sets."""
    _list(paths or [])


def _yaml_files(paths: list[Path]) -> list[Path]:
    from mmtrack import settings
    from mmtrack.study import preset_dir

    out: list[Path] = []
    for p in paths or [settings.studies_dir(), preset_dir()]:
        if p.is_dir():
            out += sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        elif p.is_file():
            out.append(p)
        elif paths:
            raise MMTrackError(f"{p} not found; give study or dataset declaration files, or folders of them")
    return list({p.resolve(): p for p in out}.values())  # in a checkout, studies/ is the preset folder


def _declared_in(path: Path) -> dict | None:
    """The normalised declaration a study or declaration file holds (None: it names a built-in dataset)."""
    import yaml

    from mmtrack.data import declared

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MMTrackError(f"{path}: not readable YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise MMTrackError(f"{path}: not a study or dataset declaration (a mapping)")
    if "images" in raw or "manifest" in raw:
        return declared.normalize(raw, path.parent, str(path.resolve()), path.stem)
    if declared.is_declaration(raw.get("dataset")):
        return declared.declaration(raw["dataset"], path.parent, str(path.resolve()), raw.get("name") or path.stem)
    return None


def _groups_text(groups: dict[str, tuple[str, ...]]) -> str:
    lines = []
    for attr, values in groups.items():
        if not values:
            lines.append(f"{attr}: (values from the data)")
        elif len(values) <= 6:
            lines.append(f"{attr}: {', '.join(values)}")
        else:
            lines.append(f"{attr}: {len(values)} values ({', '.join(values[:2])}, …)")
    return "\n".join(lines)


def _list(paths: list[Path]) -> None:
    from mmtrack.data import dataset_info, dataset_names, declared

    table = Table(title="Datasets (metrics: acc/group/<attribute>/<value>, acc/ood/<set>)", show_lines=True)
    for col in ("dataset", "groups", "OOD sets", "fairness group", "data"):
        table.add_column(col)
    builtin = [n for n in dataset_names() if not dataset_info(n).source]
    for name in builtin:
        info = dataset_info(name)
        fair = "/".join(info.fairness_group) if info.fairness_group else "-"
        where = "--data-dir / $MMTRACK_DATA" if info.needs_data else "built in"
        table.add_row(esc(name), esc(_groups_text(info.groups)), esc(", ".join(info.ood) or "-"), esc(fair), where)
    skipped, seen = [], set()
    for path in _yaml_files(paths):
        try:
            spec = _declared_in(path)
        except MMTrackError as exc:
            skipped.append(f"{path}: {exc.message}")
            continue
        if spec is None or (spec["name"], spec["source"]) in seen:
            continue
        seen.add((spec["name"], spec["source"]))
        info = declared.info(spec)
        fair = "/".join(info.fairness_group) if info.fairness_group else "-"
        data = spec["manifest"] or spec["images"]
        where = f"declared in {path}\n{'manifest' if spec['manifest'] else 'folder'} {data}"
        table.add_row(
            esc(spec["name"]), esc(_groups_text(info.groups)), esc(", ".join(info.ood) or "-"), esc(fair), esc(where)
        )
    console.print(table)
    for line in skipped:
        console.print(f"[yellow]skipped[/] {esc(line)}")


# ---------------------------------------------------------------------------------------------------- show


class _Notes(logging.Handler):
    """Collects the declared-data warnings (mixed modes, skipped files) to print them with the result."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg not in self.lines:
            self.lines.append(msg)


def _dataset_profile(data) -> dict:
    """The same shape as `declared.Plan.profile()`, from a loaded Dataset."""
    groups = data.group_split
    return {
        "classes": {
            c: (int((data.train.labels == i).sum()), int((data.test.labels == i).sum()))
            for i, c in enumerate(data.classes)
        },
        "train": len(data.train),
        "test": len(data.test),
        "group_test": len(groups),
        "groups": {a: {v: int(groups.group_mask(a, v).sum()) for v in vals} for a, vals in groups.group_values.items()},
        "ood": {o: len(s) for o, s in data.ood.items()},
    }


def _resolve(target: str, data_dir: str | None, image_size: int | None) -> tuple[str, str, dict, int | None]:
    """(dataset name, where it comes from, profile, the study's number of runs or None) of a dataset name, a
    study (file or preset name) or a declaration file."""
    from mmtrack.data import check_dataset_name, declared, load_dataset
    from mmtrack.study import load_study, study_path

    path = Path(target)
    if not path.is_file() and path.suffix == "" and len(path.parts) == 1:
        try:
            path = study_path(target)
        except MMTrackError:
            pass  # not a study: a dataset name
    if path.is_file():
        spec = _declared_in(path)
        import yaml

        raw = yaml.safe_load(path.read_text())
        if spec is not None and "images" not in raw and "manifest" not in raw:  # a study declaring its dataset
            study = load_study(path)
            runs = len(study.configs())
            plan = declared.check(study.dataset_spec, image_size or study.fixed.get("image_size"))
            return (
                study.dataset,
                f"study {path}: {runs} runs",
                plan.profile()
                | {
                    "split_how": plan.split_how,
                    "source": study.dataset_spec["manifest"] or study.dataset_spec["images"],
                },
                runs,
            )
        if spec is not None:  # a declaration file
            plan = declared.check(spec, image_size)
            return (
                spec["name"],
                f"declared in {path}",
                plan.profile() | {"split_how": plan.split_how, "source": spec["manifest"] or spec["images"]},
                None,
            )
        study = load_study(path)
        data = load_dataset(study.dataset, data_dir, image_size or study.fixed.get("image_size"))
        runs = len(study.configs())
        return study.dataset, f"study {path}: {runs} runs", _dataset_profile(data), runs
    if target.lower().endswith((".yaml", ".yml")):
        raise MMTrackError(f"{target} not found; give a dataset name, a study file or a dataset declaration file")
    check_dataset_name(target)
    data = load_dataset(target, data_dir, image_size)
    return target, data.description or "registered dataset", _dataset_profile(data), None


@datasets_app.command("show")
def show(
    target: Annotated[
        str,
        typer.Argument(
            metavar="NAME_OR_STUDY", help="A dataset name, a study (file or preset name) or a dataset declaration file."
        ),
    ],
    models: Annotated[
        Optional[int],
        typer.Option(
            "--models",
            metavar="N",
            help=f"Models the Δmax is taken over (default: the study's runs, else {DEFAULT_MODELS}).",
        ),
    ] = None,
    accuracy: Annotated[
        float,
        typer.Option(
            "--accuracy",
            metavar="P",
            help="Assumed accuracy of every model on every "
            "group (no accuracy exists before training; 0.5 = worst case).",
        ),
    ] = DEFAULT_ACCURACY,
    image_size: Annotated[
        Optional[int], typer.Option(metavar="PIXELS", help="Image size (default: the dataset's / study's).")
    ] = None,
    data_dir: DataDir = None,
):
    """Classes, split sizes, every group's and OOD set's test size, and the 95% noise floor that size implies
    for a Δmax over the study's models: is a group large enough to show anything, before training?"""
    import numpy as np

    from mmtrack.analysis.noise_floor import NOISE_LEVEL, noise_floor

    if not 0 < accuracy < 1:
        raise MMTrackError(f"--accuracy must be between 0 and 1 (exclusive), got {accuracy}")
    if models is not None and models < 2:
        raise MMTrackError(f"--models must be at least 2 (a Δmax needs two models), got {models}")
    notes = _Notes()
    logger = logging.getLogger("mmtrack.data")
    logger.addHandler(notes)
    propagate, logger.propagate = logger.propagate, False
    try:
        name, where, prof, study_runs = _resolve(target, data_dir, image_size)
    finally:
        logger.removeHandler(notes)
        logger.propagate = propagate
    k = models or study_runs or DEFAULT_MODELS
    k_how = "--models" if models else ("the study's runs" if study_runs else "default, --models to change")

    def floor(n: int) -> str:
        f = noise_floor(np.full(k, 100 * accuracy), n)
        return "-" if f is None else (f"{f:.1f} pp" if f < 100 else "> 100 pp")

    console.print(f"[bold]{esc(name)}[/]: {esc(where)}")
    if prof.get("source"):
        console.print(f"data: {esc(prof['source'])}; split: {esc(prof['split_how'])}")
    console.print(
        f"{len(prof['classes'])} classes; train {prof['train']:,}, test {prof['test']:,}"
        + (f", group evaluation set {prof['group_test']:,}" if prof["group_test"] != prof["test"] else "")
        + "".join(f"; OOD {esc(o)} {n:,}" for o, n in prof["ood"].items())
    )
    classes = Table(title="classes", show_edge=False)
    for col, justify in (("class", "left"), ("train", "right"), ("test", "right")):
        classes.add_column(col, justify=justify)
    for c, (n_train, n_test) in prof["classes"].items():
        classes.add_row(esc(c), f"{n_train:,}", f"{n_test:,}")
    console.print(classes)
    worst = math.sqrt(0.25 / (accuracy * (1 - accuracy)))
    console.print(
        f"noise floor: the Δmax over k = {k} models ({k_how}) that test-set sampling alone exceeds with "
        f"{1 - NOISE_LEVEL:.0%} probability, assuming every model's accuracy is p = {accuracy:g} "
        f"(--accuracy; p = 0.5, the worst case, gives {worst:.2f}x). A smaller Δmax shows nothing."
    )
    table = Table(show_edge=False)
    for col, justify in (("metric", "left"), ("test images", "right"), (f"{NOISE_LEVEL:.0%} noise floor", "right")):
        table.add_column(col, justify=justify)
    table.add_row("acc", f"{prof['test']:,}", floor(prof["test"]))
    for attr, values in prof["groups"].items():
        for value, n in values.items():
            table.add_row(esc(f"acc/group/{attr}/{value}"), f"{n:,}", floor(n) if n else "no test image")
    for o, n in prof["ood"].items():
        table.add_row(esc(f"acc/ood/{o}"), f"{n:,}", floor(n))
    console.print(table)
    for line in notes.lines:
        console.print(f"[yellow]note:[/] {esc(line)}")
