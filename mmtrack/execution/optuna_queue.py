"""`OptunaQueue`: the work queue of `mmtrack worker` and `mmtrack sweep --storage`, for any number of workers on
any number of machines, kept in an Optuna study in a shared RDB storage (PostgreSQL; SQLite on one machine).

How it keeps the contract of `mmtrack.execution.queue`:

- The study is named `<study name>:<digest of its configuration hashes>` (`queue_name`), so an edited study
  file gets a queue of its own. Never change that name: running queues would be orphaned.
- A round is a study user attribute (`round`). Seeding enqueues one WAITING trial per configuration not
  FINISHED in MLflow (`study.enqueue_trial({"config": index}, user_attrs={"round", "hash", "run_name"})`).
- Claiming is `study.ask()`, which turns the first WAITING trial RUNNING (on PostgreSQL under a row lock, so
  two workers never pop one trial), then `trial.suggest_int("config", ...)`, which returns the enqueued index
  and records it as the trial's parameter.
- Why not `GridSampler`: with concurrent workers it can hand one grid point to two of them (it picks a random
  unvisited point from a snapshot; on an exhausted grid it re-evaluates a random point), and a second round
  would need a fresh study. Enqueued trials popped by `ask()` hand each index out once.
- Finishing is `study.tell(trial, state=COMPLETE | FAIL)`; the outcome, run id and the training seconds are
  trial user attributes (`seconds`), since the study optimises nothing (Optuna requires some objective value
  for COMPLETE: it is 0.0).
- Expiry: while it trains, a worker records an Optuna heartbeat every `heartbeat` seconds (default 10). A
  RUNNING trial whose heartbeat is older than `grace` seconds (default 30) belongs to a dead worker; the next
  worker that looks for work fails it (`optuna.storages.fail_stale_trials`) and Optuna's
  `RetryHeartbeatStaleTrialCallback(max_retry)` enqueues a copy (at most `max_retry` times, default 3). A live
  worker's claim expires only if its heartbeat thread stalls for `grace` seconds: keep grace >= 3 x heartbeat.
- Hand-back: the trial is told FAIL (user attribute `outcome: handed back: <why>`) and the index re-enqueued.
- Unreachable storage: checked before anything starts (one line naming the URL, password hidden). Later, a
  storage that goes away (a PostgreSQL restart, a dropped connection) is waited for with backoff, up to the
  worker's `--server-wait` (`storage.patiently`), and each queue operation is then tried again whole (each is safe to
  repeat: see each); beyond that wait, one line naming the URL. Heartbeats missed meanwhile do not expire live
  claims: no claim is expired within `grace` seconds of the storage being back (`_fail_stale`). A run is logged
  to MLflow before its trial is told, so losing the storage afterwards loses nothing: the trial expires and
  whoever retries it finds the FINISHED run.

What Optuna's public API does not give, kept here with the reason at each place: the queue lock (`_Lock`), the
heartbeat recorded before the claim, and a heartbeat thread that survives storage hiccups (`_Heartbeat`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmtrack.errors import MMTrackError
from mmtrack.execution.events import Event
from mmtrack.execution.queue import Claim, WorkQueue, by_cost
from mmtrack.execution.storage import check_storage, driver_url, patiently
from mmtrack.execution.storage import scheme as _scheme
from mmtrack.study import Study, StudyPlan
from mmtrack.tags import STUDY_TAG

# optuna, sqlalchemy and the tracking layer (pandas) are imported where used: `mmtrack --help` reads the defaults
# below without loading them.

DEFAULT_HEARTBEAT = 10  # seconds between heartbeats of a training worker
DEFAULT_GRACE = 30  # seconds without heartbeat after which a claim is expired and its configuration retried
DEFAULT_MAX_RETRY = 3  # expiries retried per configuration and round
PARAM = "config"  # the Optuna parameter: the configuration's index in the plan's configs
LOCK_TIMEOUT_S = 120  # PostgreSQL frees the queue lock of a session idle this long inside its transaction
HANDED_BACK = "handed back: "  # the `outcome` user attribute of a trial given back unsettled
QUEUED_ATTRS = ("round", "hash", "run_name")  # the user attributes of a WAITING trial; a hand-back keeps them

log = logging.getLogger("mmtrack")


def queue_name(study: Study | StudyPlan) -> str:
    """The Optuna study behind a mmtrack study: its name plus a digest of its configurations."""
    plan = StudyPlan.of(study)
    digest = hashlib.sha256(" ".join(c.hash for c in plan.configs).encode()).hexdigest()[:8]
    return f"{plan.name}:{digest}"


class _Lock:
    """The queue lock, held for milliseconds around seeding, claiming and handing back. Optuna has none to offer:
    - seeding must be atomic (two workers finding an empty round would both enqueue it);
    - `study.ask()` creates a brand-new trial when it finds nothing WAITING, and Optuna expires only trials that
      have a heartbeat: under the lock the first WAITING trial is the one `ask()` pops, so its heartbeat is
      recorded before the pop and the pop never comes back empty-handed;
    - SQLite ignores the SELECT ... FOR UPDATE that makes Optuna's WAITING->RUNNING update exclusive.
    On PostgreSQL a transaction-level advisory lock (`pg_advisory_xact_lock`; `idle_in_transaction_session_timeout`
    frees it if the machine holding it vanishes); on SQLite a file lock next to the database."""

    def __init__(self, url: str, name: str):
        self.url, self.name = url, name
        self.key = int.from_bytes(hashlib.sha256(f"mmtrack-queue:{name}".encode()).digest()[:8], "big", signed=True)
        self.engine = None
        self.scheme = _scheme(url)
        if self.scheme.lock == "advisory":
            import sqlalchemy

            self.engine = sqlalchemy.create_engine(
                driver_url(url), pool_size=1, max_overflow=0, pool_pre_ping=True, connect_args={"connect_timeout": 10}
            )

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self.scheme.lock == "file":  # SQLite: one machine, a file lock next to the database
            from mmtrack import tracking

            with tracking.file_lock(Path(tracking.local_path(self.url) + f".{self.key & 0xFFFFFFFF:08x}.lock")):
                yield
            return
        import sqlalchemy

        with self.engine.connect() as conn, conn.begin():
            conn.execute(sqlalchemy.text(f"SET LOCAL idle_in_transaction_session_timeout = '{LOCK_TIMEOUT_S}s'"))
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": self.key})
            yield

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


class _Heartbeat:
    """Records the claim's heartbeat every `interval` seconds from a thread while training runs. Optuna's own
    `HeartbeatThread` is private (`optuna.storages._heartbeat`) and ends at the first storage error; a storage
    hiccup here is retried at the next beat, so a claim expires only when its worker is really gone."""

    def __init__(self, storage, trial_id: int, interval: int, on_down=lambda: None):
        self.storage, self.trial_id, self.interval, self.on_down = storage, trial_id, interval, on_down
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mmtrack-heartbeat", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - the next beat tries again
                self.on_down()
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


@dataclass
class TrialClaim(Claim):
    trial: Any = None  # the optuna.Trial popped by study.ask()
    trial_id: int = -1
    number: int = -1


class OptunaQueue(WorkQueue):
    """The study's configurations as Optuna trials in the storage (see the module docstring)."""

    def __init__(
        self,
        study: Study | StudyPlan,
        storage_url: str,
        heartbeat: int = DEFAULT_HEARTBEAT,
        grace: int = DEFAULT_GRACE,
        max_retry: int = DEFAULT_MAX_RETRY,
        poll: float | None = None,
    ):
        if heartbeat < 1 or grace <= heartbeat:
            raise MMTrackError(f"--heartbeat must be >= 1 s and --grace longer than it (got {heartbeat}, {grace})")
        if max_retry < 0:
            raise MMTrackError(f"--max-retry must be >= 0, got {max_retry}")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        check_storage(storage_url)
        plan = StudyPlan.of(study)
        self.url = storage_url
        self.configs = list(plan.configs)
        self.by_hash = {cfg.hash: i for i, cfg in enumerate(self.configs)}
        self.name = queue_name(plan)
        self.heartbeat_s, self.grace = heartbeat, grace
        self.poll = poll if poll is not None else min(heartbeat, 5)
        self.lock = _Lock(storage_url, self.name)
        self.trouble_at = -float("inf")  # time.monotonic() of the last storage error this process saw

        def open_queue() -> None:
            with self.lock(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeat arguments are marked experimental
                # Under the lock: the first workers on an empty database would race on creating Optuna's tables.
                self.storage = optuna.storages.RDBStorage(
                    driver_url(storage_url),
                    engine_kwargs=self._engine_kwargs(storage_url),
                    heartbeat_interval=heartbeat,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry),
                )
                self.optuna_study = optuna.create_study(storage=self.storage, study_name=self.name, load_if_exists=True)
                self.optuna_study.set_user_attr(STUDY_TAG, plan.study.to_json())

        self._call("opening the queue", open_queue)

    @staticmethod
    def _engine_kwargs(url: str) -> dict:
        return dict(_scheme(url).engine_kwargs)

    def _call(self, what: str, fn):
        """`fn()` through a storage that may be restarting (`storage.patiently`), noting when it was last away."""
        return patiently(self.url, what, fn, self._note_trouble)

    def _note_trouble(self) -> None:
        self.trouble_at = time.monotonic()

    def _trials(self, *states) -> list:
        return self.optuna_study.get_trials(deepcopy=False, states=states or None)

    def _fail_stale(self) -> None:
        """Expire the claims of dead workers (see the module docstring), except shortly after the storage was
        away: then every live worker's last heartbeat is old too (it could not beat meanwhile), and expiring its
        claim would have its configuration trained twice at once. So not within `grace` seconds of PostgreSQL's
        start (a restart) or of a storage error this process saw: by then every live claim has beaten again."""
        import optuna

        if time.monotonic() - self.trouble_at < self.grace or self._restarted_within(self.grace):
            return

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental
            optuna.storages.fail_stale_trials(self.optuna_study)

    def _restarted_within(self, seconds: float) -> bool:
        if not _scheme(self.url).restarts_visible:
            return False
        import sqlalchemy

        with self.storage.engine.connect() as conn:
            age = conn.execute(sqlalchemy.text("SELECT EXTRACT(EPOCH FROM now() - pg_postmaster_start_time())"))
            return float(age.scalar_one()) < seconds

    def current_round(self) -> int:
        return int(self.optuna_study.user_attrs.get("round", 0))

    # ---------------------------------------------------------------------------------------- under the lock

    def prepare(self, finished: set[str], new_round: bool = True) -> int:
        from optuna.trial import TrialState

        def seed() -> int:
            with self.lock():
                self._fail_stale()
                current = self.current_round()
                if not new_round or self._trials(TrialState.WAITING, TrialState.RUNNING):
                    return current
                current += 1
                for i, cfg in by_cost(self.configs):
                    if cfg.hash not in finished:
                        self.optuna_study.enqueue_trial(
                            {PARAM: i}, user_attrs={"round": current, "hash": cfg.hash, "run_name": cfg.run_name}
                        )
                self.optuna_study.set_user_attr("round", current)
                return current

        return self._call("seeding a round", seed)

    def claim(self, worker: str) -> TrialClaim | None:
        claims = self.claim_group(worker, 1)
        return claims[0] if claims else None

    def claim_group(self, worker: str, limit: int | None = None) -> list[TrialClaim]:
        """The first WAITING trial and the WAITING trials right after it whose configurations differ from its
        only in the seed (`prepare` enqueues a configuration's seeds one after another), at most `limit`."""
        from optuna.trial import TrialState

        start = time.perf_counter()

        def pop_group() -> list[TrialClaim]:
            # Tried again whole if the storage goes away meanwhile: a trial popped before that is RUNNING with a
            # heartbeat and no worker, so it expires and is retried like a dead worker's.
            with self.lock(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ask() warns that heartbeats are meant for Study.optimize
                self._fail_stale()
                waiting = self._trials(TrialState.WAITING)
                if not waiting:
                    return []  # ask() would create a new, empty trial
                key = self._stack_key(waiting[0])
                group = [waiting[0]]
                for t in waiting[1:]:
                    if (limit is not None and len(group) >= limit) or key is None or self._stack_key(t) != key:
                        break
                    group.append(t)
                return [self._pop(worker, t, start) for t in group]

        return self._call("claiming a configuration", pop_group)

    def _stack_key(self, trial) -> str | None:
        index = self.by_hash.get(trial.user_attrs.get("hash", ""))
        return None if index is None else self.configs[index].stack_key

    def _pop(self, worker: str, first_waiting, start: float) -> TrialClaim:
        """Under the lock: pop the first WAITING trial (`first_waiting`) with `ask()`."""
        # The heartbeat goes in before the pop: a worker that dies between claim and first beat still expires
        # (Optuna never expires a RUNNING trial without one). Under the lock, ask() pops this trial.
        self.storage.record_heartbeat(first_waiting._trial_id)
        trial = self.optuna_study.ask()
        if trial._trial_id != first_waiting._trial_id:  # not expected under the lock; keep the claim expirable
            self.storage.record_heartbeat(trial._trial_id)
        index = trial.suggest_int(PARAM, 0, len(self.configs) - 1)  # the enqueued index, now a param
        cfg = self.configs[index]
        if cfg.hash != trial.user_attrs.get("hash", cfg.hash):
            raise MMTrackError(
                f"queue {self.name}: trial {trial.number} names configuration {index} with another "
                "hash; the study file differs between workers"
            )
        seconds = time.perf_counter() - start
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("claim_seconds", round(seconds, 4))
        return TrialClaim(
            cfg, index, int(trial.user_attrs.get("round", 0)), seconds, trial, trial._trial_id, trial.number
        )

    def hand_back(self, claim: TrialClaim, reason: str) -> None:
        """Under the lock, so that no `prepare` sees the round empty between the FAIL and the re-enqueue. Called
        while the worker stops (Ctrl-C, a lost server): a hand-back that fails does not hide the reason it stops,
        it is logged, and the claim then expires after --grace like a dead worker's and is retried."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        try:
            with self.lock():
                try:
                    claim.trial.set_user_attr("outcome", HANDED_BACK + reason)
                    self.optuna_study.tell(claim.trial, state=TrialState.FAIL)
                except (UpdateFinishedTrialError, ValueError):
                    return  # already expired (and re-queued by the retry callback)
                attrs = {k: v for k, v in claim.trial.user_attrs.items() if k in QUEUED_ATTRS}
                self.optuna_study.enqueue_trial({PARAM: claim.index}, user_attrs={**attrs, "handed_back": claim.number})
        except Exception as exc:  # noqa: BLE001 - logged; the claim expires after --grace instead
            log.warning(
                "could not hand %s back to the queue (%s: %s); its claim expires after --grace (%s s) and another "
                "worker retries it",
                claim.config.run_name,
                type(exc).__name__,
                str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                self.grace,
            )

    # ---------------------------------------------------------------------------------------- outside the lock

    def heartbeat(self, claim: TrialClaim) -> _Heartbeat:
        return _Heartbeat(self.storage, claim.trial_id, self.heartbeat_s, self._note_trouble)

    def active(self) -> bool:
        from optuna.trial import TrialState

        return self._call("reading the queue", lambda: bool(self._trials(TrialState.WAITING, TrialState.RUNNING)))

    def finish(self, claim: TrialClaim, ev: Event, seconds: float) -> bool:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        attrs = {
            "outcome": ev.kind,
            "run_id": ev.run_id,
            "seconds": round(ev.seconds, 4),
            "execute_seconds": round(seconds, 4),
        }
        if ev.error:
            attrs["error"] = ev.error[:1000]
        state = TrialState.FAIL if ev.kind == "failed" else TrialState.COMPLETE

        def tell() -> bool:  # tried again whole: user attributes and a skip_if_finished tell are idempotent
            try:
                for key, value in attrs.items():
                    claim.trial.set_user_attr(key, value)
                told = self.optuna_study.tell(
                    claim.trial, None if state == TrialState.FAIL else 0.0, state, skip_if_finished=True
                )
            except UpdateFinishedTrialError:
                return False  # expired meanwhile (heartbeat stalled for longer than the grace period)
            return told.state == state

        return self._call("settling a configuration", tell)

    def outcomes(self, round_: int) -> list[Event]:
        from optuna.trial import TrialState

        trials = [t for t in self._call("reading the queue", self._trials) if t.user_attrs.get("round") == round_]
        best: dict[int, Event] = {}
        for t in sorted(trials, key=lambda t: t.number):
            index = self.by_hash.get(t.user_attrs.get("hash", ""))
            if index is None or str(t.user_attrs.get("outcome", "")).startswith(HANDED_BACK):
                continue  # not this study's, or given back unsettled
            cfg = self.configs[index]
            if t.state == TrialState.COMPLETE:
                kind = "finished" if t.user_attrs.get("outcome") == "finished" else "skipped"
                # trials told before the `seconds` attribute existed hold the seconds as their value
                seconds = t.user_attrs.get("seconds", t.values[0] if t.values else 0.0)
                ev = Event(kind, cfg.run_name, cfg.hash, t.user_attrs.get("run_id"), seconds=seconds)
            elif t.state == TrialState.FAIL:
                error = t.user_attrs.get("error") or "its worker stopped sending heartbeats (died) too often"
                ev = Event("failed", cfg.run_name, cfg.hash, t.user_attrs.get("run_id"), error)
            else:
                continue
            if index not in best or best[index].kind == "failed":  # a settled retry replaces an expired claim
                best[index] = ev
        return list(best.values())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.storage.remove_session()
            self.storage.engine.dispose()
        self.lock.close()


def queue_states(study: Study | StudyPlan, storage_url: str) -> dict[str, str] | None:
    """What the queue in `storage_url` last says of each configuration of `study` (by hash): its latest trial's
    "finished" or "skipped" (COMPLETE), "failed", "handed back", "running" or "waiting"; None when the study has
    no queue there. Read only: nothing is created (`mmtrack sweep --dry-run --storage`)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_storage(storage_url)

    def read() -> list | None:
        try:
            queue = optuna.load_study(study_name=queue_name(study), storage=driver_url(storage_url))
        except KeyError:  # no such study in the storage
            return None
        return queue.get_trials(deepcopy=False)

    trials = patiently(storage_url, "reading the queue", read)
    if trials is None:
        return None
    names = {
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
        TrialState.FAIL: "failed",
        TrialState.COMPLETE: "skipped",
    }
    states: dict[str, str] = {}
    for t in sorted(trials, key=lambda t: t.number):
        outcome = str(t.user_attrs.get("outcome", ""))
        state = names.get(t.state, t.state.name.lower())
        if outcome.startswith(HANDED_BACK):
            state = "handed back"
        elif t.state == TrialState.COMPLETE and outcome == "finished":
            state = "finished"
        states[t.user_attrs.get("hash", "")] = state
    return states
