"""Predictions for every population a metric is measured on: from the stored predictions alone, every logged
accuracy of a tiny study is recomputed exactly; `evaluate` adds them to runs logged without them; per-group
prediction multiplicity is measured on the group evaluation set; the files are compact."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_cli, tiny_study, write_study

from mmtrack import tracking

STUDY = tiny_study(
    name="populations",
    axes={"lr": [0.1]},
    interventions=["acc", "group", "ood", "output_noise:0,2", "input_noise:0.5", "pgd_linf:0,0.01"],
    eval={"intervention_predictions": True, "noise_draws": 2, "pgd_max_examples": 48, "pgd_steps": 2},
)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("MMTRACK_THREADS", "1")


def population_of(metric: str) -> tuple[str, str | None]:
    """(population, group "attribute/value" or None) a logged accuracy is measured on."""
    if metric == "acc":
        return "test", None
    parts = metric.split("/")
    if parts[1] == "group":
        return "group", "/".join(parts[2:])
    return "/".join(parts[1:]), None


def recompute(df: pd.DataFrame, group: str | None) -> tuple[int, int]:
    """(correct, predictions) from a stored predictions frame, over every draw it holds."""
    if group is not None:
        attr, value = group.split("/", 1)
        df = df[df[f"group/{attr}"] == value]
    preds = [c for c in df.columns if c == "pred" or c.startswith("pred_")]
    correct = sum(int((df[c] == df["label"]).sum()) for c in preds)
    return correct, len(df) * len(preds)


@pytest.mark.slow
def test_every_logged_accuracy_recomputes_from_stored_predictions(capsys, monkeypatch, tracking_dir, tmp_path):
    path = write_study(tmp_path, **STUDY)
    r = run_cli(capsys, monkeypatch, "sweep", path)
    assert r.code == 0, r.err
    client = tracking.connect()
    exp = client.get_experiment_by_name("populations")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2 and {x.info.status for x in runs} == {"FINISHED"}
    for run in runs:
        rid = run.info.run_id
        metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("acc")}
        assert len(metrics) == 1 + 5 + 1 + 2 + 1 + 2  # acc, 5 groups, 1 OOD set, noise and PGD values
        stored = tracking.stored_populations(client, rid)
        assert stored == sorted(
            ["test", "group", "ood/digits-warped", "output_noise/0", "output_noise/2", "input_noise/0.5"]
            + ["pgd_linf/0", "pgd_linf/0.01"]
        )
        frames = {p: tracking.load_predictions(client, [rid], population=p)[rid] for p in stored}
        n = json.loads(run.data.tags[tracking.EVAL_N_TAG])
        for metric, logged in metrics.items():
            population, group = population_of(metric)
            correct, total = recompute(frames[population], group)
            draws = total // n[metric]
            assert total == n[metric] * draws and draws in (1, 2), metric  # the population the metric counts
            assert correct == round(logged * total), metric  # the same examples right, exactly
            assert correct / total == pytest.approx(logged, abs=1e-7), metric
        assert len(frames["group"]) == 10776 and len(frames["test"]) == 5388  # not the 136 of the skewed split
        pgd = frames["pgd_linf/0.01"]
        assert len(pgd) == 48 and pgd["index"].is_unique  # the attacked subset, indexed into the test split
        np.testing.assert_array_equal(pgd["label"], frames["test"]["label"].to_numpy()[pgd["index"]])


@pytest.mark.slow
def test_evaluate_adds_predictions_to_runs_logged_without_them(capsys, monkeypatch, tracking_dir, tmp_path, digits):
    from mmtrack import api

    path = write_study(tmp_path, **{**STUDY, "name": "old-runs", "interventions": ["acc"], "eval": {}})
    assert run_cli(capsys, monkeypatch, "sweep", path).code == 0
    client = tracking.connect()
    ids = [r.info.run_id for r in client.search_runs([client.get_experiment_by_name("old-runs").experiment_id])]
    assert all(tracking.stored_populations(client, rid) == ["test"] for rid in ids)
    # the metrics of an old run, logged without their predictions: per-group multiplicity falls back, and says so
    for rid in ids:
        client.log_metric(rid, "acc/group/skew/gs-minority", 0.5)
    audit = api.open_experiment("old-runs").audit()
    assert audit.group_population == "test" and audit.per_group["skew/gs-minority"].n_examples == 136
    assert any("measured on the test split's examples" in line for line in audit.notes)
    r = run_cli(capsys, monkeypatch, "evaluate", "--experiment", "old-runs", "-i", "ood")
    assert r.code == 0, r.err
    assert "stored predictions of group, ood/digits-warped for 2 run(s) that lacked them" in r.out
    for rid in ids:  # the OOD set it measured, and the group set its (old) group metric is measured on
        assert tracking.stored_populations(client, rid) == ["group", "ood/digits-warped", "test"]
    audit = api.open_experiment("old-runs").audit()
    assert audit.group_population == "group" and audit.per_group["skew/gs-minority"].n_examples == 2706
    assert not any("per group" in line for line in audit.notes)
    again = run_cli(capsys, monkeypatch, "evaluate", "--experiment", "old-runs", "-i", "ood")
    assert again.code == 0 and "stored predictions" not in again.out  # nothing stored twice
    arts = [a.path for a in client.list_artifacts(ids[0], "predictions")]
    assert sorted(arts) == ["predictions/group.parquet", "predictions/ood", "predictions/test.parquet"]


def test_many_classes_keep_the_top_k(digits):
    from mmtrack.data import Split
    from mmtrack.jobs.record import MAX_PROB_CLASSES, TOP_K, predictions_frame

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 30, generator=g)
    split = Split(torch.zeros(40, 3, 4, 4, dtype=torch.uint8), torch.randint(0, 30, (40,), generator=g))
    df = predictions_frame(logits, split)
    assert 30 > MAX_PROB_CLASSES and not any(c.startswith("prob_") for c in df.columns)
    np.testing.assert_array_equal(df["top1"], logits.argmax(1).numpy())
    np.testing.assert_array_equal(df["pred"], df["top1"])
    top = torch.softmax(logits, 1).topk(TOP_K, dim=1)
    for i in range(TOP_K):
        np.testing.assert_array_equal(df[f"top{i + 1}"], top.indices[:, i].numpy())
        np.testing.assert_allclose(df[f"top{i + 1}_prob"].astype(np.float32), top.values[:, i].numpy(), atol=1e-3)
    small = predictions_frame(logits[:, :10], split)
    assert [c for c in small.columns if c.startswith("prob_")] == [f"prob_{c}" for c in range(10)]
