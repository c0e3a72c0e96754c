"""The house (issue 33): old pickled models load from the moved classes, a study is prepared once per sweep, and
the defects the design review listed stay fixed (each test here failed before its fix)."""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys

import pytest
import torch
from conftest import TINY, run_cli, scores_experiment

import mmtrack
from mmtrack import tracking
from mmtrack.errors import MMTrackError


def test_models_pickled_under_the_old_module_names_still_load(tmp_path, monkeypatch, digits):
    """MLflow's pickled models (`model/`) logged before models.py became a package name `mmtrack.models.Classifier`,
    `ScaledResNet` and `Normalize`; a fresh process unpickles them through the package's re-exports."""
    from mmtrack import models

    model = models.build_model("resnet18", digits.num_classes, digits.image_size, TINY["width"]).eval()
    assert any(m._forward_pre_hooks for m in model.modules())  # the NCHW hook of small strided 1x1 convolutions
    for obj in (models.Classifier, models.ScaledResNet, models.Normalize, models._nchw_input):
        monkeypatch.setattr(obj, "__module__", "mmtrack.models")  # as they were named before the move
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps(model))
    monkeypatch.undo()
    names = path.read_bytes()
    assert b"mmtrack.models.classifier" not in names and b"mmtrack.models.resnet" not in names
    x = digits.test.images[:4].float().div(255)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(model(x), tmp_path / "y.pt")
    code = (
        "import pickle, sys, torch\n"
        f"m = pickle.loads(open({str(path)!r}, 'rb').read())\n"
        f"x, y = torch.load({str(tmp_path / 'x.pt')!r}), torch.load({str(tmp_path / 'y.pt')!r})\n"
        "with torch.no_grad():\n    assert torch.equal(m(x), y), 'other outputs'\n"
        "print(type(m).__module__, type(m).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["mmtrack.models.classifier", "Classifier"]


def test_a_sweep_prepares_its_study_once(tracking_dir, monkeypatch):
    """The configurations are expanded and the interventions parsed once per sweep, not once per claim."""
    from mmtrack.execution import launch
    from mmtrack.interventions import specs
    from mmtrack.study import Study, parse_study

    monkeypatch.setenv("MMTRACK_THREADS", "1")
    study = parse_study(
        {
            "name": "prepared-once",
            "dataset": "digits-skewed",
            "epochs": 1,
            "seeds": [0],
            "fixed": {k: v for k, v in TINY.items() if k != "epochs"},
            "default": {"lr": 0.1},
            "axes": {"lr": [0.1, 0.05, 0.01]},
            "interventions": ["acc"],
        }
    )
    calls = {"configs": 0, "parse": 0}
    configs, parse = Study.configs, specs.parse

    def counted_configs(self):
        calls["configs"] += 1
        return configs(self)

    def counted_parse(*args, **kwargs):
        calls["parse"] += 1
        return parse(*args, **kwargs)

    monkeypatch.setattr(Study, "configs", counted_configs)
    monkeypatch.setattr("mmtrack.study.prepared.parse", counted_parse)
    summary = launch.sweep(study, uri=tracking.resolve_uri(None))
    assert sorted(ev.kind for ev in summary.outcomes.values()) == ["finished"] * 3  # three claims
    assert calls == {"configs": 1, "parse": 1}


def test_api_summary_equals_sheet_summary_without_acc(capsys, monkeypatch, tracking_dir):
    """`Experiment.summary` gives what `sheet --summary` prints, also for metrics that leave `acc` out (the ratio to
    accuracy's Δmax^all was NaN in the API)."""
    scores_experiment("summ", seeds=3, step=(0.004, -0.01))
    cli = run_cli(
        capsys, monkeypatch, "sheet", "--experiment", "summ", "--summary", "--metric", "acc/ood/x", "--format", "json"
    )
    assert cli.code == 0, cli.err
    api = json.loads(mmtrack.render(mmtrack.open_experiment("summ").summary(["acc/ood/x"]), "json"))
    assert api == json.loads(cli.out)
    assert api[0]["ratio_to_acc"] is not None and api[0]["ratio_to_acc"] > 0


def test_sheet_summary_still_draws_and_logs_the_sheets(capsys, monkeypatch, tracking_dir, tmp_path):
    scores_experiment("summfig", seeds=2)
    res = run_cli(
        capsys, monkeypatch, "sheet", "--experiment", "summfig", "--summary", "--figure", tmp_path / "figs", "--log"
    )
    assert res.code == 0, res.err
    assert "Δmax^all" in res.out or "delta" in res.out.lower()
    assert {p.name for p in (tmp_path / "figs").iterdir()} >= {"sheet-acc.png", "sheet-acc.svg"}
    assert "logged 2 sheet(s) as run" in res.err


def test_a_lost_server_is_not_reported_as_a_missing_run():
    from mlflow.tracking import MlflowClient

    client = MlflowClient("http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        mp.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
        with pytest.raises(tracking.TrackingUnavailable) as err:
            tracking.load_model(client, "0" * 32)
    assert "unreachable" in err.value.message and "unknown run" not in err.value.message


def test_an_unknown_run_is_still_named_so(client):
    with pytest.raises(MMTrackError, match="unknown run id"):
        tracking.load_model(client, "0" * 32)


def test_a_damaged_remembered_declaration_is_not_an_unknown_dataset(tmp_path, monkeypatch):
    from mmtrack.data import check_dataset_name
    from mmtrack.data.declared import registry

    monkeypatch.setenv("MMTRACK_CACHE", str(tmp_path / "cache"))
    path = registry._remembered("my-skin")
    path.parent.mkdir(parents=True)
    path.write_text('{"name": "my-skin", "images": ')  # cut short while written
    with pytest.raises(MMTrackError) as err:
        check_dataset_name("my-skin")
    assert "damaged" in err.value.message and str(path) in err.value.message
    path.unlink()
    with pytest.raises(MMTrackError, match="unknown dataset 'my-skin'"):
        check_dataset_name("my-skin")


def _optuna_queue(tmp_path):
    from mmtrack.execution import OptunaQueue
    from mmtrack.study import parse_study

    study = parse_study(
        {
            "name": "handback",
            "dataset": "digits-skewed",
            "epochs": 1,
            "seeds": [0],
            "default": {"lr": 0.1},
            "axes": {"lr": [0.1]},
        }
    )
    return OptunaQueue(study, f"sqlite:///{tmp_path}/optuna.db", heartbeat=1, grace=3)


def test_a_failed_hand_back_is_logged_not_swallowed(tmp_path, caplog):
    queue = _optuna_queue(tmp_path)
    try:
        queue.prepare(set())
        (claim,) = queue.claim_group("me")

        def storage_gone(*args, **kwargs):
            raise RuntimeError("storage went away")

        queue.optuna_study.tell = storage_gone
        with caplog.at_level(logging.WARNING, logger="mmtrack"):
            queue.hand_back(claim, "KeyboardInterrupt")
        assert "could not hand" in caplog.text and "storage went away" in caplog.text and "--grace" in caplog.text
    finally:
        queue.close()


def test_a_claim_settled_twice_is_an_error_also_under_python_O(tmp_path):
    from mmtrack.execution import Event, FileLockQueue
    from mmtrack.training.config import RunConfig

    cfg = RunConfig(**TINY)
    queue = FileLockQueue([cfg], tmp_path / "locks")
    queue.prepare(set())
    (claim,) = queue.claim_group("me")
    ev = Event("finished", cfg.run_name, cfg.hash)
    assert queue.finish(claim, ev, 1.0)
    with pytest.raises(RuntimeError, match="called twice"):
        queue.finish(claim, ev, 1.0)
    queue.close()


@pytest.mark.parametrize("damage", ["version", "state", "weights"])
def test_a_spooled_model_of_another_mmtrack_or_damaged_is_dropped_not_fatal(
    damage, digits, tiny_model, tmp_path, monkeypatch
):
    """The spool's mismatch and damaged-file branches, without any server: the model is ignored, its folder
    removed, and the rerun trains it again."""
    from mmtrack.jobs import spool
    from mmtrack.training.config import RunConfig
    from mmtrack.training.train import EpochStats

    monkeypatch.setenv("MMTRACK_SPOOL", str(tmp_path / "spool"))
    cfg = RunConfig(**{**TINY, "epochs": 2})
    path = spool.keep(cfg, digits, tiny_model, [EpochStats(0, 2.0, 0.3, 1.0)], {"seconds/train": 1.0})
    state = json.loads((path / spool.STATE).read_text())
    if damage == "version":
        (path / spool.STATE).write_text(json.dumps({**state, "mmtrack": "0.0.0"}))
    elif damage == "state":
        (path / spool.STATE).write_text('{"config": ')  # cut short
    else:
        (path / "weights" / "model.safetensors").write_bytes(b"not safetensors")
    assert spool.take(cfg, digits) is None
    assert not path.exists()
