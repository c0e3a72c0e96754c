"""`group[:attr[/value]]`: fairness, accuracy on each group of the group evaluation set."""

from __future__ import annotations

from mmtrack.interventions.evaluator import Evaluator, _accuracy


def group(ev: Evaluator, arg):
    test, pred = ev.data.group_split, ev.group_logits.argmax(1)
    attrs = test.group_values if arg is None else [str(arg).partition("/")[0]]
    metrics, counts = {}, {}
    for attr in attrs:
        only = str(arg).partition("/")[2] if arg is not None else ""
        for value in [only] if only else test.group_values[attr]:
            mask = test.group_mask(attr, value)
            if int(mask.sum()) == 0:
                continue  # an empty group has no accuracy
            name = f"acc/group/{attr}/{value}"
            metrics[name], counts[name] = _accuracy(pred[mask], test.labels[mask]), int(mask.sum())
    return metrics, counts
