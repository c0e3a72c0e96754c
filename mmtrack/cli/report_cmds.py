"""`mmtrack sheet` and `mmtrack report`: multiplicity sheets and the one-page report of an experiment's runs; the
output formats and figure folders `mmtrack select` (`select_cmds`) shares."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape as esc

from mmtrack.cli._app import app, console, emit_text, err, experiment_runs, quiet
from mmtrack.cli._options import (
    DataDir,
    ExperimentOpt,
    OutOpt,
    RashomonMetricOpt,
    RashomonOpt,
    ReferenceOpt,
    RefreshOpt,
    TrackingUri,
)
from mmtrack.cli.ensemble_cmds import ensemble_findings, ensemble_sheets, print_comparison, ship_findings
from mmtrack.errors import MMTrackError

FORMATS = ("rich", "csv", "markdown", "latex", "html", "json")  # rich, then every format of mmtrack.report
FormatOpt = Annotated[
    str, typer.Option("--format", "-f", metavar="FORMAT", help="rich (terminal) | csv | markdown | latex | html | json")
]


def check_output_format(fmt: str) -> None:
    from mmtrack.report import check_format

    check_format(fmt, FORMATS)


@contextlib.contextmanager
def figure_dir(figure: Path | None) -> Iterator[Path]:
    """The user's --figure folder, or a temporary one removed once the figures are logged."""
    if figure is not None:
        yield figure
        return
    with tempfile.TemporaryDirectory(prefix="mmtrack-figures-") as tmp:
        yield Path(tmp)


@app.command()
def sheet(
    experiment: ExperimentOpt,
    metric: Annotated[
        Optional[list[str]], typer.Option(metavar="METRIC", help="Metric (repeatable). Default: every acc* metric.")
    ] = None,
    fmt: FormatOpt = "rich",
    out: OutOpt = None,
    figure: Annotated[
        Optional[Path],
        typer.Option(metavar="DIR", help="Folder for the figures: DIR/sheet-<metric>.png and .svg per metric."),
    ] = None,
    summary: Annotated[
        bool, typer.Option("--summary", help="One row per metric: Δmax^all, ratio to acc, top axis.")
    ] = False,
    default: Annotated[
        Optional[list[str]],
        typer.Option(metavar="AXIS=VALUE", help="Override an axis default, e.g. --default lr=0.1 (repeatable)."),
    ] = None,
    seed_param: Annotated[str, typer.Option(metavar="PARAM", help="The param whose values are the rows.")] = "seed",
    predictions: Annotated[bool, typer.Option(help="Compute prediction disagreement from stored predictions.")] = True,
    log: Annotated[
        bool, typer.Option("--log", help="Record the sheet (HTML, JSON, figure) as a run in MLflow.")
    ] = False,
    ensembles: Annotated[
        bool,
        typer.Option(
            "--ensembles",
            help="Also the sheets of the experiment's ensembles (`mmtrack ensemble`), and Δmax^all of single "
            "models vs ensembles per metric.",
        ),
    ] = False,
    ensemble_size: Annotated[
        Optional[int],
        typer.Option(metavar="K", help="With --ensembles: the ensembles of K seeds (`mmtrack ensemble --size K`)."),
    ] = None,
    rashomon: RashomonOpt = None,
    rashomon_metric: RashomonMetricOpt = "acc",
    refresh: RefreshOpt = False,
    tracking_uri: TrackingUri = None,
):
    """Multiplicity sheets: per metric, one table per axis (rows = seeds), Δmax per row/column and Δmax^all."""

    from mmtrack import analysis, report, tracking

    quiet()
    check_output_format(fmt)
    client, exp_id, study, runs = experiment_runs(experiment, tracking_uri, refresh, rashomon, rashomon_metric)
    overrides = {}
    for item in default or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise MMTrackError(f"--default takes AXIS=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    design = analysis.choose_design(runs, study, seed_param=seed_param, defaults=overrides)
    metrics = analysis.sheet_metrics(runs, metric)
    if not metrics:
        raise MMTrackError(f"experiment {experiment!r} has no acc* metrics; name one with --metric")
    cells = analysis.assign_cells(runs, design, experiment)
    ens_sheets = ensemble_sheets(experiment, ensemble_size, metrics, tracking_uri, refresh) if ensembles else None
    ui = tracking.ui_base(client.tracking_uri)
    if summary:  # the summary instead of the sheets; --figure and --log still draw and record the sheets
        sheets = [analysis.sheet_stats(cells, m) for m in metrics]
        df = analysis.summary(sheets, cells)
        if fmt == "rich" and out is None:
            console.print(report.rich_summary(df))
        else:
            emit_text(report.render(df, "markdown" if fmt == "rich" else fmt), out)
        if ens_sheets is not None:
            print_comparison(sheets, ens_sheets, runs, fmt, out)
        _figures_and_log(sheets, figure, log, client, experiment, exp_id, ui)
        return
    preds = None
    if predictions:  # each cell run's predictions, downloaded once for every metric
        preds = {rid: df["pred"].to_numpy() for rid, df in tracking.load_predictions(client, cells.run_ids()).items()}
    sheets = [analysis.sheet_stats(cells, m, predictions=preds) for m in metrics]
    if fmt == "rich" and out is None:
        for s in [*sheets, *(ens_sheets or [])]:
            console.print(report.rich_tables(s))
            for line in s.missing + s.warnings:
                err.print(f"[yellow]warning:[/] {esc(line)}")
    else:
        emit_text(
            report.render_sheets(sheets, "markdown" if fmt == "rich" else fmt, ui_url=ui, experiment_id=exp_id), out
        )
    if ens_sheets is not None:
        print_comparison(sheets, ens_sheets, runs, fmt, out)
    _figures_and_log(sheets, figure, log, client, experiment, exp_id, ui)


def _figures_and_log(sheets, figure: Path | None, log: bool, client, experiment: str, exp_id: str, ui: str) -> None:
    """`--figure DIR`: each sheet's figure into DIR; `--log`: one report run holding every sheet."""
    from mmtrack import report, tracking

    if figure is None and not log:
        return
    with figure_dir(figure) as fig_dir:  # a temporary folder only when the figures go to MLflow alone
        written: list[Path] = []
        for s in sheets:
            written += report.save_figure(report.sheet_figure(s), fig_dir / f"sheet-{report.slug(s.metric)}")
        if figure is not None:
            err.print(f"wrote {len(written)} figure files to {esc(str(fig_dir))}")
        if log:  # one report run holding every sheet of this invocation
            files, numbers = report.sheet_log(sheets, ui_url=ui, experiment_id=exp_id)
            rep_exp, rid = tracking.log_report(client, experiment, "sheet", files, written, numbers)
            err.print(
                f"logged {len(sheets)} sheet(s) as run {rid} in experiment {esc(experiment)}-reports: "
                f"{tracking.ui_url(ui, rep_exp, rid)}"
            )


@app.command("report")
def report_cmd(
    experiment: ExperimentOpt,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", metavar="DIR", help="Folder for report.html (default: outputs/<experiment>)."),
    ] = None,
    metric: Annotated[
        Optional[list[str]],
        typer.Option(metavar="METRIC", help="Sheet metric (repeatable). Default: every acc* metric."),
    ] = None,
    by: Annotated[
        Optional[str],
        typer.Option(
            metavar="METRICS", help="Selection metrics, comma-separated (default: the study's selection: block)."
        ),
    ] = None,
    unseen: Annotated[
        Optional[str],
        typer.Option(
            metavar="METRICS", help="Unseen metrics, comma-separated (default: the study's, else every other accuracy)."
        ),
    ] = None,
    top: Annotated[
        Optional[str], typer.Option(metavar="PERCENTS", help="Top-k% rules (default: the study's, else 75,50).")
    ] = None,
    reference: ReferenceOpt = None,
    predictions: Annotated[
        bool, typer.Option(help="Prediction multiplicity and contested examples from stored predictions.")
    ] = True,
    log: Annotated[
        bool, typer.Option("--log", help="Also record the page as a run of experiment <NAME>-reports.")
    ] = False,
    rashomon: RashomonOpt = None,
    rashomon_metric: RashomonMetricOpt = "acc",
    selective: Annotated[
        Optional[float],
        typer.Option(
            metavar="ALPHA",
            help='Add "Which model do I ship?": single models, ensembles and the selective ensembles of level '
            "ALPHA (`mmtrack ensemble --selective ALPHA`) per group: accuracy, abstention, remaining ambiguity.",
        ),
    ] = None,
    refresh: RefreshOpt = False,
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
):
    """One self-contained HTML page: design, summary, every sheet with axis effects, selection, prediction
    multiplicity and the most contested test examples."""
    import time

    from mmtrack import analysis, report, tracking

    quiet()
    start = time.perf_counter()
    client, exp_id, study, runs = experiment_runs(experiment, tracking_uri, refresh, rashomon, rashomon_metric)
    curve = rashomon_set = None
    if rashomon is not None:  # the spread against ε over every model, beside the page of the set
        from mmtrack.analysis import rashomon as rashomon_mod

        everything = experiment_runs(experiment, tracking_uri)[3]
        rashomon_set = rashomon_mod.rashomon_set(everything, rashomon, rashomon_metric)
        curve = rashomon_mod.spread_by_epsilon(everything, analysis.sheet_metrics(everything, metric), rashomon_metric)
    design = analysis.choose_design(runs, study)
    finished = analysis.finished_run_ids(runs)
    if reference is not None and reference not in finished:
        raise MMTrackError(f"--reference {reference} is not a FINISHED run of experiment {experiment!r}")
    preds = tracking.load_predictions(client, finished) if predictions else None
    group_preds = tracking.load_predictions(client, finished, population="group") if predictions else None
    try:
        tops = [float(t) for t in split(top)] if top else None
    except ValueError:
        raise MMTrackError(f"--top takes comma-separated numbers, got {top!r}") from None
    audit = analysis.build_audit(
        runs,
        design,
        experiment,
        study,
        preds,
        group_preds,
        by=split(by),
        unseen=split(unseen),
        tops=tops,
        reference=reference,
        metrics=metric,
    )
    audit.ensembles = ensemble_findings(experiment, audit, runs, preds or {}, group_preds or {}, tracking_uri, refresh)
    if selective is not None:
        population, single = ("group", group_preds) if group_preds else ("test", preds or {})
        audit.shipping = ship_findings(experiment, selective, single, population, tracking_uri, refresh)
        audit.selective_alpha = selective
    audit.rashomon, audit.rashomon_curve = rashomon_set, curve
    images, classes, note = _test_images(study, runs, data_dir, preds) if audit.contested else (None, None, None)
    ui = tracking.ui_base(client.tracking_uri)
    page = report.render_audit(audit, images, classes, note, ui_url=ui, experiment_id=exp_id)
    folder = out or Path("outputs") / experiment
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.html"
    path.write_text(page)
    console.print(
        f"wrote {esc(str(path))} ({len(audit.sheets)} sheets, {audit.n_runs} runs, {time.perf_counter() - start:.1f} s)"
    )
    for line in audit.notes:
        err.print(f"[yellow]note:[/] {esc(line)}")
    if log:
        files = {"report.html": page, "report.json": report.strict_json(audit.to_dict())}
        numbers = {f"delta_max_all/{s.metric}": s.delta_max_all for s in audit.sheets}
        if audit.overall is not None:
            numbers.update(
                {
                    "predictions/ambiguity": audit.overall.ambiguity,
                    "predictions/discrepancy": audit.overall.discrepancy,
                    "predictions/contested": audit.overall.contested,
                }
            )
        rep_exp, rid = tracking.log_report(client, experiment, "report", files, [], numbers)
        err.print(
            f"logged the report as run {rid} in experiment {esc(experiment)}-reports: "
            f"{tracking.ui_url(ui, rep_exp, rid)}"
        )


def split(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [m.strip() for m in text.split(",") if m.strip()] if text else None


def _test_images(study: dict | None, runs, data_dir: str | None, preds: dict):
    """(test images, class names, None), or (None, None, why not) when the dataset cannot be loaded here."""
    from mmtrack.study import register_study_dataset

    column = runs.get("params.dataset")
    name = (study or {}).get("dataset") if study else None
    name = (
        name
        if isinstance(name, str)
        else (str(column.dropna().iloc[0]) if column is not None and column.notna().any() else None)
    )
    if name is None:
        return None, None, "images unavailable: the runs do not say which dataset they used"
    sizes = runs.get("params.image_size")
    size = sizes.dropna().iloc[0] if sizes is not None and sizes.notna().any() else "default"
    try:
        register_study_dataset(study)
        from mmtrack.data import load_dataset

        data = load_dataset(name, data_dir, None if size in ("default", "None") else int(size))
    except MMTrackError as exc:
        return None, None, f"images unavailable ({exc.message}); the examples are listed without them"
    n = len(next(iter(preds.values()))) if preds else len(data.test)
    if len(data.test) != n:
        return (
            None,
            list(data.classes),
            (
                f"images unavailable: the dataset's test split has {len(data.test)} images, "
                f"the stored predictions {n} (the data changed since training)"
            ),
        )
    return data.test.images.numpy(), list(data.classes), None
