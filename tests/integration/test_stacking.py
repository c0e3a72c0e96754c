"""Seeds trained together: a stack of K networks is K networks (forward, one training step, a whole training),
the same seeds give the same models twice, and a stack too big for memory is trained in smaller groups."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from conftest import TEST_DEVICE

from mmtrack.data import Split
from mmtrack.interventions import Intervention
from mmtrack.models import ARCHS, build_model, predict_logits, stacking
from mmtrack.training.config import RunConfig
from mmtrack.training.train import train_model, train_models

CPU = torch.device(TEST_DEVICE)  # the device under test: the CPU unless MMTRACK_TEST_DEVICE says otherwise
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
        # 4 steps of rounding: up to 6.9e-5 apart on AVX-512 (oneDNN kernels differ per ISA); other augmentation
        # draws from the same initialisation move a weight by 0.2
        close(model.state_dict(), train_model(cfg, small, CPU).state_dict(), atol=2e-4)


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


@pytest.mark.slow
def test_evaluating_models_together_is_evaluating_each(small, digits):
    """The same trained models, scored by evaluators sharing one stacked forward pass and by evaluators of their
    own: the same metrics (a rare near-tie may flip one image)."""
    from mmtrack.interventions import EvalSettings, Evaluator, SharedForward, parse

    models = train_models(configs(), small, CPU)
    ivs = parse(["acc", "group", "ood", "output_noise:1,3", "input_noise:0.5,1"])
    settings = EvalSettings(batch_size=512)
    shared = SharedForward(models, settings.batch_size)
    assert shared.chunk == 512 // len(models)
    for k, model in enumerate(models):
        together, alone = Evaluator(model, digits, settings, shared, k), Evaluator(model, digits, settings)
        for iv in ivs:
            a, b = together.run(iv)[0], alone.run(iv)[0]
            assert a.keys() == b.keys() and a
            for name in a:
                assert abs(a[name] - b[name]) <= 2 / len(digits.test), (k, name, a[name], b[name])
        assert torch.allclose(together.test_logits, alone.test_logits, rtol=1e-4, atol=1e-5)


def test_pgd_on_the_stack_is_each_models_own_pgd(small, digits):
    """ART's PGD on the stack with the sum of the K losses, against ART's PGD on each model: the same adversarial
    images (a pixel may differ where a gradient is a rounding away from zero) and the same accuracies."""
    from mmtrack.interventions import EvalSettings, Evaluator, SharedForward

    models = train_models(configs(), small, CPU)
    settings = EvalSettings(pgd_max_examples=64, pgd_steps=5)
    shared = SharedForward(models, settings.batch_size)
    x = digits.test.images[:64].float().div(255).numpy()
    y = digits.test.labels[:64].numpy()
    ev = Evaluator(models[0], digits, settings, shared, 0)
    stacked = ev._pgd_attack(ev.art_classifier(shared.net, len(models)), 0.01, np.tile(x, (1, len(models), 1, 1)), y)
    for k, model in enumerate(models):
        alone = Evaluator(model, digits, settings)
        own = alone._pgd_attack(alone.art_classifier(), 0.01, x, y)
        assert np.abs(own - x).max() > 0.009  # the attack moved the images by up to its budget
        same = np.isclose(stacked[:, 3 * k : 3 * k + 3], own, atol=1e-6)
        assert same.mean() > 0.999, (k, same.mean())
        for delta in (0.001, 0.01):
            a = Evaluator(model, digits, settings, shared, k).run(Intervention("pgd_linf", delta))[0]
            b = alone.run(Intervention("pgd_linf", delta))[0]
            assert abs(a[f"acc/pgd_linf/{delta:g}"] - b[f"acc/pgd_linf/{delta:g}"]) <= 1 / 64


# ------------------------------------------------------------------------------------------------ sweeps


def stacked_study(name: str, **changes):
    from mmtrack.study import parse_study

    return parse_study(
        {
            "name": name,
            "dataset": "digits-skewed",
            "epochs": 1,
            "seeds": list(SEEDS),
            "fixed": {"width": 0.0625, "batch_size": 256, "augment": "randaugment", "arch": "resnet18"},
            "default": {"lr": 0.05},
            "axes": {"lr": [0.05]},
            "interventions": ["acc", "group", "ood", "output_noise:2", "input_noise:0.5", "pgd_linf:0.001"],
            "eval": {"pgd_max_examples": 256},
            **changes,
        }
    )


def finished_runs(client, name: str) -> dict[int, object]:
    from mmtrack import tracking

    exp = client.get_experiment_by_name(name)
    runs = tracking.search_all_runs(client, exp.experiment_id)
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    return {int(r.data.params["seed"]): r for r in runs}


# The whole training split (5394 images) as one batch: an epoch is one step, so the weights of a seed trained in a
# stack and alone differ by one step's rounding (up to 2.5e-5 measured on an AVX-512 EPYC; after 2 steps 2.2e-4,
# after 3 5.9e-4), not by rounding grown over an epoch (22 steps of batch 256 moved acc/ood/digits-warped from 0.256
# alone to 0.171 stacked on a Xeon with AMX). Another data order or other augmentation draws for one seed move its
# weights by 3.6e-3 or more in that one step.
ONE_STEP = {"width": 0.0625, "batch_size": 8192, "augment": "randaugment", "arch": "resnet18"}
ONE_STEP_ATOL = 2e-4


def max_difference(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.slow
def test_a_sweep_trains_the_seeds_together_each_into_its_own_run(client, monkeypatch, digits):
    """Through the sweep path, each seed of a stack gets its own data order, augmentation draws and channels, and
    its model, predictions and metrics go into its own run: after one training step each run's logged weights
    are those its seed logs trained alone, up to that step's rounding, and far from every other seed's."""
    from mmtrack import tracking
    from mmtrack.execution import launch

    monkeypatch.setenv("MMTRACK_THREADS", "1")
    study = stacked_study("together", fixed=ONE_STEP)
    together = launch.sweep(study, uri=tracking.resolve_uri(None))
    assert len(together.finished) == len(SEEDS)
    runs = finished_runs(client, "together")
    assert sorted(runs) == list(SEEDS)
    assert len({r.data.tags[tracking.STACK_TAG] for r in runs.values()}) == 1
    assert {r.data.tags[tracking.STACK_SEEDS_TAG] for r in runs.values()} == {"0,1,2"}
    stacked = {}
    for seed, run in runs.items():
        assert run.data.params["seed"] == str(seed) and run.info.run_name.endswith(f"s{seed}")
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in history] == [0]
        model = tracking.load_model(client, run.info.run_id)  # a plain ResNet, as a run trained alone logs it
        assert type(model).__name__ == "Classifier" and "Stacked" not in repr(model)
        stacked[seed] = model.state_dict()
        # its predictions and its accuracy are this model's
        preds = tracking.load_predictions(client, [run.info.run_id])[run.info.run_id]
        logits = predict_logits(model, digits.test.images)
        assert (logits.argmax(1).numpy() == preds["pred"].to_numpy()).all()
        right = int((preds["pred"] == preds["label"]).sum())
        assert run.data.metrics["acc"] == pytest.approx(right / len(preds), abs=1e-7)  # (a float32 mean)

    # the seeds are different models
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert max_difference(stacked[a], stacked[b]) > 100 * ONE_STEP_ATOL

    # the same study trained one seed at a time: each run holds the weights of its own seed, and only those
    alone = launch.sweep(stacked_study("alone", fixed=ONE_STEP), uri=tracking.resolve_uri(None), stack=1)
    assert len(alone.finished) == len(SEEDS)
    single = finished_runs(client, "alone")
    assert all(tracking.STACK_TAG not in r.data.tags for r in single.values())
    own = {seed: tracking.load_model(client, run.info.run_id).state_dict() for seed, run in single.items()}
    for seed in SEEDS:
        close(stacked[seed], own[seed], atol=ONE_STEP_ATOL)
        for other in set(SEEDS) - {seed}:
            assert max_difference(stacked[seed], own[other]) > 100 * ONE_STEP_ATOL, (seed, other)

    # the tolerance catches a wiring mistake: seed 1 with seed 0's data order, or with other augmentation draws
    cfg = study.configs()[1]
    for wrong in (cfg.replace(order_seed=0), cfg.replace(augment_seed=0)):
        assert max_difference(train_model(wrong, digits, CPU).state_dict(), stacked[1]) > 10 * ONE_STEP_ATOL

    # again, stacked: exactly the same metrics (reproducible on one machine)
    launch.sweep(stacked_study("again", fixed=ONE_STEP), uri=tracking.resolve_uri(None))
    again = finished_runs(client, "again")
    for seed in SEEDS:
        keep = {k: v for k, v in runs[seed].data.metrics.items() if not k.startswith(("seconds/", "epoch_seconds"))}
        assert {k: again[seed].data.metrics[k] for k in keep} == keep


@pytest.mark.slow
def test_the_failed_seeds_of_a_stack_each_name_their_own_run(client, monkeypatch):
    from mmtrack import tracking
    from mmtrack.execution import launch

    monkeypatch.setenv("MMTRACK_THREADS", "1")
    study = stacked_study("diverged", default={"lr": 1e6}, axes={"lr": [1e6]}, interventions=["acc"])
    summary = launch.sweep(study, uri=tracking.resolve_uri(None))
    assert len(summary.failed) == len(SEEDS) and not summary.finished
    exp = client.get_experiment_by_name("diverged")
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id])}
    named = {ev.run_id for ev in summary.failed}  # what the sweep's "failed ... (run <id>)" lines show
    assert named == set(runs) and all(r.info.status == "FAILED" for r in runs.values())
    for ev in summary.failed:
        assert runs[ev.run_id].info.run_name.endswith(f"s{ev.config.rsplit('-s', 1)[1]}")  # its own seed's run


@pytest.mark.slow
def test_a_stack_with_a_finished_seed_trains_only_the_others(client, monkeypatch):
    from mmtrack import tracking
    from mmtrack.execution import launch

    monkeypatch.setenv("MMTRACK_THREADS", "1")
    study = stacked_study("partly")
    first = study.configs()[0]
    summary = launch.sweep(parse_seeds(study, [first.seed]), uri=tracking.resolve_uri(None))
    assert len(summary.finished) == 1
    summary = launch.sweep(study, uri=tracking.resolve_uri(None))
    assert (len(summary.finished), len(summary.skipped)) == (2, 1)
    runs = finished_runs(client, "partly")
    assert runs[1].data.tags[tracking.STACK_SEEDS_TAG] == "1,2"
    assert tracking.STACK_TAG not in runs[0].data.tags  # trained alone, as `mmtrack train` does


def parse_seeds(study, seeds):
    import dataclasses as dc

    return dc.replace(study, seeds=list(seeds))


# ------------------------------------------------------------------------------------------------ the command line


def write(tmp_path, study) -> str:
    import yaml

    path = tmp_path / f"{study.name}.yaml"
    raw = study.to_dict()
    raw.pop("seed_param", None)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stack", "-1"], "error: --stack must be 0 (every seed of a configuration together) or more, got -1"),
        (["--devices", "cuda:7"], "error: --devices: cuda:7 is not available (this machine has"),
        (["--devices", "gpu0"], "error: --devices: 'gpu0' is not a torch device (write e.g. cuda:0,cuda:1 or cpu)"),
        (["--devices", "cpu", "--workers-per-device", "0"], "error: --workers-per-device must be at least 1, got 0"),
    ],
)
def test_bad_stack_and_device_options_are_one_line(capsys, monkeypatch, tmp_path, tracking_dir, args, message):
    from conftest import run_cli

    res = run_cli(capsys, monkeypatch, "sweep", write(tmp_path, stacked_study("bad-options")), *args)
    assert res.code == 2 and res.err.strip().startswith(message), res.err
    assert len(res.err.strip().splitlines()) == 1


def test_estimate_projects_the_study_without_training(capsys, monkeypatch, tmp_path, tracking_dir, client):
    from conftest import run_cli

    monkeypatch.setenv("MMTRACK_THREADS", "1")
    study = stacked_study("estimated")
    res = run_cli(capsys, monkeypatch, "sweep", write(tmp_path, study), "--estimate", "--stack", "2")
    assert res.code == 0, res.err
    assert "3 runs in 2 stacks: about" in res.out  # seeds 0, 1 together, then seed 2 alone
    assert "with --workers 1" in res.out
    assert client.get_experiment_by_name("estimated") is None  # nothing trained, nothing logged
