"""`mmtrack`: the command line. Thin typer wrappers; the work lives in the concept modules."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

from mmtrack.errors import MMTrackError
from mmtrack.metrics import is_accuracy

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"max_content_width": 120},
                  help="Benchmark model multiplicity: train configurations as MLflow runs, measure accuracy "
                       "under intervention, build multiplicity sheets and simulate model selection.")
PIPE_WIDTH = 400  # piped or redirected output (CI logs, tee, files): wide enough that no table is ever cut


def make_console(stderr: bool = False) -> Console:
    """A terminal's own width; elsewhere $COLUMNS, else PIPE_WIDTH (rich would assume 80 columns and cut or
    drop table columns). Tables keep their natural width either way."""
    probe = Console(stderr=stderr)
    if probe.is_terminal or os.environ.get("COLUMNS"):
        return probe
    return Console(stderr=stderr, width=PIPE_WIDTH)


console = make_console()
err = make_console(stderr=True)

TrackingUri = Annotated[Optional[str], typer.Option(
    "--tracking-uri", metavar="URI", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the local store under tracking/).")]
DataDir = Annotated[Optional[str], typer.Option(
    "--data-dir", metavar="DIR", help="Root folder of real datasets (default: $MMTRACK_DATA, else ./data).")]
InterventionOpt = Annotated[Optional[list[str]], typer.Option(
    "--intervention", "-i", metavar="SPEC", help="Intervention spec, repeatable or ';'-separated, e.g. pgd_linf:0.005,0.01 "
                                 "output_noise:5 group:race/asian ood:fairface mia. Default: all defaults.")]


def _quiet() -> None:
    import mlflow  # noqa: F401  (importing mlflow resets its loggers' levels: import first, then quiet them)

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "art", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _interventions(specs: list[str] | None):
    from mmtrack import interventions

    if not specs or specs == ["default"]:
        return interventions.parse(interventions.DEFAULT_SPECS)
    flat = [s for spec in specs for s in spec.split(";") if s.strip()]
    return interventions.parse(interventions.DEFAULT_SPECS if flat == ["default"] else flat)


def _eval_settings(pgd_steps: int, pgd_max_examples: int, noise_draws: int):
    from mmtrack.interventions import EvalSettings

    if min(pgd_steps, pgd_max_examples, noise_draws) <= 0:  # named as the user typed them
        raise MMTrackError("--pgd-steps, --pgd-max-examples and --noise-draws must be positive")
    return EvalSettings(pgd_steps=pgd_steps, pgd_max_examples=pgd_max_examples, noise_draws=noise_draws)


def _metrics_table(metrics: dict[str, float], title: str) -> Table:
    table = Table(title=title, show_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(metrics.items(), key=lambda kv: (kv[0] != "acc", kv[0])):
        table.add_row(esc(name), _fmt_metric(name, value))
    return table


@app.command()
def train(
    dataset: Annotated[str, typer.Option(metavar="NAME", help="Dataset name (`mmtrack datasets` lists them).")] = "digits-skewed",
    arch: Annotated[str, typer.Option(metavar="ARCH", help="resnet18 | resnet50 | wide_resnet50_2")] = "resnet18",
    width: Annotated[float, typer.Option(metavar="FLOAT", help="Channel-count factor (1 = torchvision's widths).")] = 0.125,
    lr: Annotated[float, typer.Option(metavar="FLOAT", help="Learning rate.")] = 0.1,
    batch_size: Annotated[int, typer.Option(metavar="INTEGER", help="Batch size.")] = 128,
    augment: Annotated[str, typer.Option(metavar="AUGMENT", help="randaugment | trivialaugment | none")] = "randaugment",
    optimizer: Annotated[str, typer.Option(metavar="OPTIMIZER", help="sgd | adam")] = "sgd",
    epochs: Annotated[int, typer.Option(metavar="INTEGER", help="Training epochs.")] = 20,
    seed: Annotated[int, typer.Option(metavar="INTEGER", help="The one seed behind all randomness.")] = 0,
    image_size: Annotated[Optional[int], typer.Option(metavar="PIXELS", help="Image size (default: the dataset's).")] = None,
    experiment: Annotated[Optional[str], typer.Option(metavar="NAME", help="MLflow experiment (default: the dataset name).")] = None,
    intervention: InterventionOpt = None,
    pgd_steps: Annotated[int, typer.Option(metavar="INTEGER", help="PGD iterations.")] = 10,
    pgd_max_examples: Annotated[int, typer.Option(metavar="INTEGER", help="Test images attacked by PGD (fixed subset).")] = 500,
    noise_draws: Annotated[int, typer.Option(metavar="INTEGER", help="Seeded noise draws averaged per noise metric.")] = 5,
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
):
    """Train and evaluate one configuration as one MLflow run."""
    from mmtrack import tracking
    from mmtrack.config import RunConfig
    from mmtrack.datasets import load_dataset
    from mmtrack.interventions import check_available
    from mmtrack.run import run_config

    _quiet()
    cfg = RunConfig(dataset=dataset, arch=arch, width=width, lr=lr, batch_size=batch_size, augment=augment,
                    optimizer=optimizer, epochs=epochs, seed=seed, image_size=image_size)
    ivs = _interventions(intervention)
    settings = _eval_settings(pgd_steps, pgd_max_examples, noise_draws)
    uri = tracking.resolve_uri(tracking_uri)  # before MLFLOW_RUN_ID is taken out of the environment
    launcher = os.environ.pop("MLFLOW_RUN_ID", None)  # `mlflow run` created this run for us
    launcher_uri = os.environ.get("MLFLOW_TRACKING_URI", uri)
    client = tracking.connect(uri)
    data = load_dataset(cfg.dataset, data_dir, cfg.image_size)  # missing data: fail before any experiment exists
    check_available(ivs, data)
    name = experiment or dataset
    adopt = launcher if launcher and tracking.can_adopt(client, launcher, name) else None
    exp_id = None if adopt else tracking.experiment_id(client, name, create=True)
    console.print(f"[bold]{esc(cfg.run_name)}[/] on {esc(dataset)} (config {cfg.hash})")
    result = run_config(cfg, client, exp_id, ivs, settings, data=data, run_id=adopt,
                        on_epoch=lambda s: console.print(f"  epoch {s.epoch + 1}/{cfg.epochs}  loss {s.train_loss:.4f}  "
                                                         f"acc {100 * s.train_acc:.2f}%  ({s.seconds:.1f}s)"))
    console.print(_metrics_table(result.metrics, f"run {result.run_id}"))
    for name, error in result.failed_interventions.items():
        err.print(f"[yellow]warning:[/] intervention {esc(name)} failed: {esc(error)}")
    exp_id = exp_id or client.get_run(result.run_id).info.experiment_id
    if launcher and not adopt:  # the launcher run (other store, or the Default experiment) points to the real one
        tracking.point_launcher(launcher_uri, launcher, uri, name, result.run_id)
    console.print(f"run {result.run_id} FINISHED in experiment {esc(name)} of {esc(uri)}\n"
                  f"open it: {esc(tracking.open_hint(uri, exp_id, result.run_id))}")


@app.command()
def evaluate(
    run_id: Annotated[Optional[str], typer.Option(metavar="RUN_ID", help="The run whose logged model to evaluate.")] = None,
    experiment: Annotated[Optional[str], typer.Option(metavar="NAME", help="Evaluate every FINISHED run of this experiment.")] = None,
    intervention: InterventionOpt = None,
    pgd_steps: Annotated[int, typer.Option(metavar="INTEGER", help="PGD iterations.")] = 10,
    pgd_max_examples: Annotated[int, typer.Option(metavar="INTEGER", help="Test images attacked by PGD (fixed subset).")] = 500,
    noise_draws: Annotated[int, typer.Option(metavar="INTEGER", help="Seeded noise draws averaged per noise metric.")] = 5,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Runs logged before safe weights existed: "
                                               "load their pickled model (runs code from the store; only for a "
                                               "store you control; recorded on the run).")] = False,
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
):
    """Add intervention metrics to already-logged runs (reloads each model; other metrics are untouched)."""
    from mmtrack import tracking
    from mmtrack.run import evaluate_run

    _quiet()
    if (run_id is None) == (experiment is None):
        raise MMTrackError("give exactly one of --run-id or --experiment")
    ivs = _interventions(intervention)
    settings = _eval_settings(pgd_steps, pgd_max_examples, noise_draws)
    client = tracking.connect(tracking_uri)
    if run_id:
        try:
            names = {run_id: client.get_run(run_id).info.run_name}
        except Exception:  # noqa: BLE001
            raise MMTrackError(f"unknown run id {run_id!r} in {tracking.resolve_uri(tracking_uri)}") from None
    else:
        exp_id = tracking.experiment_id(client, experiment)
        runs = tracking.search_all_runs(client, exp_id, "attributes.status = 'FINISHED'")
        names = {r.info.run_id: r.info.run_name for r in runs if tracking.REPORT_TAG not in r.data.tags}
        if not names:
            raise MMTrackError(f"experiment {experiment!r} has no FINISHED runs to evaluate")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results, failed = {}, 0
    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("", total=len(names))
        for rid, name in sorted(names.items(), key=lambda kv: kv[1] or kv[0]):
            progress.update(task, description=esc(name or rid))
            result = evaluate_run(client, rid, ivs, settings, data_dir, trust_pickle)
            results[rid] = result
            for iv_name, error in result.failed_interventions.items():
                failed += 1
                progress.console.print(f"[yellow]warning:[/] {esc(name or rid)}: intervention {esc(iv_name)} "
                                       f"failed: {esc(error)}")
            progress.advance(task)
    metrics = sorted({m for r in results.values() for m in r.metrics}, key=lambda m: (m != "acc", m))
    table = Table(title=f"{len(results)} run(s) evaluated", show_edge=False)
    table.add_column("run")
    for m in metrics:
        table.add_column(esc(m), justify="right")
    for rid, result in sorted(results.items(), key=lambda kv: names[kv[0]] or kv[0]):
        table.add_row(esc(names[rid] or rid), *(_fmt_metric(m, result.metrics.get(m)) for m in metrics))
    console.print(table)
    if failed:
        raise typer.Exit(1)


def _fmt_metric(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if is_accuracy(name) else f"{value:.4f}"


@app.command()
def sweep(
    study: Annotated[str, typer.Argument(metavar="STUDY", help="Study file (YAML), or a preset name from studies/.")],
    workers: Annotated[int, typer.Option(metavar="INTEGER", help="Configurations trained at once on this machine.")] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the configurations without training.")] = False,
    storage: Annotated[Optional[str], typer.Option(metavar="URL", help="Optuna RDB storage URL shared by workers on several "
                                                        "machines (e.g. postgresql://...).")] = None,
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
):
    """Run every configuration of a study as one MLflow run each (resumable, parallel)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from mmtrack import sweep as sweep_mod, tracking
    from mmtrack.study import load_study

    _quiet()
    if data_dir:
        os.environ["MMTRACK_DATA"] = data_dir  # read by every worker process
    st = load_study(study)
    configs = st.configs()
    if dry_run:
        status = _config_status(st.name, tracking_uri)
        table = Table(title=f"{esc(st.name)}: {len(configs)} configurations ({st.design}, {len(st.seeds)} seeds)")
        for col in ("#", "run name", "config hash", "status"):
            table.add_column(col)
        styles = {"finished": "green", "failed": "red", "running": "yellow", "to do": "default"}
        for i, cfg in enumerate(configs):
            state = status.get(cfg.hash, "to do")
            table.add_row(str(i), esc(cfg.run_name), cfg.hash, f"[{styles[state]}]{state}[/]")
        console.print(table)
        counts = {k: sum(status.get(c.hash, "to do") == k for c in configs) for k in styles}
        console.print(", ".join(f"{n} {k}" for k, n in counts.items() if n) + " (the sweep trains what is not finished)")
        return
    tracking_uri = tracking.resolve_uri(tracking_uri)  # before MLFLOW_RUN_ID is taken out of the environment
    parent_run = os.environ.pop("MLFLOW_RUN_ID", None)  # under `mlflow run`: one run per configuration instead
    parent_uri = os.environ.get("MLFLOW_TRACKING_URI", tracking_uri)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(st.name, total=len(configs))
        seen: set[str] = set()

        def on_event(ev) -> None:
            if ev.kind == "start":
                progress.console.print(f"  training {esc(ev.config)}")
            elif ev.hash not in seen:
                seen.add(ev.hash)
                progress.advance(task)
                if ev.kind == "failed":
                    progress.console.print(f"  [red]failed[/] {esc(ev.config)}: {esc(ev.error or '')}")
                elif ev.kind == "finished":
                    progress.console.print(f"  [green]finished[/] {esc(ev.config)} ({ev.seconds:.0f}s)")

        if storage:
            from mmtrack import worker as worker_mod

            summary = worker_mod.sweep_with_storage(st, storage, workers, tracking_uri, on_event)
        else:
            summary = sweep_mod.sweep(st, workers, tracking_uri, on_event)
    console.print(f"[bold]{esc(st.name)}[/]: {len(summary.finished)} finished, {len(summary.skipped)} skipped "
                  f"(already finished), {len(summary.failed)} failed, of {len(configs)} configurations")
    for ev in summary.failed:
        err.print(f"[red]failed[/] {esc(ev.config)} (run {ev.run_id or '?'}): {esc(ev.error or '')}")
    exp = tracking.connect(tracking_uri).get_experiment_by_name(st.name)
    if exp is not None:
        console.print(f"open it: {esc(tracking.open_hint(tracking_uri, exp.experiment_id))}")
    if parent_run:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(parent_uri)  # the launcher run may live in MLflow's default store
        for key, value in (("finished", summary.finished), ("skipped", summary.skipped), ("failed", summary.failed)):
            client.log_metric(parent_run, f"sweep/{key}", len(value))
        client.set_tag(parent_run, tracking.LAUNCHED_TAG, f"experiment {st.name} of {tracking_uri}")
    if summary.failed:
        raise typer.Exit(1)


def _config_status(experiment: str, tracking_uri: str | None) -> dict[str, str]:
    """config hash -> finished | running | failed, from the experiment's runs (a missing store or experiment:
    nothing yet). FINISHED wins over RUNNING over FAILED/KILLED, as the sweep decides what to train."""
    from pathlib import Path as _Path

    from mmtrack import tracking

    uri = tracking.resolve_uri(tracking_uri)
    if tracking.is_local_sqlite(uri) and not _Path(uri[len("sqlite:///"):]).exists():
        return {}  # a dry run creates no store
    client = tracking.connect(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    rank = {"FINISHED": ("finished", 3), "RUNNING": ("running", 2), "FAILED": ("failed", 1), "KILLED": ("failed", 1)}
    out: dict[str, tuple[str, int]] = {}
    for run in tracking.search_all_runs(client, exp.experiment_id):
        key = run.data.tags.get(tracking.HASH_TAG)
        state = rank.get(run.info.status)
        if key and state and state[1] > out.get(key, ("", 0))[1]:
            out[key] = state
    return {k: v[0] for k, v in out.items()}


FORMATS = ("rich", "csv", "markdown", "latex", "html", "json")
FormatOpt = Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="rich (terminal) | csv | markdown | latex | html | json")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", metavar="FILE", help="Write the output to this file.")]


def _experiment_runs(experiment: str, tracking_uri: str | None, refresh: bool = False):
    """(client, experiment id, study dict or None, runs table) for an experiment; report runs left out."""
    from mmtrack import tracking

    client = tracking.connect(tracking_uri)
    exp_id = tracking.experiment_id(client, experiment)
    if refresh:
        tracking.drop_cache()
    runs = tracking.load_runs(client, exp_id)
    if f"tags.{tracking.REPORT_TAG}" in runs:
        runs = runs[runs[f"tags.{tracking.REPORT_TAG}"].isna()]
    if runs.empty:
        raise MMTrackError(f"experiment {experiment!r} has no finished runs yet; run `mmtrack sweep` or "
                           "`mmtrack train --experiment ...` first")
    return client, exp_id, tracking.experiment_study(client, exp_id), runs


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        err.print(f"wrote {esc(str(out))}")


def _slug(metric: str) -> str:
    return metric.replace("/", "_")


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise MMTrackError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")


@app.command()
def sheet(
    experiment: Annotated[str, typer.Option(metavar="NAME", help="MLflow experiment holding the study's runs.")],
    metric: Annotated[Optional[list[str]], typer.Option(metavar="METRIC", help="Metric (repeatable). Default: every acc* metric.")] = None,
    fmt: FormatOpt = "rich",
    out: OutOpt = None,
    figure: Annotated[Optional[Path], typer.Option(metavar="PATH", help="Folder for heatmap figures (PNG and SVG, one per metric).")] = None,
    summary: Annotated[bool, typer.Option("--summary", help="One row per metric: Δmax^all, ratio to acc, top axis.")] = False,
    default: Annotated[Optional[list[str]], typer.Option(metavar="AXIS=VALUE", help="Override an axis default, e.g. --default lr=0.1 (repeatable).")] = None,
    seed_param: Annotated[str, typer.Option(metavar="PARAM", help="The param whose values are the rows.")] = "seed",
    predictions: Annotated[bool, typer.Option(help="Compute prediction disagreement from stored predictions.")] = True,
    log: Annotated[bool, typer.Option("--log", help="Record the sheet (HTML, JSON, figure) as a run in MLflow.")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Drop the local runs cache first.")] = False,
    tracking_uri: TrackingUri = None,
):
    """Multiplicity sheets: per metric, one table per axis (rows = seeds), Δmax per row/column and Δmax^all."""
    import tempfile

    from mmtrack import sheet as sh, tracking

    _quiet()
    _check_format(fmt)
    client, exp_id, study, runs = _experiment_runs(experiment, tracking_uri, refresh)
    overrides = {}
    for item in default or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise MMTrackError(f"--default takes AXIS=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    if study and not overrides and seed_param == study.get("seed_param", "seed"):
        design = sh.Design.from_study({**study, "default": {**study.get("fixed", {}), **study["default"]}})
    else:
        design = sh.infer_design(runs, seed_param=seed_param, defaults=overrides)
    metrics = metric or sh.sheet_metrics(runs)
    if not metrics:
        raise MMTrackError(f"experiment {experiment!r} has no acc* metrics; name one with --metric")
    if summary:
        df = sh.summary(runs, design, metrics, experiment=experiment)
        if fmt == "rich" and out is None:
            console.print(sh.rich_summary(df))
        else:
            _emit(sh.render_summary(df, "markdown" if fmt == "rich" else fmt), out)
        return
    sheets = [sh.build_sheet(runs, m, design, experiment) for m in metrics]
    if predictions:  # download each cell run's predictions once, for all metrics, then add disagreement
        ids = sorted({r for s in sheets for t in s.tables for row in t.run_ids for r in row if r})
        preds = {rid: df["pred"].to_numpy() for rid, df in tracking.load_predictions(client, ids).items()}
        sheets = [sh.build_sheet(runs, m, design, experiment, predictions=preds) for m in metrics]
    ui = tracking.ui_base(client.tracking_uri)
    if fmt == "rich" and out is None:
        for s in sheets:
            console.print(sh.rich_tables(s))
            for line in s.missing + s.warnings:
                err.print(f"[yellow]warning:[/] {esc(line)}")
    else:
        texts = [sh.render(s, "markdown" if fmt == "rich" else fmt, ui_url=ui, experiment_id=exp_id) for s in sheets]
        if fmt == "json" and len(texts) > 1:
            text = "[\n" + ",\n".join(t.rstrip() for t in texts) + "\n]\n"
        elif fmt == "csv" and len(texts) > 1:
            import pandas as pd

            text = pd.concat([sh.sheet_csv_frame(s).assign(metric=s.metric) for s in sheets]).to_csv(index=False)
        else:
            text = "\n".join(texts)
        _emit(text, out)
    written: list[Path] = []
    if figure is not None or log:
        fig_dir = figure or Path(tempfile.mkdtemp(prefix="mmtrack-sheet-"))
        fig_dir.mkdir(parents=True, exist_ok=True)
        for s in sheets:
            written += sh.figure(s, fig_dir / f"sheet-{_slug(s.metric)}")
        if figure is not None:
            err.print(f"wrote {len(written)} figure files to {esc(str(fig_dir))}")
    if log:  # one report run holding every sheet of this invocation
        files = {"report.html": sh.render_html_report(sheets, ui_url=ui, experiment_id=exp_id),
                 **{f"sheet-{_slug(s.metric)}.json": sh.render(s, "json") for s in sheets}}
        metrics = {}
        for s in sheets:
            metrics[f"delta_max_all/{s.metric}"] = s.delta_max_all
            metrics[f"noise_floor_all/{s.metric}"] = s.noise_floor_all
            metrics[f"disagreement_all/{s.metric}"] = s.disagreement_all
        rep_exp, rid = tracking.log_report(client, experiment, "sheet", files, written, metrics)
        err.print(f"logged {len(sheets)} sheet(s) as run {rid} in experiment {esc(experiment)}-reports: "
                  f"{tracking.ui_url(ui, rep_exp, rid)}")


@app.command("select")
def select_cmd(
    experiment: Annotated[str, typer.Option(metavar="NAME", help="MLflow experiment holding the study's runs.")],
    by: Annotated[str, typer.Option(metavar="METRICS", help="Selection metrics, comma-separated (higher is better).")],
    top: Annotated[str, typer.Option(metavar="PERCENTS", help="Top-k% rules, comma-separated percentages.")] = "75,50",
    unseen: Annotated[Optional[str], typer.Option(metavar="METRICS", help="Unseen metrics, comma-separated (default: every other "
                                                       "accuracy, acc/...; others are shown in their own unit).")] = None,
    within: Annotated[Optional[str], typer.Option(metavar="EPS", help="Rashomon rules: keep runs within EPS points of the best on "
                                                       "every --by metric (comma-separated EPS values).")] = None,
    pareto: Annotated[bool, typer.Option("--pareto", help="Also keep the Pareto front over the --by metrics.")] = False,
    rounding: Annotated[str, typer.Option(metavar="ceil|floor", help="ceil (default) or floor for ⌈k·n/100⌉.")] = "ceil",
    fmt: FormatOpt = "rich",
    out: OutOpt = None,
    figure: Annotated[Optional[Path], typer.Option(metavar="PATH", help="Figure path stem (writes .png and .svg).")] = None,
    log: Annotated[bool, typer.Option("--log", help="Record table, JSON and figure as a run in MLflow.")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Drop the local runs cache first.")] = False,
    tracking_uri: TrackingUri = None,
):
    """Model selection: keep the runs good on several metrics at once; how much do unseen metrics still vary?"""
    import tempfile

    from mmtrack import selection, tracking

    _quiet()
    _check_format(fmt)

    def numbers(text: str | None, what: str) -> list[float]:
        try:
            return [float(x) for x in (text or "").split(",") if x.strip()]
        except ValueError:
            raise MMTrackError(f"{what} takes comma-separated numbers, got {text!r}") from None

    if rounding not in ("ceil", "floor"):
        raise MMTrackError(f"--rounding must be ceil or floor, got {rounding!r}")
    client, exp_id, _study, runs = _experiment_runs(experiment, tracking_uri, refresh)
    by_list = [m.strip() for m in by.split(",") if m.strip()]
    unseen_list = [m.strip() for m in unseen.split(",") if m.strip()] if unseen else None
    report = selection.analyse(runs, by_list, unseen_list, tops=numbers(top, "--top"),
                               within=numbers(within, "--within"), pareto=pareto, experiment=experiment,
                               rounding=rounding)
    if fmt == "rich" and out is None:
        console.print(selection.rich_table(report))
        for line in report.warnings:
            err.print(f"[yellow]warning:[/] {esc(line)}")
    else:
        _emit(selection.render(report, "markdown" if fmt == "rich" else fmt), out)
    figs: list[Path] = []
    if figure is not None or log:
        stem = figure or Path(tempfile.mkdtemp(prefix="mmtrack-select-")) / "selection"
        stem.parent.mkdir(parents=True, exist_ok=True)
        figs = selection.figure(report, runs, stem)
        if figure is not None:
            err.print(f"wrote {esc(', '.join(map(str, figs)))}")
    if log:
        files = {"selection.json": selection.render(report, "json"), "selection.html": selection.render(report, "html"),
                 "selection.md": selection.render(report, "markdown")}
        metrics = {f"delta_max/before/{m}": st.delta_max for m, st in report.before.items()}
        for o in report.selections:
            label = o.selection.label.replace(" ", "").replace("%", "")  # top 75% -> top75, within 2 pp -> within2pp
            metrics[f"n_selected/{label}"] = o.selection.n_selected
            metrics.update({f"delta_max/{label}/{m}": st.delta_max for m, st in o.unseen.items()})
        rep_exp, rid = tracking.log_report(client, experiment, "select", files, figs, metrics)
        err.print(f"logged selection as run {rid} in experiment {esc(experiment)}-reports: "
                  f"{tracking.ui_url(tracking.ui_base(client.tracking_uri), rep_exp, rid)}")


@app.command()
def datasets():
    """List the datasets with their groups (fairness metrics) and OOD sets (robustness metrics)."""
    from mmtrack.datasets import dataset_info, dataset_names

    table = Table(title="Datasets (metrics: acc/group/<attribute>/<value>, acc/ood/<set>)", show_lines=True)
    for col in ("dataset", "groups", "OOD sets", "fairness group", "data"):
        table.add_column(col)
    for name in dataset_names():
        info = dataset_info(name)
        groups = "\n".join(f"{attr}: {', '.join(values)}" if len(values) <= 6 else
                           f"{attr}: {len(values)} values ({', '.join(values[:2])}, …)"
                           for attr, values in info.groups.items())
        fair = "/".join(info.fairness_group) if info.fairness_group else "-"
        where = "--data-dir / $MMTRACK_DATA" if info.needs_data else "built in"
        table.add_row(esc(name), esc(groups), esc(", ".join(info.ood) or "-"), esc(fair), where)
    console.print(table)


@app.command()
def server(
    host: Annotated[str, typer.Option(metavar="HOST", help="Interface to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port.")] = 5000,
    tracking_uri: TrackingUri = None,
):
    """Start the MLflow UI/server over the tracking store (default: the local store under tracking/)."""
    from mmtrack import tracking

    import signal
    import subprocess
    import time
    import urllib.request

    uri = tracking.resolve_uri(tracking_uri)
    tracking.connect(uri)  # creates the local store if needed
    # One user, one machine: one uvicorn worker and no background job consumers (MLflow's defaults start 4
    # workers plus job processes, ~10 processes and ~40 s on 2 busy cores).
    args = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host, "--port", str(port),
            "--workers", "1"]
    if tracking.is_local_sqlite(uri):
        args += ["--default-artifact-root", str(tracking.tracking_dir() / "artifacts")]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    try:
        while proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        if proc.poll() is not None:
            raise MMTrackError(f"mlflow server exited with code {proc.returncode} before answering (is port {port} "
                               "in use? try --port)")
        console.print(f"MLflow UI on http://{esc(host)}:{port} over {esc(uri)} (ready in "
                      f"{time.perf_counter() - start:.0f} s; Ctrl-C stops it)")
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(30)


from mmtrack.worker import worker_command  # noqa: E402  (light import: heavy modules load when it runs)

app.command("worker")(worker_command)


def main() -> None:
    try:
        app()
    except MMTrackError as exc:
        err.print(f"[bold red]error:[/] {esc(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
