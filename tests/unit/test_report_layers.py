"""The analysis and report layers stay light: importing them loads neither torch nor MLflow (so sheets and
selections can be computed and rendered without a training stack or a tracking server), analysis loads no
plotting or terminal library, and rendering fails with one clear line on anything it does not know."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from toy_runs import POOL, sheet_of

from mmtrack.errors import MMTrackError
from mmtrack.report import FORMATS, render, render_sheets

ROOT = Path(__file__).resolve().parents[2]


def loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_analysis_and_report_load_neither_torch_nor_mlflow():
    assert loaded_after("import mmtrack.analysis, mmtrack.report", ("torch", "mlflow")) == []


def test_analysis_loads_no_plotting_or_terminal_library():
    assert loaded_after("import mmtrack.analysis", ("torch", "mlflow", "matplotlib", "rich", "optuna")) == []


def test_unknown_format_and_object_are_one_line_errors():
    assert FORMATS == ("csv", "markdown", "latex", "html", "json")
    with pytest.raises(MMTrackError, match=r"unknown format 'xlsx'; choose one of: csv, markdown, latex, html, json"):
        render(sheet_of(), "xlsx")
    with pytest.raises(MMTrackError, match="cannot render a list"):
        render([sheet_of()], "json")
    with pytest.raises(MMTrackError, match="no sheet to render"):
        render_sheets([], "json")
    with pytest.raises(MMTrackError, match="unknown format 'rich'"):
        render(pd.DataFrame(), "rich")


def test_every_format_follows_one_convention():
    """One rule style in LaTeX (booktabs, said in a comment), a standalone page in HTML, UTF-8 text kept in JSON,
    for sheets, the summary and selections alike."""
    from mmtrack.analysis import analyse, summary

    sheet = sheet_of()
    rep = analyse(POOL, ["acc/a", "acc/b"], experiment="Δ-toy")
    for obj in (sheet, summary([sheet]), rep):
        tex = render(obj, "latex")
        assert r"\usepackage{booktabs}" in tex.splitlines()[0] + tex.splitlines()[1]
        assert tex.count(r"\toprule") == tex.count(r"\bottomrule") >= 1 and r"\hline" not in tex and "|" not in tex
        page = render(obj, "html")
        assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n") and page.count("<style>") == 1
    assert '"experiment": "Δ-toy"' in render(rep, "json")
    assert "<title>Model selection — Δ-toy</title>" in render(rep, "html")
    assert "<li>1 run(s) not FINISHED were ignored</li>" in render(rep, "html")
