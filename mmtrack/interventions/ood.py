"""`ood[:name]`: robustness, accuracy on each out-of-distribution set."""

from __future__ import annotations

from mmtrack.data import Split
from mmtrack.interventions.evaluator import Evaluator, _accuracy


def ood(ev: Evaluator, arg):
    metrics, counts = {}, {}
    for name in [arg] if arg is not None else list(ev.data.ood):
        split: Split = ev.data.ood[name]
        logits = ev._of_images(f"ood/{name}", split.images)
        metrics[f"acc/ood/{name}"], counts[f"acc/ood/{name}"] = (
            _accuracy(logits.argmax(1), split.labels),
            len(split),
        )
    return metrics, counts
