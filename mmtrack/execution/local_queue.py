"""`FileLockQueue`: the work queue of `mmtrack sweep` on one machine, with no server but the file system.

- Claims: a worker holds a configuration while it holds an exclusive `flock` on
  `<tracking dir>/locks/<experiment id>/<hash>.lock` (taken without waiting). The OS releases the lock when the
  worker dies, even on `kill -9`, so a claim never goes stale on one machine and needs no heartbeat. flock
  locks belong to an open file, so two queues in one process exclude each other like two processes do.
- Rounds: a round is one sweep, named by its start time in milliseconds; the sweep's worker processes join it
  by that number. Finishing writes the outcome and the round into the lock file before unlocking; a worker
  that takes the lock later and reads this round there leaves the configuration alone (once per round). A
  hand-back, or a dead worker, leaves the file as it was: the configuration is free for the round again.
  Two sweeps of one study at once are two rounds: the lock keeps them from training a configuration at the
  same time, and MLflow (re-read after each claim) from training it twice.
- What this queue cannot see: rounds of other machines. Across machines, `OptunaQueue` serves the same contract.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mmtrack import settings
from mmtrack.execution.events import Event
from mmtrack.execution.queue import Claim, WorkQueue, by_cost
from mmtrack.training.config import RunConfig


def lock_dir(exp_id: str) -> Path:
    """Where a sweep of an experiment keeps its claims (unchanged since the first release: running sweeps of an
    older version exclude this one)."""
    return settings.lock_dir() / str(exp_id)


@dataclass
class FileClaim(Claim):
    handle: IO[str] | None = None  # the open, flocked lock file


class FileLockQueue(WorkQueue):
    poll = 0.5

    def __init__(self, configs: list[RunConfig], locks: Path, round_: int | None = None):
        self.configs = list(configs)
        self.locks = locks
        self.round = round_
        self.pending: list[tuple[int, RunConfig]] = []
        self.held: dict[str, FileClaim] = {}

    @property
    def since_ms(self) -> int:  # the round is the sweep's start time: its FAILED runs are this round's attempts
        return self.round or 0

    def _path(self, cfg: RunConfig) -> Path:
        return self.locks / f"{cfg.hash}.lock"

    def _record(self, text: str, round_: int | None) -> Event | None:
        """The outcome a lock file records for a round (None: not settled in it, or half written)."""
        with contextlib.suppress(ValueError, TypeError, KeyError):
            rec = json.loads(text)
            if rec["round"] == round_:
                return Event(
                    rec["kind"],
                    rec["config"],
                    rec["hash"],
                    rec.get("run_id"),
                    rec.get("error"),
                    rec.get("seconds", 0.0),
                )
        return None

    def _read(self, cfg: RunConfig, round_: int | None) -> Event | None:
        with contextlib.suppress(OSError):
            return self._record(self._path(cfg).read_text(), round_)
        return None

    def prepare(self, finished: set[str], new_round: bool = True) -> int:
        if new_round or self.round is None:
            self.round = max(int(time.time() * 1000), (self.round or 0) + 1)
        self.pending = [(i, cfg) for i, cfg in by_cost(self.configs) if cfg.hash not in finished]
        return self.round

    def claim(self, worker: str, like: RunConfig | None = None) -> FileClaim | None:
        """The next free configuration of the round (with `like`: the next that differs from it only in its seed)."""
        start = time.perf_counter()
        self.locks.mkdir(parents=True, exist_ok=True)
        for i, cfg in list(self.pending):
            if like is not None and cfg.stack_key != like.stack_key:
                continue
            fh = open(self._path(cfg), "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another worker holds it
                fh.close()
                continue
            self.pending.remove((i, cfg))
            fh.seek(0)
            if self._record(fh.read(), self.round) is not None:  # settled in this round by another worker
                fh.close()  # closing the file releases the lock
                continue
            claim = FileClaim(cfg, i, self.round or 0, time.perf_counter() - start, fh)
            self.held[cfg.hash] = claim
            return claim
        return None

    def claim_group(self, worker: str, limit: int | None = None) -> list[FileClaim]:
        first = self.claim(worker)
        group = [] if first is None else [first]
        while group and (limit is None or len(group) < limit) and (mate := self.claim(worker, like=first.config)):
            group.append(mate)
        return group

    def _release(self, claim: FileClaim) -> None:
        self.held.pop(claim.config.hash, None)
        if claim.handle is not None:
            claim.handle.close()
            claim.handle = None

    def finish(self, claim: FileClaim, ev: Event, seconds: float) -> bool:
        rec = {
            "round": claim.round,
            "kind": ev.kind,
            "config": ev.config,
            "hash": ev.hash,
            "run_id": ev.run_id,
            "error": ev.error,
            "seconds": round(ev.seconds, 4),
            "execute_seconds": round(seconds, 4),
        }
        if claim.handle is None:
            raise RuntimeError(f"finish or hand_back was called twice for the claim on {claim.config.run_name}")
        claim.handle.truncate(0)
        claim.handle.write(json.dumps(rec) + "\n")  # append mode: at offset 0 after the truncation
        claim.handle.flush()
        self._release(claim)
        return True

    def hand_back(self, claim: FileClaim, reason: str) -> None:
        self._release(claim)
        self.pending.insert(0, (claim.index, claim.config))

    def active(self) -> bool:
        return bool(self.held) or any(self._read(cfg, self.round) is None for _, cfg in self.pending)

    def outcomes(self, round_: int) -> list[Event]:
        return [ev for cfg in self.configs if (ev := self._read(cfg, round_)) is not None]

    def close(self) -> None:
        for claim in list(self.held.values()):
            self._release(claim)
