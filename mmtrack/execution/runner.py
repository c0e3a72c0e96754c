"""Training what a work queue hands out: `execute_group` (a configuration's claimed seeds) and `work` (the one
worker loop, for any `WorkQueue`). The entry points that start workers are `launch`:

- `launch.sweep`: a study on this machine through `FileLockQueue`, in this process or `workers` spawned processes;
- `launch.run_worker`: one worker of an `OptunaQueue` (`mmtrack worker`, on any machine);
- `launch.sweep_with_storage`: start or join a round of an `OptunaQueue` and run `workers` local workers on it.

MLflow stays the truth: after each claim `execute_group` re-reads the configuration's runs, so one with a FINISHED
run is reported skipped and never trained again, and runs left RUNNING by a dead worker are marked FAILED (the
claim proves their worker is gone). A worker that loses the tracking server hands its configuration back and
stops with one line naming the server. Resumable: a rerun trains what is not FINISHED.
Worker processes are spawned (torch's thread pools are not fork-safe), split the CPU threads, and die with
their parent (`die_with_parent`); SQLite writes from several processes wait on SQLite's busy timeout.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator

from mmtrack import tracking
from mmtrack.errors import MMTrackError
from mmtrack.execution.events import Event
from mmtrack.execution.queue import WorkQueue
from mmtrack.study import Study, StudyPlan
from mmtrack.training.config import RunConfig

__all__ = [
    "die_with_parent",
    "execute_group",
    "raise_interrupt",
    "work",
    "worker_devices",
    "worker_id",
]

log = logging.getLogger("mmtrack")
Emit = Callable[[Event], None]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def raise_interrupt(signum, frame) -> None:
    """SIGTERM: stop like Ctrl-C (the run is marked KILLED, the claim handed back); a second one while
    cleaning up is ignored (an Optuna claim would expire after the grace period anyway)."""
    signal.signal(signum, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def die_with_parent() -> None:
    """Linux: a worker process gets SIGKILL when its parent dies, so `kill -9` of a sweep stops its workers too."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Train with `n` torch threads, restoring the previous number after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def worker_devices(devices: list[str], per_device: int = 1) -> list[str]:
    """The device of each local worker: `per_device` workers on each of `devices` (e.g. cuda:0,cuda:1)."""
    if per_device < 1:
        raise MMTrackError(f"--workers-per-device must be at least 1, got {per_device}")
    from mmtrack.training.device import check_devices

    check_devices(devices)
    return [name for name in devices for _ in range(per_device)]


def check_stack(stack: int) -> None:
    if not isinstance(stack, int) or stack < 0:
        raise MMTrackError(f"--stack must be 0 (every seed of a configuration together) or more, got {stack}")


# ------------------------------------------------------------------------------------------------ one configuration


def _to_train(cfg: RunConfig, client, exp_id: str, emit: Emit, since_ms: int) -> bool:
    """Whether a claimed configuration is still to train: not when it is FINISHED (reported skipped) or FAILED
    already in this round, which started at `since_ms` (0: no such check; reported failed). Runs left RUNNING by
    a worker that died are marked FAILED: we hold the claim, so they are not running any more."""
    from mmtrack.jobs import spool

    runs = tracking.runs_of_config(client, exp_id, cfg.hash)
    if any(r.info.status == "FINISHED" for r in runs):
        spool.drop(cfg)  # a model kept here that another worker has logged meanwhile
        emit(Event("skipped", cfg.run_name, cfg.hash))
        return False
    failed_now = [r for r in runs if r.info.status == "FAILED" and r.info.start_time >= since_ms > 0]
    if failed_now:  # another worker of this round tried it already: one attempt per round
        run = failed_now[0]
        emit(Event("failed", cfg.run_name, cfg.hash, run.info.run_id, run.data.tags.get(tracking.ERROR_TAG, "failed")))
        return False
    for r in runs:
        if r.info.status == "RUNNING":
            tracking.fail_run(client, r.info.run_id, "interrupted: its worker died before it finished")
    return True


def execute_group(
    plan: StudyPlan,
    cfgs: list[RunConfig],
    client,
    exp_id: str,
    emit: Emit,
    since_ms: int = 0,
    data_dir: str | None = None,
    device: str | None = None,
) -> None:
    """Train claimed configurations that differ only in their seed: those still to train (`_to_train`) as one
    stacked network, each into its own run (`run.run_configs`); one alone exactly as `mmtrack train` does
    (`run.run_config`). Report what happened to each through `emit`. `plan`: the study as prepared once for this
    worker (its interventions parsed, its reference configuration built)."""
    from mmtrack.jobs import spool
    from mmtrack.jobs.train_run import run_config, run_configs

    todo = [cfg for cfg in cfgs if _to_train(cfg, client, exp_id, emit, since_ms)]
    if not todo:
        return
    for cfg in todo:
        emit(Event("start", cfg.run_name, cfg.hash))
    reference = plan.reference
    common = dict(
        interventions=list(plan.interventions),
        settings=plan.settings,
        data_dir=data_dir,
        extra_tags={tracking.STUDY_NAME_TAG: plan.name},
        device=device,
    )
    # a configuration with a model this machine trained but could not log is logged alone, without training
    spooled = [cfg for cfg in todo if spool.folder(cfg).is_dir()]
    groups = [[cfg] for cfg in spooled] + ([rest] if (rest := [c for c in todo if c not in spooled]) else [])
    for group in groups:
        start = time.perf_counter()
        try:
            if len(group) == 1:
                results = [run_config(group[0], client, exp_id, run_name=group[0].short_name(reference), **common)]
            else:
                names = [cfg.short_name(reference) for cfg in group]
                results = run_configs(group, client, exp_id, run_names=names, **common)
        except Exception as exc:  # noqa: BLE001 - recorded FAILED on the runs; the sweep goes on
            results, shared = [exc] * len(group), len(group) > 1
        else:
            shared = False
        seconds = time.perf_counter() - start
        for cfg, result in zip(group, results):
            if isinstance(result, Exception):
                error = f"{type(result).__name__}: {result}"
                run_id = None if shared else getattr(result, "run_id", None)  # the run this error FAILED
                emit(Event("failed", cfg.run_name, cfg.hash, run_id, error=error, seconds=seconds))
            else:
                emit(Event("finished", cfg.run_name, cfg.hash, result.run_id, seconds=seconds))


def _tracking_problem(uri: str) -> MMTrackError | None:
    """The tracking store's unreachability as an error, or None when it answers (a local store always does)."""
    try:
        tracking.check_store(uri)
    except MMTrackError as exc:
        return MMTrackError(
            f"{exc.message} (finished runs are kept; this worker's configuration went back to the queue)"
        )
    return None


def _with_kept(problem: MMTrackError, cfgs: list[RunConfig]) -> MMTrackError:
    """The lost-server line, saying where the models trained before it went away wait to be logged."""
    from mmtrack.jobs import spool

    kept = [str(spool.folder(cfg)) for cfg in cfgs if spool.folder(cfg).is_dir()]
    if not kept:
        return problem
    where = kept[0] if len(kept) == 1 else f"{spool.folder(cfgs[0]).parent}/ ({len(kept)} models)"
    return MMTrackError(f"{problem.message}; trained weights kept in {where}: a rerun on this machine logs them")


# ------------------------------------------------------------------------------------------------ the worker loop


def _settle(emit: Emit, outcome: dict[str, Event], ev: Event) -> None:
    """Report "start" at once; keep outcomes until they are known not to come from a lost tracking server."""
    if ev.kind == "start":
        emit(ev)
    else:
        outcome[ev.hash] = ev


def work(
    queue: WorkQueue,
    study: Study | StudyPlan,
    client,
    exp_id: str,
    uri: str,
    emit: Emit,
    *,
    data_dir: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    stack: int = 0,
    device: str | None = None,
    server_wait: float | None = None,
) -> None:
    """One worker: claim a configuration with the seeds of it still in the round (at most `stack` of them; 0: no
    cap), train them together (inside the queue's heartbeats), settle each, until nothing is left in the round.
    Ctrl-C, SIGTERM or a lost tracking server hand the claimed configurations back before the worker stops.
    Its MLflow calls wait up to `server_wait` seconds (default $MMTRACK_SERVER_WAIT, 600) for a server that went
    away (`tracking.resilience`): a restart within that costs nothing but the wait."""
    plan = StudyPlan.of(study)
    tracking.patient_worker(tracking.server_wait() if server_wait is None else server_wait)
    me = worker_id()
    while not should_stop():
        claims = queue.claim_group(me, stack or None)
        if not claims:
            if not queue.active():
                return
            time.sleep(queue.poll)  # the rest is held by other workers: wait for them
            continue
        outcome: dict[str, Event] = {}
        settle = functools.partial(_settle, emit, outcome)
        start = time.perf_counter()
        try:
            with contextlib.ExitStack() as beats:
                for claim in claims:
                    beats.enter_context(queue.heartbeat(claim))
                execute_group(
                    plan, [c.config for c in claims], client, exp_id, settle, queue.since_ms, data_dir, device
                )
        except BaseException as exc:  # Ctrl-C, SIGTERM, MLflow unreachable before training started
            for claim in claims:
                queue.hand_back(claim, type(exc).__name__)
            if isinstance(exc, Exception) and (problem := _tracking_problem(uri)) is not None:
                raise problem from None
            raise
        if any(ev.kind == "failed" for ev in outcome.values()) and (problem := _tracking_problem(uri)) is not None:
            for claim in claims:
                queue.hand_back(claim, "tracking server unreachable")
            raise _with_kept(problem, [c.config for c in claims])
        for claim in claims:
            ev = outcome[claim.config.hash]
            emit(ev)
            if not queue.finish(claim, ev, time.perf_counter() - start):
                log.warning(
                    "the claim on %s had expired before it finished (heartbeat stalled > %ss); another worker may "
                    "have trained it too",
                    claim.config.run_name,
                    getattr(queue, "grace", "?"),
                )
