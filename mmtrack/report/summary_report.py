"""The summary across metrics (`analysis.summary`: Δmax^all, × acc, top axis, noise floor) as text (csv, json,
markdown, latex, html) and as a terminal table; also the cells the report page's summary table shows."""

from __future__ import annotations

import html as html_lib

import pandas as pd

from mmtrack.analysis.cells import MISSING
from mmtrack.analysis.effects import format_p
from mmtrack.report._text import LATEX_PREAMBLE, check_format, html_page, latex_escape, md_escape, num, strict_json


def summary_cells(df: pd.DataFrame, digits: int) -> list[list[str]]:
    out = []
    for r in df.itertuples(index=False):
        p = r.top_axis_p_value
        out.append(
            [
                str(r.metric),
                num(r.delta_max_all, digits),
                MISSING if pd.isna(r.ratio_to_acc) else f"{r.ratio_to_acc:.1f}×",
                MISSING if pd.isna(r.top_axis) else str(r.top_axis),
                MISSING if pd.isna(r.top_axis_eta_squared) else f"{r.top_axis_eta_squared:.2f}",
                MISSING if pd.isna(p) else format_p(p),
                num(r.top_axis_delta_max, digits),
                num(r.noise_floor_all, digits),
            ]
        )
    return out


SUMMARY_HEADERS = ["metric", "Δmax^all (pp)", "× acc", "top axis", "η²", "p", "its Δmax (pp)", "noise floor (pp)"]
SUMMARY_NOTE = (
    "top axis = the axis with the largest significant effect beyond seed noise (η², permutation p < 0.05); "
    "seed = no axis moves the metric more than changing the seed does (its Δmax: the largest between "
    "seeds of one configuration)"
)
SOURCE_NOTE = (
    "; source: X = in a seed-sources study, the source of randomness whose seeds spread the metric most (its Δmax; "
    "p: how often sources reassigned at random spread as far)"
)


def summary_note(df: pd.DataFrame) -> str:
    """The note under a summary table (what "top axis" means; a seed-sources study's "source: X" too)."""
    sources = df["top_axis"].astype(str).str.startswith("source: ").any() if "top_axis" in df else False
    return SUMMARY_NOTE + (SOURCE_NOTE if sources else "")


def render_summary(df: pd.DataFrame, fmt: str, digits: int = 2) -> str:
    """The summary table as csv, markdown, latex, html or json (strict: NaN -> null)."""
    check_format(fmt)
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return strict_json(df.to_dict(orient="records"))
    cells = summary_cells(df, digits)
    if fmt == "markdown":
        lines = ["| " + " | ".join(SUMMARY_HEADERS) + " |", "|---|" + "---:|---:|---|---:|---:|---:|---:|"]
        lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in cells]
        return "\n".join(lines + ["", md_escape(summary_note(df))]) + "\n"
    if fmt == "latex":
        head = [
            "metric",
            r"$\Delta^{all}_{\max}$",
            r"$\times$ acc",
            "top axis",
            r"$\eta^2$",
            "$p$",
            r"its $\Delta_{\max}$",
            "noise floor",
        ]
        lines = [
            f"% {summary_note(df)}",
            LATEX_PREAMBLE,
            r"\begin{tabular}{lrrlrrrr}",
            r"\toprule",
            " & ".join(head) + r" \\",
            r"\midrule",
        ]
        lines += [
            " & ".join(
                latex_escape(c).replace("×", r"$\times$").replace(MISSING, "--").replace("η²", r"$\eta^2$") for c in row
            )
            + r" \\"
            for row in cells
        ]
        return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"
    esc = html_lib.escape
    rows = ["<tr>" + "".join(f"<th>{esc(h)}</th>" for h in SUMMARY_HEADERS) + "</tr>"]
    rows += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in cells]
    return html_page(
        "Multiplicity summary",
        "<table>\n" + "\n".join(rows) + f'\n</table>\n<p class="note">{esc(summary_note(df))}</p>\n',
    )


def rich_summary(df: pd.DataFrame, digits: int = 2):
    """The summary table for a terminal."""
    from rich.table import Table as RichTable

    rt = RichTable(title="Multiplicity per metric (Δmax^all)", caption=summary_note(df), caption_justify="left")
    for h in SUMMARY_HEADERS:
        if h == "metric":  # metric names are the point of the table: never cut them
            rt.add_column(h, justify="left", no_wrap=True, min_width=max(map(len, df["metric"]), default=6))
        else:
            rt.add_column(h, justify="left" if h == "top axis" else "right")
    for row in summary_cells(df, digits):
        rt.add_row(*row)
    return rt
