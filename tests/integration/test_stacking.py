"""Seeds trained together: a stack of K networks is K networks (forward, one training step, a whole training),
the same seeds give the same models twice, and a stack too big for memory is trained in smaller groups."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from mmtrack import stacking
from mmtrack.config import RunConfig
from mmtrack.data import Split
from mmtrack.models import ARCHS, build_model
from mmtrack.train import predict_logits, train_model, train_models

CPU = torch.device("cpu")
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def small(digits):
    """digits-skewed with 64 training images: two steps of batch 32 per epoch."""
    train = Split(digits.train.images[:64], digits.train.labels[:64])
    return dataclasses.replace(digits, train=train)


def configs(**changes) -> list[RunConfig]:
    base = {**dict(width=0.0625, epochs=1, augment="none", batch_size=32, lr=0.05), **changes}
    return [RunConfig(**base, seed=s) for s in SEEDS]


def close(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].float(), b[key].float(), rtol=1e-4, atol=atol, msg=key)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_a_stack_computes_each_network(arch):
    nets = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        nets.append(build_model(arch, 10, 8, 0.0625).eval())
    stack = stacking.stack(nets).eval()
    x = torch.rand(5, 3, 8, 8)
    out = stack(x)  # the same images for every network
    assert out.shape == (5, len(SEEDS), 10)
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[:, k], net(x), rtol=1e-4, atol=1e-5)
    per_net = torch.rand(5, 3 * len(SEEDS), 8, 8)  # each network its own images
    out = stack(per_net)
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[:, k], net(per_net[:, 3 * k : 3 * k + 3]), rtol=1e-4, atol=1e-5)
    fresh = [build_model(arch, 10, 8, 0.0625) for _ in SEEDS]
    for net, back in zip(nets, stacking.unstack(stack, fresh)):
        close(net.state_dict(), back.state_dict())


@pytest.mark.parametrize("augment", ["none", "randaugment"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_one_stacked_step_is_each_models_own_step(small, arch, optimizer, augment):
    cfgs = configs(arch=arch, optimizer=optimizer, augment=augment, batch_size=64)  # one step
    together = train_models(cfgs, small, CPU)
    # Adam's step lr * m / sqrt(v) turns the rounding of a near-zero gradient into a visible difference (a few
    # of thousands of weights moved by up to 1% of lr); SGD's step is linear in the gradient.
    atol = 1e-5 if optimizer == "sgd" else 0.02 * cfgs[0].lr
    for cfg, model in zip(cfgs, together):
        alone = train_model(cfg, small, CPU)
        close(model.state_dict(), alone.state_dict(), atol)
        torch.testing.assert_close(
            predict_logits(model, small.test.images[:64]),
            predict_logits(alone, small.test.images[:64]),
            rtol=1e-3,
            atol=1e-4 if optimizer == "sgd" else 1e-2,
        )
    # the seeds really differ: not three copies of one model
    assert not torch.allclose(together[0].state_dict()["1.fc.weight"], together[1].state_dict()["1.fc.weight"])


def test_a_stacked_training_is_the_separate_trainings(small):
    """Four steps of SGD with momentum and RandAugment on ResNet-18: the weights still agree. (Deeper tiny
    networks, with gradients of 10 or more, amplify rounding step after step; one step agrees for every arch.)"""
    cfgs = configs(epochs=2, augment="randaugment")
    for cfg, model in zip(cfgs, train_models(cfgs, small, CPU)):
        close(model.state_dict(), train_model(cfg, small, CPU).state_dict())


def test_epochs_are_reported_per_model_and_repeat_exactly(small):
    cfgs = configs(epochs=2, augment="randaugment")
    seen: list[tuple[int, int]] = []
    first = train_models(cfgs, small, CPU, on_epoch=lambda k, stats: seen.append((k, stats.epoch)))
    assert sorted(seen) == [(k, e) for k in range(len(cfgs)) for e in range(2)]
    again = train_models(cfgs, small, CPU)
    for a, b in zip(first, again):
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), key


def test_only_seeds_may_differ(small):
    with pytest.raises(ValueError, match="differ only in their"):
        train_models([RunConfig(seed=0), RunConfig(seed=1, lr=0.05)], small, CPU)
    with pytest.raises(ValueError, match="differ only in their"):
        train_models([RunConfig(seed=0), RunConfig(seed=0)], small, CPU)


def test_a_diverged_model_is_an_error_in_its_place(digits):
    out = train_models(configs(lr=1e6, batch_size=256), digits, CPU)
    assert all(isinstance(e, FloatingPointError) and "diverged at epoch 0" in str(e) for e in out)


def test_a_stack_that_does_not_fit_is_trained_in_halves(small, monkeypatch, caplog):
    cfgs = [*configs(), RunConfig(width=0.0625, epochs=1, augment="none", batch_size=32, lr=0.05, seed=3)]
    forward = stacking.Stack.forward

    def small_memory(self, x):
        if self.k > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, x)

    monkeypatch.setattr(stacking.Stack, "forward", small_memory)
    seen: list[int] = []
    with caplog.at_level(logging.WARNING, logger="mmtrack"):
        models = train_models(cfgs, small, CPU, on_epoch=lambda k, stats: seen.append(k))
    assert sorted(seen) == [0, 1, 2, 3]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["4 models stacked do not fit in cpu memory; training them in groups of 2"]
    for cfg, model in zip(cfgs, models):
        close(model.state_dict(), train_model(cfg, small, CPU).state_dict())
