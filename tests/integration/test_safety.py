"""Safe to share: mmtrack loads models from safetensors weights rebuilt by its own code, never by unpickling
what a tracking store holds. A planted pickle (one that writes a file when unpickled) is never executed."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from conftest import TINY, run_cli

from mmtrack import tracking
from mmtrack.interventions import parse
from mmtrack.jobs.train_run import run_config
from mmtrack.training.config import RunConfig


class Payload:
    """Unpickling this runs code: it writes `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def plant_pickle(client, run_id: str, marker, tmp_path) -> None:
    """What an attacker with write access to the store would leave: a pickled 'model' in the run's artifacts,
    where MLflow's pytorch flavour loads it from (an MLmodel file pointing at data/model.pth)."""
    folder = tmp_path / "planted" / "model"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "model.pth").write_bytes(pickle.dumps(Payload(marker)))
    (folder / "data" / "pickle_module_info.txt").write_text("mlflow.pytorch.pickle_module")
    (folder / "MLmodel").write_text(
        "artifact_path: model\nflavors:\n  pytorch:\n    model_data: data\n    pytorch_version: "
        f"{torch.__version__}\n    serialization_format: pickle\n  python_function:\n    data: data\n"
        "    loader_module: mlflow.pytorch\n"
    )
    client.log_artifacts(run_id, str(folder), "model")


def legacy_run(client, exp_id: str, marker, tmp_path) -> str:
    """A FINISHED run as an older mmtrack logged it: params and metrics, and only a pickled model."""
    run = client.create_run(exp_id, run_name="legacy")
    rid = run.info.run_id
    for key, value in {**RunConfig(**TINY).params(), "image_size": "default"}.items():
        client.log_param(rid, key, value)
    client.log_metric(rid, "acc", 0.9)
    client.log_metric(rid, "acc/group/skew/gs-minority", 0.8)
    plant_pickle(client, rid, marker, tmp_path)
    client.set_terminated(rid, "FINISHED")
    return rid


def test_evaluate_never_executes_a_planted_pickle(capsys, monkeypatch, tracking_dir, tmp_path, digits):
    client = tracking.connect()
    exp_id = tracking.experiment_id(client, "shared", create=True)
    marker = tmp_path / "pwned.txt"
    rid = legacy_run(client, exp_id, marker, tmp_path)
    res = run_cli(capsys, monkeypatch, "evaluate", "--run-id", rid, "-i", "acc")
    assert res.code == 2
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: run {rid} has no safe weights")
    assert "--trust-pickle" in lines[0]
    assert not marker.exists()
    assert tracking.TRUSTED_PICKLE_TAG not in client.get_run(rid).data.tags
    # the analysis commands never load models: they work on such runs as before
    res = run_cli(
        capsys, monkeypatch, "select", "--experiment", "shared", "--by", "acc", "--top", "50", "--format", "json"
    )
    assert res.code == 0, res.err
    assert json.loads(res.out)["before"]["acc/group/skew/gs-minority"]["n"] == 1
    assert not marker.exists()
    # control: the planted file is live, which is what --trust-pickle (off by default) would run
    res = run_cli(capsys, monkeypatch, "evaluate", "--run-id", rid, "-i", "acc", "--trust-pickle")
    assert marker.exists() and res.code != 0, res.err
    assert client.get_run(rid).data.tags[tracking.TRUSTED_PICKLE_TAG] == "true"


def test_runs_with_safe_weights_load_them_and_ignore_the_pickle(capsys, monkeypatch, tracking_dir, tmp_path, digits):
    client = tracking.connect()
    exp_id = tracking.experiment_id(client, "shared", create=True)
    rid = run_config(RunConfig(**TINY), client, exp_id, parse(["acc"]), data=digits).run_id
    names = {f.path for f in client.list_artifacts(rid, tracking.WEIGHTS)}
    assert names == {"weights/model.json", "weights/model.safetensors"}
    marker = tmp_path / "pwned.txt"
    plant_pickle(client, rid, marker, tmp_path)  # the serving model replaced by a malicious pickle

    def no_unpickling(*args, **kwargs):
        raise AssertionError("mmtrack unpickled a model")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    res = run_cli(capsys, monkeypatch, "evaluate", "--run-id", rid, "-i", "output_noise:1", "--noise-draws", "1")
    assert res.code == 0, res.err
    assert "acc/output_noise/1" in client.get_run(rid).data.metrics
    assert not marker.exists()


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"arch": "os.system"}, "arch is not an architecture of this machine's catalogue"),
        ({"num_classes": "10; rm -rf /"}, "num_classes is not an integer"),
        ({"format": "pickle"}, "format is not mmtrack-weights/1"),
        ({"width": 0.5}, "weights model.safetensors do not fit the described resnet18"),
    ],
)
def test_tampered_weights_are_refused_with_one_line(capsys, monkeypatch, tracking_dir, tmp_path, digits, spec, message):
    from mmtrack.models import SPEC_FILE, WEIGHTS_FILE

    client = tracking.connect()
    exp_id = tracking.experiment_id(client, "tampered", create=True)
    rid = run_config(RunConfig(**TINY), client, exp_id, parse(["acc"]), data=digits).run_id
    local = tmp_path / "w"
    local.mkdir()
    for name in (SPEC_FILE, WEIGHTS_FILE):
        client.download_artifacts(rid, f"{tracking.WEIGHTS}/{name}", str(local))
    described = json.loads((local / SPEC_FILE).read_text())
    (local / SPEC_FILE).write_text(json.dumps({**described, **spec}))
    client.log_artifact(rid, str(local / SPEC_FILE), tracking.WEIGHTS)
    res = run_cli(capsys, monkeypatch, "evaluate", "--run-id", rid, "-i", "acc")
    assert res.code == 2
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith(f"error: run {rid}:"), lines
