"""`mmtrack sweep` and `mmtrack worker`: run a study's configurations, on this machine or through a shared queue."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape as esc
from rich.table import Table

from mmtrack.cli._app import app, console, err, quiet
from mmtrack.cli._options import DataDir, DevicesOpt, ServerWaitOpt, StudyArg, TrackingUri, WorkersPerDeviceOpt
from mmtrack.execution import DEFAULT_GRACE, DEFAULT_HEARTBEAT, DEFAULT_MAX_RETRY

StorageOpt = Annotated[
    str,
    typer.Option(
        "--storage",
        metavar="URL",
        envvar="MMTRACK_STORAGE",
        help="Optuna RDB storage shared by all workers, e.g. "
        "postgresql://mmtrack:PASSWORD@host:5433/mmtrack_optuna (default: $MMTRACK_STORAGE).",
    ),
]

StackOpt = Annotated[
    int,
    typer.Option(
        "--stack",
        metavar="K",
        help="Seeds of a configuration trained together as one stacked network, at most K (0: all that are "
        "still to do; 1: each seed on its own). Each seed is still its own MLflow run.",
    ),
]


# Long: one command, four modes (--dry-run, --estimate, local workers, --storage) sharing their options and
# their checks; each mode is one call below (launch.sweep, launch.sweep_with_storage, _print_estimate).
@app.command()
def sweep(
    study: StudyArg,
    workers: Annotated[
        int,
        typer.Option(
            metavar="INTEGER", help="Workers on this machine, each training one configuration (its seeds) at a time."
        ),
    ] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the configurations without training.")] = False,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate",
            help="Time a few training steps of each configuration (seeds stacked) on this machine and print the "
            "projected wall time, without training.",
        ),
    ] = False,
    storage: Annotated[
        Optional[str],
        typer.Option(
            metavar="URL",
            help="Optuna RDB storage URL shared by workers on several machines (e.g. postgresql://...); with "
            "--dry-run, what its queue says of each configuration, checked against MLflow.",
        ),
    ] = None,
    stack: StackOpt = 0,
    devices: DevicesOpt = None,
    workers_per_device: WorkersPerDeviceOpt = 1,
    data_dir: DataDir = None,
    tracking_uri: TrackingUri = None,
    server_wait: ServerWaitOpt = None,
):
    """Run every configuration of a study as one MLflow run each (resumable, parallel, seeds stacked)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from mmtrack import settings, tracking
    from mmtrack.execution import launch, runner
    from mmtrack.study import load_study

    quiet()
    st = load_study(study)
    configs = st.configs()
    if dry_run:
        _print_dry_run(st, tracking_uri, storage)
        return
    device_list = None
    if devices:
        device_list = runner.worker_devices([d.strip() for d in devices.split(",") if d.strip()], workers_per_device)
    elif not dry_run and settings.device_name() is None:
        from mmtrack.training.device import gpu_diagnosis

        if why := gpu_diagnosis():  # a GPU torch cannot use: say so instead of training on the CPU silently
            err.print(f"[yellow]warning:[/] {esc(why)}")
    if estimate:
        _print_estimate(st, len(device_list) if device_list else workers, stack, data_dir, device_list)
        return
    tracking_uri = tracking.resolve_uri(tracking_uri)  # before MLFLOW_RUN_ID is taken out of the environment
    parent_run = settings.take_mlflow_run_id()  # under `mlflow run`: one run per configuration instead
    parent_uri = settings.mlflow_tracking_uri() or tracking_uri
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
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

        options = dict(data_dir=data_dir, stack=stack, devices=device_list, server_wait=server_wait)
        if storage:
            summary = launch.sweep_with_storage(st, storage, workers, tracking_uri, on_event, **options)
        else:
            summary = launch.sweep(st, workers, tracking_uri, on_event, **options)
    console.print(
        f"[bold]{esc(st.name)}[/]: {len(summary.finished)} finished, {len(summary.skipped)} skipped "
        f"(already finished), {len(summary.failed)} failed, of {len(configs)} configurations"
    )
    for ev in summary.failed:
        err.print(f"[red]failed[/] {esc(ev.config)} (run {ev.run_id or '?'}): {esc(ev.error or '')}")
    exp_id = tracking.find_experiment(tracking.connect(tracking_uri), st.name)
    if exp_id is not None:
        console.print(f"open it: {esc(tracking.open_hint(tracking_uri, exp_id))}")
    if parent_run:  # the launcher run may live in MLflow's default store
        counts = {"finished": len(summary.finished), "skipped": len(summary.skipped), "failed": len(summary.failed)}
        tracking.log_launcher_summary(parent_uri, parent_run, counts, f"experiment {st.name} of {tracking_uri}")
    if summary.failed:
        raise typer.Exit(1)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _print_estimate(st, workers: int, stack: int, data_dir: str | None, devices: list[str] | None = None) -> None:
    """The projection on the sweep's own devices (`--devices`: the first one is timed; the workers are its
    entries), else on the default device."""
    from mmtrack import settings
    from mmtrack.execution.estimate import estimate
    from mmtrack.execution.runner import check_stack
    from mmtrack.training.device import pick_device

    check_stack(stack)
    if workers < 1:
        raise typer.BadParameter(f"--workers must be at least 1, got {workers}")
    threads = max(1, settings.cpu_budget() // workers)
    with console.status(f"timing a few training steps of each configuration of {esc(st.name)}"):
        rows, wall = estimate(st, workers, stack, data_dir, threads, device=devices[0] if devices else None)
    reference = st.reference()
    per_worker = f"{threads} thread{'s' if threads > 1 else ''} per worker"
    device = devices[0] if devices else pick_device()
    table = Table(title=f"{esc(st.name)} on {device} ({per_worker}): projected")
    for col in ("configuration", "seeds", "s/step", "steps", "train", "eval", "total"):
        table.add_column(col, justify="left" if col == "configuration" else "right")
    for e in rows:
        table.add_row(
            esc(e.config.short_name(reference).rsplit(" · ", 1)[0]),
            str(e.seeds),
            f"{e.step_seconds:.3f}",
            f"{e.steps} x {e.config.epochs}",
            _duration(e.train_seconds),
            _duration(e.eval_seconds),
            _duration(e.seconds),
        )
    console.print(table)
    runs = sum(e.seeds for e in rows)
    console.print(
        f"{runs} runs in {len(rows)} stacks: about [bold]{_duration(wall)}[/] with --workers {workers} "
        "(training and the forward and PGD evaluation; start-up, logging and the tail are extra)"
    )


def _print_dry_run(st, tracking_uri: str | None, storage: str | None) -> None:
    """The configurations and their state in MLflow; with --storage, what the queue says of each beside it, and
    whether the two agree (each configuration the queue settled as finished has exactly one FINISHED run)."""
    from mmtrack.execution import queue_states

    configs = st.configs()
    status, finished_runs = _config_status(st.name, tracking_uri)
    queue = queue_states(st, storage) if storage else None
    table = Table(title=f"{esc(st.name)}: {len(configs)} configurations ({st.design}, {len(st.seeds)} seeds)")
    for col in ("#", "run name", "config hash", "status", *(["queue"] if storage else [])):
        table.add_column(col)
    styles = {"finished": "green", "failed": "red", "running": "yellow", "to do": "default"}
    disagree = []
    for i, cfg in enumerate(configs):
        state, n = status.get(cfg.hash, "to do"), finished_runs.get(cfg.hash, 0)
        shown = f"[{styles[state]}]{state}[/]" + (f" [red]x{n}[/]" if n > 1 else "")
        row = [str(i), esc(cfg.run_name), cfg.hash, shown]
        if storage:
            said = (queue or {}).get(cfg.hash, "-")
            row.append(said)
            if n > 1:
                disagree.append(f"{cfg.run_name}: {n} FINISHED runs")
            elif n == 0 and said in ("finished", "skipped"):
                disagree.append(f"{cfg.run_name}: the queue says {said}, MLflow has no FINISHED run")
            elif n == 1 and said == "failed":
                disagree.append(f"{cfg.run_name}: the queue says failed, MLflow has a FINISHED run")
        table.add_row(*row)
    console.print(table)
    counts = {k: sum(status.get(c.hash, "to do") == k for c in configs) for k in styles}
    console.print(", ".join(f"{n} {k}" for k, n in counts.items() if n) + " (the sweep trains what is not finished)")
    if not storage:
        return
    if queue is None:
        console.print(f"no queue for {esc(st.name)} in {esc(_redact(storage))} yet (a sweep --storage starts one)")
    if disagree:
        for line in disagree:
            err.print(f"[red]disagree[/] {esc(line)}")
        raise typer.Exit(1)
    console.print(f"MLflow and the queue agree: {counts['finished']} configuration(s) finished, each exactly once")


def _redact(url: str) -> str:
    from mmtrack.tracking import redact

    return redact(url)


def _config_status(experiment: str, tracking_uri: str | None) -> tuple[dict[str, str], dict[str, int]]:
    """config hash -> finished | running | failed, from the experiment's runs (a missing store or experiment:
    nothing yet), and config hash -> its number of FINISHED runs. FINISHED wins over RUNNING over FAILED/KILLED,
    as the sweep decides what to train."""
    from pathlib import Path as _Path

    from mmtrack import tracking

    uri = tracking.resolve_uri(tracking_uri)
    if tracking.is_local_sqlite(uri) and not _Path(tracking.local_path(uri)).exists():
        return {}, {}  # a dry run creates no store
    client = tracking.connect(uri)
    exp_id = tracking.find_experiment(client, experiment)
    if exp_id is None:
        return {}, {}
    rank = {"FINISHED": ("finished", 3), "RUNNING": ("running", 2), "FAILED": ("failed", 1), "KILLED": ("failed", 1)}
    out: dict[str, tuple[str, int]] = {}
    finished: dict[str, int] = {}
    for run in tracking.search_all_runs(client, exp_id):
        key = run.data.tags.get(tracking.HASH_TAG)
        state = rank.get(run.info.status)
        if key and run.info.status == "FINISHED":
            finished[key] = finished.get(key, 0) + 1
        if key and state and state[1] > out.get(key, ("", 0))[1]:
            out[key] = state
    return {k: v[0] for k, v in out.items()}, finished


@app.command("worker")
def worker_command(
    study: StudyArg,
    storage: StorageOpt,
    tracking_uri: TrackingUri = None,
    threads: Annotated[
        Optional[int], typer.Option(metavar="INTEGER", help="CPU threads for training (default: all cores).")
    ] = None,
    heartbeat: Annotated[
        int, typer.Option(metavar="SECONDS", help="Seconds between heartbeats while training.")
    ] = DEFAULT_HEARTBEAT,
    grace: Annotated[
        int,
        typer.Option(
            metavar="SECONDS",
            help="Seconds without heartbeat after which a claim expires and its "
            "configuration is retried by another worker.",
        ),
    ] = DEFAULT_GRACE,
    max_retry: Annotated[
        int, typer.Option(metavar="INTEGER", help="Expired claims retried per configuration.")
    ] = DEFAULT_MAX_RETRY,
    stack: StackOpt = 0,
    data_dir: DataDir = None,
    server_wait: ServerWaitOpt = None,
):
    """Train the study's configurations handed out through --storage until none is left (any number of
    workers, on any machines, logging to one tracking server)."""
    import signal

    from mmtrack.execution import Event, check_storage
    from mmtrack.execution.launch import run_worker
    from mmtrack.execution.runner import raise_interrupt, worker_id
    from mmtrack.study import load_study
    from mmtrack.tracking import redact

    quiet()
    st = load_study(study)
    signal.signal(signal.SIGTERM, raise_interrupt)  # hand the configuration back instead of waiting to expire

    def on_event(ev: Event) -> None:
        if ev.kind == "start":
            console.print(f"  training {esc(ev.config)}")
        elif ev.kind == "finished":
            console.print(f"  [green]finished[/] {esc(ev.config)} ({ev.seconds:.0f}s)")
        elif ev.kind == "skipped":
            console.print(f"  skipped {esc(ev.config)} (already finished)")
        else:
            console.print(f"  [red]failed[/] {esc(ev.config)}: {esc(ev.error or '')}")

    check_storage(storage)
    console.print(f"worker {esc(worker_id())} on {esc(st.name)} (queue in {esc(redact(storage))})")
    try:
        summary = run_worker(
            st,
            storage,
            tracking_uri,
            on_event,
            threads,
            heartbeat=heartbeat,
            grace=grace,
            max_retry=max_retry,
            data_dir=data_dir,
            stack=stack,
            server_wait=server_wait,
        )
    except KeyboardInterrupt:
        err.print("[yellow]stopped[/]: the configuration in training went back to the queue")
        raise typer.Exit(130) from None
    console.print(
        f"[bold]{esc(st.name)}[/]: this worker finished {len(summary.finished)}, skipped "
        f"{len(summary.skipped)}, failed {len(summary.failed)}; nothing is left to claim"
    )
    for ev in summary.failed:
        err.print(f"[red]failed[/] {esc(ev.config)} (run {ev.run_id or '?'}): {esc(ev.error or '')}")
    if summary.failed:
        raise typer.Exit(1)
