"""`mmtrack sweep`: run every configuration of a study as one MLflow run, resumably and in parallel.

- Resumable: a configuration (by hash) with a FINISHED run in the experiment is skipped; FAILED or interrupted
  ones are run again.
- Claims: a worker trains a configuration only while holding an exclusive file lock on
  `<tracking dir>/locks/<experiment id>/<hash>.lock`. The OS releases the lock when the worker dies (even
  on `kill -9`), so a claim never goes stale on one machine; two workers, or two sweeps of the same study, never
  train one configuration twice. After taking the lock the worker re-checks MLflow (another sweep may have
  finished the configuration meanwhile) and marks runs of that configuration still RUNNING as FAILED
  (their worker is gone: it held the lock).
- Parallel: `--workers N` starts N processes (spawned; they die with the sweep) that split the CPU threads.
  SQLite writes from several processes wait on SQLite's busy timeout instead of failing.
Across machines, `mmtrack worker --storage` hands out configurations through Optuna instead (mmtrack.worker).
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from mmtrack import settings, tracking
from mmtrack.config import RunConfig
from mmtrack.errors import MMTrackError
from mmtrack.study import Study


@dataclass
class Event:
    kind: str  # "start" | "finished" | "skipped" | "failed"
    config: str  # run name
    hash: str
    run_id: str | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Summary:
    """The outcome per configuration (several workers may report one; training outranks skipping)."""

    outcomes: dict[str, Event] = field(default_factory=dict)

    def add(self, ev: Event) -> None:
        prev = self.outcomes.get(ev.hash)
        if ev.kind != "start" and (prev is None or prev.kind == "skipped"):
            self.outcomes[ev.hash] = ev

    def _of(self, kind: str) -> list[Event]:
        return [ev for ev in self.outcomes.values() if ev.kind == kind]

    @property
    def finished(self) -> list[Event]:
        return self._of("finished")

    @property
    def skipped(self) -> list[Event]:
        return self._of("skipped")

    @property
    def failed(self) -> list[Event]:
        return self._of("failed")


ARCH_COST = {"resnet18": 1.0, "resnet50": 2.0, "wide_resnet50_2": 3.0}  # measured, relative, on CPU


def relative_cost(cfg: RunConfig) -> float:
    """A rough training cost, for ordering work longest-first (a stable sort keeps the study's order otherwise)."""
    return ARCH_COST.get(cfg.arch, 1.0) * cfg.width ** 2 * cfg.epochs


cpu_budget = settings.cpu_budget


@contextlib.contextmanager
def claim(lock_dir: Path, config_hash: str) -> Iterator[bool]:
    """Try to claim a configuration without waiting: yields True while this process holds it."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{config_hash}.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lock_dir(exp_id: str) -> Path:
    return settings.lock_dir() / str(exp_id)


def execute(study: Study, cfg: RunConfig, client, exp_id: str, emit: Callable[[Event], None],
            since_ms: int = 0, data_dir: str | None = None) -> None:
    """Train one claimed configuration unless it is already FINISHED (or already FAILED in this sweep, which
    started at `since_ms`); report what happened through `emit`."""
    from mmtrack.interventions import parse
    from mmtrack.run import run_config

    runs = tracking.runs_of_config(client, exp_id, cfg.hash)
    if any(r.info.status == "FINISHED" for r in runs):
        emit(Event("skipped", cfg.run_name, cfg.hash))
        return
    failed_now = [r for r in runs if r.info.status == "FAILED" and r.info.start_time >= since_ms > 0]
    if failed_now:  # another worker of this sweep tried it already: one attempt per sweep
        emit(Event("failed", cfg.run_name, cfg.hash, failed_now[0].info.run_id,
                   failed_now[0].data.tags.get(tracking.ERROR_TAG, "failed")))
        return
    for r in runs:  # left RUNNING by a worker that died: we hold the claim, so it is not running any more
        if r.info.status == "RUNNING":
            tracking.fail_run(client, r.info.run_id, "interrupted: its worker died before it finished")
    emit(Event("start", cfg.run_name, cfg.hash))
    start = time.perf_counter()
    try:
        result = run_config(cfg, client, exp_id, parse(study.interventions), study.eval_settings(), data_dir=data_dir,
                            extra_tags={tracking.STUDY_NAME_TAG: study.name}, run_name=cfg.short_name(study.reference()))
    except Exception as exc:  # noqa: BLE001 - recorded FAILED on the run; the sweep goes on
        emit(Event("failed", cfg.run_name, cfg.hash, error=f"{type(exc).__name__}: {exc}",
                   seconds=time.perf_counter() - start))
        return
    emit(Event("finished", cfg.run_name, cfg.hash, result.run_id, seconds=time.perf_counter() - start))


def work(study: Study, configs: list[RunConfig], client, exp_id: str, emit: Callable[[Event], None],
         since_ms: int = 0, should_stop: Callable[[], bool] = lambda: False, data_dir: str | None = None) -> None:
    """One worker's loop: claim the next unclaimed configuration, execute it, repeat until none is left.
    The most expensive configurations go first, so that parallel workers finish together."""
    pending = sorted(configs, key=relative_cost, reverse=True)
    while pending and not should_stop():
        progressed = False
        for cfg in list(pending):
            with claim(lock_dir(exp_id), cfg.hash) as mine:
                if not mine:
                    continue
                pending.remove(cfg)
                execute(study, cfg, client, exp_id, emit, since_ms, data_dir)
                progressed = True
                break
        if not progressed:  # all remaining ones are held by other workers: wait for them
            for cfg in list(pending):
                if cfg.hash in tracking.finished_hashes(client, exp_id):
                    pending.remove(cfg)
                    emit(Event("skipped", cfg.run_name, cfg.hash))
            time.sleep(0.5)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the sweep dies, so `kill -9` of a sweep stops its workers too."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_main(study: Study, configs: list[RunConfig], uri: str, exp_id: str, threads: int, since_ms: int,
                 data_dir: str | None, queue) -> None:
    _die_with_parent()
    import logging
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "art"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    client = tracking.connect(uri)
    parent = os.getppid()
    work(study, configs, client, exp_id, queue.put, since_ms, should_stop=lambda: os.getppid() != parent,
         data_dir=data_dir)
    queue.put(None)


def sweep(study: Study, workers: int = 1, uri: str | None = None,
          on_event: Callable[[Event], None] = lambda ev: None, data_dir: str | None = None) -> Summary:
    """Run the whole study into the experiment named after it; returns what happened."""
    if workers < 1:
        raise MMTrackError(f"--workers must be at least 1, got {workers}")
    uri = tracking.resolve_uri(uri)
    client = tracking.connect(uri)
    exp_id = tracking.experiment_id(client, study.name, create=True, tags={tracking.STUDY_TAG: study.to_json()})
    configs = study.configs()
    since_ms = int(time.time() * 1000)
    done = tracking.finished_hashes(client, exp_id)
    summary = Summary()
    todo = []
    for cfg in configs:
        if cfg.hash in done:
            ev = Event("skipped", cfg.run_name, cfg.hash)
            summary.add(ev)
            on_event(ev)
        else:
            todo.append(cfg)

    def emit(ev: Event) -> None:
        summary.add(ev)
        on_event(ev)

    threads = max(1, cpu_budget() // workers)
    if workers == 1 or len(todo) <= 1:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            work(study, todo, client, exp_id, emit, since_ms, data_dir=data_dir)
        finally:
            torch.set_num_threads(previous)
        return summary
    crashed, _errors = run_processes(_worker_main, (study, todo, uri, exp_id, threads, since_ms, data_dir),
                                     min(workers, len(todo)), emit)
    if crashed:
        raise MMTrackError(f"{len(crashed)} sweep worker(s) died (exit codes {crashed}); rerun the sweep to "
                           "finish the remaining configurations (finished runs are kept)")
    return summary


def run_processes(target, args: tuple, n: int, emit: Callable[[Event], None]) -> tuple[list[int], list[str]]:
    """Run `target(*args, queue)` in `n` spawned processes (torch's thread pools are not fork-safe) and forward
    the Events they put on the queue to `emit` until each has put None. Workers report an error they stopped on
    as ("error", message). Returns the exit codes of crashed processes and the reported errors."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, queue), daemon=True) for _ in range(n)]
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
