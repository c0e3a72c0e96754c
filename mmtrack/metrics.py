"""What a metric name means for display: the namespace decides what is an accuracy.

Only `acc` and `acc/...` (accuracy under intervention; a selective ensemble's `answered_acc/...` and `abstain/...`)
are fractions shown in percentage points; every other
metric (`train_loss`, `epoch_seconds`, `seconds/...`, `mia/...`) is shown in its own unit, never scaled."""

from __future__ import annotations

FRACTIONS = ("acc", "answered_acc", "abstain")  # a selective ensemble's too: accuracy where it answers, abstentions


def is_accuracy(name: str) -> bool:
    """`acc` or `acc/<intervention>/...`: an accuracy under intervention, a fraction in [0, 1]; so are a selective
    ensemble's `answered_acc[/...]` and `abstain[/...]` (the rate of abstentions)."""
    name = name.removeprefix("metrics.")
    return any(name == f or name.startswith(f + "/") for f in FRACTIONS)


def scale(name: str) -> float:
    """The factor to display a metric with: 100 (percentage points) for accuracies, else 1 (own unit)."""
    return 100.0 if is_accuracy(name) else 1.0


def unit(name: str) -> str:
    return "pp" if is_accuracy(name) else "own unit"
