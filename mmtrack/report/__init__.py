"""The report layer: everything `mmtrack.analysis` computes, shown as text (csv, markdown, latex, html, json), as
terminal tables (rich) and as matplotlib figures, plus the files and headline numbers a `--log` run records.

One entry point per kind of output, dispatched on what is rendered (a `Sheet`, a summary DataFrame from
`analysis.summary`, a `SelectionReport`): `render(obj, fmt, **opts)`, `render_sheets(sheets, fmt, **opts)` for
several sheets at once, `sheet_figure`/`selection_figure` returning a `Figure`, and `save_figure(fig, stem)`
writing .png and .svg. matplotlib and rich are imported only when a figure or a terminal table is asked for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from mmtrack.analysis.selection import SelectionReport
from mmtrack.analysis.sheet import Sheet
from mmtrack.errors import MMTrackError
from mmtrack.report._figure import save_figure
from mmtrack.report._text import FORMATS, check_format, html_page, latex_escape, md_escape, strict_json
from mmtrack.report.audit_page import contested_figure, render_audit
from mmtrack.report.selection_report import long_table, render_selection, rich_table, selection_figure, wide_table
from mmtrack.report.sheet_report import (
    NOISE_NOTE,
    render_html_report,
    render_sheet,
    render_sheets,
    sheet_csv_frame,
)
from mmtrack.report.sheet_view import rich_tables, sheet_figure
from mmtrack.report.summary_report import render_summary, rich_summary

__all__ = [
    "contested_figure",
    "render_audit",
    "FORMATS",
    "NOISE_NOTE",
    "check_format",
    "html_page",
    "latex_escape",
    "long_table",
    "md_escape",
    "render",
    "render_html_report",
    "render_sheets",
    "rich_summary",
    "rich_table",
    "rich_tables",
    "save_figure",
    "selection_figure",
    "selection_log",
    "sheet_csv_frame",
    "sheet_figure",
    "sheet_log",
    "slug",
    "strict_json",
    "wide_table",
]


def render(obj: Sheet | pd.DataFrame | SelectionReport, fmt: str, **opts: Any) -> str:
    """`obj` as csv, markdown, latex, html or json. A `Sheet` takes `ui_url`, `experiment_id` (html run links)
    and `digits`; a summary DataFrame (`analysis.summary`) takes `digits`; a `SelectionReport` takes nothing."""
    if isinstance(obj, Sheet):
        return render_sheet(obj, fmt, **opts)
    if isinstance(obj, pd.DataFrame):
        return render_summary(obj, fmt, **opts)
    if isinstance(obj, SelectionReport):
        return render_selection(obj, fmt, **opts)
    raise MMTrackError(f"cannot render a {type(obj).__name__}; pass a Sheet, a summary or a SelectionReport")


def slug(metric: str) -> str:
    """A metric name as a file name part: acc/group/skew -> acc_group_skew."""
    return metric.replace("/", "_")


def sheet_log(
    sheets: Sequence[Sheet], ui_url: str | None = None, experiment_id: str | None = None
) -> tuple[dict[str, str], dict[str, float | None]]:
    """What `mmtrack sheet --log` records: files (`report.html` with every sheet, `sheet-<slug>.json` per sheet)
    and metrics (`delta_max_all/<metric>`, `noise_floor_all/<metric>`, `disagreement_all/<metric>`)."""
    files = {
        "report.html": render_html_report(sheets, ui_url=ui_url, experiment_id=experiment_id),
        **{f"sheet-{slug(s.metric)}.json": render_sheet(s, "json") for s in sheets},
    }
    metrics: dict[str, float | None] = {}
    for s in sheets:
        metrics[f"delta_max_all/{s.metric}"] = s.delta_max_all
        metrics[f"noise_floor_all/{s.metric}"] = s.noise_floor_all
        metrics[f"disagreement_all/{s.metric}"] = s.disagreement_all
    return files, metrics


def selection_log(report: SelectionReport) -> tuple[dict[str, str], dict[str, float | None]]:
    """What `mmtrack select --log` records: files `selection.json`, `selection.html`, `selection.md` and metrics
    `delta_max/before/<metric>`, `n_selected/<label>`, `delta_max/<label>/<metric>` (label: top75, within2pp...)."""
    files = {
        "selection.json": render_selection(report, "json"),
        "selection.html": render_selection(report, "html"),
        "selection.md": render_selection(report, "markdown"),
    }
    metrics: dict[str, float | None] = {f"delta_max/before/{m}": st.delta_max for m, st in report.before.items()}
    for o in report.selections:
        metrics[f"n_selected/{o.selection.key}"] = o.selection.n_selected
        metrics.update({f"delta_max/{o.selection.key}/{m}": st.delta_max for m, st in o.unseen.items()})
    return files, metrics
