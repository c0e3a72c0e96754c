"""`mmtrack sweep`: a bad study file, --dry-run, a failing configuration, resuming, and (marked slow: spawned
processes) `kill -9` mid-way, two sweeps of one study at once and two worker processes sharing a round. The study
files themselves (validation, expansion, presets) are tests/unit/test_study_parsing.py."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest
from conftest import run_cli, runs_by_hash, start_mmtrack, write_study

from mmtrack import tracking
from mmtrack.study import load_study

# write_study's tiny study: 4 configurations, lr {0.1, 0.05} x seeds {0, 1}; about 2 s each on one core.
# The default (lr 0.1), then lr 1e6 (diverges), then adam: a failure in the middle of the sweep.
FAILING = dict(
    seeds=[0],
    fixed={"width": 0.0625, "batch_size": 256, "augment": "none", "arch": "resnet18"},
    default={"lr": 0.1, "optimizer": "sgd"},
    axes={"lr": [0.1, 1e6], "optimizer": ["sgd", "adam"]},
)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """A sweep splits $MMTRACK_THREADS (default: the usable CPUs) torch threads between its workers; on a shared
    2-core machine one thread per sweep keeps these tests fast and steady (subprocesses get the same via
    start_mmtrack(one_cpu=True))."""
    monkeypatch.setenv("MMTRACK_THREADS", "1")


def summary_counts(text: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) finished, (\d+) skipped \(already finished\), (\d+) failed, of (\d+) configurations", text)
    assert m, text
    return int(m[1]), int(m[2]), int(m[3])


# ------------------------------------------------------------------------------------------------ study files


def test_sweep_cli_reports_a_bad_study_file(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MMTRACK_TRACKING_DIR", str(tmp_path / "tracking"))
    path = write_study(tmp_path, name="bad-default", default={"lr": 0.3})
    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 2
    (line,) = [x for x in res.err.splitlines() if x.strip()]
    assert line == f"error: {path}: default lr=0.3 is not among axes.lr [0.1, 0.05]"
    assert not (tmp_path / "tracking").exists()


def test_dry_run_lists_configurations_without_training(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MMTRACK_TRACKING_DIR", str(tmp_path / "tracking"))
    path = write_study(
        tmp_path,
        name="dry",
        fixed={"width": 0.0625, "optimizer": "sgd", "arch": "resnet18"},
        default={"lr": 0.1, "batch_size": 256, "augment": "none"},
        axes={"lr": [0.1, 0.05], "batch_size": [256, 128], "augment": ["none", "randaugment"]},
    )
    res = run_cli(capsys, monkeypatch, "sweep", path, "--dry-run")
    assert res.code == 0, res.err
    assert "dry: 8 configurations (ofat, 2 seeds)" in res.out
    for cfg in load_study(path).configs():
        assert cfg.hash in res.out and cfg.run_name in res.out
    assert "8 to do" in res.out
    assert not (tmp_path / "tracking").exists()  # a dry run creates no store


@pytest.mark.slow
def test_dry_run_with_storage_checks_the_queue_against_mlflow(capsys, monkeypatch, tmp_path, tracking_dir, client):
    path = write_study(tmp_path, name="agree", seeds=[0])
    storage = f"sqlite:///{tmp_path}/optuna.db"
    res = run_cli(capsys, monkeypatch, "sweep", path, "--dry-run", "--storage", storage)
    assert res.code == 0 and "no queue for agree" in res.out, res.out + res.err  # nothing created by looking
    assert run_cli(capsys, monkeypatch, "sweep", path, "--storage", storage).code == 0
    res = run_cli(capsys, monkeypatch, "sweep", path, "--dry-run", "--storage", storage)
    assert res.code == 0, res.out + res.err
    assert "MLflow and the queue agree: 2 configuration(s) finished, each exactly once" in " ".join(res.out.split())
    assert re.findall(r"finished\s+│\s+finished", res.out) and "queue" in res.out
    # a second FINISHED run of one configuration (trained twice): named, exit 1
    (cfg,) = [c for c in load_study(path).configs() if c.lr == 0.05]
    exp_id = client.get_experiment_by_name("agree").experiment_id
    twice = client.create_run(exp_id, tags={tracking.HASH_TAG: cfg.hash})
    client.set_terminated(twice.info.run_id, "FINISHED")
    res = run_cli(capsys, monkeypatch, "sweep", path, "--dry-run", "--storage", storage)
    assert res.code == 1 and f"disagree {cfg.run_name}: 2 FINISHED runs" in " ".join(res.err.split()), res.err
    assert "x2" in res.out


# ------------------------------------------------------------------------------------------------ sweeping


def test_failing_configuration_is_recorded_and_the_sweep_goes_on_and_resumes(
    capsys, monkeypatch, tmp_path, client, digits
):
    path = write_study(tmp_path, name="fails", **FAILING)
    study = load_study(path)
    good, bad, adam = study.configs()
    assert bad.lr == 1e6 and adam.optimizer == "adam"
    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 1
    assert summary_counts(res.out) == (2, 0, 1)
    assert f"failed {bad.run_name}" in res.err and "FloatingPointError" in res.err
    runs = runs_by_hash(client, "fails")
    assert [r.info.status for r in runs[good.hash]] == ["FINISHED"]
    assert [r.info.status for r in runs[adam.hash]] == ["FINISHED"]
    (failed,) = runs[bad.hash]
    assert failed.info.status == "FAILED"
    assert "".join(f"(run {failed.info.run_id})".split()) in "".join(res.err.split())  # the failed line names it
    assert failed.data.tags["mmtrack.error"].startswith("FloatingPointError: training diverged")
    assert failed.data.tags["mmtrack.study_name"] == "fails"
    # run names say how each configuration differs from the study's default, then the seed
    assert {h: [r.info.run_name for r in rs] for h, rs in runs.items()} == {
        good.hash: ["default · s0"],
        bad.hash: ["lr=1e+06 · s0"],
        adam.hash: ["opt=adam · s0"],
    }
    exp = client.get_experiment_by_name("fails")
    assert tracking.experiment_study(client, exp.experiment_id) == study.to_dict()
    finished_ids = {runs[good.hash][0].info.run_id, runs[adam.hash][0].info.run_id}

    # --dry-run shows what the store holds for each configuration
    res = run_cli(capsys, monkeypatch, "sweep", path, "--dry-run")
    assert res.code == 0, res.err
    status = {
        cfg.hash: re.search(r"\b(finished|failed|running|to do)\b", line).group(1)
        for cfg in (good, bad, adam)
        for line in res.out.splitlines()
        if cfg.hash in line
    }
    assert status == {good.hash: "finished", bad.hash: "failed", adam.hash: "finished"}
    assert "2 finished, 1 failed" in res.out

    # resume: finished configurations are skipped, the failed one is tried again
    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 1
    assert summary_counts(res.out) == (0, 2, 1)
    runs = runs_by_hash(client, "fails")
    assert {r.info.run_id for h in (good.hash, adam.hash) for r in runs[h]} == finished_ids
    assert sorted(r.info.status for r in runs[bad.hash]) == ["FAILED", "FAILED"]


def test_resume_skips_finished_configurations(capsys, monkeypatch, tmp_path, client, digits):
    one_lr = {"lr": [0.1]}
    path = write_study(tmp_path, name="resume", seeds=[0], axes=one_lr)
    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 0, res.err
    assert summary_counts(res.out) == (1, 0, 0)
    assert "open it: `mmtrack server`, then http://127.0.0.1:5000/#/experiments/" in res.out
    assert "/runs?workflowType=machine_learning" in res.out
    first = {h: [r.info.run_id for r in rs] for h, rs in runs_by_hash(client, "resume").items()}
    # again: nothing to do
    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 0, res.err
    assert summary_counts(res.out) == (0, 1, 0)
    # a wider study over the same experiment: only the new seed trains
    path = write_study(tmp_path, name="resume", seeds=[0, 1], axes=one_lr)
    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 0, res.err
    assert summary_counts(res.out) == (1, 1, 0)
    runs = runs_by_hash(client, "resume")
    assert len(runs) == 2 and all(len(rs) == 1 and rs[0].info.status == "FINISHED" for rs in runs.values())
    for h, ids in first.items():
        assert [r.info.run_id for r in runs[h]] == ids


def _wait_for_finished(client, name: str, proc, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            n = len(client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'"))
            if n:
                return n
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep ended (rc {proc.returncode}) before finishing a run:\n{out}\n{err}")
        time.sleep(0.2)
    pytest.fail("no run finished in time")


@pytest.mark.slow
def test_kill_9_mid_sweep_then_rerun_finishes_the_rest(capsys, monkeypatch, tmp_path, tracking_dir, client, digits):
    path = write_study(tmp_path, name="killed")
    configs = load_study(path).configs()
    proc = start_mmtrack(["sweep", path], cwd=tmp_path, tracking=tracking_dir, one_cpu=True)
    try:
        n_done = _wait_for_finished(client, "killed", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = runs_by_hash(client, "killed")
    finished_before = {h: r.info.run_id for h, rs in before.items() for r in rs if r.info.status == "FINISHED"}
    interrupted = [r.info.run_id for rs in before.values() for r in rs if r.info.status == "RUNNING"]
    assert 1 <= n_done <= len(finished_before) < len(configs)  # killed mid-way

    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 0, res.err
    finished, skipped, failed = summary_counts(res.out)
    assert (finished + skipped, skipped, failed) == (len(configs), len(finished_before), 0)
    after = runs_by_hash(client, "killed")
    assert set(after) == {c.hash for c in configs}
    for h, rs in after.items():
        statuses = sorted(r.info.status for r in rs)
        assert statuses.count("FINISHED") == 1, (h, statuses)
        assert "RUNNING" not in statuses
        if h in finished_before:  # kept, not retrained
            assert [r.info.run_id for r in rs] == [finished_before[h]]
    for rid in interrupted:  # the run the kill cut short is marked FAILED by the rerun
        run = client.get_run(rid)
        assert run.info.status == "FAILED"
        assert run.data.tags["mmtrack.error"].startswith("interrupted")


@pytest.mark.slow
def test_two_concurrent_sweeps_train_each_configuration_once(tmp_path, digits):
    """Two sweeps of one study started at once on a fresh store (both create the database): every
    configuration is trained exactly once in total."""
    store = tmp_path / "fresh-tracking"
    path = write_study(tmp_path, name="concurrent")
    configs = load_study(path).configs()
    procs = [
        start_mmtrack(["sweep", path, "--workers", "1"], cwd=tmp_path, tracking=store, one_cpu=True) for _ in range(2)
    ]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=300))
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, f"{out}\n{err}"
        assert "locked" not in err
    counts = [summary_counts(out) for out, _ in outputs]
    assert sum(c[0] for c in counts) == len(configs)  # trained once in total
    assert all(c[0] + c[1] == len(configs) and c[2] == 0 for c in counts)
    client = tracking.connect(f"sqlite:///{store / 'mlflow.db'}")
    runs = runs_by_hash(client, "concurrent")
    assert set(runs) == {c.hash for c in configs}
    assert all([r.info.status for r in rs] == ["FINISHED"] for rs in runs.values())
    for rs in runs.values():
        assert rs[0].data.tags["mmtrack.data_fingerprint"] == digits.fingerprint  # the same data in every process


@pytest.mark.slow
def test_two_worker_processes_share_one_round(capsys, monkeypatch, tmp_path, tracking_dir, client, digits):
    """`--workers 2`: spawned workers join the sweep's round of the file-lock queue; each configuration is tried
    once (the diverging one fails once, not once per worker) and its outcome is written in its lock file."""
    path = write_study(tmp_path, name="two-workers", **FAILING)
    configs = load_study(path).configs()
    res = run_cli(capsys, monkeypatch, "sweep", path, "--workers", "2")
    assert res.code == 1
    assert summary_counts(res.out) == (2, 0, 1)
    runs = runs_by_hash(client, "two-workers")
    assert sorted(len(rs) for rs in runs.values()) == [1, 1, 1]
    exp_id = client.get_experiment_by_name("two-workers").experiment_id
    records = [json.loads((tracking_dir / "locks" / exp_id / f"{c.hash}.lock").read_text()) for c in configs]
    assert len({r["round"] for r in records}) == 1 and sorted(r["kind"] for r in records) == [
        "failed",
        "finished",
        "finished",
    ]
