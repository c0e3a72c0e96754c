"""Studies and `mmtrack sweep`: study-file validation, the ofat/grid expansion, --dry-run, a failing
configuration, resuming, `kill -9` mid-way, and two sweeps of one study at once."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, start_mmtrack

from mmtrack import tracking
from mmtrack.errors import MMTrackError
from mmtrack.study import load_study, parse_study

STUDIES = Path(__file__).resolve().parents[2] / "studies"

# 4 tiny configurations: lr {0.1, 0.05} x seeds {0, 1}; about 2 s each on one core.
TINY_STUDY = {
    "name": "tiny-sweep",
    "dataset": "digits-skewed",
    "design": "ofat",
    "epochs": 1,
    "seeds": [0, 1],
    "fixed": {"width": 0.0625},
    "default": {"lr": 0.1, "batch_size": 256, "augment": "none", "optimizer": "sgd", "arch": "resnet18"},
    "axes": {"lr": [0.1, 0.05], "batch_size": [256], "augment": ["none"], "optimizer": ["sgd"], "arch": ["resnet18"]},
    "interventions": ["acc"],
}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """A sweep splits $MMTRACK_THREADS (default: the usable CPUs) torch threads between its workers; on a shared
    2-core machine one thread per sweep keeps these tests fast and steady (subprocesses get the same via
    start_mmtrack(one_cpu=True))."""
    monkeypatch.setenv("MMTRACK_THREADS", "1")


def write_study(tmp_path: Path, **changes) -> Path:
    study = {**TINY_STUDY, **changes}
    path = tmp_path / f"{study['name']}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def runs_by_hash(client, name: str) -> dict[str, list]:
    exp = client.get_experiment_by_name(name)
    out: dict[str, list] = {}
    for r in client.search_runs([exp.experiment_id], max_results=1000):
        out.setdefault(r.data.tags[tracking.HASH_TAG], []).append(r)
    return out


def summary_counts(text: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) finished, (\d+) skipped \(already finished\), (\d+) failed, of (\d+) configurations", text)
    assert m, text
    return int(m[1]), int(m[2]), int(m[3])


# ------------------------------------------------------------------------------------------------ study files


def base(**changes) -> dict:
    return {**json.loads(json.dumps(TINY_STUDY)), **changes}


@pytest.mark.parametrize(
    "raw, message",
    [
        (base(epoch=3), r"study: unknown key\(s\) epoch; allowed: name, dataset, design, epochs"),
        (base(epochs="ten"), r"study: epochs must be an integer, got 'ten'"),
        (base(epochs=True), r"study: epochs must be an integer, got True"),
        (base(seeds="0,1"), r"study: seeds must be a list, got '0,1'"),
        (base(axes=["lr"]), r"study: axes must be a mapping"),
        (base(seeds=[0, 0]), r"study: seeds must be a non-empty list of distinct non-negative integers"),
        (base(seeds=[-1]), r"study: seeds must be a non-empty list of distinct non-negative integers"),
        (base(design="random"), r"study: design must be ofat or grid, got 'random'"),
        ({k: v for k, v in TINY_STUDY.items() if k != "seeds"}, r"study: missing key\(s\) seeds"),
        (
            base(default={**TINY_STUDY["default"], "lr": 0.2}),
            r"study: default lr=0.2 is not among axes.lr \[0.1, 0.05\]",
        ),
        (
            base(axes={**TINY_STUDY["axes"], "momentum": [0.9]}),
            r"study: unknown axis 'momentum'; axes are: lr, batch_size, augment, optimizer, arch, width",
        ),
        (base(axes={**TINY_STUDY["axes"], "lr": []}), r"study: axes.lr must be a non-empty list of values"),
        (base(axes={**TINY_STUDY["axes"], "lr": [0.1, 0.1]}), r"study: axes.lr lists a value twice"),
        (base(axes={**TINY_STUDY["axes"], "lr": [0.1, "fast"]}), r"study: axes.lr"),
        (base(axes={**TINY_STUDY["axes"], "lr": [0.1, -1.0]}), r"study: axes.lr: lr must be a positive number"),
        (
            base(axes={**TINY_STUDY["axes"], "arch": ["resnet18", "vgg"]}),
            r"study: axes.arch: unknown arch 'vgg'; choose one of: resnet18, resnet50, wide_resnet50_2",
        ),
        (
            base(default={k: v for k, v in TINY_STUDY["default"].items() if k != "lr"}),
            r"study: default has no value for axis 'lr'",
        ),
        (base(default={**TINY_STUDY["default"], "width": 0.5}), r"study: default sets width which are not axes"),
        (base(fixed={"lr": 0.1}), r"study: fixed may set arch, width, lr, .* \(not an axis\), got lr"),
        (base(fixed={"momentum": 0.8}), r"study: fixed may set .*, got momentum"),
        (base(eval={"pgd_steps": 0}), r"study: eval setting pgd_steps must be a positive integer, got 0"),
        (
            base(eval={"input_noise_dist": "uniform"}),
            r"study: eval setting input_noise_dist must be one of laplace, "
            r"gaussian, got 'uniform'",
        ),
        (base(eval={"pgd_random_start": "yes"}), r"study: eval setting pgd_random_start must be true or false"),
        (base(dataset="mnist"), r"unknown dataset 'mnist'"),
        (base(interventions=["acc", "pgd_linf:-1"]), r"study: interventions: pgd_linf value must be a non-negative"),
        (base(eval={"pgd_stepz": 3}), r"study: unknown eval setting\(s\) pgd_stepz; allowed: "),
        (["a", "list"], r"study: expected a mapping of keys"),
    ],
)
def test_study_validation_errors(raw, message):
    with pytest.raises(MMTrackError, match=message):
        parse_study(raw, "study")


def test_study_file_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MMTrackError, match=r"study file nope.yaml not found"):
        load_study("nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(MMTrackError, match=r"bad.yaml: not valid YAML"):
        load_study(bad)
    wrong = write_study(tmp_path, name="wrong", epochs="ten")
    with pytest.raises(MMTrackError, match=r"wrong.yaml: epochs must be an integer"):
        load_study(wrong)


def test_sweep_cli_reports_a_bad_study_file(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MMTRACK_TRACKING_DIR", str(tmp_path / "tracking"))
    path = write_study(tmp_path, name="bad-default", default={**TINY_STUDY["default"], "lr": 0.3})
    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 2
    (line,) = [x for x in res.err.splitlines() if x.strip()]
    assert line == f"error: {path}: default lr=0.3 is not among axes.lr [0.1, 0.05]"
    assert not (tmp_path / "tracking").exists()


@pytest.mark.parametrize(
    "name, n_configs, n_points", [("digits-skewed", 45, 9), ("utkface", 45, 9), ("cifar10-skewed", 35, 7)]
)
def test_preset_studies(name, n_configs, n_points):
    study = load_study(STUDIES / f"{name}.yaml")
    configs = study.configs()
    assert len(configs) == n_configs
    assert len({c.hash for c in configs}) == n_configs
    assert len({c.replace(seed=0).hash for c in configs}) == n_points
    assert configs[0].lr == 0.1 and configs[0].batch_size == 128 and configs[0].augment == "randaugment"


def test_ofat_and_grid_expansion():
    raw = base(
        seeds=[0, 1],
        axes={
            "lr": [0.1, 0.05],
            "batch_size": [256, 128],
            "augment": ["none", "randaugment"],
            "optimizer": ["sgd"],
            "arch": ["resnet18"],
        },
    )
    ofat = parse_study(raw).configs()
    assert len(ofat) == (1 + 3) * 2 == 8
    default = {"lr": 0.1, "batch_size": 256, "augment": "none"}
    assert [(c.lr, c.batch_size, c.augment, c.seed) for c in ofat[:2]] == [(0.1, 256, "none", 0), (0.1, 256, "none", 1)]
    for c in ofat:
        changed = [k for k, v in default.items() if getattr(c, k) != v]
        assert len(changed) <= 1
        assert (c.width, c.epochs, c.dataset) == (0.0625, 1, "digits-skewed")
    assert len({c.hash for c in ofat}) == 8
    grid = parse_study({**raw, "design": "grid"}).configs()
    assert len(grid) == 2 * 2 * 2 * 2 == 16
    assert len({c.hash for c in grid}) == 16
    assert {c.hash for c in ofat} <= {c.hash for c in grid}


def test_dry_run_lists_configurations_without_training(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MMTRACK_TRACKING_DIR", str(tmp_path / "tracking"))
    path = write_study(
        tmp_path,
        name="dry",
        axes={
            "lr": [0.1, 0.05],
            "batch_size": [256, 128],
            "augment": ["none", "randaugment"],
            "optimizer": ["sgd"],
            "arch": ["resnet18"],
        },
    )
    res = run_cli(capsys, monkeypatch, "sweep", path, "--dry-run")
    assert res.code == 0, res.err
    assert "dry: 8 configurations (ofat, 2 seeds)" in res.out
    for cfg in load_study(path).configs():
        assert cfg.hash in res.out and cfg.run_name in res.out
    assert "8 to do" in res.out
    assert not (tmp_path / "tracking").exists()  # a dry run creates no store


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
    # default (lr 0.1), then lr 1e6 (diverges), then adam: the failure is in the middle
    path = write_study(
        tmp_path, name="fails", seeds=[0], axes={**TINY_STUDY["axes"], "lr": [0.1, 1e6], "optimizer": ["sgd", "adam"]}
    )
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
        adam.hash: ["optimizer=adam · s0"],
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
    one_lr = {**TINY_STUDY["axes"], "lr": [0.1]}
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


def test_fixed_holds_any_training_parameter_that_is_not_an_axis():
    raw = base(
        axes={"lr": [0.1, 0.05]}, default={"lr": 0.1}, fixed={"width": 0.0625, "optimizer": "adam", "augment": "none"}
    )
    study = parse_study(raw)
    assert {(c.optimizer, c.augment, c.width) for c in study.configs()} == {("adam", "none", 0.0625)}
    assert [c.short_name(study.reference()) for c in study.configs()][:2] == ["default · s0", "default · s1"]


def test_two_worker_processes_share_one_round(capsys, monkeypatch, tmp_path, tracking_dir, client, digits):
    """`--workers 2`: spawned workers join the sweep's round of the file-lock queue; each configuration is tried
    once (the diverging one fails once, not once per worker) and its outcome is written in its lock file."""
    path = write_study(
        tmp_path,
        name="two-workers",
        seeds=[0],
        axes={**TINY_STUDY["axes"], "lr": [0.1, 1e6], "optimizer": ["sgd", "adam"]},
    )
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
