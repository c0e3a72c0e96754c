"""Sheets and their summary as text, terminal tables and figures.

Formats: csv (long, one number per row: `sheet_csv_frame`), markdown, latex, html (a standalone page whose score
cells link to their MLflow run when given the UI address), json (`Sheet.to_dict`), a rich renderable for the
terminal, and a heatmap `Figure` laid out like the paper's sheet. Every number comes from `mmtrack.analysis`;
nothing here computes a statistic."""

from __future__ import annotations

import html as html_lib
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mmtrack.analysis.cells import MISSING, format_value
from mmtrack.analysis.effects import format_p
from mmtrack.analysis.noise_floor import NOISE_LEVEL
from mmtrack.analysis.sheet import Sheet
from mmtrack.errors import MMTrackError
from mmtrack.report._colour import DELTA_CMAP, SCORE_CMAP, colour
from mmtrack.report._text import LATEX_PREAMBLE, check_format, html_page, latex_escape, md_escape, num, strict_json

WITHIN_NOISE_MARK = "~"  # appended to a Δmax at or below its noise floor
CSV_COLUMNS = ("kind", "axis", "seed", "value", "score", "run_id", "noise_floor", "within_noise", "disagreement")


# --------------------------------------------------------------------------------------------------------
# Colour ranges
# --------------------------------------------------------------------------------------------------------


def score_range(sheet: Sheet) -> tuple[float, float]:
    allv = np.concatenate([t.scores.ravel() for t in sheet.tables]) if sheet.tables else np.array([])
    allv = allv[~np.isnan(allv)]
    if not len(allv):
        return 0.0, 1.0
    lo, hi = float(allv.min()), float(allv.max())
    return (lo - 0.5, hi + 0.5) if hi - lo < 1e-9 else (lo, hi)


def delta_max(sheet: Sheet) -> float:
    d = np.concatenate([np.r_[t.delta_max_per_seed, t.delta_max_per_value] for t in sheet.tables] or [[]])
    d = d[~np.isnan(d)]
    return float(d.max()) if len(d) and d.max() > 0 else 1.0


def delta_text(d: float, within: bool | None, digits: int) -> str:
    return MISSING if math.isnan(d) else num(d, digits) + (WITHIN_NOISE_MARK if within else "")


def footer(sheet: Sheet, digits: int = 2) -> str:
    dflt = ", ".join(f"{k}={format_value(v)}" for k, v in sheet.default.items())
    floor = "" if sheet.noise_floor_all is None else f" (noise floor {num(sheet.noise_floor_all, digits)})"
    exp = f"experiment: {sheet.experiment} · " if sheet.experiment else ""
    return (
        f"{exp}metric: {sheet.metric} ({sheet.unit}) · default: {dflt} · "
        f"Δmax^all = {num(sheet.delta_max_all, digits)}{floor} over {sheet.n_models} models"
    )


NOISE_NOTE = (
    f"{WITHIN_NOISE_MARK} = Δmax within the {NOISE_LEVEL:.0%} noise floor of test-set sampling; "
    f"{MISSING} = missing; η², p = the axis's effect beyond seed noise (permutation test), * = p < 0.05"
)


def effect_text(t) -> str:
    """`η² 0.81 · p 0.002*` for a table (`η² –` when undefined)."""
    return t.axis_effect.label()


def sheet_csv_frame(sheet: Sheet) -> pd.DataFrame:
    """The sheet in long format, one row per number (the CSV layout).

    Columns: kind, axis, seed, value, score, run_id, noise_floor, within_noise, disagreement.
    kind = "score" (one cell: axis, seed, value, score, run_id), "delta_max_per_seed" (axis, seed; score =
    the row's Δmax), "delta_max_per_value" (axis, value; score = the column's Δmax) or "delta_max_all"
    (score = Δmax^all), "eta_squared" / "p_value" (axis; score = the table's axis effect, not in pp). Other
    numbers are percentage points; empty = missing / not applicable."""
    rows: list[dict] = []
    for t in sheet.tables:
        for i, seed in enumerate(t.seeds):
            for j, value in enumerate(t.values):
                rows.append(
                    {
                        "kind": "score",
                        "axis": t.axis,
                        "seed": seed,
                        "value": value,
                        "score": t.scores[i, j],
                        "run_id": t.run_ids[i][j],
                    }
                )
        for i, seed in enumerate(t.seeds):
            rows.append(
                {
                    "kind": "delta_max_per_seed",
                    "axis": t.axis,
                    "seed": seed,
                    "score": t.delta_max_per_seed[i],
                    "noise_floor": t.noise_floor_per_seed[i],
                    "within_noise": t.within_noise_per_seed[i],
                    "disagreement": t.disagreement_per_seed[i],
                }
            )
        for j, value in enumerate(t.values):
            rows.append(
                {
                    "kind": "delta_max_per_value",
                    "axis": t.axis,
                    "value": value,
                    "score": t.delta_max_per_value[j],
                    "noise_floor": t.noise_floor_per_value[j],
                    "within_noise": t.within_noise_per_value[j],
                    "disagreement": t.disagreement_per_value[j],
                }
            )
        rows.append({"kind": "eta_squared", "axis": t.axis, "score": t.axis_effect.eta_squared})
        rows.append({"kind": "p_value", "axis": t.axis, "score": t.axis_effect.p_value})
    rows.append(
        {
            "kind": "delta_max_all",
            "score": sheet.delta_max_all,
            "noise_floor": sheet.noise_floor_all,
            "within_noise": sheet.within_noise_all,
            "disagreement": sheet.disagreement_all,
        }
    )
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS), dtype=object)  # object: seeds stay ints


def _markdown(sheet: Sheet, digits: int) -> str:
    out = [f"## Multiplicity sheet: {md_escape(sheet.metric)} ({sheet.unit})", ""]
    for t in sheet.tables:
        head = [f"{sheet.design.seed_param} \\ {t.axis}"] + [format_value(v) for v in t.values] + ["Δmax"]
        out += [
            f"### {md_escape(t.axis)}",
            "",
            "| " + " | ".join(map(md_escape, head)) + " |",
            "|---|" + "---:|" * (len(t.values) + 1),
        ]
        for i, seed in enumerate(t.seeds):
            cells = [format_value(seed)] + [num(x, digits) for x in t.scores[i]]
            cells.append(delta_text(t.delta_max_per_seed[i], t.within_noise_per_seed[i], digits))
            out.append("| " + " | ".join(cells) + " |")
        cells = (
            ["**Δmax**"]
            + [delta_text(d, w, digits) for d, w in zip(t.delta_max_per_value, t.within_noise_per_value)]
            + [""]
        )
        out += ["| " + " | ".join(cells) + " |", "", f"Axis effect: {md_escape(effect_text(t))}", ""]
    out += [md_escape(footer(sheet, digits)).replace("Δmax^all", "**Δmax^all**"), "", NOISE_NOTE]
    out += cell_notes(sheet, lambda s: f"- {s}")
    return "\n".join(out) + "\n"


def cell_notes(sheet: Sheet, item) -> list[str]:
    out: list[str] = []
    if sheet.missing:
        out += ["", f"Missing cells ({len(sheet.missing)}):"] + [item(m) for m in sheet.missing]
    if sheet.warnings:
        out += ["", f"Warnings ({len(sheet.warnings)}):"] + [item(w) for w in sheet.warnings]
    return out


def _latex(sheet: Sheet, digits: int) -> str:
    def cell(x: float) -> str:
        return "--" if math.isnan(x) else num(x, digits)

    def delta(d: float, w: bool | None) -> str:
        return cell(d) + (r"\textsuperscript{$\sim$}" if w and not math.isnan(d) else "")

    out = [
        f"% multiplicity sheet: {sheet.metric} ({sheet.unit}); {NOISE_NOTE}".replace(MISSING, "--"),
        LATEX_PREAMBLE,
        r"\begin{table}[t]",
        r"\centering\small",
    ]
    for t in sheet.tables:
        ncol = len(t.values) + 2
        out += [
            r"\begin{tabular}{l" + "r" * len(t.values) + "r}",
            rf"\multicolumn{{{ncol}}}{{c}}{{\textbf{{{latex_escape(t.axis)}}}}} \\",
            r"\toprule",
            " & ".join(
                [latex_escape(sheet.design.seed_param)]
                + [latex_escape(format_value(v)) for v in t.values]
                + [r"$\Delta_{\max}$"]
            )
            + r" \\",
            r"\midrule",
        ]
        for i, seed in enumerate(t.seeds):
            cells = [latex_escape(format_value(seed))] + [cell(x) for x in t.scores[i]]
            cells.append(delta(t.delta_max_per_seed[i], t.within_noise_per_seed[i]))
            out.append(" & ".join(cells) + r" \\")
        out += [
            r"\midrule",
            " & ".join(
                [r"$\Delta_{\max}$"]
                + [delta(d, w) for d, w in zip(t.delta_max_per_value, t.within_noise_per_value)]
                + [""]
            )
            + r" \\",
            r"\bottomrule",
            rf"\multicolumn{{{ncol}}}{{l}}{{\footnotesize {_latex_effect(t)}}} \\",
            r"\end{tabular}\quad",
        ]
    dflt = ", ".join(f"{latex_escape(k)}={latex_escape(format_value(v))}" for k, v in sheet.default.items())
    exp = f" ({latex_escape(sheet.experiment)})" if sheet.experiment else ""
    floor = "" if sheet.noise_floor_all is None else f" (noise floor {num(sheet.noise_floor_all, digits)})"
    out += [
        rf"\caption{{Multiplicity sheet{exp} of \texttt{{{latex_escape(sheet.metric)}}} (\%). "
        rf"Default: {dflt}. $\Delta^{{all}}_{{\max}} = {cell(sheet.delta_max_all)}${floor}. "
        rf"\textsuperscript{{$\sim$}}: $\Delta_{{\max}}$ within the {NOISE_LEVEL * 100:.0f}\% noise floor of "
        r"test-set sampling; --: missing.}",
        r"\end{table}",
    ]
    return "\n".join(out) + "\n"


def _latex_effect(t) -> str:
    e = t.axis_effect
    if e.eta_squared is None or e.p_value is None:
        return r"$\eta^2$ --"
    return rf"$\eta^2$ {e.eta_squared:.2f}, $p$ {format_p(e.p_value)}" + ("$^*$" if e.significant else "")


# Long: one HTML page written top to bottom (header, one table per axis, footer); split, it would pass the
# same dozen local values between pieces that are each used once.
def _html(sheet: Sheet, digits: int, ui_url: str | None, experiment_id: str | None) -> str:
    esc = html_lib.escape
    lo, hi = score_range(sheet)
    dhi = delta_max(sheet)

    def score_cell(x: float, rid: str | None) -> str:
        if math.isnan(x):
            return f'<td class="missing">{MISSING}</td>'
        bg, fg = colour(SCORE_CMAP, x, lo, hi)
        text = num(x, digits)
        if rid is not None and ui_url and experiment_id is not None:
            href = f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{rid}?workflowType=machine_learning"
            text = f'<a href="{esc(href)}" title="run {esc(rid)}">{text}</a>'
        title = f' title="run {esc(rid)}"' if rid is not None else ""
        return f'<td class="score" style="background:{bg};color:{fg}"{title}>{text}</td>'

    def delta_cell(d: float, floor: float | None, w: bool | None, dis: float | None) -> str:
        if math.isnan(d):
            return f'<td class="missing">{MISSING}</td>'
        bg, fg = colour(DELTA_CMAP, d, 0.0, dhi)
        tip = [f"noise floor {num(floor, digits)}" if floor is not None else "noise floor unknown"]
        if dis is not None:
            tip.append(f"disagreement {dis:.1%}")
        mark = WITHIN_NOISE_MARK if w else ""
        shown = [f"floor {num(floor, digits)}" if floor is not None else ""]
        shown.append(f"disagree {dis:.1%}" if dis is not None else "")
        detail = " · ".join(x for x in shown if x)
        return (
            f'<td class="delta" style="background:{bg};color:{fg}" title="{esc("; ".join(tip))}">'
            f"{num(d, digits)}{mark}" + (f"<small>{esc(detail)}</small>" if detail else "") + "</td>"
        )

    parts = []
    for t in sheet.tables:
        rows = [
            "<tr><th>"
            + esc(f"{sheet.design.seed_param} \\ {t.axis}")
            + "</th>"
            + "".join(f"<th>{esc(format_value(v))}</th>" for v in t.values)
            + '<th class="delta">Δmax</th></tr>'
        ]
        for i, seed in enumerate(t.seeds):
            rows.append(
                f"<tr><th>{esc(format_value(seed))}</th>"
                + "".join(score_cell(x, r) for x, r in zip(t.scores[i], t.run_ids[i]))
                + delta_cell(
                    t.delta_max_per_seed[i],
                    t.noise_floor_per_seed[i],
                    t.within_noise_per_seed[i],
                    t.disagreement_per_seed[i],
                )
                + "</tr>"
            )
        rows.append(
            '<tr class="delta"><th>Δmax</th>'
            + "".join(
                delta_cell(d, f, w, q)
                for d, f, w, q in zip(
                    t.delta_max_per_value, t.noise_floor_per_value, t.within_noise_per_value, t.disagreement_per_value
                )
            )
            + "<td></td></tr>"
        )
        sig = " significant" if t.axis_effect.significant else ""
        parts.append(
            f'<table><caption>{esc(t.axis)} <span class="effect{sig}">{esc(effect_text(t))}</span></caption>\n'
            + "\n".join(rows)
            + "\n</table>"
        )
    notes = cell_notes(sheet, lambda s: f"<li>{esc(s)}</li>")
    notes_html = "\n".join(n if n.startswith("<li>") else (f"<p>{esc(n)}</p>" if n else "") for n in notes)
    return (
        '<div class="sheet">\n' + "\n".join(parts) + "\n</div>\n"
        f'<footer>\n<p>{esc(footer(sheet, digits))}</p>\n<p class="note">{esc(NOISE_NOTE)}</p>\n'
        f'<ul class="note">\n{notes_html}\n</ul>\n</footer>\n'
    )


def render_html_report(
    sheets: Sequence[Sheet], ui_url: str | None = None, experiment_id: str | None = None, digits: int = 2
) -> str:
    """Every sheet on one standalone HTML page, one section per metric, with a table of contents."""
    esc = html_lib.escape
    experiment = next((s.experiment for s in sheets if s.experiment), "")
    nav = " · ".join(f'<a href="#sheet-{i}">{esc(s.metric)}</a>' for i, s in enumerate(sheets))
    body = f"<nav>{nav}</nav>\n" + "".join(
        f'<section id="sheet-{i}">\n<h2>{esc(s.metric)} ({esc(s.unit)}) — Δmax^all '
        f"{num(s.delta_max_all, digits)}</h2>\n{_html(s, digits, ui_url, experiment_id)}</section>\n"
        for i, s in enumerate(sheets)
    )
    return html_page("Multiplicity sheets" + (f" — {experiment}" if experiment else ""), body)


def render_sheet(
    sheet: Sheet, fmt: str, ui_url: str | None = None, experiment_id: str | None = None, digits: int = 2
) -> str:
    """The sheet as text: csv (long format, see `sheet_csv_frame`), markdown, latex, html (a standalone page;
    score cells link to their MLflow run when `ui_url` and `experiment_id` are given) or json."""
    check_format(fmt)
    if fmt == "json":
        return strict_json(sheet.to_dict())
    if fmt == "csv":
        return sheet_csv_frame(sheet).to_csv(index=False)
    if fmt == "markdown":
        return _markdown(sheet, digits)
    if fmt == "latex":
        return _latex(sheet, digits)
    title = f"Multiplicity sheet: {sheet.metric}" + (f" — {sheet.experiment}" if sheet.experiment else "")
    return html_page(title, _html(sheet, digits, ui_url, experiment_id))


def render_sheets(
    sheets: Sequence[Sheet], fmt: str, ui_url: str | None = None, experiment_id: str | None = None, digits: int = 2
) -> str:
    """Several sheets as one text (one sheet: exactly `render_sheet`): json, a list of sheet objects; csv, one
    long table with a `metric` column; html, one page with a section per sheet (`render_html_report`); markdown
    and latex, the sheets one after the other."""
    check_format(fmt)
    if not sheets:
        raise MMTrackError("no sheet to render; name a metric the runs have")
    if len(sheets) == 1:
        return render_sheet(sheets[0], fmt, ui_url=ui_url, experiment_id=experiment_id, digits=digits)
    if fmt == "html":
        return render_html_report(sheets, ui_url=ui_url, experiment_id=experiment_id, digits=digits)
    if fmt == "csv":
        return pd.concat([sheet_csv_frame(s).assign(metric=s.metric) for s in sheets]).to_csv(index=False)
    texts = [render_sheet(s, fmt, ui_url=ui_url, experiment_id=experiment_id, digits=digits) for s in sheets]
    if fmt == "json":
        return "[\n" + ",\n".join(t.rstrip() for t in texts) + "\n]\n"
    return "\n".join(texts)
