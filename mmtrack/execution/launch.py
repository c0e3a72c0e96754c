"""Launching workers: local worker processes (spawned; each runs the worker loop `runner.work` over a queue) for
`mmtrack sweep`, and the shared-storage worker and sweep (`mmtrack worker`, `mmtrack sweep --storage`)."""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterable

from mmtrack import settings, tracking
from mmtrack.errors import MMTrackError
from mmtrack.execution.events import Event, Summary
from mmtrack.execution.local_queue import FileLockQueue, lock_dir
from mmtrack.execution.optuna_queue import (
    DEFAULT_GRACE,
    DEFAULT_HEARTBEAT,
    DEFAULT_MAX_RETRY,
    OptunaQueue,
)
from mmtrack.execution.runner import (
    Emit,
    check_stack,
    die_with_parent,
    raise_interrupt,
    torch_threads,
    work,
)
from mmtrack.execution.storage import check_storage
from mmtrack.study import Study, StudyPlan
from mmtrack.training.config import RunConfig

# ------------------------------------------------------------------------------------------------ processes


def run_processes(target, args: list[tuple], emit: Emit) -> tuple[list[int], list[str]]:
    """Run `target(*args[i], queue)` in spawned processes, one per entry (torch's thread pools are not fork-safe) and forward
    the Events they put on the queue to `emit` until each has put None. Workers report an error they stopped on
    as ("error", message). Returns the exit codes of crashed processes and the reported errors."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, queue), daemon=True) for a in args]
    for p in procs:
        p.start()
    running, errors = len(procs), []
    while running:
        try:
            item = queue.get(timeout=1.0)
        except Exception:  # noqa: BLE001 - queue.Empty: check that the workers are alive
            if not any(p.is_alive() for p in procs):
                break
            continue
        if item is None:
            running -= 1
        elif isinstance(item, tuple):
            errors.append(item[1])
        else:
            emit(item)
    for p in procs:
        p.join()
    return [p.exitcode for p in procs if p.exitcode not in (0, None)], errors


def _process_main(job: Callable[..., object], events) -> None:
    """A local worker process: `job(emit, should_stop=...)` with events going to the parent over `events`."""
    die_with_parent()
    tracking.quiet_libraries()
    signal.signal(signal.SIGTERM, raise_interrupt)  # hand the claim back instead of leaving it to expire
    parent = os.getppid()
    try:
        job(events.put, should_stop=lambda: os.getppid() != parent)
    except MMTrackError as exc:
        events.put(("error", exc.message))
    except KeyboardInterrupt:
        pass
    events.put(None)


def _run_local(jobs: list[Callable[..., object]], emit: Emit) -> list[int]:
    """Run each job in a local worker process; a reported error stops the sweep; returns crashed exit codes."""
    crashed, errors = run_processes(_process_main, [(job,) for job in jobs], emit)
    if errors:
        raise MMTrackError(errors[0])
    return crashed


# ------------------------------------------------------------------------------------------------ what a launch reports


def recorder(on_event: Emit) -> tuple[Summary, Emit]:
    summary = Summary()

    def emit(ev: Event) -> None:
        summary.add(ev)
        on_event(ev)

    return summary, emit


def report_finished(configs: Iterable[RunConfig], finished: set[str], emit: Emit) -> list[RunConfig]:
    """Report the configurations FINISHED in MLflow as skipped; return the others."""
    for cfg in configs:
        if cfg.hash in finished:
            emit(Event("skipped", cfg.run_name, cfg.hash))
    return [cfg for cfg in configs if cfg.hash not in finished]


def study_experiment(client, study: Study) -> str:
    return tracking.experiment_id(client, study.name, create=True, tags={tracking.STUDY_TAG: study.to_json()})


# ------------------------------------------------------------------------------------------------ one machine


def _sweep_job(
    plan: StudyPlan,
    uri: str,
    exp_id: str,
    finished: set[str],
    round_: int,
    threads: int,
    data_dir: str | None,
    stack: int,
    device: str | None,
    server_wait: float | None,
    emit: Emit,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """A worker of `sweep`: join its round of the file-lock queue and work (on `device`; None: the default)."""
    queue = FileLockQueue(list(plan.configs), lock_dir(exp_id), round_)
    queue.prepare(finished, new_round=False)
    try:
        with torch_threads(threads):
            work(
                queue,
                plan,
                tracking.connect(uri),
                exp_id,
                uri,
                emit,
                data_dir=data_dir,
                should_stop=should_stop,
                stack=stack,
                device=device,
                server_wait=server_wait,
            )
    finally:
        queue.close()


def decode_once(plan: StudyPlan, data_dir: str | None, keep: bool = False) -> None:
    """Load the study's dataset in this process before workers start. A cold decode cache is then filled once,
    with every core (a worker process may not start processes of its own), and bad data, or an architecture that
    cannot take the dataset's images (one forward pass each), fails here, in one line, before anything trains.
    Unless `keep` (the worker runs in this process), nothing stays in memory: the workers load the decoded cache."""
    from mmtrack.data import load_dataset
    from mmtrack.models.fit import check_fits

    for size in {cfg.image_size for cfg in plan.configs}:
        data = load_dataset(plan.dataset, data_dir, size)
        for arch, width in sorted({(c.arch, c.width) for c in plan.configs if c.image_size == size}):
            check_fits(arch, data.num_classes, data.image_size, width)
    if not keep:
        load_dataset.cache_clear()


def sweep(
    study: Study,
    workers: int = 1,
    uri: str | None = None,
    on_event: Emit = lambda ev: None,
    data_dir: str | None = None,
    stack: int = 0,
    devices: list[str] | None = None,
    server_wait: float | None = None,
) -> Summary:
    """Run the whole study into the experiment named after it, on this machine; returns what happened. Each
    worker trains the seeds of a configuration still to do together (at most `stack`; 0: all of them). With
    `devices` (one entry per worker, e.g. `worker_devices(["cuda:0", "cuda:1"], 2)`), worker i trains on
    devices[i] and `workers` is their number."""
    workers = len(devices) if devices else workers
    if workers < 1:
        raise MMTrackError(f"--workers must be at least 1, got {workers}")
    check_stack(stack)
    devices = devices or [None] * workers
    plan = StudyPlan.of(study)  # prepared once: every worker process receives it whole
    uri = tracking.resolve_uri(uri)
    client = tracking.connect(uri)
    exp_id = study_experiment(client, plan.study)
    summary, emit = recorder(on_event)
    finished = tracking.finished_hashes(client, exp_id)
    todo = report_finished(plan.configs, finished, emit)
    processes = min(workers, len(todo))
    if todo:
        decode_once(plan, data_dir, keep=processes <= 1)
    round_ = FileLockQueue(list(plan.configs), lock_dir(exp_id)).prepare(finished)  # a round is one sweep
    threads = max(1, settings.cpu_budget() // workers)
    jobs = [
        functools.partial(
            _sweep_job, plan, uri, exp_id, finished, round_, threads, data_dir, stack, device, server_wait
        )
        for device in devices[: max(1, processes)]
    ]
    if processes <= 1:
        jobs[0](emit)
        return summary
    crashed = _run_local(jobs, emit)
    if crashed:
        raise MMTrackError(
            f"{len(crashed)} sweep worker(s) died (exit codes {crashed}); rerun the sweep to "
            "finish the remaining configurations (finished runs are kept)"
        )
    return summary


# ------------------------------------------------------------------------------------------------ many machines


def run_worker(
    study: Study | StudyPlan,
    storage_url: str,
    tracking_uri: str | None = None,
    emit: Emit = lambda ev: None,
    threads: int | None = None,
    *,
    heartbeat: int = DEFAULT_HEARTBEAT,
    grace: int = DEFAULT_GRACE,
    max_retry: int = DEFAULT_MAX_RETRY,
    new_round: bool = True,
    poll: float | None = None,
    data_dir: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    stack: int = 0,
    device: str | None = None,
    server_wait: float | None = None,
) -> Summary:
    """One worker: claim the study's next configuration from the queue in `storage_url`, train it into the
    experiment named after the study, repeat until the round has nothing WAITING or RUNNING.

    `new_round=False` only joins a round in progress (the workers of `sweep_with_storage`); `poll` is the
    wait between looks at the queue while other workers hold the rest (default: the heartbeat interval, at
    most 5 s)."""
    check_stack(stack)
    plan = StudyPlan.of(study)
    uri = tracking.resolve_uri(tracking_uri)
    check_storage(storage_url)  # both fail fast, in one line naming the URL
    client = tracking.connect(uri)
    summary, report = recorder(emit)
    with (
        OptunaQueue(plan, storage_url, heartbeat, grace, max_retry, poll) as queue,
        torch_threads(threads or settings.cpu_budget()),
    ):
        exp_id = study_experiment(client, plan.study)
        queue.prepare(tracking.finished_hashes(client, exp_id), new_round)
        work(
            queue,
            plan,
            client,
            exp_id,
            uri,
            report,
            data_dir=data_dir,
            should_stop=should_stop,
            stack=stack,
            device=device,
            server_wait=server_wait,
        )
    return summary


def sweep_with_storage(
    study: Study,
    storage_url: str,
    workers: int = 1,
    tracking_uri: str | None = None,
    on_event: Emit = lambda ev: None,
    *,
    heartbeat: int = DEFAULT_HEARTBEAT,
    grace: int = DEFAULT_GRACE,
    max_retry: int = DEFAULT_MAX_RETRY,
    data_dir: str | None = None,
    stack: int = 0,
    devices: list[str] | None = None,
    server_wait: float | None = None,
) -> Summary:
    """`mmtrack sweep --storage`: start (or join) a round of the study's queue and run `workers` local worker
    processes on it (or one per entry of `devices`, on that device), exactly like `mmtrack worker` on other
    machines; returns every configuration's outcome (those trained by workers elsewhere included)."""
    workers = len(devices) if devices else workers
    if workers < 1:
        raise MMTrackError(f"--workers must be at least 1, got {workers}")
    check_stack(stack)
    plan = StudyPlan.of(study)
    uri = tracking.resolve_uri(tracking_uri)
    check_storage(storage_url)
    client = tracking.connect(uri)
    summary, emit = recorder(on_event)
    decode_once(plan, data_dir)
    with OptunaQueue(plan, storage_url, heartbeat, grace, max_retry) as queue:
        exp_id = study_experiment(client, plan.study)
        finished = tracking.finished_hashes(client, exp_id)
        report_finished(queue.configs, finished, emit)
        round_ = queue.prepare(finished, new_round=True)
        jobs = [
            functools.partial(
                run_worker,
                plan,
                storage_url,
                uri,
                threads=max(1, settings.cpu_budget() // workers),
                heartbeat=heartbeat,
                grace=grace,
                max_retry=max_retry,
                new_round=False,
                data_dir=data_dir,
                stack=stack,
                device=device,
                server_wait=server_wait,
            )
            for device in devices or [None] * workers
        ]
        crashed = _run_local(jobs, emit)
        for ev in queue.outcomes(round_):  # configurations settled by workers on other machines
            if ev.hash not in summary.outcomes:
                emit(ev)
        if crashed and queue.active():
            raise MMTrackError(
                f"{len(crashed)} worker(s) died (exit codes {crashed}) with configurations left; "
                "rerun the sweep or start `mmtrack worker` to finish them (finished runs are kept)"
            )
    return summary
