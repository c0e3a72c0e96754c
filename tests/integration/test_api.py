"""The notebook API: an experiment opened by name gives the same sheet, summary and selection as the commands."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

import mmtrack
from mmtrack import tracking


def _experiment() -> None:
    client = tracking.connect()
    exp_id = tracking.experiment_id(client, "api", create=True)
    for i, (lr, seed) in enumerate((lr, s) for lr in ("0.1", "0.05") for s in range(3)):
        rid = client.create_run(exp_id, run_name=f"r{i}").info.run_id
        for key, value in (("lr", lr), ("seed", str(seed))):
            client.log_param(rid, key, value)
        for key, value in {"acc": 0.90 + 0.004 * i, "acc/ood/x": 0.8 - 0.01 * i}.items():
            client.log_metric(rid, key, value)
        client.set_terminated(rid, "FINISHED")


def test_the_notebook_api_matches_the_commands(capsys, monkeypatch, tracking_dir):
    _experiment()
    exp = mmtrack.open_experiment("api")
    assert len(exp.runs) == 6 and exp.study is None
    sheet = exp.sheet("acc/ood/x", predictions=True)  # as the command does by default
    cli = json.loads(
        run_cli(capsys, monkeypatch, "sheet", "--experiment", "api", "--metric", "acc/ood/x", "--format", "json").out
    )
    assert json.loads(mmtrack.render(sheet, "json")) == cli
    summary = exp.summary()
    assert list(summary["metric"]) == ["acc", "acc/ood/x"]
    sel = exp.select(by=["acc"], tops=[50])
    cli_sel = json.loads(
        run_cli(
            capsys, monkeypatch, "select", "--experiment", "api", "--by", "acc", "--top", "50", "--format", "json"
        ).out
    )
    assert json.loads(mmtrack.render(sel, "json")) == cli_sel
    with pytest.raises(mmtrack.MMTrackError, match="unknown experiment 'nope'"):
        mmtrack.open_experiment("nope")
    with pytest.raises(AttributeError):
        mmtrack.no_such_name  # noqa: B018
