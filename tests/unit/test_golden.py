"""Golden outputs: every text format of a sheet, a summary and a selection report, compared byte for byte with
the files in tests/unit/golden/.

They pin the exact output so that moving or sharing rendering code cannot change it by accident. When an output
changes on purpose, regenerate them with `MMTRACK_REGEN_GOLDEN=1 pytest tests/unit/test_golden.py`, read the diff
(`git diff tests/unit/golden`) and commit it with the change."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from toy_runs import POOL, STUDY, make_runs, metric_runs, row

from mmtrack.analysis import Design, analyse, build_sheet, summary
from mmtrack.report import render, render_sheets, rich_summary, rich_table, rich_tables

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("MMTRACK_REGEN_GOLDEN") == "1"
EXT = {"markdown": "md", "latex": "tex", "html": "html", "csv": "csv", "json": "json"}
UI = {"ui_url": "http://mlflow:5000/", "experiment_id": "7"}


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    assert path.exists(), f"{path} is missing; run with MMTRACK_REGEN_GOLDEN=1 to write it"
    assert path.read_bytes() == text.encode("utf-8"), f"{name} differs from its golden file"


def rich_text(renderable) -> str:
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def full_sheet():
    """The hand-checked sheet of test_sheet (toy_runs): 2 axes x 3 seeds, every cell present."""
    return build_sheet(make_runs(), "acc", Design.from_study(STUDY), "toy")


def gappy_sheet():
    """A missing cell, a RUNNING run, a duplicated cell and predictions: every note and detail a sheet can show."""
    extra = [
        row("running", "0.1", "256", "1", 0.5, status="RUNNING", end=50),
        row("redo-new", "0.05", "128", "2", 0.9170, end=500),
    ]
    runs = make_runs(extra, drop={"r-0.1-256-1"})
    preds = {rid: np.array([0, 1, 2, 3, 4]) for rid in runs["run_id"]}
    preds["r-0.05-128-0"] = np.array([0, 1, 2, 3, 0])
    preds.pop("r-0.01-128-1")
    return build_sheet(runs, "acc/group/g", Design.from_study(STUDY), "toy", predictions=preds)


SHEETS = {"sheet-full": full_sheet, "sheet-gappy": gappy_sheet}


@pytest.mark.parametrize("fmt", list(EXT))
@pytest.mark.parametrize("case", list(SHEETS))
def test_sheet_formats(case, fmt):
    check(f"{case}.{EXT[fmt]}", render(SHEETS[case](), fmt, **(UI if case == "sheet-gappy" else {})))


@pytest.mark.parametrize("case", list(SHEETS))
def test_sheet_rich(case):
    check(f"{case}.rich.txt", rich_text(rich_tables(SHEETS[case]())))


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown", "html"])
def test_several_sheets(fmt):
    """What `mmtrack sheet` prints for several metrics (html: the page `--log` records as report.html)."""
    check(f"sheets.{EXT[fmt]}", render_sheets([full_sheet(), gappy_sheet()], fmt, **UI))


def summary_frame():
    runs = make_runs()
    runs["metrics.acc/ood/x"] = np.nan  # logged nowhere: NaN spread, no top axis
    return summary([build_sheet(runs, m, Design.from_study(STUDY), "toy") for m in ("acc", "acc/group/g", "acc/ood/x")])


@pytest.mark.parametrize("fmt", list(EXT))
def test_summary_formats(fmt):
    check(f"summary.{EXT[fmt]}", render(summary_frame(), fmt))


def test_summary_rich():
    check("summary.rich.txt", rich_text(rich_summary(summary_frame())))


def pool_report():
    """The selection fixture of test_selection: top 75/50, within 5 pp and the Pareto front on POOL."""
    return analyse(POOL, ["acc/a", "acc/b"], within=[5.0], pareto=True, experiment="toy")


def excluded_report():
    """A run lacking a selection metric, a non-accuracy unseen metric and floor rounding."""
    runs = metric_runs(
        {
            "acc/a": [0.9, 0.8, 0.7, 0.6],
            "acc/b": [0.5, float("nan"), 0.7, 0.8],
            "epoch_seconds": [167.7, 1853.0, 400.0, 90.5],
            "acc/u": [0.1, 0.2, 0.3, 0.4],
        }
    )
    return analyse(runs, ["acc/a", "acc/b"], unseen=["acc/u", "epoch_seconds"], tops=[75], rounding="floor")


REPORTS = {"selection": pool_report, "selection-excluded": excluded_report}


@pytest.mark.parametrize("fmt", list(EXT))
@pytest.mark.parametrize("case", list(REPORTS))
def test_selection_formats(case, fmt):
    check(f"{case}.{EXT[fmt]}", render(REPORTS[case](), fmt))


@pytest.mark.parametrize("case", list(REPORTS))
def test_selection_rich(case):
    check(f"{case}.rich.txt", rich_text(rich_table(REPORTS[case]())))
