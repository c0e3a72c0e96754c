"""The work-queue contract (`mmtrack.execution.queue`) as one suite of tests, run against every back end: a module
that imports them all (`from queue_contract import *`) and defines the fixtures `backend` (a `Backend`) and
`optuna_storage` (an Optuna storage URL) runs every test of the contract against its back ends:
tests/unit/test_queue_contract.py (the file-lock queue, the Optuna queue on SQLite) and
tests/integration/test_queue_contract_postgres.py (the Optuna queue on PostgreSQL). Not a test module itself:
nothing here is collected but through them. They call `pytest.register_assert_rewrite("queue_contract")` first,
so that a failing assert shows its values.

Each test plays several workers, each with a queue of its own (threads, or a forked process where a worker has
to die), and nothing is trained: the contract is about claims. Timings: heartbeat 1 s, grace 3 s; the tests
that wait for claims to expire are marked slow."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import uuid
from collections import Counter

import pytest

from mmtrack.execution import Event, FileLockQueue, OptunaQueue, WorkQueue
from mmtrack.study import Study, parse_study

HEARTBEAT, GRACE = 1, 3


def make_study(seeds: int = 2) -> Study:
    """3 learning rates x `seeds` seeds; a fresh name, so that tests sharing a PostgreSQL database never meet."""
    return parse_study(
        {
            "name": f"contract-{uuid.uuid4().hex[:8]}",
            "dataset": "digits-skewed",
            "epochs": 1,
            "seeds": list(range(seeds)),
            "fixed": {"width": 0.0625},
            "default": {"lr": 0.1},
            "axes": {"lr": [0.1, 0.05, 0.01]},
        }
    )


class Backend:
    """Opens worker queues of one back end over shared state (lock files, or an Optuna storage)."""

    def __init__(self, kind: str, tmp_path, storage: str | None = None):
        self.kind, self.tmp_path, self.storage = kind, tmp_path, storage

    def open(self, study: Study, round_: int | None = None, max_retry: int = 3) -> WorkQueue:
        if self.kind == "file":
            return FileLockQueue(study.configs(), self.tmp_path / "locks" / study.name, round_)
        return OptunaQueue(study, self.storage, heartbeat=HEARTBEAT, grace=GRACE, max_retry=max_retry, poll=0.05)

    def join(self, study: Study, round_: int, max_retry: int = 3) -> WorkQueue:
        """Another worker of the round in progress."""
        q = self.open(study, round_, max_retry)
        assert q.prepare(set(), new_round=False) == round_
        return q


def done(claim, kind: str = "finished") -> Event:
    cfg = claim.config
    return Event(kind, cfg.run_name, cfg.hash, f"run-{cfg.hash}", "boom" if kind == "failed" else None, 0.5)


def drain(q: WorkQueue, worker: str = "w", kind: str = "finished") -> list[int]:
    """Claim and finish until the round has nothing left; the indices claimed, in order."""
    out = []
    while (c := q.claim(worker)) is not None:
        out.append(c.index)
        assert q.finish(c, done(c, kind), 0.1)
    return out


# ------------------------------------------------------------------------------------------------ the contract


def test_concurrent_workers_never_hold_one_configuration_twice(backend):
    study = make_study(seeds=4)  # 12 configurations, 4 workers
    leader = backend.open(study)
    round_ = leader.prepare(set())
    leader.close()
    holding: set[str] = set()
    claimed: list[str] = []
    guard = threading.Lock()
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            with backend.join(study, round_) as q:
                while True:
                    c = q.claim(name)
                    if c is None:
                        if not q.active():
                            return
                        time.sleep(0.02)
                        continue
                    assert c.round == round_
                    with guard:
                        assert c.config.hash not in holding, f"{c.config.run_name} held twice"
                        holding.add(c.config.hash)
                        claimed.append(c.config.hash)
                    time.sleep(0.01)
                    with guard:
                        holding.discard(c.config.hash)
                    assert q.finish(c, done(c), 0.01)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert Counter(claimed) == Counter(c.hash for c in study.configs())  # each handed out once in the round
    with backend.join(study, round_) as q:
        assert not q.active() and q.claim("late") is None
        assert sorted(ev.hash for ev in q.outcomes(round_) if ev.kind == "finished") == sorted(
            c.hash for c in study.configs()
        )


def test_a_group_claim_is_a_configurations_seeds(backend):
    """claim_group hands out a configuration with its other seeds (differing in nothing else), capped by the
    limit; each is its own claim, held by nobody else, finished on its own."""
    study = make_study(seeds=3)  # 3 learning rates x 3 seeds
    q = backend.open(study)
    round_ = q.prepare(set())
    other = backend.join(study, round_)
    try:
        first = q.claim_group("a", None)
        assert len(first) == 3 and len({c.config.stack_key for c in first}) == 1
        assert sorted(c.config.seed for c in first) == [0, 1, 2]
        capped = other.claim_group("b", 2)  # another worker: another configuration, two of its seeds
        assert len(capped) == 2 and len({c.config.stack_key for c in capped}) == 1
        assert capped[0].config.stack_key != first[0].config.stack_key
        rest = []
        while group := q.claim_group("a", None):
            rest += group
        held = [c.config.hash for c in first + capped + rest]
        assert Counter(held) == Counter(c.hash for c in study.configs())  # each handed out once
        for c in first:
            assert q.finish(c, done(c), 0.01)
        for c in capped:
            other.hand_back(c, "test")  # a hand-back of a group: its seeds are claimed together again
        again = other.claim_group("b", None)
        assert sorted(c.config.hash for c in again) == sorted(c.config.hash for c in capped)
        for c in again:
            assert other.finish(c, done(c), 0.01)
        for c in rest:
            assert q.finish(c, done(c), 0.01)
        assert not q.active()
    finally:
        q.close()
        other.close()


def _doomed_worker(backend: Backend, study: Study, round_: int, conn) -> None:
    """A forked worker: claims one configuration, says which, and trains it (in its heartbeat) until killed."""
    q = backend.join(study, round_)
    c = q.claim("doomed")
    conn.send(c.index)
    with q.heartbeat(c):
        time.sleep(120)
    os._exit(1)


@pytest.mark.slow
def test_a_dead_workers_claim_comes_back(backend):
    """kill -9 of a worker that holds a claim: the OS frees a file lock at once; an Optuna claim expires once its
    heartbeat is `grace` seconds old, and the configuration is handed out again."""
    study = make_study()
    leader = backend.open(study)
    round_ = leader.prepare(set())
    leader.close()
    ours, theirs = mp.Pipe()
    child = mp.get_context("fork").Process(target=_doomed_worker, args=(backend, study, round_, theirs))
    child.start()
    try:
        assert ours.poll(60), "the doomed worker claimed nothing"
        dead = ours.recv()
        with backend.join(study, round_) as q:
            first = drain(q, "survivor")
            assert dead not in first and len(first) == len(study.configs()) - 1  # not while its worker lives
            assert q.active()  # held by the doomed worker
            time.sleep(1.5 * HEARTBEAT)
            assert q.claim("survivor") is None  # its heartbeat keeps it alive
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
            killed = time.monotonic()
            again: list[int] = []
            while q.active() and time.monotonic() - killed < 30:
                again += drain(q, "survivor")
                time.sleep(0.05)
            waited = time.monotonic() - killed
            assert again == [dead]
            assert not q.active()
            assert sorted(ev.hash for ev in q.outcomes(round_) if ev.kind == "finished") == sorted(
                c.hash for c in study.configs()
            )
        if backend.kind == "optuna":
            assert waited >= GRACE - HEARTBEAT - 0.5  # expired by time, not at once
            trials = [t for t in q.optuna_study.trials if t.params.get("config") == dead]
            assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
            assert trials[1].system_attrs["failed_trial"] == trials[0].number  # Optuna's retry callback
            assert trials[0].user_attrs["worker"] == "doomed"
        else:
            assert waited < 2  # the OS released the lock with the process
    finally:
        if child.is_alive():
            child.kill()


def test_a_handed_back_configuration_is_claimed_again(backend):
    study = make_study()
    leader = backend.open(study)
    round_ = leader.prepare(set())
    with backend.join(study, round_) as other:
        mine = leader.claim("leaving")
        rest = drain(other, "other")
        assert mine.index not in rest
        assert other.claim("other") is None and other.active() and leader.active()
        leader.hand_back(mine, "KeyboardInterrupt")
        assert other.active()
        again = other.claim("other")
        assert again is not None and again.index == mine.index and again.round == round_
        assert other.finish(again, done(again), 0.1)
        assert not other.active() and not leader.active()
        outcomes = leader.outcomes(round_)
        assert sorted(ev.hash for ev in outcomes) == sorted(c.hash for c in study.configs())
        assert all(ev.kind == "finished" for ev in outcomes)  # a hand-back is not an outcome
    leader.close()


def test_a_failed_configuration_waits_for_the_next_round(backend):
    study = make_study()
    configs = study.configs()
    q = backend.open(study)
    first = q.prepare(set())
    failed = q.claim("w")
    assert q.finish(failed, done(failed, "failed"), 0.1)
    rest = drain(q)
    assert failed.index not in rest and len(rest) == len(configs) - 1  # not retried in its round
    assert q.claim("w") is None and not q.active()
    kinds = {ev.hash: ev.kind for ev in q.outcomes(first)}
    assert kinds.pop(failed.config.hash) == "failed" and set(kinds.values()) == {"finished"}
    with backend.join(study, first) as late:  # a worker that may only join finds nothing to do
        assert late.claim("late") is None and not late.active()
    # the next round holds what MLflow does not have FINISHED: here the failed one
    second = q.prepare({c.hash for c in configs} - {failed.config.hash})
    assert second > first
    assert q.active()
    assert drain(q) == [failed.index]
    assert not q.active()
    assert [ev.kind for ev in q.outcomes(second)] == ["finished"]
    q.close()


def test_active_and_prepare(backend):
    study = make_study()
    configs = study.configs()
    q = backend.open(study)
    assert not q.active()  # no round yet
    round_ = q.prepare({c.hash for c in configs})  # everything FINISHED in MLflow: an empty round
    assert q.claim("w") is None and not q.active() and q.outcomes(round_) == []
    round_ = q.prepare(set())
    assert q.active()
    c = q.claim("w")
    assert q.active()  # held, not settled
    if backend.kind == "optuna":  # a round in progress is joined, not reseeded (rounds live in the storage)
        assert q.prepare(set()) == round_
    assert q.finish(c, done(c), 0.1)
    assert sorted(drain(q) + [c.index]) == list(range(len(configs)))
    assert not q.active()
    q.close()


# ------------------------------------------------------------------------------------------------ Optuna only


@pytest.mark.slow
def test_optuna_retries_an_expired_claim_at_most_max_retry_times(optuna_storage, tmp_path):
    storage = optuna_storage
    study = make_study(seeds=1)
    q = Backend("optuna", tmp_path, storage).open(study, max_retry=1)
    round_ = q.prepare(set())
    ghost = q.claim("ghost-1")  # claims and dies: no heartbeat after the claim's own
    others = [c for c in iter(lambda: q.claim("w"), None)]
    for c in others:
        assert q.finish(c, done(c), 0.1)
    deadline = time.monotonic() + 30
    retry = None
    while retry is None and time.monotonic() < deadline:
        time.sleep(0.2)
        retry = q.claim("ghost-2")  # the expired claim, retried once; this worker dies too
    assert retry is not None and retry.index == ghost.index
    while q.active() and time.monotonic() < deadline:
        time.sleep(0.2)
        assert q.claim("w") is None  # no second retry
    assert not q.active()
    (failed,) = [ev for ev in q.outcomes(round_) if ev.kind == "failed"]
    assert failed.hash == ghost.config.hash and "stopped sending heartbeats" in failed.error
    # an expired claim can no longer be finished by its worker
    assert not q.finish(retry, done(retry), 0.1)
    q.close()
