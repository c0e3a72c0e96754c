"""The command line: `mmtrack train` (one run; bad input -> one line `error: ...`, exit 2, nothing trained or
logged) and `mmtrack evaluate` (adds metrics to logged runs, leaves the others untouched)."""

from __future__ import annotations

import json
import subprocess
import types

import pytest

from mmtrack import run as run_mod
from mmtrack import tracking
from mmtrack.config import RunConfig
from mmtrack.interventions import EvalSettings, Evaluator, Intervention, parse
from mmtrack.run import run_config

from conftest import TINY, mmtrack_command, module_store, run_cli, subprocess_env

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
        (["--augment", "autoaugment"], "error: unknown augment 'autoaugment'; choose one of: randaugment, "
                                       "trivialaugment, none"),
        (["--optimizer", "lbfgs"], "error: unknown optimizer 'lbfgs'; choose one of: sgd, adam"),
        (["--lr=0"], "error: lr must be a positive number, got 0.0"),
        (["--lr=-0.1"], "error: lr must be a positive number, got -0.1"),
        (["--batch-size=0"], "error: batch_size must be a positive integer, got 0"),
        (["--batch-size=-4"], "error: batch_size must be a positive integer, got -4"),
        (["--epochs=0"], "error: epochs must be a positive integer, got 0"),
        (["-i", "foo"], "error: unknown intervention 'foo'; choose one of: acc, group, ood, output_noise, "
                        "input_noise, pgd_linf, mia"),
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
    exp = client.get_experiment_by_name("bad")
    assert exp is None or client.search_runs([exp.experiment_id]) == []


def test_console_script_reports_bad_arch(tmp_path):
    """The installed `mmtrack` entry point, as a user runs it."""
    env = subprocess_env(tmp_path / "tracking")
    env.pop("COLUMNS")  # the default 80-column console: the error still is one line
    proc = subprocess.run([*mmtrack_command(), "train", "--arch", "foo"], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown arch 'foo'; choose one of: resnet18, resnet50, wide_resnet50_2"
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "tracking").exists()


def test_train_logs_one_run(capsys, monkeypatch, tracking_dir, digits):
    res = run_cli(capsys, monkeypatch, "train", *TINY_ARGS, "--lr", "0.05", "--seed", "3", "--experiment", "cli",
                  "-i", "acc;group:skew/gs-minority")
    assert res.code == 0, res.err
    client = tracking.connect()
    exp = client.get_experiment_by_name("cli")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert f"run {run.info.run_id} FINISHED" in res.out
    assert run.data.params["lr"] == "0.05" and run.data.params["seed"] == "3"
    cfg = RunConfig(**{**TINY, "lr": 0.05, "seed": 3})
    assert run.info.run_name == cfg.run_name
    assert run.data.tags[tracking.HASH_TAG] == cfg.hash
    assert {k for k in run.data.metrics if k.startswith(("acc", "mia"))} == {"acc", "acc/group/skew/gs-minority"}


# ------------------------------------------------------------------------------------------------ evaluate


@pytest.fixture(scope="module")
def evaluated(digits, tmp_path_factory, _empty_store):
    """An experiment with two FINISHED runs (seeds 0, 1) and one FAILED run (diverged)."""
    with module_store(tmp_path_factory, _empty_store, "evaluate") as (d, client):
        exp_id = tracking.experiment_id(client, "evaluate-me", create=True)
        ids = [run_config(RunConfig(**{**TINY, "seed": s}), client, exp_id, parse(["acc", "group"]), data=digits).run_id
               for s in (0, 1)]
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
    res = run_cli(capsys, monkeypatch, "evaluate", "--run-id", target, "-i", "pgd_linf:0.02",
                  "--pgd-max-examples", "100", "--pgd-steps", "3")
    assert res.code == 0, res.err
    run1, metrics1, params1, hist1 = snapshot(ev.client, target)
    assert set(metrics1) == set(metrics0) | {"acc/pgd_linf/0.02"}
    assert {k: metrics1[k] for k in metrics0} == metrics0  # untouched, value for value
    assert 0 <= metrics1["acc/pgd_linf/0.02"] <= metrics0["acc"] + 0.1
    assert params1 == params0 and hist1 == hist0
    assert run1.info.status == "FINISHED"
    eval_n0, eval_n1 = (json.loads(r.data.tags[tracking.EVAL_N_TAG]) for r in (run0, run1))
    assert eval_n1 == {**eval_n0, "acc/pgd_linf/0.02": 100}
    assert snapshot(ev.client, other)[1] == other_metrics0  # the other run is not touched
    # the value is what the reloaded model gives under the same settings
    model = tracking.load_model(ev.client, target)
    from mmtrack.datasets import load_dataset

    expected = Evaluator(model, load_dataset("digits-skewed"), EvalSettings(pgd_max_examples=100, pgd_steps=3)).run(
        Intervention("pgd_linf", 0.02))[0]
    assert metrics1["acc/pgd_linf/0.02"] == expected["acc/pgd_linf/0.02"]


def test_evaluate_experiment_covers_every_finished_run(capsys, monkeypatch, in_evaluated):
    ev = in_evaluated
    before = {rid: snapshot(ev.client, rid)[1] for rid in [*ev.finished, ev.failed]}
    res = run_cli(capsys, monkeypatch, "evaluate", "--experiment", "evaluate-me", "-i", "output_noise:5",
                  "--noise-draws", "2")
    assert res.code == 0, res.err
    for rid in ev.finished:
        after = snapshot(ev.client, rid)[1]
        assert set(after) == set(before[rid]) | {"acc/output_noise/5"}
        assert {k: after[k] for k in before[rid]} == before[rid]
    assert snapshot(ev.client, ev.failed)[1] == before[ev.failed]  # FAILED runs have no model to evaluate
    assert res.out.count("acc/output_noise/5") == 2  # one table per finished run


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "error: give exactly one of --run-id or --experiment"),
        (["--run-id", "x", "--experiment", "evaluate-me"], "error: give exactly one of --run-id or --experiment"),
        (["--run-id", "0" * 32], "error: unknown run id '" + "0" * 32 + "'"),
        (["--experiment", "nope"], "error: unknown experiment 'nope'; the tracking server has: "),
        (["--experiment", "evaluate-me", "-i", "pgd_linf:-1"], "error: pgd_linf value must be a non-negative number"),
        (["--experiment", "evaluate-me", "-i", "group:race"], "error: unknown group attribute 'race'; this dataset "
                                                              "has: color, skew"),
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
    """`mmtrack sheet --log` / `select --log` record reports as FINISHED runs (no model, no params) in the
    study's experiment; evaluating the experiment must evaluate the trained runs and leave reports alone."""
    from mmtrack import cli

    ev = in_evaluated
    report = cli._log_report(ev.client, ev.exp_id, "sheet-acc", {"sheet.json": "{}"}, [])
    try:
        res = run_cli(capsys, monkeypatch, "evaluate", "--experiment", "evaluate-me", "-i", "output_noise:4",
                      "--noise-draws", "1")
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
