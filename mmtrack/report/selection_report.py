"""A selection report (`mmtrack.analysis.selection.analyse`) as text, a terminal table and the paper's Fig. 9.

Text: csv (tidy and numeric, one row per group x unseen metric: `long_table`), markdown/latex/html (one row per
unseen metric, one ``min–max (Δ x.xx)`` column per group: `wide_table`) and json (`SelectionReport.to_dict`).
The figure draws the per-run values the report carries, so it needs nothing but the report."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd

from mmtrack.analysis.selection import RangeStats, SelectionReport
from mmtrack.errors import MMTrackError
from mmtrack.metrics import is_accuracy
from mmtrack.report._figure import new_figure
from mmtrack.report._text import LATEX_PREAMBLE, check_format, html_page, latex_escape, md_escape, strict_json

LONG_COLUMNS = ["selection", "rule", "k", "eps", "n_selected", "metric", "min", "max", "delta_max", "n"]


def _cell(stats: RangeStats) -> str:
    if stats.min is None:
        return "n/a"
    return f"{stats.min:.2f}–{stats.max:.2f} (Δ {stats.delta_max:.2f})"


def column_labels(report: SelectionReport) -> list[str]:
    """``before (n=…)`` then one label per selection, e.g. ``top 75% (n=17)``."""
    return [f"before (n={report.n_runs})"] + [
        f"{o.selection.label} (n={o.selection.n_selected})" for o in report.selections
    ]


MULTIPLICITY_ROWS = ("ambiguity", "discrepancy", "contested")  # prediction multiplicity, after the unseen metrics


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def wide_table(report: SelectionReport) -> pd.DataFrame:
    """One row per unseen metric; one text column per group: ``min–max (Δ x.xx)``; then, when the runs' predictions
    were given, one row per prediction-multiplicity measure (`predictions: ambiguity`, ...) in percent."""
    rows = [
        [metric, _cell(report.before[metric])] + [_cell(o.unseen[metric]) for o in report.selections]
        for metric in report.unseen
    ]
    if report.multiplicity is not None:
        sets = [report.multiplicity] + [o.multiplicity for o in report.selections]
        rows += [
            [f"predictions: {name}"] + [_share(getattr(m, name) if m else None) for m in sets]
            for name in MULTIPLICITY_ROWS
        ]
    return pd.DataFrame(rows, columns=["metric", *column_labels(report)])


def long_table(report: SelectionReport) -> pd.DataFrame:
    """Tidy numeric table: one row per (group, unseen metric), values in percentage points."""
    groups: list[tuple[str, str, float | None, float | None, int, dict[str, RangeStats]]] = [
        ("before", "before", None, None, report.n_runs, report.before)
    ]
    for o in report.selections:
        s = o.selection
        groups.append((s.label, s.rule, s.k, s.eps, s.n_selected, o.unseen))
    rows = [
        {
            "selection": label,
            "rule": rule,
            "k": k,
            "eps": eps,
            "n_selected": n_sel,
            "metric": metric,
            "min": stats[metric].min,
            "max": stats[metric].max,
            "delta_max": stats[metric].delta_max,
            "n": stats[metric].n,
        }
        for label, rule, k, eps, n_sel, stats in groups
        for metric in report.unseen
    ]
    if report.multiplicity is not None:  # metric predictions/<measure>: min = max = the share (%), n = models
        sets = [report.multiplicity] + [o.multiplicity for o in report.selections]
        for (label, rule, k, eps, n_sel, _), m in zip(groups, sets):
            for name in MULTIPLICITY_ROWS:
                value = None if m is None or getattr(m, name) is None else 100 * getattr(m, name)
                rows.append(
                    {
                        "selection": label,
                        "rule": rule,
                        "k": k,
                        "eps": eps,
                        "n_selected": n_sel,
                        "metric": f"predictions/{name}",
                        "min": value,
                        "max": value,
                        "delta_max": None,
                        "n": None if m is None else m.n_models,
                    }
                )
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def caption(report: SelectionReport) -> str:
    where = f" in {report.experiment}" if report.experiment else ""
    text = (
        f"Spread (min–max, Δmax; accuracies in percentage points) of unseen metrics{where} before and after "
        f"model selection on {', '.join(report.by)}"
    )
    m = report.multiplicity
    if m is not None:
        ref = f"reference run {m.reference}" if m.reference else "no reference run"
        text += (
            f"; predictions: share of {m.n_examples} test examples predicted differently from the {ref} by "
            "some model (ambiguity) or by one model at most (discrepancy), or not predicted alike by all "
            "(contested)"
        )
    return text


def _markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(md_escape(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(md_escape(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _latex(table: pd.DataFrame, text: str) -> str:
    lines = [
        LATEX_PREAMBLE,
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{l" + "c" * (len(table.columns) - 1) + "}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(text)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _html(report: SelectionReport) -> str:
    """A standalone page (the same shell and style as a sheet's): the table, then the warnings."""
    esc = html.escape
    table = wide_table(report)
    head = "".join(f"<th>{esc(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>\n" for row in table.itertuples(index=False)
    )
    notes = "".join(f"<li>{esc(w)}</li>\n" for w in report.warnings)
    title = "Model selection" + (f" — {report.experiment}" if report.experiment else "")
    return html_page(
        title,
        f'<table class="mmtrack-selection">\n<caption>{esc(caption(report))}</caption>\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"
        + (
            f'<footer>\n<p>Warnings ({len(report.warnings)}):</p>\n<ul class="note">\n{notes}</ul>\n</footer>\n'
            if notes
            else ""
        ),
    )


def render_selection(report: SelectionReport, fmt: str) -> str:
    """The report as csv, markdown, latex (booktabs), html (a standalone page) or json."""
    check_format(fmt)
    if fmt == "json":
        return strict_json(report.to_dict())
    if fmt == "csv":
        return long_table(report).to_csv(index=False)
    if fmt == "markdown":
        return _markdown(wide_table(report))
    if fmt == "latex":
        return _latex(wide_table(report), caption(report))
    return _html(report)


def rich_table(report: SelectionReport) -> Any:
    """A ``rich.table.Table``: one row per unseen metric, columns "before" then each selection."""
    from rich.table import Table

    table = Table(title=caption(report))
    table.add_column("metric", style="bold", no_wrap=True)  # metric names and numbers are never cut
    for label in column_labels(report):
        table.add_column(label, justify="center", overflow="fold", min_width=11)
    for row in wide_table(report).itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    return table


def selection_figure(report: SelectionReport):
    """Fig. 9-style strip plot as a `Figure`: one axes per unseen metric; x = before, then each selection; every
    run's value (percentage points) is a dot with a small deterministic jitter, the min–max range a bar with caps."""
    metrics = list(report.unseen)
    if not metrics:
        raise MMTrackError("the report has no unseen metric to plot; pass --unseen or log more metrics")
    groups = [(f"{label}\n(n={n})", values) for label, n, values in report.groups()]
    n_cols = min(4, len(metrics))
    n_rows = math.ceil(len(metrics) / n_cols)
    panel_width = max(3.2, 1.0 * len(groups) + 0.6)
    fig = new_figure(figsize=(panel_width * n_cols, 3.6 * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes.ravel(), metrics):
        for x, (_, values) in enumerate(groups):
            y = values[metric].dropna().to_numpy()
            if y.size == 0:
                continue
            jitter = rng.uniform(-0.12, 0.12, size=y.size)
            ax.scatter(x + jitter, y, s=12, alpha=0.7, color=f"C{x}", zorder=3)
            ax.errorbar(
                x + 0.25,
                (y.max() + y.min()) / 2,
                yerr=(y.max() - y.min()) / 2,
                color="black",
                capsize=4,
                linewidth=1.2,
                zorder=2,
            )
            ax.annotate(
                f"Δ {y.max() - y.min():.2f}",
                (x + 0.25, y.max()),
                textcoords="offset points",
                xytext=(0, 4),
                ha="center",
                fontsize=7,
            )
        ax.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=8)
        ax.set_xlim(-0.5, len(groups) - 0.5)
        ax.set_title(metric, fontsize=9)
        ax.set_ylabel("percentage points" if is_accuracy(metric) else "own unit", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.12)
    for ax in axes.ravel()[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle(f"Selection on {', '.join(report.by)}", fontsize=10)
    fig.tight_layout()
    return fig
