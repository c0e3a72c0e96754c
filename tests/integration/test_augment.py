"""Augmentation as batched work (issue 35): each model's groups draw their ops and magnitudes from its own stream
exactly as torchvision's per-group calls do, then each op runs once for every group (of every model) that drew
it; the images, and where each stream is left, are today's per-group calls', image for image."""

from __future__ import annotations

import pytest
import torch

from mmtrack.training.train import Augmenter


@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment"])
@pytest.mark.parametrize("group, k", [(8, 5), (3, 5), (1, 5), (8, 1)])
def test_sampled_then_batched_equals_one_call_per_group(digits, policy, group, k):
    aug = Augmenter(policy, group)
    n = 61  # a batch that does not split evenly into groups
    batches = [digits.train.images[j * n : (j + 1) * n].clone() for j in range(k)]
    seen_ops = set()
    for step in range(6):
        starts = []
        for j in range(k):
            torch.manual_seed(1000 * step + j)
            starts.append(torch.get_rng_state())
        expected, after = [], []
        for j, b in enumerate(batches):  # today: one torchvision call per group, model after model
            torch.set_rng_state(starts[j])
            expected.append(aug(b))
            after.append(torch.get_rng_state())
        plans = []
        for j, b in enumerate(batches):  # now: the draws per model, then every op once for all models
            torch.set_rng_state(starts[j])
            plans.append(aug.sample(b))
            assert torch.equal(torch.get_rng_state(), after[j])  # the stream is left where the calls leave it
        got = aug.apply(batches, plans)
        for e, g in zip(expected, got):
            assert torch.equal(e, g)
        seen_ops |= {op for plan in plans for ops in plan for op, _ in ops}
    assert len(seen_ops) >= 10  # most of the policy's ops were exercised
    assert all(torch.equal(b, digits.train.images[j * n : (j + 1) * n]) for j, b in enumerate(batches))
