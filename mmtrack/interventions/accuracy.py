"""`acc`: clean accuracy on the test split."""

from __future__ import annotations

from mmtrack.interventions.evaluator import Evaluator, _accuracy


def acc(ev: Evaluator, _arg):
    test = ev.data.test
    return {"acc": _accuracy(ev.test_logits.argmax(1), test.labels)}, {"acc": len(test)}
