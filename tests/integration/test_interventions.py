"""Accuracy under intervention: known answers (constant predictor, λ -> 0, δ = 0, PGD monotone in δ, MIA on an
overfit model), availability errors, and MLflow-valid metric names. Spec parsing and EvalSettings' checks are
tests/unit/test_specs.py."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TEST_DEVICE, TINY
from mlflow.utils.validation import _validate_metric_name
from torch import nn

from mmtrack import interventions as iv_mod
from mmtrack import tracking
from mmtrack.data import Dataset, Split
from mmtrack.errors import MMTrackError
from mmtrack.interventions import DEFAULT_SPECS, EvalSettings, Evaluator, Intervention, check_available, parse
from mmtrack.interventions import evaluator as iv_eval
from mmtrack.jobs.train_run import run_config
from mmtrack.models import Classifier, Normalize, predict_logits
from mmtrack.training.config import RunConfig
from mmtrack.training.train import train_model

CPU = torch.device(TEST_DEVICE)  # the device under test: the CPU unless MMTRACK_TEST_DEVICE says otherwise


class ConstantNet(nn.Module):
    """Ignores its input (but stays differentiable in it, for attacks) and always outputs the same logits."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1) + 0 * x.flatten(1).sum(1, keepdim=True)


def constant_predictor(cls: int, n_classes: int = 10) -> Classifier:
    logits = torch.zeros(n_classes)
    logits[cls] = 10.0
    return Classifier(Normalize([0.5] * 3, [0.25] * 3), ConstantNet(logits)).eval()


def accuracy(model, split) -> float:
    return float((predict_logits(model, split.images).argmax(1) == split.labels).float().mean())


# ------------------------------------------------------------------------------------------------ known answers


@pytest.mark.parametrize("cls", [3, 7])
def test_constant_predictor_group_accuracy_is_the_class_share(digits, cls):
    """Hand-computed from the construction: `acc` is measured on the test split, the groups on its colour and
    grayscale copies (class c has n_c test images, so n_c of each colour), the OOD set has every test source
    digit under each warp (the same class shares)."""
    labels = digits.test.labels
    n = {c: int((labels == c).sum()) for c in range(10)}
    share = n[cls] / sum(n.values())
    first, second = sum(n[c] for c in range(5)), sum(n[c] for c in range(5, 10))
    expected = {
        "acc": share,
        "acc/group/color/gray": share,
        "acc/group/color/color": share,
        "acc/group/skew/gs-minority": n[cls] / first if cls < 5 else 0.0,  # grayscale copies of classes 0-4
        "acc/group/skew/color-minority": n[cls] / second if cls >= 5 else 0.0,  # colour copies of classes 5-9
        "acc/group/skew/majority": share,
        "acc/ood/digits-warped": share,
    }
    ev = Evaluator(constant_predictor(cls), digits)
    got = {}
    for iv in parse(["acc", "group", "ood"]):
        metrics, counts = ev.run(iv)
        got.update(metrics)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name
    # one group only
    metrics, counts = ev.run(Intervention("group", "skew/gs-minority"))
    assert metrics == {"acc/group/skew/gs-minority": pytest.approx(expected["acc/group/skew/gs-minority"], abs=1e-6)}
    assert counts == {"acc/group/skew/gs-minority": first}
    metrics, _ = ev.run(Intervention("group", "color"))
    assert set(metrics) == {"acc/group/color/gray", "acc/group/color/color"}


def test_output_noise_limits(digits, tiny_model):
    ev = Evaluator(tiny_model, digits, EvalSettings(noise_draws=3))
    clean = ev.run(Intervention("acc"))[0]["acc"]
    assert 0.3 < clean < 1
    assert ev.run(Intervention("output_noise", 1e-9))[0] == {"acc/output_noise/0.000000001": clean}
    assert ev.run(Intervention("output_noise", 0.0))[0] == {"acc/output_noise/0": clean}
    # noise far larger than any logit gap: the argmax is uniform over the 10 classes
    (huge,) = ev.run(Intervention("output_noise", 1e4))[0].values()
    assert huge == pytest.approx(0.1, abs=0.02)
    # seeded: the same value again; more noise, lower accuracy
    assert ev.run(Intervention("output_noise", 5.0))[0] == ev.run(Intervention("output_noise", 5.0))[0]
    assert ev.run(Intervention("output_noise", 5.0))[0]["acc/output_noise/5"] < clean


def test_input_noise_limits(digits, tiny_model):
    ev = Evaluator(tiny_model, digits, EvalSettings(noise_draws=1))
    clean = ev.run(Intervention("acc"))[0]["acc"]
    assert ev.run(Intervention("input_noise", 1e-9))[0]["acc/input_noise/0.000000001"] == pytest.approx(clean, abs=2e-4)
    noisy = ev.run(Intervention("input_noise", 1.0))[0]["acc/input_noise/1"]
    assert noisy < clean - 0.05
    assert ev.run(Intervention("input_noise", 1.0))[0]["acc/input_noise/1"] == noisy  # seeded


def test_input_noise_survives_a_uniform_draw_of_zero(digits, tiny_model, monkeypatch):
    """Laplace noise by inverse CDF: torch.rand may return exactly 0.0 (probability 2^-24 per element, so about
    once per 5M noisy pixels, i.e. in a sizeable share of runs); that pixel must get a finite value, not -inf
    (λ > 0) or NaN (λ = 0), which turns the image's logits into NaN."""
    real_rand = torch.rand

    def rand_with_a_zero(*args, **kwargs):
        u = real_rand(*args, **kwargs)
        u.view(-1)[0] = 0.0
        return u

    monkeypatch.setattr(torch, "rand", rand_with_a_zero)
    ev = Evaluator(tiny_model, digits, EvalSettings(noise_draws=1, batch_size=256))
    clean = accuracy(tiny_model, digits.test)
    assert ev.run(Intervention("input_noise", 0.0))[0]["acc/input_noise/0"] == pytest.approx(clean, abs=1e-6)
    assert ev.run(Intervention("input_noise", 1e-9))[0]["acc/input_noise/0.000000001"] == pytest.approx(clean, abs=1e-6)


def test_pgd_zero_budget_is_clean_accuracy_and_accuracy_falls_with_budget(digits, tiny_model):
    settings = EvalSettings(pgd_max_examples=200, pgd_steps=5)
    ev = Evaluator(tiny_model, digits, settings)
    idx = iv_eval._fixed_subset(len(digits.test), 200, settings.subset_seed)
    subset = Split(digits.test.images[idx], digits.test.labels[idx])
    clean = accuracy(tiny_model, subset)
    deltas = [0.0, 1e-6, 0.001, 0.005, 0.02, 0.1]
    accs = []
    for d in deltas:
        metrics, counts = ev.run(Intervention("pgd_linf", d))
        (name,) = metrics
        assert name == f"acc/pgd_linf/{iv_mod.metric_number(d)}" and counts == {name: 200}
        accs.append(metrics[name])
    assert accs[0] == pytest.approx(clean, abs=1e-6)
    assert accs[1] == pytest.approx(clean, abs=1e-6)  # a real attack with a negligible budget changes nothing
    assert all(b <= a for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < clean - 0.3  # and a large one breaks the model


def test_pgd_on_a_constant_predictor_changes_nothing(digits):
    ev = Evaluator(constant_predictor(3), digits, EvalSettings(pgd_max_examples=100, pgd_steps=3))
    idx = iv_eval._fixed_subset(len(digits.test), 100, 0)
    share = float((digits.test.labels[idx] == 3).float().mean())
    assert ev.run(Intervention("pgd_linf", 0.1))[0]["acc/pgd_linf/0.1"] == pytest.approx(share)


@pytest.fixture(scope="module")
def overfit(digits):
    """A tiny ResNet that memorised 100 randomly labelled training images (non-members: 100 test images with
    random labels), so membership is visible in its predictions."""
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(0, 600, 6)  # one variant of each of 100 source digits
    train = Split(digits.train.images[idx], torch.randint(0, 10, (100,), generator=g))
    test = Split(digits.test.images[idx], torch.randint(0, 10, (100,), generator=g))
    data = Dataset("memorise", digits.classes, train, test, {}, "none")
    cfg = RunConfig(width=0.0625, epochs=30, augment="none", batch_size=25, lr=0.01, optimizer="adam")
    return data, train_model(cfg, data, CPU)


def test_mia_detects_an_overfit_model(overfit):
    data, model = overfit
    acc_members, acc_nonmembers = accuracy(model, data.train), accuracy(model, data.test)
    assert acc_members > 0.9 and acc_nonmembers < 0.3  # it memorised
    metrics, counts = Evaluator(model, data).run(Intervention("mia"))
    # rule-based: "member" iff classified correctly; all 100 members and 100 non-members are attacked
    assert metrics["mia/rule_based/accuracy"] == pytest.approx((acc_members + 1 - acc_nonmembers) / 2)
    assert metrics["mia/rule_based/advantage"] == pytest.approx(acc_members - acc_nonmembers)
    assert counts["mia/rule_based/accuracy"] == 200
    assert metrics["mia/rule_based/accuracy"] > 0.5
    assert metrics["mia/black_box/accuracy"] > 0.5
    assert metrics["mia/black_box/advantage"] > 0
    assert metrics["mia/black_box/auc"] > 0.5
    assert counts["mia/black_box/accuracy"] == 100  # scored on the held-out half
    only = Evaluator(model, data).run(Intervention("mia", "rule_based"))[0]
    assert set(only) == {"mia/rule_based/accuracy", "mia/rule_based/advantage"}


def test_mia_on_a_constant_predictor_has_no_advantage(digits):
    """Members and non-members get the same output: the rule-based attack's advantage is the difference of the
    class shares (near 0), and its accuracy near 0.5."""
    metrics, _ = Evaluator(constant_predictor(3), digits, EvalSettings(mia_examples=500)).run(
        Intervention("mia", "rule_based")
    )
    assert abs(metrics["mia/rule_based/advantage"]) < 0.06
    assert metrics["mia/rule_based/accuracy"] == pytest.approx(0.5 + metrics["mia/rule_based/advantage"] / 2)


# ------------------------------------------------------------------------------------------------ names


def test_default_interventions_produce_valid_mlflow_metric_names(digits):
    settings = EvalSettings(noise_draws=1, pgd_max_examples=50, pgd_steps=2, mia_examples=100)
    ev = Evaluator(constant_predictor(3), digits, settings)
    metrics, counts = {}, {}
    for iv in parse(DEFAULT_SPECS):
        m, n = ev.run(iv)
        metrics.update(m)
        counts.update(n)
    expected = (
        ["acc", "acc/ood/digits-warped"]
        + [f"acc/group/color/{v}" for v in ("color", "gray")]
        + [f"acc/group/skew/{v}" for v in ("majority", "gs-minority", "color-minority")]
        + [f"acc/output_noise/{x}" for x in ("1", "2", "3", "4", "5")]
        + ["acc/input_noise/0.5", "acc/input_noise/1"]
        + [f"acc/pgd_linf/{x}" for x in ("0.0001", "0.0005", "0.001", "0.005", "0.01")]
        + ["mia/rule_based/accuracy", "mia/rule_based/advantage"]
        + ["mia/black_box/accuracy", "mia/black_box/advantage", "mia/black_box/auc"]
    )
    assert sorted(metrics) == sorted(expected)
    assert counts.keys() == metrics.keys()
    for name, value in metrics.items():
        _validate_metric_name(name)  # raises on characters MLflow rejects
        assert (-1 if name.endswith("advantage") else 0) <= value <= 1, name


def test_metric_names_work_in_mlflow_search(client):
    exp_id = tracking.experiment_id(client, "names", create=True)
    run = client.create_run(exp_id)
    client.log_metric(run.info.run_id, "acc/pgd_linf/0.0001", 0.75)
    client.log_metric(run.info.run_id, "acc/group/skew/gs-minority", 0.25)
    found = client.search_runs(
        [exp_id], "metrics.`acc/pgd_linf/0.0001` > 0.5 and metrics.`acc/group/skew/gs-minority` < 0.5"
    )
    assert [r.info.run_id for r in found] == [run.info.run_id]


# ------------------------------------------------------------------------------------------------ availability


@pytest.mark.parametrize(
    "spec, message",
    [
        ("group:race", r"unknown group attribute 'race'; this dataset has: color, skew"),
        ("group:race/asian", r"unknown group attribute 'race'; this dataset has: color, skew"),
        ("group:color/purple", r"unknown value 'purple' of group attribute 'color'; it has: color, gray"),
        ("ood:fairface", r"unknown OOD set 'fairface' for digits-skewed; it has: digits-warped"),
    ],
)
def test_check_available_lists_what_exists(digits, spec, message):
    with pytest.raises(MMTrackError, match=message):
        check_available(parse(["acc", spec]), digits)


def test_check_available_accepts_what_exists(digits):
    check_available(parse(["group", "group:color", "group:skew/gs-minority", "ood", "ood:digits-warped"]), digits)


def test_a_failing_intervention_keeps_the_other_metrics(client, digits, monkeypatch):
    from mmtrack.interventions import ood

    def broken(evaluator, arg):
        raise RuntimeError("attack exploded")

    monkeypatch.setattr(ood, "ood", broken)  # the kind's function, found through the registry
    exp_id = tracking.experiment_id(client, "partial", create=True)
    result = run_config(RunConfig(**TINY), client, exp_id, parse(["acc", "ood", "group:color"]), data=digits)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert {"acc", "acc/group/color/color", "acc/group/color/gray"} <= set(run.data.metrics)
    assert "acc/ood/digits-warped" not in run.data.metrics
    assert json.loads(run.data.tags["mmtrack.failed_interventions"]) == {"ood": "RuntimeError: attack exploded"}
    assert result.failed_interventions == {"ood": "RuntimeError: attack exploded"}
    assert set(json.loads(run.data.tags[tracking.EVAL_N_TAG])) == {
        "acc",
        "acc/group/color/color",
        "acc/group/color/gray",
    }


def test_unavailable_intervention_fails_before_the_run(client, digits):
    exp_id = tracking.experiment_id(client, "unavailable", create=True)
    with pytest.raises(MMTrackError, match="unknown OOD set 'celeba'"):
        run_config(RunConfig(**TINY), client, exp_id, parse(["acc", "ood:celeba"]), data=digits)
    assert client.search_runs([exp_id]) == []


def test_input_noise_distribution_is_a_setting(digits, tiny_model):
    """input_noise_dist chooses Laplace (default) or Gaussian noise of the same scale λ·σ_c; both seeded."""
    lap = Evaluator(tiny_model, digits, EvalSettings(noise_draws=1)).run(Intervention("input_noise", 1.0))[0]
    gau = Evaluator(tiny_model, digits, EvalSettings(noise_draws=1, input_noise_dist="gaussian"))
    gau_value = gau.run(Intervention("input_noise", 1.0))[0]
    assert gau.run(Intervention("input_noise", 1.0))[0] == gau_value  # seeded
    assert lap != gau_value and 0 <= gau_value["acc/input_noise/1"] <= 1


def test_every_registered_kind_resolves_to_its_function():
    import importlib

    from mmtrack.interventions import KIND_REGISTRY

    for kind in KIND_REGISTRY.values():
        module, _, function = kind.compute.partition(":")
        assert callable(getattr(importlib.import_module(f"mmtrack.interventions.{module}"), function)), kind


def test_a_new_intervention_is_one_module_and_one_registry_line(monkeypatch, tiny_model, digits):
    """What the README's Layout section shows a newcomer: a module with one function, one registry line."""
    import sys
    import types

    import torch

    from mmtrack.interventions import specs

    flip = types.ModuleType("mmtrack.interventions.flip")

    def flipped(ev, _arg):  # accuracy on horizontally flipped test images
        logits = ev.shared.of_images("flip", ev.data.test.images.flip(-1))[ev.member]
        acc = float((logits.argmax(1) == ev.data.test.labels).float().mean())
        return {"acc/flip": acc}, {"acc/flip": len(ev.data.test)}

    flip.flipped = flipped
    monkeypatch.setitem(sys.modules, "mmtrack.interventions.flip", flip)
    monkeypatch.setitem(specs.KIND_REGISTRY, "flip", specs.Kind("flip:flipped", args="none"))
    (iv,) = parse(["flip"])
    metrics, counts = Evaluator(tiny_model, digits).run(iv)
    assert counts == {"acc/flip": len(digits.test)} and 0 <= metrics["acc/flip"] <= 1
    with torch.no_grad():
        own = tiny_model(digits.test.images.flip(-1).float().div(255)).argmax(1)
    assert metrics["acc/flip"] == pytest.approx(float((own == digits.test.labels).float().mean()), abs=1e-6)
