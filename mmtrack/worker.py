"""`mmtrack worker`: many workers, on any number of machines, training one study's configurations, each exactly
once, handed out through an Optuna study in a shared RDB storage (PostgreSQL) and logged to one MLflow server.

The queue. The Optuna study (in the storage, named `<study name>:<digest of its configuration hashes>`, so an
edited study file gets a queue of its own) holds one trial per configuration and *round*:

- Seeding: a worker that finds no trial WAITING or RUNNING starts a new round: it enqueues
  (`study.enqueue_trial({"config": index})`) one WAITING trial per configuration that is not FINISHED in MLflow.
  Rerunning workers after a round therefore retries exactly what failed or never ran.
- Claiming: a worker takes the first WAITING trial and turns it RUNNING (`storage.set_trial_state_values`).
- Why not `GridSampler`: with concurrent workers it can hand one grid point to two of them (it picks a random
  unvisited point from a snapshot; on an exhausted grid it re-evaluates a random point), and a second round
  would be a fresh study. Enqueued trials plus a claim under a lock hand each index out once.
- The lock: seeding, claiming and failing stale trials happen under one lock per queue, held for milliseconds:
  a PostgreSQL transaction-level advisory lock (`pg_advisory_xact_lock`; the session has
  `idle_in_transaction_session_timeout`, so a machine that vanishes while holding it frees it) or, for a local
  SQLite storage, a file lock. (Optuna's own WAITING->RUNNING update relies on SELECT ... FOR UPDATE, which
  SQLite ignores.) Training and finishing happen outside the lock.
- Expiry of dead claims: while it trains, a worker records an Optuna heartbeat every `heartbeat` seconds
  (default 10). A RUNNING trial whose heartbeat is older than `grace` seconds (default 30) belongs to a dead
  worker (SIGKILL, lost machine): the next worker that looks for work marks it FAIL
  (`optuna.storages.fail_stale_trials`) and Optuna's `RetryHeartbeatStaleTrialCallback` enqueues it again
  (at most `max_retry` times, default 3, so a configuration that kills its worker cannot loop forever). A
  worker stopped by Ctrl-C or SIGTERM hands its configuration back at once. The heartbeat is also written just
  before the claim, so a worker that dies between claim and first beat still expires. A live worker's claim
  expires only if its heartbeat thread stalls for `grace` seconds; keep grace >= 3 x heartbeat.
- MLflow stays the truth: before training, `sweep.execute` re-reads MLflow; a configuration with a FINISHED run
  is never trained again (it is reported "skipped"), and runs left RUNNING by a dead worker are marked FAILED.
- A worker stops when the round has nothing WAITING or RUNNING: every configuration is finished, or failed in
  this round (a training error is recorded, not retried in the same round, like `mmtrack sweep`).
- Unreachable servers: both are checked before anything starts (one line naming the URL, password hidden).
  A run is logged to MLflow before its trial is completed, so losing the storage afterwards loses nothing: the
  trial expires and whoever retries it finds the FINISHED run. Losing the tracking server mid-training hands
  the configuration back and stops the worker with one line naming the server.

`mmtrack sweep --storage URL --workers N` starts N local worker processes on this same path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from mmtrack import settings
from mmtrack.errors import MMTrackError

if TYPE_CHECKING:  # kept out of import time: `mmtrack --help` registers worker_command without torch
    from mmtrack.study import Study
    from mmtrack.sweep import Event, Summary

DEFAULT_HEARTBEAT = 10  # seconds between heartbeats of a training worker
DEFAULT_GRACE = 30  # seconds without heartbeat after which a claim is expired and its configuration retried
DEFAULT_MAX_RETRY = 3  # expiries retried per configuration and round
PARAM = "config"  # the Optuna parameter: the configuration's index in study.configs()
LOCK_TIMEOUT_S = 120  # PostgreSQL frees the queue lock of a session idle this long inside its transaction

log = logging.getLogger("mmtrack")


def _redact(url: str) -> str:
    from mmtrack import tracking

    return tracking.redact(url)


def _driver_url(url: str) -> str:
    """`postgresql://` means psycopg (v3) to SQLAlchemy 2.1; use psycopg2 when that is what is installed."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        try:
            import psycopg  # noqa: F401

            return "postgresql://" + rest
        except ImportError:
            return "postgresql+psycopg2://" + rest
    return url


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _unreachable(url: str, exc: BaseException | None = None) -> MMTrackError:
    why = f" ({_first_line(exc)})" if exc is not None else ""
    return MMTrackError(f"Optuna storage {_redact(url)} is unreachable{why}; start it (tracking/start-stack.sh) "
                        "or fix --storage / $MMTRACK_STORAGE (finished runs are kept in MLflow)")


def check_storage(url: str, timeout: int = 5) -> None:
    """Fail fast, in one line naming the URL, when the storage cannot be reached."""
    if not url.startswith(("postgresql", "postgres://", "sqlite:///")):
        raise MMTrackError(f"--storage must be a postgresql://user:password@host:port/db URL (or sqlite:///file "
                           f"for one machine), got {_redact(url)}")
    if url.startswith("sqlite:///"):
        parent = Path(url[len("sqlite:///"):]).parent
        if not parent.is_dir():
            raise MMTrackError(f"Optuna storage {url}: folder {parent} does not exist")
        return
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(_driver_url(url), connect_args={"connect_timeout": timeout})
        with engine.connect() as conn:
            inspector = sqlalchemy.inspect(conn)
            mlflow_db = inspector.has_table("experiments") and inspector.has_table("runs")
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any driver error means: cannot reach it
        raise _unreachable(url, exc) from None
    if mlflow_db:  # Optuna and MLflow both keep an `alembic_version` table: they cannot share a database
        raise MMTrackError(f"Optuna storage {_redact(url)} is MLflow's database; give Optuna a database of its "
                           "own on the same server (tracking/start-stack.sh creates `mmtrack_optuna`)")


@contextlib.contextmanager
def _storage_errors(url: str) -> Iterator[None]:
    """Database errors while talking to the storage become one line naming it."""
    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError

    try:
        yield
    except (sqlalchemy.exc.DBAPIError, StorageInternalError) as exc:
        cause = exc if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc.__cause__
        if isinstance(cause, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            raise _unreachable(url, cause) from None
        raise


class _Lock:
    """The queue lock (see the module docstring): a PostgreSQL advisory lock, or a file lock for SQLite."""

    def __init__(self, url: str, name: str):
        self.url, self.name = url, name
        self.key = int.from_bytes(hashlib.sha256(f"mmtrack-queue:{name}".encode()).digest()[:8], "big", signed=True)
        self.engine = None
        if url.startswith("postgres"):
            import sqlalchemy

            self.engine = sqlalchemy.create_engine(_driver_url(url), pool_size=1, max_overflow=0, pool_pre_ping=True,
                                                   connect_args={"connect_timeout": 10})

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self.engine is None:  # SQLite: one machine, a file lock next to the database
            from mmtrack import tracking

            with tracking.file_lock(Path(self.url[len("sqlite:///"):] + f".{self.key & 0xFFFFFFFF:08x}.lock")):
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


def queue_name(study: Study) -> str:
    """The Optuna study behind a mmtrack study: its name plus a digest of its configurations."""
    digest = hashlib.sha256(" ".join(c.hash for c in study.configs()).encode()).hexdigest()[:8]
    return f"{study.name}:{digest}"


@dataclass
class Claim:
    trial_id: int
    number: int
    index: int
    round: int
    seconds: float  # time spent claiming (lock wait + queue queries)


class ConfigQueue:
    """The study's configurations as Optuna trials in the storage: seed a round, claim, finish, hand back."""

    def __init__(self, study: Study, storage_url: str, heartbeat: int = DEFAULT_HEARTBEAT,
                 grace: int = DEFAULT_GRACE, max_retry: int = DEFAULT_MAX_RETRY):
        if heartbeat < 1 or grace <= heartbeat:
            raise MMTrackError(f"--heartbeat must be >= 1 s and --grace longer than it (got {heartbeat}, {grace})")
        if max_retry < 0:
            raise MMTrackError(f"--max-retry must be >= 0, got {max_retry}")
        import optuna
        from optuna.distributions import IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        check_storage(storage_url)
        self.url = storage_url
        self.configs = study.configs()
        self.name = queue_name(study)
        self.heartbeat = heartbeat
        self.distribution = IntDistribution(0, len(self.configs) - 1)
        self.lock = _Lock(storage_url, self.name)
        with _storage_errors(storage_url), self.lock(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeat arguments are marked experimental
            # Under the lock: the first workers on an empty database would race on creating Optuna's tables.
            self.storage = optuna.storages.RDBStorage(
                _driver_url(storage_url), engine_kwargs=self._engine_kwargs(storage_url),
                heartbeat_interval=heartbeat, grace_period=grace,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry))
            self.study = optuna.create_study(storage=self.storage, study_name=self.name, load_if_exists=True)
        self.study_id = self.storage.get_study_id_from_name(self.name)
        self.study.set_user_attr("mmtrack.study", study.to_json())

    @staticmethod
    def _engine_kwargs(url: str) -> dict:
        if url.startswith("postgres"):
            return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
        return {"connect_args": {"timeout": 60}}  # SQLite: wait for other writers instead of failing

    # ---------------------------------------------------------------------------------------- under the lock

    def _fail_stale(self) -> None:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(self.study)

    def _trials(self, states=None) -> list:
        return self.storage.get_all_trials(self.study_id, deepcopy=False, states=states)

    def current_round(self) -> int:
        return int(self.storage.get_study_user_attrs(self.study_id).get("round", 0))

    def prepare(self, finished: set[str], new_round: bool = True) -> int:
        """Join the round in progress, or (when allowed) start a new one with every configuration not in
        `finished` (the hashes FINISHED in MLflow). Returns the round number."""
        from optuna.trial import TrialState

        with _storage_errors(self.url), self.lock():
            self._fail_stale()
            current = self.current_round()
            if not new_round or self._trials((TrialState.WAITING, TrialState.RUNNING)):
                return current
            current += 1
            from mmtrack.sweep import relative_cost

            # most expensive first, so that the workers finish together
            for i, cfg in sorted(enumerate(self.configs), key=lambda ic: -relative_cost(ic[1])):
                if cfg.hash not in finished:
                    self.study.enqueue_trial({PARAM: i}, user_attrs={"round": current, "hash": cfg.hash,
                                                                     "run_name": cfg.run_name})
            self.storage.set_study_user_attr(self.study_id, "round", current)
            return current

    def claim(self, worker: str) -> Claim | None:
        """Take the first WAITING trial of the queue (None when there is none)."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        start = time.perf_counter()
        with _storage_errors(self.url), self.lock():
            self._fail_stale()
            for t in self._trials((TrialState.WAITING,)):
                trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, t.number)
                self.storage.record_heartbeat(trial_id)  # so that a claim whose worker dies at once expires too
                try:
                    if not self.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                        continue
                except UpdateFinishedTrialError:
                    continue
                index = int(t.system_attrs.get("fixed_params", t.params)[PARAM])
                if self.configs[index].hash != t.user_attrs.get("hash", self.configs[index].hash):
                    raise MMTrackError(f"queue {self.name}: trial {t.number} names configuration {index} with "
                                       "another hash; the study file differs between workers")
                seconds = time.perf_counter() - start
                self.storage.set_trial_param(trial_id, PARAM, self.distribution.to_internal_repr(index),
                                             self.distribution)
                for key, value in (("worker", worker), ("claim_seconds", round(seconds, 4))):
                    self.storage.set_trial_user_attr(trial_id, key, value)
                return Claim(trial_id, t.number, index, int(t.user_attrs.get("round", 0)), seconds)
        return None

    # ---------------------------------------------------------------------------------------- outside the lock

    def active(self) -> bool:
        """Whether the round still has work: a trial WAITING, or RUNNING on some worker."""
        from optuna.trial import TrialState

        with _storage_errors(self.url):
            return bool(self._trials((TrialState.WAITING, TrialState.RUNNING)))

    def finish(self, claim: Claim, ev: Event, execute_seconds: float) -> bool:
        """Record the outcome: COMPLETE (value: training seconds) or FAIL. False when the claim had expired."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        attrs = {"outcome": ev.kind, "run_id": ev.run_id, "execute_seconds": round(execute_seconds, 4)}
        if ev.error:
            attrs["error"] = ev.error[:1000]
        with _storage_errors(self.url):
            try:
                for key, value in attrs.items():
                    self.storage.set_trial_user_attr(claim.trial_id, key, value)
                if ev.kind == "failed":
                    return self.storage.set_trial_state_values(claim.trial_id, TrialState.FAIL)
                return self.storage.set_trial_state_values(claim.trial_id, TrialState.COMPLETE, [ev.seconds])
            except UpdateFinishedTrialError:
                return False  # expired meanwhile (heartbeat stalled for longer than the grace period)

    def hand_back(self, claim: Claim, reason: str) -> None:
        """Give a claimed configuration back to the queue at once (Ctrl-C, SIGTERM, tracking server lost)."""
        import optuna
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        with contextlib.suppress(Exception), self.lock():
            trial = self.storage.get_trial(claim.trial_id)
            try:
                self.storage.set_trial_user_attr(claim.trial_id, "outcome", f"handed back: {reason}")
                self.storage.set_trial_state_values(claim.trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                return  # already expired and re-queued by another worker
            self.study.add_trial(optuna.trial.create_trial(
                state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
                user_attrs={k: trial.user_attrs[k] for k in ("round", "hash", "run_name") if k in trial.user_attrs},
                system_attrs={"fixed_params": {PARAM: claim.index}, "handed_back": trial.number}))

    def outcomes(self, round_: int) -> list[Event]:
        """The settled outcome of each configuration of a round (finished/skipped/failed), from the trials."""
        from optuna.trial import TrialState

        from mmtrack.sweep import Event

        with _storage_errors(self.url):
            trials = [t for t in self._trials() if t.user_attrs.get("round") == round_]
        best: dict[int, Event] = {}
        for t in sorted(trials, key=lambda t: t.number):
            index = int(t.system_attrs.get("fixed_params", t.params)[PARAM])
            cfg = self.configs[index]
            if t.state == TrialState.COMPLETE:
                kind = "finished" if t.user_attrs.get("outcome") == "finished" else "skipped"
                ev = Event(kind, cfg.run_name, cfg.hash, t.user_attrs.get("run_id"), seconds=t.values[0])
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


class _Heartbeat:
    """Records the claim's heartbeat every `interval` seconds from a thread while training runs."""

    def __init__(self, storage, trial_id: int, interval: int):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mmtrack-heartbeat", daemon=True)

    def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a storage hiccup: the next beat retries
                self.storage.record_heartbeat(self.trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> "_Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def _tracking_problem(uri: str) -> MMTrackError | None:
    """The tracking store's unreachability as an error, or None when it answers."""
    from mmtrack import tracking

    try:
        if uri.startswith(("http://", "https://")):
            tracking.check_server(uri)
        elif uri.startswith(("postgresql", "mysql")):
            tracking.check_database(uri)
    except MMTrackError as exc:
        return MMTrackError(f"{exc.message} (finished runs are kept; this worker's configuration went back to "
                            "the queue)")
    return None


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(study: Study, storage_url: str, tracking_uri: str | None = None,
               emit: Callable[[Event], None] = lambda ev: None, threads: int | None = None, *,
               heartbeat: int = DEFAULT_HEARTBEAT, grace: int = DEFAULT_GRACE, max_retry: int = DEFAULT_MAX_RETRY,
               new_round: bool = True, poll: float | None = None, data_dir: str | None = None) -> Summary:
    """One worker: claim the study's next configuration from the queue in `storage_url`, train it into the
    experiment named after the study, repeat until the round has nothing WAITING or RUNNING.

    `new_round=False` only joins a round in progress (the workers of `sweep_with_storage`); `poll` is the
    wait between looks at the queue while other workers hold the rest (default: the heartbeat interval, at
    most 5 s)."""
    import torch

    from mmtrack import sweep, tracking
    from mmtrack.sweep import Summary

    uri = tracking.resolve_uri(tracking_uri)
    check_storage(storage_url)  # both fail fast, in one line naming the URL
    client = tracking.connect(uri)
    queue = ConfigQueue(study, storage_url, heartbeat, grace, max_retry)
    summary = Summary()

    def report(ev: Event) -> None:
        summary.add(ev)
        emit(ev)

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads or settings.cpu_budget()))
    try:
        exp_id = tracking.experiment_id(client, study.name, create=True, tags={tracking.STUDY_TAG: study.to_json()})
        queue.prepare(tracking.finished_hashes(client, exp_id), new_round)
        me = worker_id()
        while True:
            claim = queue.claim(me)
            if claim is None:
                if not queue.active():
                    return summary
                time.sleep(poll if poll is not None else min(queue.heartbeat, 5))
                continue
            cfg = queue.configs[claim.index]
            outcome: list[Event] = []

            def settle(ev: Event) -> None:  # "start" now; the outcome once it is known not to be a lost server
                if ev.kind == "start":
                    report(ev)
                else:
                    outcome.append(ev)

            start = time.perf_counter()
            try:
                with _Heartbeat(queue.storage, claim.trial_id, queue.heartbeat):
                    # since_ms=0: "one attempt per round" is the queue's job (a retried claim must train)
                    sweep.execute(study, cfg, client, exp_id, settle, 0, data_dir)
            except BaseException as exc:  # Ctrl-C, SIGTERM, MLflow unreachable before training started
                queue.hand_back(claim, type(exc).__name__)
                if isinstance(exc, Exception):
                    raise _tracking_problem(uri) or exc
                raise
            ev = outcome[-1]
            if ev.kind == "failed" and (problem := _tracking_problem(uri)) is not None:
                queue.hand_back(claim, "tracking server unreachable")
                raise problem
            report(ev)
            if not queue.finish(claim, ev, time.perf_counter() - start):
                log.warning("the claim on %s had expired before it finished (heartbeat stalled > %ss); another "
                            "worker may have trained it too", cfg.run_name, grace)
    finally:
        torch.set_num_threads(previous)
        queue.close()


# ------------------------------------------------------------------------------------------------ local workers


def raise_interrupt(signum, frame) -> None:
    """SIGTERM: stop like Ctrl-C (the run is marked KILLED, the claim handed back); a second one while
    cleaning up is ignored (the claim would expire after the grace period anyway)."""
    signal.signal(signum, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def _worker_main(study: Study, storage_url: str, uri: str, threads: int, options: dict, events) -> None:
    from mmtrack.sweep import _die_with_parent

    _die_with_parent()
    import mlflow  # noqa: F401 - importing it configures its loggers: quieten them after

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "art", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        run_worker(study, storage_url, uri, events.put, threads, new_round=False, **options)
    except MMTrackError as exc:
        events.put(("error", exc.message))
    except KeyboardInterrupt:
        pass
    events.put(None)


def sweep_with_storage(study: Study, storage_url: str, workers: int = 1, tracking_uri: str | None = None,
                       on_event: Callable[[Event], None] = lambda ev: None, *, heartbeat: int = DEFAULT_HEARTBEAT,
                       grace: int = DEFAULT_GRACE, max_retry: int = DEFAULT_MAX_RETRY,
                       data_dir: str | None = None) -> Summary:
    """`mmtrack sweep --storage`: start (or join) a round of the study's queue and run `workers` local worker
    processes on it, exactly like `mmtrack worker` on other machines; returns every configuration's outcome
    (those trained by workers elsewhere included)."""
    from mmtrack import sweep, tracking
    from mmtrack.sweep import Event, Summary

    if workers < 1:
        raise MMTrackError(f"--workers must be at least 1, got {workers}")
    uri = tracking.resolve_uri(tracking_uri)
    check_storage(storage_url)
    client = tracking.connect(uri)
    queue = ConfigQueue(study, storage_url, heartbeat, grace, max_retry)
    summary = Summary()

    def emit(ev: Event) -> None:
        summary.add(ev)
        on_event(ev)

    try:
        exp_id = tracking.experiment_id(client, study.name, create=True, tags={tracking.STUDY_TAG: study.to_json()})
        finished = tracking.finished_hashes(client, exp_id)
        for cfg in queue.configs:
            if cfg.hash in finished:
                emit(Event("skipped", cfg.run_name, cfg.hash))
        round_ = queue.prepare(finished, new_round=True)
        options = {"heartbeat": heartbeat, "grace": grace, "max_retry": max_retry, "data_dir": data_dir}
        threads = max(1, settings.cpu_budget() // workers)
        crashed, errors = sweep.run_processes(_worker_main, (study, storage_url, uri, threads, options), workers,
                                              emit)
        if errors:
            raise MMTrackError(errors[0])
        for ev in queue.outcomes(round_):  # configurations settled by workers on other machines
            if ev.hash not in summary.outcomes:
                emit(ev)
        if crashed and queue.active():
            raise MMTrackError(f"{len(crashed)} worker(s) died (exit codes {crashed}) with configurations left; "
                               "rerun the sweep or start `mmtrack worker` to finish them (finished runs are kept)")
        return summary
    finally:
        queue.close()
