"""Models, the learning-rate schedule, deterministic training, and one configuration logged as one MLflow run
(params, metrics, tags, predictions, the reloadable model, FAILED on an exception). RunConfig's validation and
hash are tests/unit/test_run_config.py."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from conftest import TINY, module_store
from torch import nn

from mmtrack import tracking
from mmtrack.errors import MMTrackError
from mmtrack.interventions import EvalSettings, parse
from mmtrack.jobs import train_run as run_mod
from mmtrack.jobs.train_run import run_config
from mmtrack.models import ARCHS, Classifier, Normalize, build_model, channel_stats, predict_logits
from mmtrack.training.config import RunConfig
from mmtrack.training.train import train_model

CPU = torch.device("cpu")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------ models


@pytest.mark.parametrize("arch", list(ARCHS))
def test_models_output_shape_at_tiny_width(arch):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, image_size=8, width=0.0625).eval()
    x = torch.rand(4, 3, 8, 8)  # images in [0, 1]
    with torch.no_grad():
        out = model(x)
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    net = model[1]
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)  # the small-image stem
    assert isinstance(net.maxpool, nn.Identity)
    assert net.conv1.out_channels == 4  # round(64 / 16)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_full_width_is_torchvisions_architecture(arch):
    """At width 1 with the ImageNet stem (large images) the layers are exactly torchvision's."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        ours = build_model(arch, num_classes=10, image_size=224, width=1.0)[1]
        theirs = getattr(torchvision.models, arch)(num_classes=10)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert isinstance(ours.maxpool, nn.MaxPool2d)


def test_width_scales_parameter_count():
    counts = [n_params(build_model("resnet18", 10, 8, width=w)) for w in (0.0625, 0.125, 0.25)]
    assert counts[0] < counts[1] < counts[2]
    # conv weights dominate and scale with width squared
    assert 3.5 < counts[1] / counts[0] < 4.1 and 3.5 < counts[2] / counts[1] < 4.1
    assert build_model("resnet50", 10, 8, width=0.125)[1].fc.in_features == 2048 // 8
    assert build_model("wide_resnet50_2", 10, 8, width=0.125)[1].layer1[0].conv2.out_channels == 2 * 64 // 8


def test_input_normalisation_lives_inside_the_model():
    torch.manual_seed(0)
    mean, std = [0.2, 0.3, 0.4], [0.5, 0.25, 0.125]
    model = build_model("resnet18", 10, 8, width=0.0625, mean=mean, std=std).eval()
    assert isinstance(model, Classifier) and isinstance(model[0], Normalize)
    x = torch.rand(2, 3, 8, 8)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(model[0](x), expected)
    with torch.no_grad():
        assert torch.allclose(model(x), model[1](expected))
    # mean and std travel with the weights
    assert {"0.mean", "0.std"} <= set(model.state_dict())


def test_channel_stats_in_unit_range():
    images = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
    images[:, 0] = 255
    images[0, 1] = 255  # channel 1: half the pixels at 255
    mean, std = channel_stats(images)
    assert mean == pytest.approx([1.0, 0.5, 0.0])
    assert std[0] == pytest.approx(1e-3) and std[2] == pytest.approx(1e-3)  # clamped, never zero
    assert std[1] == pytest.approx(float(torch.tensor([1.0] * 4 + [0.0] * 4).std()))


def test_the_three_architecture_tables_agree():
    """config.ARCHS (what a RunConfig accepts), models.ARCHS (what can be built) and execution.ARCH_COST (what a
    sweep orders work by) name the same architectures."""
    from mmtrack import models
    from mmtrack.execution.queue import ARCH_COST
    from mmtrack.training import config

    assert set(config.ARCHS) == set(models.ARCHS) == set(ARCH_COST)


def test_unknown_arch_in_build_model():
    with pytest.raises(MMTrackError, match="unknown arch 'vgg'; choose one of: resnet18, resnet50, wide_resnet50_2"):
        build_model("vgg", 10, 8)


# ------------------------------------------------------------------------------------------------ schedule


def test_learning_rate_warms_up_then_anneals_per_step():
    from mmtrack.training.train import lr_factor

    f = lr_factor(total_steps=100, warmup_steps=10)
    assert [f(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert f(9) == 1.0 and f(10) == 1.0  # peak at the end of warm-up
    values = [f(i) for i in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # then cosine, monotone down
    assert f(55) == pytest.approx(0.5)  # half-way through the cosine
    assert f(100) == pytest.approx(0.0, abs=1e-12)
    no_warmup = lr_factor(total_steps=10, warmup_steps=0)
    assert no_warmup(0) == 1.0 and no_warmup(5) == pytest.approx(0.5)


def test_zero_init_residual_option_zeroes_each_residual_branch():
    for arch, last_bn in (("resnet18", "bn2"), ("resnet50", "bn3")):
        model = build_model(arch, 10, 8, 0.0625, zero_init_residual=True)
        blocks = [m for m in model.modules() if hasattr(m, last_bn) and hasattr(m, "conv2")]
        assert blocks and all(not getattr(b, last_bn).weight.detach().any() for b in blocks)
        plain = build_model(arch, 10, 8, 0.0625)
        assert all(
            getattr(b, last_bn).weight.detach().all()
            for b in plain.modules()
            if hasattr(b, last_bn) and hasattr(b, "conv2")
        )


def test_memory_layout_is_channels_last_by_default_and_switchable(monkeypatch):
    x = torch.rand(4, 3, 8, 8)
    torch.manual_seed(0)
    fast = build_model("resnet18", 10, 8, 0.0625).eval()
    assert fast[1].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast[0](x).is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setenv("MMTRACK_MEMORY_FORMAT", "contiguous")
    torch.manual_seed(0)
    plain = build_model("resnet18", 10, 8, 0.0625).eval()
    assert plain[0](x).is_contiguous()
    with torch.no_grad():  # the same weights compute the same function in either layout
        assert torch.allclose(fast(x), plain(x), atol=1e-5)
    monkeypatch.setenv("MMTRACK_MEMORY_FORMAT", "sideways")
    with pytest.raises(MMTrackError, match="MMTRACK_MEMORY_FORMAT must be one of channels_last, contiguous"):
        build_model("resnet18", 10, 8, 0.0625)


# ------------------------------------------------------------------------------------------------ training


def test_same_seed_same_model_other_seed_differs(digits):
    cfg = RunConfig(**{**TINY, "augment": "randaugment"})  # augmentation is seeded too
    a = predict_logits(train_model(cfg, digits, CPU), digits.test.images)
    b = predict_logits(train_model(cfg, digits, CPU), digits.test.images)
    c = predict_logits(train_model(cfg.replace(seed=1), digits, CPU), digits.test.images)
    assert torch.equal(a, b)
    acc = lambda logits: float((logits.argmax(1) == digits.test.labels).float().mean())  # noqa: E731
    assert acc(a) == acc(b)
    assert not torch.equal(a.argmax(1), c.argmax(1))
    assert acc(a) != acc(c)


def test_training_learns_and_reports_epochs(digits, tiny_model):
    seen = []
    train_model(RunConfig(**{**TINY, "batch_size": 2048, "lr": 0.01}), digits, CPU, on_epoch=seen.append)
    assert [s.epoch for s in seen] == [0]
    assert seen[0].train_loss > 0 and 0 <= seen[0].train_acc <= 1 and seen[0].seconds > 0
    assert not tiny_model.training
    # two tiny epochs (the session's model) are far above chance (0.1)
    acc = float((predict_logits(tiny_model, digits.test.images).argmax(1) == digits.test.labels).float().mean())
    assert acc > 0.3


def test_divergence_raises_floating_point_error(digits):
    with pytest.raises(FloatingPointError, match="diverged at epoch 0"):
        train_model(RunConfig(**{**TINY, "lr": 1e6}), digits, CPU)


# ------------------------------------------------------------------------------------------------ one run


@pytest.fixture(scope="module")
def logged(digits, tmp_path_factory, _empty_store):
    """One tiny configuration (RandAugment, seed 0) logged end to end, with cheap interventions."""
    with module_store(tmp_path_factory, _empty_store, "logged") as (d, client):
        exp_id = tracking.experiment_id(client, "logged", create=True)
        cfg = RunConfig(**{**TINY, "augment": "randaugment"})
        ivs = parse(["acc", "group", "ood"])
        result = run_config(cfg, client, exp_id, ivs, EvalSettings(), data=digits)
        yield types.SimpleNamespace(
            uri=tracking.resolve_uri(),
            client=client,
            exp_id=exp_id,
            cfg=cfg,
            result=result,
            run=client.get_run(result.run_id),
        )


def _predictions(logged) -> pd.DataFrame:
    tracking.connect(logged.uri)
    return tracking.load_predictions(logged.client, [logged.run.info.run_id])[logged.run.info.run_id]


def test_run_is_finished_with_params(logged):
    run = logged.run
    assert run.info.status == "FINISHED"
    assert run.info.run_name == logged.cfg.short_name()
    assert run.data.tags[tracking.CONFIG_NAME_TAG] == logged.cfg.run_name
    assert run.info.experiment_id == logged.exp_id
    p = run.data.params
    assert (p["dataset"], p["arch"], p["augment"], p["optimizer"]) == (
        "digits-skewed",
        "resnet18",
        "randaugment",
        "sgd",
    )
    assert float(p["lr"]) == 0.1 and int(p["batch_size"]) == 256 and int(p["epochs"]) == 1
    assert int(p["seed"]) == 0 and float(p["width"]) == 0.0625
    assert float(p["momentum"]) == 0.9 and float(p["weight_decay"]) == 2e-3 and p["lr_schedule"] == "cosine"
    assert float(p["warmup_epochs"]) == 1.0 and float(p["label_smoothing"]) == 0.0
    assert int(p["eval.pgd_steps"]) == EvalSettings().pgd_steps
    assert p["eval.interventions"] == "acc;group;ood"


def test_run_metrics_and_tags(logged, digits):
    m, tags = logged.run.data.metrics, logged.run.data.tags
    expected = {
        "acc",
        "train_loss",
        "train_acc",
        "epoch_seconds",
        "acc/ood/digits-warped",
        "acc/group/color/color",
        "acc/group/color/gray",
        "acc/group/skew/majority",
        "acc/group/skew/gs-minority",
        "acc/group/skew/color-minority",
    }
    timings = {
        "seconds/data",
        "seconds/train",
        "seconds/log_model",
        "seconds/eval/acc",
        "seconds/eval/group",
        "seconds/eval/ood",
    }
    assert set(m) == expected | timings
    assert all(m[k] >= 0 for k in timings) and m["seconds/train"] > 0
    assert m["acc"] == logged.result.metrics["acc"]
    assert all(0 <= m[k] <= 1 for k in expected if k.startswith("acc"))
    assert tags[tracking.HASH_TAG] == logged.cfg.hash
    assert tags["mmtrack.data_fingerprint"] == digits.fingerprint
    assert tags["mmtrack.version.torch"] == torch.__version__.split("+")[0]
    assert tags["mmtrack.version.mlflow"]
    assert tags["mmtrack.version.mmtrack"]
    assert tags["mmtrack.memory_format"] == "channels_last"
    # the logged model carries the final scores (MLflow 3 model metrics), not the training curves
    (output,) = logged.run.outputs.model_outputs
    linked = logged.client.get_logged_model(output.model_id).metrics
    assert {(m.dataset_name, m.dataset_digest) for m in linked} == {("digits-skewed", digits.fingerprint)}
    model_metrics = {m.key: m.value for m in linked}
    assert set(model_metrics) == {k for k in expected if k.startswith("acc")}
    assert model_metrics["acc"] == m["acc"]
    # the dataset as an MLflow dataset input: digest = the data fingerprint, profile = sizes, groups, OOD sets
    (inp,) = logged.run.inputs.dataset_inputs
    assert (inp.dataset.name, inp.dataset.digest) == ("digits-skewed", digits.fingerprint)
    assert {t.key: t.value for t in inp.tags} == {"mlflow.data.context": "training"}
    profile = json.loads(inp.dataset.profile)
    assert (profile["train"], profile["test"], profile["group_test"]) == (5394, 5388, 10776)
    assert profile["groups"]["skew"]["gs-minority"] == 2706 and profile["ood"] == {"digits-warped": 3592}
    eval_n = json.loads(tags[tracking.EVAL_N_TAG])
    assert eval_n["acc"] == len(digits.test) == 5388
    assert eval_n["acc/group/skew/gs-minority"] == int(digits.group_split.group_mask("skew", "gs-minority").sum())
    assert eval_n["acc/group/skew/gs-minority"] == 2706
    assert eval_n["acc/ood/digits-warped"] == len(digits.ood["digits-warped"])


def test_predictions_artifact(logged, digits):
    df = _predictions(logged)
    assert list(df.columns[:3]) == ["index", "label", "pred"]
    prob = df[[f"prob_{c}" for c in range(10)]].to_numpy()
    assert prob.dtype == np.float16 and df["pred"].dtype == np.int16  # compact
    assert len(df) == len(digits.test)
    np.testing.assert_array_equal(df["label"].to_numpy(), digits.test.labels.numpy())
    np.testing.assert_allclose(prob.astype(np.float32).sum(1), 1.0, atol=1e-2)
    picked = prob[np.arange(len(df)), df["pred"].to_numpy()]
    assert (picked >= prob.max(1) - np.float16(1e-3)).all()  # pred is the most probable class (float16 ties aside)
    assert float((df["pred"] == df["label"]).mean()) == pytest.approx(logged.run.data.metrics["acc"], abs=1e-7)
    gs = digits.test.group_mask("skew", "gs-minority").numpy()
    assert (df["group/skew"] == "gs-minority").to_numpy().tolist() == gs.tolist()  # groups travel with predictions
    assert set(df["group/color"]) == {"color", "gray"}
    # the group metrics are measured on the group evaluation set, which has predictions of its own
    groups = tracking.load_predictions(logged.client, [logged.run.info.run_id], population="group")
    g = groups[logged.run.info.run_id]
    assert len(g) == len(digits.group_split) == 10776
    gs = (g["group/skew"] == "gs-minority").to_numpy()
    assert gs.sum() == 2706
    assert float((g["pred"] == g["label"])[gs].mean()) == pytest.approx(
        logged.run.data.metrics["acc/group/skew/gs-minority"], abs=1e-7
    )
    stored = tracking.stored_populations(logged.client, logged.run.info.run_id)
    assert stored == ["group", "ood/digits-warped", "test"]


def test_predictions_are_downloaded_once(logged, tmp_path, monkeypatch):
    """A run's predictions never change: the second read comes from the local cache, not the store."""
    monkeypatch.setenv("MMTRACK_CACHE", str(tmp_path / "cache"))
    rid = logged.run.info.run_id
    first = tracking.load_predictions(logged.client, [rid])[rid]
    assert (tmp_path / "cache" / "predictions" / rid / "test.parquet").exists()

    class Offline:  # a store that can no longer serve artifacts
        def download_artifacts(self, *args):
            raise OSError("store unreachable")

    again = tracking.load_predictions(Offline(), [rid])
    pd.testing.assert_frame_equal(again[rid], first)
    assert tracking.load_predictions(Offline(), [rid], use_cache=False) == {}


def test_logged_model_reloads_to_the_same_predictions(logged, digits):
    df = _predictions(logged)
    model = tracking.load_model(logged.client, logged.run.info.run_id)
    logits = predict_logits(model, digits.test.images)
    np.testing.assert_array_equal(logits.argmax(1).numpy(), df["pred"].to_numpy())
    np.testing.assert_allclose(
        torch.softmax(logits, 1).numpy(), df[[f"prob_{c}" for c in range(10)]].to_numpy(), atol=1e-3
    )  # float16 probabilities


def test_retraining_reproduces_the_logged_run(logged, digits):
    """Determinism end to end: the same config and seed, retrained, give the logged acc and predictions."""
    model = train_model(logged.cfg, digits, CPU)
    logits = predict_logits(model, digits.test.images)
    np.testing.assert_array_equal(logits.argmax(1).numpy(), _predictions(logged)["pred"].to_numpy())
    assert float((logits.argmax(1) == digits.test.labels).float().mean()) == logged.run.data.metrics["acc"]


def test_unknown_run_model_errors(logged):
    tracking.connect(logged.uri)
    with pytest.raises(MMTrackError, match="unknown run id '0{32}'"):
        tracking.load_model(logged.client, "0" * 32)


def test_exception_during_training_leaves_run_failed(client, digits, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(run_mod, "train_model", boom)
    exp_id = tracking.experiment_id(client, "fails", create=True)
    with pytest.raises(RuntimeError, match="boom"):
        run_config(RunConfig(**TINY), client, exp_id, parse(["acc"]), data=digits)
    (run,) = client.search_runs([exp_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["mmtrack.error"] == "RuntimeError: boom"
    assert run.data.params["lr"] == "0.1"  # params were logged before training
    local = client.download_artifacts(run.info.run_id, "error.txt", str(client.tracking_uri[10:]) + ".d")
    assert "RuntimeError: boom" in open(local).read()


def test_divergence_leaves_run_failed(client, digits):
    exp_id = tracking.experiment_id(client, "diverges", create=True)
    with pytest.raises(FloatingPointError):
        run_config(RunConfig(**{**TINY, "lr": 1e6}), client, exp_id, parse(["acc"]), data=digits)
    (run,) = client.search_runs([exp_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["mmtrack.error"].startswith("FloatingPointError: training diverged")
    assert "acc" not in run.data.metrics


def test_dataset_input_survives_a_concurrent_first_log(client):
    """Two sweep workers logging the same dataset into a new experiment at the same moment: the loser of the race
    for the dataset row gets the database's unique-constraint error; it logs again instead of failing the run."""
    exp_id = tracking.experiment_id(client, "race", create=True)
    calls = []
    real = client.log_inputs

    def racing(run_id, datasets=None, **kw):
        calls.append(run_id)
        if len(calls) == 1:  # what SQLite says when the other worker inserted the row first
            raise RuntimeError("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id")
        return real(run_id, datasets=datasets, **kw)

    client.log_inputs = racing
    with tracking.RunLogger.start(client, exp_id, "r", {}) as logger:
        logger.log_dataset("toy", "abc123", "a toy", {"train": 1})
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and len(calls) == 2
    assert [(i.dataset.name, i.dataset.digest) for i in run.inputs.dataset_inputs] == [("toy", "abc123")]

    def broken(run_id, datasets=None, **kw):
        raise RuntimeError("permission denied")

    client.log_inputs = broken  # any other error is not retried
    with pytest.raises(RuntimeError, match="permission denied"):
        with tracking.RunLogger.start(client, exp_id, "r2", {}) as logger:
            logger.log_dataset("toy", "abc123", "a toy", {"train": 1})


@pytest.mark.slow
def test_small_strided_1x1_convolutions_train_in_nchw():
    """oneDNN#6035 (torch 2.14): the weight gradient of a strided 1x1 convolution with a channels-last source of
    fewer than 8 (AVX2) / 16 (AVX-512) channels writes past its buffer; a few training steps of ResNet-18 at the
    embedded width then crashed the process (double free). Those convolutions keep NCHW; the model computes the
    same as in NCHW throughout."""
    code = (
        "import torch\n"
        "from mmtrack.models import build_model\n"
        "torch.set_num_threads(1)\n"
        "for seed in range(6):\n"
        "    torch.manual_seed(seed)\n"
        "    net = build_model('resnet18', 10, 8, 0.0625).train()\n"
        "    x, y = torch.rand(64, 3, 8, 8), torch.randint(0, 10, (64,))\n"
        "    torch.nn.functional.cross_entropy(net(x), y).backward()\n"
        "print('trained')\n"
    )
    env = {**os.environ, "MMTRACK_MEMORY_FORMAT": "channels_last"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and "trained" in out.stdout, out.stderr[-2000:]
    torch.manual_seed(0)
    net = build_model("resnet18", 10, 8, 0.0625).eval()
    down = net[1].layer2[0].downsample[0]
    assert down.weight.stride() == (4, 1, 1, 1) and down._forward_pre_hooks  # NCHW weight, NCHW input
    assert net[1].layer2[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)  # the rest: channels-last
    x = torch.rand(4, 3, 8, 8)
    nchw = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    nchw[0].memory_format = "contiguous"
    torch.testing.assert_close(net(x), nchw(x), rtol=1e-4, atol=1e-5)
