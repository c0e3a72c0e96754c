"""The work-queue contract every back end keeps; the worker loop (`runner.work`) relies on nothing else.

A queue holds one study's configurations for the current *round*, a pass over everything not FINISHED in MLflow.

- **prepare(finished, new_round)** joins the round in progress, or, when `new_round` is allowed and the round
  has nothing left (or there is none yet), starts a new one holding every configuration whose hash is not in
  `finished` (the hashes FINISHED in MLflow), most expensive first so parallel workers end together. It returns
  the round. Rerunning after a round therefore retries exactly what failed or never ran. (The Optuna queue
  keeps the round in its storage; the file-lock queue keeps none: its round is one sweep, and the sweep's
  worker processes join it by number.)
- **claim(worker)** hands out the next configuration of the round, or None when nothing is free right now.
  *Ownership*: until `finish` or `hand_back`, the claim is the caller's alone: no other worker, in this process
  or any other, holds the same configuration at the same time (the contract test races several).
  *Once per round*: a configuration is handed out once per round; the one exception is a claim whose worker
  died, which expires and is handed out again.
- **claim_group(worker, limit)** claims a configuration and, up to `limit` in all (None: no cap), other
  configurations of the round that differ from it only in their seed and are free right now, each its own claim
  under the same rules: the worker trains them together as one stacked network. A back end that cannot claim
  by configuration hands out one (the default).
- **heartbeat(claim)** is the context to train in. It keeps the claim alive where claims expire by time; for
  back ends where the operating system ends a dead worker's claim it is a null context (Optuna's Null Object
  habit: the loop never asks which kind it has).
- *A worker that dies* (SIGKILL, lost machine) loses its claim without a word: the file-lock queue gets it back
  from the OS at once; the Optuna queue expires it once its heartbeat is older than the grace period, and
  retries it at most `max_retry` times per round, so a configuration that kills its worker cannot loop forever.
- **finish(claim, event, seconds)** records the outcome (finished, skipped or failed). A failed configuration
  is not handed out again in this round. False when the claim had expired meanwhile (another worker may have
  trained it too; MLflow, re-read before training, keeps that rare case from training twice in a row).
- **hand_back(claim, reason)** returns the configuration to the round at once, unsettled (Ctrl-C, SIGTERM, a
  lost tracking server): the next claim may take it.
- **active()** is True while the round has work: a configuration not yet settled, waiting or held by a worker
  (this one included). A worker stops when `claim` gives None and `active` is False.
- **outcomes(round)** is the settled outcome of each configuration of a round that the back end can see.
- **since_ms**: runs FAILED after this time count as this round's attempt, for `runner.execute_group` (0: the queue
  alone keeps "once per round", and a retried expired claim must train).

MLflow stays the truth: the runner re-reads it after each claim, so a configuration with a FINISHED run is
reported skipped and never trained again, whatever the queue says.
"""

from __future__ import annotations

import abc
import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass

from mmtrack.execution.events import Event
from mmtrack.models.catalog import has_width
from mmtrack.training.config import RunConfig

ARCH_COST = {"resnet18": 1.0, "resnet50": 2.0, "wide_resnet50_2": 3.0}  # measured, relative, on CPU


def relative_cost(cfg: RunConfig) -> float:
    """A rough training cost, for ordering work longest-first (a stable sort keeps the study's order otherwise):
    mmtrack's ResNets by their measured cost and width², any other architecture as a full-width ResNet-18 (its
    `--estimate` times it for real)."""
    width = cfg.width**2 if has_width(cfg.arch) else 1.0
    return ARCH_COST.get(cfg.arch, 1.0) * width * cfg.epochs


def by_cost(configs: list[RunConfig]) -> list[tuple[int, RunConfig]]:
    """(index, configuration) pairs, most expensive first."""
    return sorted(enumerate(configs), key=lambda ic: -relative_cost(ic[1]))


@dataclass
class Claim:
    """One configuration handed to one worker. Back ends add what they need to finish it."""

    config: RunConfig
    index: int  # position in the queue's `configs`
    round: int
    seconds: float  # time spent claiming (lock waits and queue queries)


class WorkQueue(abc.ABC):
    """The contract of the module docstring. Instances are per process and not shared between threads."""

    configs: list[RunConfig]
    poll: float = 0.5  # seconds between looks while other workers hold everything left
    since_ms: int = 0

    @abc.abstractmethod
    def prepare(self, finished: set[str], new_round: bool = True) -> int: ...

    @abc.abstractmethod
    def claim(self, worker: str) -> Claim | None: ...

    def claim_group(self, worker: str, limit: int | None = None) -> list[Claim]:
        first = self.claim(worker)
        return [] if first is None else [first]

    def heartbeat(self, claim: Claim) -> AbstractContextManager[object]:
        return contextlib.nullcontext()

    @abc.abstractmethod
    def finish(self, claim: Claim, ev: Event, seconds: float) -> bool: ...

    @abc.abstractmethod
    def hand_back(self, claim: Claim, reason: str) -> None: ...

    @abc.abstractmethod
    def active(self) -> bool: ...

    @abc.abstractmethod
    def outcomes(self, round_: int) -> list[Event]: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the queue holds here (connections; held claims go back unsettled)."""

    def __enter__(self) -> WorkQueue:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
