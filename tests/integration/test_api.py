"""The notebook API: an experiment opened by name gives the same sheet, summary and selection as the commands."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, scores_experiment

import mmtrack


def _experiment() -> None:
    scores_experiment("api", seeds=3, step=(0.004, -0.01))


@pytest.mark.slow
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
