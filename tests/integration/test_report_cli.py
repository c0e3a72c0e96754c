"""`mmtrack sheet` and `mmtrack select` through the command line, on a small MLflow store: `--figure DIR` means
a folder for both commands, and each sheet is built once (the predictions of the cell runs downloaded once)."""

from __future__ import annotations

import json

from conftest import run_cli, scores_experiment

from mmtrack import tracking


def _experiment() -> None:
    """4 runs (lr x seed) of a toy experiment, every metric logged."""
    scores_experiment("figs")


def test_figure_is_a_folder_for_sheet_and_select(capsys, monkeypatch, tracking_dir, tmp_path):
    _experiment()
    calls = []
    real = tracking.load_predictions
    monkeypatch.setattr(tracking, "load_predictions", lambda client, ids: calls.append(list(ids)) or real(client, ids))
    res = run_cli(
        capsys, monkeypatch, "sheet", "--experiment", "figs", "--format", "json", "--figure", str(tmp_path / "sheets")
    )
    assert res.code == 0, res.err
    assert [s["metric"] for s in json.loads(res.out)] == ["acc", "acc/ood/x"]
    assert len(calls) == 1 and len(calls[0]) == 4  # one download for both metrics, every cell run once
    assert sorted(p.name for p in (tmp_path / "sheets").iterdir()) == [
        "sheet-acc.png",
        "sheet-acc.svg",
        "sheet-acc_ood_x.png",
        "sheet-acc_ood_x.svg",
    ]
    res = run_cli(
        capsys,
        monkeypatch,
        "select",
        "--experiment",
        "figs",
        "--by",
        "acc",
        "--top",
        "50",
        "--format",
        "json",
        "--figure",
        str(tmp_path / "sel"),
    )
    assert res.code == 0, res.err
    assert json.loads(res.out)["unseen"] == ["acc/ood/x"]
    assert sorted(p.name for p in (tmp_path / "sel").iterdir()) == ["selection.png", "selection.svg"]
    assert "wrote 2 figure files to" in res.err
    assert "acc/ood/x" in (tmp_path / "sel" / "selection.svg").read_text()
