"""Any torchvision architecture (issue 34): the catalogue, builders registered through the entry-point group, the
forward-pass check before training, weights without pickle, and stacking that never changes the maths."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch
import torchvision
import yaml
from conftest import TINY, run_cli

from mmtrack import tracking
from mmtrack.data import Split
from mmtrack.errors import MMTrackError
from mmtrack.models import build_model, catalog, load_weights, model_spec, save_weights, stacking
from mmtrack.models.fit import check_fits
from mmtrack.training.config import RunConfig
from mmtrack.training.train import alone_reason, train_model, train_models

CPU = torch.device("cpu")
NO_WIDTH = {k: v for k, v in TINY.items() if k != "width"}  # other architectures have no width


@pytest.fixture(scope="module")
def small(digits):
    return dataclasses.replace(digits, train=Split(digits.train.images[:64], digits.train.labels[:64]))


def test_the_catalogue_is_the_installed_torchvision():
    assert set(catalog.TORCHVISION) == set(torchvision.models.list_models(module=torchvision.models))
    assert catalog.source("resnet18") == "mmtrack" and catalog.source("regnet_x_400mf") == "torchvision"
    assert catalog.has_width("resnet50") and not catalog.has_width("mobilenet_v3_small")


def test_a_network_too_small_for_the_images_is_named_with_the_size_it_needs(digits):
    with pytest.raises(MMTrackError, match=r"vgg11_bn needs images of at least 32 px; set image_size: 32"):
        check_fits("vgg11_bn", digits.num_classes, digits.image_size, 0.125)
    check_fits("mobilenet_v3_small", digits.num_classes, digits.image_size, 0.125)  # takes 8 px


def test_a_study_with_such_a_network_trains_nothing(capsys, monkeypatch, tracking_dir, tmp_path):
    study = {
        "name": "too-small",
        "dataset": "digits-skewed",
        "epochs": 1,
        "seeds": [0],
        "fixed": {k: v for k, v in TINY.items() if k != "epochs"},
        "default": {"arch": "resnet18"},
        "axes": {"arch": ["resnet18", "vgg11_bn"]},
        "interventions": ["acc"],
    }
    path = tmp_path / "too-small.yaml"
    path.write_text(yaml.safe_dump(study))
    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 2 and res.err.strip().splitlines()[-1].startswith("error: vgg11_bn needs images of at least 32")
    exp = tracking.connect().get_experiment_by_name("too-small")
    assert exp is None or not tracking.connect().search_runs([exp.experiment_id])  # nothing trained


def test_a_torchvision_network_trains_logs_and_loads_without_pickle(small, tmp_path, monkeypatch):
    import pickle

    cfg = RunConfig(**{**NO_WIDTH, "batch_size": 32, "arch": "mnasnet0_5", "lr": 0.01})
    model = train_model(cfg, small, CPU)
    spec = model_spec(cfg.arch, small.num_classes, small.image_size, cfg.width)
    assert RunConfig(**{**TINY, "arch": "resnet18"}).width == 0.0625
    assert spec["builder"] == "torchvision"
    save_weights(model, spec, tmp_path / "w")
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    back = load_weights(tmp_path / "w")
    x = small.test.images[:8].float().div(255)
    with torch.no_grad():
        out = model.eval()(x)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(back(x), out)
    assert RunConfig(arch="mnasnet0_5").params()["width"] == "n/a"


def test_a_builder_registered_through_the_entry_point_group(tmp_path, monkeypatch, digits):
    (tmp_path / "my_nets.py").write_text(
        "from torch import nn\n"
        "def tiny(num_classes, image_size, **kwargs):\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(catalog, "entry_points", lambda: {"tiny_net": "my_nets:tiny"})
    assert catalog.source("tiny_net") == "entry_point" and "tiny_net" in catalog.names()
    model = build_model("tiny_net", digits.num_classes, digits.image_size)
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 10)
    assert model_spec("tiny_net", 10, 8, 0.125)["builder"] == "entry_point"
    assert alone_reason(RunConfig(arch="tiny_net"), digits) is None  # conv, BatchNorm, Linear: stacked
    sys.modules.pop("my_nets", None)


def test_a_stackable_non_resnet_trains_stacked_as_each_alone(small):
    """One step (batch 64 of 64 images): after more, BatchNorm over the 1x1 maps of 8 px images amplifies the
    rounding of the grouped kernels beyond any fixed tolerance (not a difference in the maths)."""
    cfgs = [RunConfig(**{**NO_WIDTH, "batch_size": 64, "arch": "regnet_x_400mf", "lr": 0.05}, seed=s) for s in (0, 1)]
    assert alone_reason(cfgs[0], small) is None
    together = train_models(cfgs, small, CPU)
    for cfg, model in zip(cfgs, together):
        alone = train_model(cfg, small, CPU).state_dict()
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value.float(), alone[key].float(), rtol=1e-4, atol=1e-5, msg=key)
    a, b = (m.state_dict() for m in together)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # two seeds, two models


@pytest.mark.parametrize(
    "arch, why",
    [("shufflenet_v2_x0_5", "mixes the networks' channels"), ("mobilenet_v3_small", "Dropout draws randomness")],
)
def test_a_network_that_cannot_be_stacked_exactly_trains_one_seed_at_a_time(small, arch, why):
    nets = [build_model(arch, 10, 8) for _ in range(2)]
    assert why in stacking.training_reason(nets)
    cfgs = [RunConfig(**{**NO_WIDTH, "batch_size": 32, "arch": arch}, seed=s) for s in (0, 1)]
    assert why in alone_reason(cfgs[0], small)
    together = train_models(cfgs, small, CPU)
    for cfg, model in zip(cfgs, together):  # exactly what training alone gives: no stack was involved
        alone = train_model(cfg, small, CPU).state_dict()
        assert all(torch.equal(v, alone[k]) for k, v in model.state_dict().items())
    side = stacking.side_by_side([m.eval() for m in together]).eval()  # evaluation: stacked or side by side
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        for k, m in enumerate(together):
            torch.testing.assert_close(side(x)[:, k], m(x))


@pytest.mark.slow
def test_the_sweep_tags_runs_whose_seeds_trained_one_at_a_time(tracking_dir, monkeypatch):
    from mmtrack.execution import launch
    from mmtrack.study import parse_study

    monkeypatch.setenv("MMTRACK_THREADS", "1")
    study = parse_study(
        {
            "name": "alone",
            "dataset": "digits-skewed",
            "epochs": 1,
            "seeds": [0, 1],
            "fixed": {"batch_size": 256, "augment": "none"},
            "default": {"arch": "shufflenet_v2_x0_5"},
            "axes": {"arch": ["shufflenet_v2_x0_5"]},
            "interventions": ["acc", "pgd_linf:0.005"],
            "eval": {"pgd_max_examples": 16, "pgd_steps": 2},
        }
    )
    summary = launch.sweep(study, uri=tracking.resolve_uri(None))
    assert [ev.kind for ev in summary.outcomes.values()] == ["finished", "finished"]
    client = tracking.connect()
    runs = client.search_runs([client.get_experiment_by_name("alone").experiment_id])
    assert {r.data.tags.get(tracking.STACK_ALONE_TAG) for r in runs} == {
        "ShuffleNetV2's forward mixes the networks' channels"
    }
    assert all("acc/pgd_linf/0.005" in r.data.metrics for r in runs)
