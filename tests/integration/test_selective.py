"""Selective ensembles (Black et al. 2022): the binomial test on the members' votes by hand, abstentions counted as
errors by every intervention, and the abstention metrics consistent with the accuracies they split."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import binomtest
from test_ensembles import CHEAP, _linear

from mmtrack.interventions import Evaluator, parse
from mmtrack.jobs.ensemble_run import selective_metrics
from mmtrack.models.ensemble import SelectiveEnsemble


def test_the_vote_answers_only_past_the_binomial_test():
    # six members: unanimous 6-0 gives p = 2 * 0.5**6 = 0.031 (answers at 0.05); 5-1 gives p = 0.22 (abstains)
    unanimous = SelectiveEnsemble([_linear([0.0, 1.0, 0.0])] * 6, alpha=0.05, stack=False).eval()
    split = SelectiveEnsemble([_linear([0.0, 1.0, 0.0])] * 5 + [_linear([1.0, 0.0, 0.0])], 0.05, stack=False).eval()
    x = torch.rand(4, 3, 2, 2)
    with torch.no_grad():
        assert unanimous(x).shape == (4, 4) and unanimous(x).argmax(1).tolist() == [1] * 4
        assert split(x).argmax(1).tolist() == [3] * 4  # the abstain class: one past the last label
        assert split.attacked(x).argmax(1).tolist() == [1] * 4  # attacks follow the mean softmax
    loose = SelectiveEnsemble([_linear([0.0, 1.0, 0.0])] * 6, alpha=0.25, stack=False)
    for n_a in range(1, 7):
        for n_b in range(min(n_a, 6 - n_a) + 1):
            assert bool(loose.answers[n_a, n_b]) == (binomtest(n_a, n_a + n_b, 0.5).pvalue <= 0.25), (n_a, n_b)


@pytest.fixture(scope="module")
def trio(digits):
    from conftest import TINY

    from mmtrack.training.config import RunConfig
    from mmtrack.training.train import train_models

    return train_models([RunConfig(**{**TINY, "epochs": 2, "seed": s}) for s in range(3)], digits, torch.device("cpu"))


def test_every_intervention_splits_into_abstentions_and_answers(trio, digits):
    import dataclasses

    settings = dataclasses.replace(CHEAP, intervention_predictions=True)
    ev = Evaluator(SelectiveEnsemble(trio, alpha=0.3), digits, settings)  # 3 of 3 votes: p = 0.25
    metrics = {}
    for iv in parse(["acc", "group", "ood", "output_noise:2", "input_noise:0.5", "pgd_linf:0.01"]):
        metrics.update(ev.run(iv)[0])
    extra = selective_metrics(ev, metrics)
    accs = [m for m in metrics if m.startswith("acc")]
    assert len(accs) >= 9
    for name in accs:
        suffix = name[3:]
        abstain, answered = extra[f"abstain{suffix}"], extra.get(f"answered_acc{suffix}", 0.0)
        assert 0 < abstain < 1, name  # three tiny models disagree somewhere, agree somewhere
        assert metrics[name] == pytest.approx((1 - abstain) * answered, abs=1e-6), name  # float32 means; 1/N is 2e-4
    assert any(k.startswith("abstain/pgd_linf/0.01/group/") for k in extra)  # per group under an intervention
    # output noise on the members' logits makes them disagree more: more abstentions than clean
    assert extra["abstain/output_noise/2"] > extra["abstain"]
