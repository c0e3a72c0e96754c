"""The CUDA path without a GPU (issue 35): a worker's CUDA device becomes the current one, ART builds its classifier
on the model's device, runs record the precision they really compute in (TF32 included), determinism is asked for
when MMTRACK_DETERMINISTIC=1, and a GPU that the driver sees but torch cannot use is said in one line. Each test
fakes the CUDA calls it needs; none runs CUDA code."""

from __future__ import annotations

import json

import pytest
import torch

from mmtrack import settings
from mmtrack.errors import MMTrackError
from mmtrack.training import device as dev


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda as on a machine with 2 GPUs: the current device and what set_device was given."""
    state = {"current": 0, "set": []}

    class Device:  # torch.cuda.device(...) as a context manager that changes the current device
        def __init__(self, d):
            self.index = torch.device(d).index

        def __enter__(self):
            self.prev, state["current"] = state["current"], self.index

        def __exit__(self, *exc):
            state["current"] = self.prev

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: state["current"])
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: state["set"].append(torch.device(d).index))
    monkeypatch.setattr(torch.cuda, "device", Device)
    flags = {f: getattr(torch.backends.cudnn, f) for f in ("allow_tf32", "deterministic", "benchmark")}
    matmul = torch.backends.cuda.matmul.allow_tf32
    yield state
    for flag, value in flags.items():  # the flags use_device sets, as they were
        setattr(torch.backends.cudnn, flag, value)
    torch.backends.cuda.matmul.allow_tf32 = matmul


def test_a_worker_makes_its_cuda_device_the_current_one(fake_cuda, monkeypatch):
    monkeypatch.delenv("MMTRACK_PRECISION", raising=False)
    assert dev.use_device("cuda:1") == torch.device("cuda:1")
    assert fake_cuda["set"] == [1]
    assert dev.use_device("cpu") == torch.device("cpu") and fake_cuda["set"] == [1]  # the CPU sets nothing


def test_art_builds_its_classifier_on_the_models_cuda_device(fake_cuda, monkeypatch, tiny_model, digits):
    """ART moves the model to cuda:<current device>; the evaluator makes that the model's device."""
    from mmtrack.interventions import Evaluator

    moved = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moved.append(a[0] if a else k) or self)
    ev = Evaluator(tiny_model, digits)
    ev.device = torch.device("cuda", 1)  # as a worker on cuda:1 sees its model
    classifier = ev.art_classifier()
    assert classifier._device == torch.device("cuda:1")
    assert torch.device("cuda:1") in moved and torch.device("cuda:0") not in moved
    assert fake_cuda["current"] == 0  # only while ART was built


def test_runs_record_the_precision_they_compute_in(fake_cuda, monkeypatch):
    cuda = torch.device("cuda:0")
    monkeypatch.delenv("MMTRACK_PRECISION", raising=False)
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's own default: convolutions in TF32
    assert dev.precision(cuda) == "tf32"  # what an "fp32" run really computed in before use_device
    dev.use_device(cuda)
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert dev.precision(cuda) == "fp32"
    monkeypatch.setenv("MMTRACK_PRECISION", "tf32")
    dev.use_device(cuda)
    assert torch.backends.cudnn.allow_tf32 and dev.precision(cuda) == "tf32"
    monkeypatch.setenv("MMTRACK_PRECISION", "bf16")
    assert dev.precision(cuda) == "bf16"
    assert dev.precision(torch.device("cpu")) == "fp32"  # the CPU trains in fp32 whatever is asked


def test_the_environment_tag_records_the_tf32_flags(digits):
    from mmtrack import tracking
    from mmtrack.jobs.record import environment

    env = json.loads(environment(torch.device("cpu"))[tracking.ENV_TAG])
    assert {"cudnn_allow_tf32", "matmul_allow_tf32", "float32_matmul_precision", "deterministic_algorithms"} <= set(env)


def test_mmtrack_deterministic_asks_for_deterministic_algorithms(fake_cuda, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda on, **k: calls.append(on))
    monkeypatch.setattr(settings, "set_cublas_workspace", lambda: calls.append("cublas"))
    monkeypatch.setenv("MMTRACK_DETERMINISTIC", "1")
    dev.use_device("cuda:0")
    assert calls == ["cublas", True]
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    monkeypatch.setenv("MMTRACK_DETERMINISTIC", "0")
    dev.use_device("cuda:0")
    assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark  # fast, not repeatable
    monkeypatch.setenv("MMTRACK_DETERMINISTIC", "yes")
    with pytest.raises(MMTrackError, match="MMTRACK_DETERMINISTIC must be 0 or 1"):
        dev.use_device("cpu")


def test_a_gpu_torch_cannot_use_is_said_in_one_line(monkeypatch, capsys, tracking_dir):
    from conftest import run_cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(dev, "nvidia_driver", lambda: "550.54.15")
    dev.gpu_diagnosis.cache_clear()
    try:
        why = dev.gpu_diagnosis()
        assert "visible to the driver (550.54.15) but not to torch" in why and "driver >= 580" in why
        assert "\n" not in why
        out = run_cli(capsys, monkeypatch, "info").out
        assert "driver >= 580" in out
        with pytest.raises(MMTrackError, match=r"cuda:0 is not available .*driver >= 580"):
            dev.check_devices(["cuda:0"])
        monkeypatch.setattr(dev, "nvidia_driver", lambda: None)  # no NVIDIA driver: nothing to say
        dev.gpu_diagnosis.cache_clear()
        assert dev.gpu_diagnosis() is None
    finally:
        dev.gpu_diagnosis.cache_clear()


def test_the_estimate_times_the_devices_it_is_given(monkeypatch, tracking_dir, capsys):
    from conftest import run_cli

    from mmtrack.execution import estimate as est

    seen = []
    real = est.estimate

    def spy(*args, device=None, **kwargs):
        seen.append(device)
        return [], 0.0

    monkeypatch.setattr(est, "estimate", spy)
    res = run_cli(capsys, monkeypatch, "sweep", "digits-skewed", "--estimate", "--devices", "cpu,cpu")
    assert res.code == 0, res.err
    assert seen == ["cpu"] and "on cpu" in res.out and "--workers 2" in res.out
    assert real is not spy


@pytest.mark.cuda
@pytest.mark.slow
def test_a_one_epoch_sweep_on_the_device_under_test(capsys, monkeypatch, tracking_dir, tmp_path, test_device):
    """MMTRACK_TEST_DEVICE=cuda: two workers on the GPU train a tiny study; every run FINISHED there, with every
    intervention (PGD included: ART on the worker's own device) and the precision it computed in."""
    from conftest import run_cli, write_study

    from mmtrack import tracking

    path = write_study(tmp_path, name="on-device", interventions=["acc", "group", "pgd_linf:0.005"])
    res = run_cli(capsys, monkeypatch, "sweep", path, "--devices", str(test_device), "--workers-per-device", "2")
    assert res.code == 0, res.err
    client = tracking.connect()
    runs = client.search_runs([client.get_experiment_by_name("on-device").experiment_id])
    assert runs and all(r.info.status == "FINISHED" for r in runs)
    for r in runs:
        assert r.data.tags[tracking.DEVICE_TAG].startswith("cuda") and "acc/pgd_linf/0.005" in r.data.metrics
        assert r.data.tags[tracking.PRECISION_TAG] in ("fp32", "tf32", "bf16")
        assert tracking.FAILED_INTERVENTIONS_TAG not in r.data.tags
