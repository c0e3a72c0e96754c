"""The command line: `mmtrack train` (one run; bad input -> one line `error: ...`, exit 2, nothing trained or
logged) and `mmtrack evaluate` (adds metrics to logged runs, leaves the others untouched)."""

from __future__ import annotations

import json
import subprocess
import types
from pathlib import Path

import pytest
from conftest import TINY, mmtrack_command, module_store, run_cli, subprocess_env

from mmtrack import tracking
from mmtrack.interventions import EvalSettings, Evaluator, Intervention, parse
from mmtrack.jobs import train_run as run_mod
from mmtrack.jobs.train_run import run_config
from mmtrack.tracking import search as tracking_search
from mmtrack.training.config import RunConfig

TINY_ARGS = ["--width", "0.0625", "--epochs", "1", "--augment", "none", "--batch-size", "256"]


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    return lines[0]


# ------------------------------------------------------------------------------------------------ train


@pytest.fixture
def empty_tracking(tmp_path, monkeypatch):
    d = tmp_path / "tracking"
    monkeypatch.setenv("MMTRACK_TRACKING_DIR", str(d))
    monkeypatch.setattr(run_mod, "train_model", lambda *a, **k: pytest.fail("trained despite bad input"))
    return d


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "foo"], "error: unknown arch 'foo'; choose one of: resnet18, resnet50, wide_resnet50_2"),
        (["--dataset", "foo"], "error: unknown dataset 'foo'; choose one of: "),
        (
            ["--augment", "autoaugment"],
            "error: unknown augment 'autoaugment'; choose one of: randaugment, trivialaugment, none",
        ),
        (["--optimizer", "lbfgs"], "error: unknown optimizer 'lbfgs'; choose one of: sgd, adam"),
        (["--lr=0"], "error: lr must be a positive number, got 0.0"),
        (["--lr=-0.1"], "error: lr must be a positive number, got -0.1"),
        (["--batch-size=0"], "error: batch_size must be a positive integer, got 0"),
        (["--batch-size=-4"], "error: batch_size must be a positive integer, got -4"),
        (["--epochs=0"], "error: epochs must be a positive integer, got 0"),
        (
            ["-i", "foo"],
            "error: unknown intervention 'foo'; choose one of: acc, group, ood, output_noise, "
            "input_noise, pgd_linf, mia",
        ),
        (["-i", "pgd_linf:-0.5"], "error: pgd_linf value must be a non-negative number, got -0.5"),
        (["-i", "output_noise:-1"], "error: output_noise value must be a non-negative number, got -1"),
        (["-i", "mia:shadow"], "error: unknown MIA attack 'shadow'; choose one of: rule_based, black_box"),
        (["--pgd-steps", "0"], "error: --pgd-steps, --pgd-max-examples and --noise-draws must be positive"),
    ],
)
def test_train_bad_input_is_one_line_exit_2_before_training(capsys, monkeypatch, empty_tracking, args, message):
    res = run_cli(capsys, monkeypatch, "train", *TINY_ARGS, *args)
    assert res.code == 2
    assert one_error_line(res.err).startswith(message)
    assert not (empty_tracking / "mlflow.db").exists()  # nothing logged either


@pytest.mark.parametrize(
    "args, message",
    [
        (["-i", "group:race/asian"], "error: unknown group attribute 'race'; this dataset has: color, skew"),
        (["-i", "ood:fairface"], "error: unknown OOD set 'fairface' for digits-skewed; it has: digits-warped"),
    ],
)
def test_train_unavailable_intervention_fails_before_training(capsys, monkeypatch, tracking_dir, args, message):
    monkeypatch.setattr(run_mod, "train_model", lambda *a, **k: pytest.fail("trained despite bad input"))
    res = run_cli(capsys, monkeypatch, "train", *TINY_ARGS, "--experiment", "bad", *args)
    assert res.code == 2
    assert one_error_line(res.err) == message
    client = tracking.connect()
    assert client.get_experiment_by_name("bad") is None  # a failed train leaves no empty experiment


def test_missing_data_message_keeps_its_brackets_and_creates_no_experiment(capsys, monkeypatch, tracking_dir, tmp_path):
    """Rich markup must not eat user-facing text such as `[age]_[gender]_...`."""
    res = run_cli(
        capsys, monkeypatch, "train", "--dataset", "utkface", "--data-dir", str(tmp_path / "nodata"), *TINY_ARGS
    )
    assert res.code == 2
    line = one_error_line(res.err)
    assert "[age]_[gender]_[race]_[date&time].jpg" in line and str(tmp_path / "nodata") in line
    assert tracking.connect().get_experiment_by_name("utkface") is None


@pytest.mark.slow
def test_console_script_reports_bad_arch(tmp_path):
    """The installed `mmtrack` entry point, as a user runs it."""
    env = subprocess_env(tmp_path / "tracking")
    env.pop("COLUMNS")  # the default 80-column console: the error still is one line
    proc = subprocess.run(
        [*mmtrack_command(), "train", "--arch", "foo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "error: unknown arch 'foo'; choose one of: resnet18, resnet50, wide_resnet50_2, or any classification builder of torchvision.models (`mmtrack archs` lists them)"
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "tracking").exists()


def test_train_logs_one_run(capsys, monkeypatch, tracking_dir, digits):
    res = run_cli(
        capsys,
        monkeypatch,
        "train",
        *TINY_ARGS,
        "--lr",
        "0.05",
        "--seed",
        "3",
        "--experiment",
        "cli",
        "-i",
        "acc;group:skew/gs-minority",
    )
    assert res.code == 0, res.err
    client = tracking.connect()
    exp = client.get_experiment_by_name("cli")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert f"run {run.info.run_id} FINISHED" in res.out
    assert run.data.params["lr"] == "0.05" and run.data.params["seed"] == "3"
    cfg = RunConfig(**{**TINY, "lr": 0.05, "seed": 3})
    assert run.info.run_name == cfg.short_name() == "w=0.0625 lr=0.05 bs=256 aug=none ep=1 · s3"
    assert run.data.tags[tracking.CONFIG_NAME_TAG] == cfg.run_name
    assert run.data.tags[tracking.HASH_TAG] == cfg.hash
    assert {k for k in run.data.metrics if k.startswith(("acc", "mia"))} == {"acc", "acc/group/skew/gs-minority"}


# ------------------------------------------------------------------------------------------------ evaluate


@pytest.fixture(scope="module")
def evaluated(digits, tmp_path_factory, _empty_store):
    """An experiment with two FINISHED runs (seeds 0, 1) and one FAILED run (diverged)."""
    with module_store(tmp_path_factory, _empty_store, "evaluate") as (d, client):
        exp_id = tracking.experiment_id(client, "evaluate-me", create=True)
        ids = [
            run_config(RunConfig(**{**TINY, "seed": s}), client, exp_id, parse(["acc", "group"]), data=digits).run_id
            for s in (0, 1)
        ]
        with pytest.raises(FloatingPointError):
            run_config(RunConfig(**{**TINY, "lr": 1e6}), client, exp_id, parse(["acc"]), data=digits)
        (failed,) = [r.info.run_id for r in client.search_runs([exp_id], "attributes.status = 'FAILED'")]
        yield types.SimpleNamespace(dir=d, client=client, exp_id=exp_id, finished=ids, failed=failed)


@pytest.fixture
def in_evaluated(evaluated, monkeypatch):
    monkeypatch.setenv("MMTRACK_TRACKING_DIR", str(evaluated.dir))
    tracking.connect()
    return evaluated


def snapshot(client, run_id):
    run = client.get_run(run_id)
    history = [(m.value, m.step) for m in client.get_metric_history(run_id, "train_loss")]
    return run, dict(run.data.metrics), dict(run.data.params), history


def test_evaluate_adds_a_metric_and_leaves_the_others(capsys, monkeypatch, in_evaluated):
    ev = in_evaluated
    target, other = ev.finished
    run0, metrics0, params0, hist0 = snapshot(ev.client, target)
    _, other_metrics0, _, _ = snapshot(ev.client, other)
    res = run_cli(
        capsys,
        monkeypatch,
        "evaluate",
        "--run-id",
        target,
        "-i",
        "pgd_linf:0.02",
        "--pgd-max-examples",
        "100",
        "--pgd-steps",
        "3",
    )
    assert res.code == 0, res.err
    run1, metrics1, params1, hist1 = snapshot(ev.client, target)
    assert set(metrics1) == set(metrics0) | {"acc/pgd_linf/0.02"}
    assert {k: metrics1[k] for k in metrics0} == metrics0  # untouched, value for value
    assert 0 <= metrics1["acc/pgd_linf/0.02"] <= metrics0["acc"] + 0.1
    assert params1 == params0 and hist1 == hist0
    assert run1.info.status == "FINISHED"
    assert (run1.info.start_time, run1.info.end_time) == (run0.info.start_time, run0.info.end_time)  # history kept
    eval_n0, eval_n1 = (json.loads(r.data.tags[tracking.EVAL_N_TAG]) for r in (run0, run1))
    assert eval_n1 == {**eval_n0, "acc/pgd_linf/0.02": 100}
    assert snapshot(ev.client, other)[1] == other_metrics0  # the other run is not touched
    # the value is what the reloaded model gives under the same settings
    model = tracking.load_model(ev.client, target)
    from mmtrack.data import load_dataset

    expected = Evaluator(model, load_dataset("digits-skewed"), EvalSettings(pgd_max_examples=100, pgd_steps=3)).run(
        Intervention("pgd_linf", 0.02)
    )[0]
    assert metrics1["acc/pgd_linf/0.02"] == expected["acc/pgd_linf/0.02"]


def test_evaluate_experiment_covers_every_finished_run(capsys, monkeypatch, in_evaluated):
    ev = in_evaluated
    before = {rid: snapshot(ev.client, rid)[1] for rid in [*ev.finished, ev.failed]}
    res = run_cli(
        capsys, monkeypatch, "evaluate", "--experiment", "evaluate-me", "-i", "output_noise:5", "--noise-draws", "2"
    )
    assert res.code == 0, res.err
    for rid in ev.finished:
        after = snapshot(ev.client, rid)[1]
        assert set(after) == set(before[rid]) | {"acc/output_noise/5"}
        assert {k: after[k] for k in before[rid]} == before[rid]
    assert snapshot(ev.client, ev.failed)[1] == before[ev.failed]  # FAILED runs have no model to evaluate
    assert res.out.count("acc/output_noise/5") == 1  # one compact table: a column per new metric
    assert "2 run(s) evaluated" in res.out
    for rid in ev.finished:  # rows are run names, not ids
        name = ev.client.get_run(rid).info.run_name
        assert name in res.out and rid not in res.out


def test_runs_cache_sees_metrics_added_by_evaluate(capsys, monkeypatch, in_evaluated):
    """The incremental runs cache: unchanged runs come from the cache; after `mmtrack evaluate` (which moves no
    run's end time) the next read has the new metric."""
    ev = in_evaluated
    first = tracking.load_runs(ev.client, ev.exp_id)
    assert "metrics.acc/output_noise/3" not in first
    calls = []
    real = tracking.search_all_runs
    monkeypatch.setattr(tracking_search, "search_all_runs", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    again = tracking.load_runs(ev.client, ev.exp_id)  # cached: only runs ending after the newest cached one
    assert calls and all("end_time >=" in f for f in calls)
    assert sorted(again["run_id"]) == sorted(first["run_id"])
    res = run_cli(
        capsys, monkeypatch, "evaluate", "--experiment", "evaluate-me", "-i", "output_noise:3", "--noise-draws", "1"
    )
    assert res.code == 0, res.err
    calls.clear()
    after = tracking.load_runs(ev.client, ev.exp_id)
    assert calls and "end_time >=" not in calls[-1]  # the revision changed: rebuilt
    got = after.set_index("run_id")["metrics.acc/output_noise/3"]
    assert got[ev.finished].notna().all() and got[[ev.failed]].isna().all()


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "error: give exactly one of --run-id or --experiment"),
        (["--run-id", "x", "--experiment", "evaluate-me"], "error: give exactly one of --run-id or --experiment"),
        (["--run-id", "0" * 32], "error: unknown run id '" + "0" * 32 + "'"),
        (["--experiment", "nope"], "error: unknown experiment 'nope'; the tracking server has: "),
        (["--experiment", "evaluate-me", "-i", "pgd_linf:-1"], "error: pgd_linf value must be a non-negative number"),
        (
            ["--experiment", "evaluate-me", "-i", "group:race"],
            "error: unknown group attribute 'race'; this dataset has: color, skew",
        ),
    ],
)
def test_evaluate_errors(capsys, monkeypatch, in_evaluated, args, message):
    before = {rid: snapshot(in_evaluated.client, rid)[1] for rid in in_evaluated.finished}
    res = run_cli(capsys, monkeypatch, "evaluate", *args)
    assert res.code == 2
    assert one_error_line(res.err).startswith(message)
    assert {rid: snapshot(in_evaluated.client, rid)[1] for rid in in_evaluated.finished} == before


def test_evaluate_experiment_without_finished_runs(capsys, monkeypatch, client):
    tracking.experiment_id(client, "empty", create=True)
    res = run_cli(capsys, monkeypatch, "evaluate", "--experiment", "empty", "-i", "acc")
    assert res.code == 2
    assert one_error_line(res.err) == "error: experiment 'empty' has no FINISHED runs to evaluate"


def test_evaluate_experiment_skips_report_runs(capsys, monkeypatch, in_evaluated):
    """Report runs of older mmtrack versions sit in the study's experiment (no model, no params); evaluating
    the experiment must evaluate the trained runs and leave reports alone."""
    ev = in_evaluated
    report = ev.client.create_run(ev.exp_id, run_name="sheet-acc", tags={tracking.REPORT_TAG: "sheet"}).info.run_id
    ev.client.set_terminated(report, "FINISHED")
    try:
        res = run_cli(
            capsys, monkeypatch, "evaluate", "--experiment", "evaluate-me", "-i", "output_noise:4", "--noise-draws", "1"
        )
        assert res.code == 0, res.err
        for rid in ev.finished:
            assert "acc/output_noise/4" in ev.client.get_run(rid).data.metrics
        assert ev.client.get_run(report).data.metrics == {}
    finally:
        ev.client.delete_run(report)


def test_evaluate_a_run_without_a_model_is_one_error_line(capsys, monkeypatch, client):
    exp_id = tracking.experiment_id(client, "by-hand", create=True)
    run = client.create_run(exp_id)  # logged by hand: no params, no model
    client.set_terminated(run.info.run_id, "FINISHED")
    res = run_cli(capsys, monkeypatch, "evaluate", "--run-id", run.info.run_id, "-i", "acc")
    assert res.code == 2
    assert run.info.run_id in one_error_line(res.err)
    assert client.get_run(run.info.run_id).data.metrics == {}


# ------------------------------------------------------------------------------------------------ piped output


def _toy_experiment(tracking_dir) -> None:
    """6 runs (lr x seed) with long metric names, as a user's experiment looks to `sheet` and `select`."""
    client = tracking.connect()
    exp_id = tracking.experiment_id(client, "piped", create=True)
    for i, (lr, seed) in enumerate((lr, s) for lr in ("0.1", "0.05") for s in range(3)):
        run = client.create_run(exp_id, run_name=f"r{i}")
        rid = run.info.run_id
        for key, value in (("lr", lr), ("seed", str(seed)), ("dataset", "toy")):
            client.log_param(rid, key, value)
        metrics = {
            "acc": 0.90 + 0.01 * i,
            "acc/group/a-rather-long-attribute/a-rather-long-value": 0.7 + 0.03 * i,
            "acc/ood/another-long-ood-dataset-name": 0.8 - 0.02 * i,
            "epoch_seconds": 100.0 + 10 * i,
        }
        for key, value in metrics.items():
            client.log_metric(rid, key, value)
        client.set_tag(rid, tracking.EVAL_N_TAG, json.dumps({k: 1000 for k in metrics}))
        client.set_terminated(rid, "FINISHED")


@pytest.mark.slow
def test_piped_output_never_cuts_a_table(tracking_dir, tmp_path):
    _toy_experiment(tracking_dir)
    env = subprocess_env(tracking_dir)
    env.pop("COLUMNS")  # as in CI, `| tee`, or `> file`

    def piped(*args):
        proc = subprocess.run(
            [*mmtrack_command(), *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    summary = piped("sheet", "--experiment", "piped", "--summary")
    for header in ("Δmax^all (pp)", "× acc", "top axis", "its Δmax (pp)", "noise floor (pp)"):
        assert header in summary
    assert "acc/group/a-rather-long-attribute/a-rather-long-value" in summary
    assert "…" not in summary
    selected = piped(
        "select",
        "--experiment",
        "piped",
        "--by",
        "acc/ood/another-long-ood-dataset-name",
        "--top",
        "50",
        "--within",
        "2",
        "--pareto",
    )
    for header in ("before (n=6)", "top 50%", "within 2 pp", "pareto"):
        assert header in selected, selected
    assert "acc/group/a-rather-long-attribute/a-rather-long-value" in selected
    assert "epoch_seconds" not in selected  # not an accuracy: never a default unseen metric
    assert "…" not in selected


# ------------------------------------------------------------------------------------------------ mlflow run


@pytest.mark.slow
def test_mlflow_run_logs_where_mmtrack_looks(tmp_path):
    """`mlflow run .` with no configuration: the run lands in mmtrack's default store (tracking/), in an
    experiment named after the dataset, where `mmtrack sheet` (and `mmtrack server`) find it; MLflow's own
    launcher run points to it."""
    import shutil
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    project = tmp_path / "project"
    project.mkdir()
    for name in ("MLproject", "conda.yaml", "pyproject.toml"):  # a clone: its [tool.mmtrack] says tracking/
        shutil.copy(repo / name, project / name)
    env = subprocess_env(tmp_path / "unused")
    env.pop("MMTRACK_TRACKING_DIR")  # nothing configured: both sides use their defaults
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "run",
        ".",
        "--env-manager",
        "local",
        "-P",
        "epochs=1",
        "-P",
        "width=0.0625",
        "-P",
        "augment=none",
        "-P",
        "batch_size=256",
        "-P",
        "interventions=acc",
        "-P",
        "seed=4",
    ]
    for lr in ("0.1", "0.05"):  # two runs: a sheet with one axis
        proc = subprocess.run(
            [*cmd, "-P", f"lr={lr}"], cwd=project, capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "open it: `mmtrack server`, then http://127.0.0.1:5000/#/experiments/" in proc.stdout
    assert (project / "tracking" / "mlflow.db").exists()
    sheet = subprocess.run(
        [
            *mmtrack_command(),
            "sheet",
            "--experiment",
            "digits-skewed",
            "--metric",
            "acc",
            "--format",
            "json",
            "--no-predictions",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert sheet.returncode == 0, sheet.stderr
    data = json.loads(sheet.stdout)
    assert data["n_models"] == 2 and [t["axis"] for t in data["tables"]] == ["lr"]
    # the launcher run MLflow created in its own default store says where the training run went
    from mlflow.tracking import MlflowClient

    launcher = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").search_runs(["0"])
    assert len(launcher) == 2
    assert all("in experiment digits-skewed of sqlite:///" in r.data.tags[tracking.LAUNCHED_TAG] for r in launcher)


def test_launcher_run_in_default_experiment_points_to_a_named_one(capsys, monkeypatch, tracking_dir, digits):
    """MLFLOW_TRACKING_URI set to mmtrack's store, no --experiment-name: `mlflow run` created its run in
    `Default`; the training goes to the dataset's experiment and the launcher run points to it."""
    client = tracking.connect()
    launcher = client.create_run("0").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.default_uri())
    res = run_cli(capsys, monkeypatch, "train", *TINY_ARGS, "-i", "acc")
    assert res.code == 0, res.err
    exp = client.get_experiment_by_name("digits-skewed")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_id != launcher and run.info.status == "FINISHED"
    assert run.info.run_id in client.get_run(launcher).data.tags[tracking.LAUNCHED_TAG]
    assert not client.get_run(launcher).data.metrics  # nothing logged into the launcher run


def test_launcher_run_in_a_named_experiment_is_the_training_run(capsys, monkeypatch, tracking_dir, digits):
    """`mlflow run --experiment-name X` with mmtrack's store: mmtrack logs into the run MLflow created."""
    client = tracking.connect()
    exp_id = tracking.experiment_id(client, "chosen", create=True)
    launcher = client.create_run(exp_id).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.default_uri())
    res = run_cli(capsys, monkeypatch, "train", *TINY_ARGS, "-i", "acc")
    assert res.code == 0, res.err
    run = client.get_run(launcher)
    assert run.info.status == "FINISHED" and "acc" in run.data.metrics
    assert client.get_experiment_by_name("digits-skewed") is None


def test_help_reads_naturally():
    env = subprocess_env(Path("/tmp") / "unused-tracking")
    env["COLUMNS"] = "120"
    out = subprocess.run(
        [*mmtrack_command(), "sweep", "--help"], capture_output=True, text=True, env=env, timeout=120
    ).stdout
    assert "--dry-run " in out and "<bool>" not in out and "<str>" not in out.split("Arguments:")[0]
    assert "--workers INTEGER" in out and "--tracking-uri URI" in out and "STUDY" in out
    top = subprocess.run([*mmtrack_command(), "--help"], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "Run every configuration of a study as one MLflow run each (resumable, parallel, seeds stacked)." in top


def test_reports_go_to_a_companion_experiment_one_run_per_invocation(capsys, monkeypatch, tracking_dir):
    _toy_experiment(tracking_dir)
    client = tracking.connect()
    training = client.get_experiment_by_name("piped").experiment_id
    before = {r.info.run_id for r in client.search_runs([training])}
    metric = "acc/group/a-rather-long-attribute/a-rather-long-value"
    res = run_cli(
        capsys,
        monkeypatch,
        "sheet",
        "--experiment",
        "piped",
        "--metric",
        "acc",
        "--metric",
        metric,
        "--no-predictions",
        "--log",
        "--format",
        "json",
    )
    assert res.code == 0, res.err
    sheets = {s["metric"]: s for s in json.loads(res.out)}
    res = run_cli(
        capsys,
        monkeypatch,
        "select",
        "--experiment",
        "piped",
        "--by",
        "acc",
        "--top",
        "50",
        "--log",
        "--format",
        "json",
    )
    assert res.code == 0, res.err
    selected = json.loads(res.out)
    assert {r.info.run_id for r in client.search_runs([training])} == before  # the training table is untouched
    reports = client.get_experiment_by_name("piped-reports")
    assert reports.tags[tracking.REPORTS_FOR_TAG] == "piped"
    runs = {r.data.tags[tracking.REPORT_TAG]: r for r in client.search_runs([reports.experiment_id])}
    assert set(runs) == {"sheet", "select"}  # one run per invocation, both sheets in one
    sheet_run, select_run = runs["sheet"], runs["select"]
    for m in ("acc", metric):
        assert sheet_run.data.metrics[f"delta_max_all/{m}"] == pytest.approx(sheets[m]["delta_max_all"])
        assert sheet_run.data.metrics[f"noise_floor_all/{m}"] == pytest.approx(sheets[m]["noise_floor_all"])
    files = {f.path for f in client.list_artifacts(sheet_run.info.run_id)}
    assert {"report.html", "sheet-acc.json", f"sheet-{metric.replace('/', '_')}.json"} <= files
    page = Path(client.download_artifacts(sheet_run.info.run_id, "report.html")).read_text()
    assert page.count("<section") == 2 and "<small>floor " in page  # the noise floor is visible, not a tooltip
    seen = f"delta_max/before/{metric}"
    assert select_run.data.metrics[seen] == pytest.approx(selected["before"][metric]["delta_max"])
    assert select_run.data.metrics["n_selected/top50"] == selected["selections"][0]["n_selected"]


def test_ui_links_open_the_model_training_view():
    assert tracking.ui_url("http://h:5000/", "3") == "http://h:5000/#/experiments/3/runs?workflowType=machine_learning"
    assert tracking.ui_url("http://h:5000", "3", "abc") == (
        "http://h:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    assert tracking.ui_base("https://mlflow.example:443/") == "https://mlflow.example:443"
    assert tracking.ui_base("sqlite:////x/mlflow.db") == tracking.LOCAL_UI


@pytest.mark.slow
def test_server_starts_lean_and_says_when_it_answers(tracking_dir, tmp_path):
    """One uvicorn worker and no job consumers: the whole tree is 3 processes; the URL is printed only once
    /health answers; SIGTERM stops the server it started."""
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = subprocess_env(tracking_dir)
    proc = subprocess.Popen(
        [*mmtrack_command(), "server", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "ready in" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "server exited"
        assert f"MLflow UI on http://127.0.0.1:{port}" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            assert resp.status == 200

        def tree(pid: int) -> list[int]:
            kids = []
            for task in Path(f"/proc/{pid}/task").iterdir():
                kids += [int(c) for c in (task / "children").read_text().split()]
            return [pid] + [p for k in kids for p in tree(k)]

        assert len(tree(proc.pid)) <= 3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    time.sleep(1)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
