"""`pgd_linf:δ`: security, accuracy under ART's PGD L∞ attack of budget δ on a fixed subset of test images
(the K models trained together attacked at once, see `SumOfLosses`)."""

from __future__ import annotations

from mmtrack.interventions.evaluator import Evaluator, _fixed_subset
from mmtrack.interventions.specs import metric_number


def pgd_linf(ev: Evaluator, delta: float):
    test = ev.data.test
    idx = _fixed_subset(len(test), ev.s.pgd_max_examples, ev.s.subset_seed)
    x, y = test.images[idx].float().div(255).numpy(), test.labels[idx].numpy()
    name = f"acc/pgd_linf/{metric_number(delta)}"
    if delta == 0:
        pred = ev.test_logits[idx].argmax(1).numpy()
    elif ev.shared.k > 1 and not ev.s.pgd_random_start:
        # the K attacks at once (see `SumOfLosses`); a random start would draw other numbers than K attacks
        pred = ev.shared.cached(("pgd_linf", delta), lambda: ev._pgd_stacked(delta, x, y))[ev.member]
    else:
        pred = ev._logits_float(ev._pgd_attack(ev.art_classifier(), delta, x, y)).argmax(1).numpy()
    ev._record(name[4:], pred, index=idx.numpy())
    return {name: float((pred == y).mean())}, {name: len(y)}
