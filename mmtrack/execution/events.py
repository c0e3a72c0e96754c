"""What a worker reports while it works through a study: one `Event` per step of a configuration, and the
`Summary` a sweep or worker returns. Plain data: queues, the runner and the command line all speak it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EventKind = Literal["start", "finished", "skipped", "failed"]


@dataclass
class Event:
    """`start` when training begins; then one outcome: `finished` (trained and logged), `skipped` (already
    FINISHED in MLflow) or `failed` (the error is on the run, or says why there is no run)."""

    kind: EventKind
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

    def _of(self, kind: EventKind) -> list[Event]:
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
