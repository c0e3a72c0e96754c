"""A study survives its faults on the local store (issue 22, items 3 and 5): a sweep killed (SIGKILL, no clean-up)
during training, during evaluation or during artifact logging, then rerun, ends with exactly one complete
FINISHED run per configuration and seed; `mmtrack sheet` never counts the run the kill cut short; an artifact
upload that fails (a full disk) fails its run with one line naming the artifact, and the next round trains the
configuration again. The kill moments are exact: $MMTRACK_CRASH_AT makes the worker kill itself there."""

from __future__ import annotations

import errno
import re

import pytest
from conftest import run_cli, runs_by_hash, start_mmtrack, write_study

from mmtrack.settings import CRASH_POINTS
from mmtrack.study import load_study

pytestmark = pytest.mark.slow

# write_study's tiny study, lr {0.1, 0.05} x seeds {0, 1} (each configuration's seeds trained together as one
# stack: every seed's run obeys the rules), scored on the groups too
GROUPS = {"interventions": ["acc", "group"]}
REQUIRED = ["weights/model.safetensors", "weights/model.json", "predictions/test.parquet", "predictions/group.parquet"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("MMTRACK_THREADS", "1")


def assert_complete(client, run) -> None:
    """A FINISHED run holds its model and predictions, every metric of the study and its dataset input."""
    for path in REQUIRED:
        parent = path.rsplit("/", 1)[0]
        sizes = {f.path: f.file_size for f in client.list_artifacts(run.info.run_id, parent)}
        assert sizes.get(path, 0) > 0, (run.info.run_id, path, sizes)
    assert "acc" in run.data.metrics and any(m.startswith("acc/group/") for m in run.data.metrics)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [0]


def sheet_models(capsys, monkeypatch, name: str) -> int:
    res = run_cli(capsys, monkeypatch, "sheet", "--experiment", name, "--metric", "acc", "--format", "markdown")
    assert res.code == 0, res.err
    return int(re.search(r"over (\d+) models", res.out)[1])


@pytest.mark.parametrize("stage", CRASH_POINTS)
def test_a_sweep_killed_at_any_stage_then_rerun_has_one_complete_run_each(
    stage, capsys, monkeypatch, tmp_path, tracking_dir, client, digits
):
    name = f"killed-{stage}"
    path = write_study(tmp_path, name=name, **GROUPS)
    configs = load_study(path).configs()
    proc = start_mmtrack(["sweep", path], cwd=tmp_path, tracking=tracking_dir, one_cpu=True, MMTRACK_CRASH_AT=stage)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, out + err  # the worker died in its first run
    before = runs_by_hash(client, name)
    cut_short = [r for rs in before.values() for r in rs]
    assert [r.info.status for r in cut_short] == ["RUNNING"] * 2, (stage, out, err)  # the stack's 2 seeds
    with pytest.raises(AssertionError):
        sheet_models(capsys, monkeypatch, name)  # no finished run: no sheet (the RUNNING one is not a model)

    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 0, res.out + res.err
    after = runs_by_hash(client, name)
    assert set(after) == {c.hash for c in configs}
    for h, rs in after.items():
        finished = [r for r in rs if r.info.status == "FINISHED"]
        assert len(finished) == 1 and "RUNNING" not in {r.info.status for r in rs}, (h, [r.info.status for r in rs])
        assert_complete(client, client.get_run(finished[0].info.run_id))
    for run in cut_short:
        killed = client.get_run(run.info.run_id)
        assert killed.info.status == "FAILED" and killed.data.tags["mmtrack.error"].startswith("interrupted")
    assert sheet_models(capsys, monkeypatch, name) == len(configs)


def test_an_artifact_upload_that_fails_fails_its_run_and_the_next_round_trains_it_again(
    capsys, monkeypatch, tmp_path, tracking_dir, client, digits
):
    """The disk of the artifact store is full while the group predictions of the first run are uploaded."""
    from mlflow.tracking import MlflowClient

    path = write_study(tmp_path, name="disk-full", **GROUPS)
    configs = load_study(path).configs()
    upload = MlflowClient.log_artifact
    full = {"left": 1}

    def log_artifact(self, run_id, local_path, artifact_path=None):
        if artifact_path == "predictions" and local_path.endswith("group.parquet") and full["left"]:
            full["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return upload(self, run_id, local_path, artifact_path)

    monkeypatch.setattr(MlflowClient, "log_artifact", log_artifact)
    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 1 and not full["left"]
    failed = [r for rs in runs_by_hash(client, "disk-full").values() for r in rs if r.info.status == "FAILED"]
    assert len(failed) == 1
    error = failed[0].data.tags["mmtrack.error"]
    assert "artifact predictions/group.parquet" in error and "No space left on device" in error, error
    assert "\n" not in error
    assert "artifact predictions/group.parquet" in res.err  # the sweep's own line says it too
    assert sheet_models(capsys, monkeypatch, "disk-full") == len(configs) - 1  # the FAILED run is not counted

    res = run_cli(capsys, monkeypatch, "sweep", path)  # the next round: the disk has space again
    assert res.code == 0, res.out + res.err
    for rs in runs_by_hash(client, "disk-full").values():
        finished = [r for r in rs if r.info.status == "FINISHED"]
        assert len(finished) == 1
        assert_complete(client, client.get_run(finished[0].info.run_id))
    assert sheet_models(capsys, monkeypatch, "disk-full") == len(configs)


def test_a_run_whose_artifact_is_missing_after_upload_is_not_finished(
    capsys, monkeypatch, tmp_path, tracking_dir, client, digits
):
    """An upload that reports success but leaves nothing behind (a store that lost the file) is caught when the
    run lists its artifacts back before it ends."""
    from mlflow.tracking import MlflowClient

    path = write_study(tmp_path, name="lost", **GROUPS)
    upload = MlflowClient.log_artifacts

    def log_artifacts(self, run_id, local_dir, artifact_path=None):
        if artifact_path == "weights":
            return None  # "uploaded", but nothing arrives
        return upload(self, run_id, local_dir, artifact_path)

    monkeypatch.setattr(MlflowClient, "log_artifacts", log_artifacts)
    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 1
    runs = [r for rs in runs_by_hash(client, "lost").values() for r in rs]
    assert {r.info.status for r in runs} == {"FAILED"}
    assert all("artifact weights/model.safetensors" in r.data.tags["mmtrack.error"] for r in runs)
