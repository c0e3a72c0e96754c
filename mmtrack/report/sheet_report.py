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
from mmtrack.analysis.noise import NOISE_LEVEL
from mmtrack.analysis.sheet import Sheet
from mmtrack.errors import MMTrackError
from mmtrack.report._colour import DELTA_CMAP, SCORE_CMAP, colour
from mmtrack.report._figure import new_figure
from mmtrack.report._text import LATEX_PREAMBLE, check_format, html_page, latex_escape, md_escape, num, strict_json

WITHIN_NOISE_MARK = "~"  # appended to a Δmax at or below its noise floor
CSV_COLUMNS = ("kind", "axis", "seed", "value", "score", "run_id", "noise_floor", "within_noise", "disagreement")


# --------------------------------------------------------------------------------------------------------
# Colour ranges
# --------------------------------------------------------------------------------------------------------


def _score_range(sheet: Sheet) -> tuple[float, float]:
    allv = np.concatenate([t.scores.ravel() for t in sheet.tables]) if sheet.tables else np.array([])
    allv = allv[~np.isnan(allv)]
    if not len(allv):
        return 0.0, 1.0
    lo, hi = float(allv.min()), float(allv.max())
    return (lo - 0.5, hi + 0.5) if hi - lo < 1e-9 else (lo, hi)


def _delta_max(sheet: Sheet) -> float:
    d = np.concatenate([np.r_[t.delta_max_per_seed, t.delta_max_per_value] for t in sheet.tables] or [[]])
    d = d[~np.isnan(d)]
    return float(d.max()) if len(d) and d.max() > 0 else 1.0


def _delta_text(d: float, within: bool | None, digits: int) -> str:
    return MISSING if math.isnan(d) else num(d, digits) + (WITHIN_NOISE_MARK if within else "")


def _footer(sheet: Sheet, digits: int = 2) -> str:
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
            cells.append(_delta_text(t.delta_max_per_seed[i], t.within_noise_per_seed[i], digits))
            out.append("| " + " | ".join(cells) + " |")
        cells = (
            ["**Δmax**"]
            + [_delta_text(d, w, digits) for d, w in zip(t.delta_max_per_value, t.within_noise_per_value)]
            + [""]
        )
        out += ["| " + " | ".join(cells) + " |", "", f"Axis effect: {md_escape(effect_text(t))}", ""]
    out += [md_escape(_footer(sheet, digits)).replace("Δmax^all", "**Δmax^all**"), "", NOISE_NOTE]
    out += _notes(sheet, lambda s: f"- {s}")
    return "\n".join(out) + "\n"


def _notes(sheet: Sheet, item) -> list[str]:
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


def _html(sheet: Sheet, digits: int, ui_url: str | None, experiment_id: str | None) -> str:
    esc = html_lib.escape
    lo, hi = _score_range(sheet)
    dhi = _delta_max(sheet)

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
    notes = _notes(sheet, lambda s: f"<li>{esc(s)}</li>")
    notes_html = "\n".join(n if n.startswith("<li>") else (f"<p>{esc(n)}</p>" if n else "") for n in notes)
    return (
        '<div class="sheet">\n' + "\n".join(parts) + "\n</div>\n"
        f'<footer>\n<p>{esc(_footer(sheet, digits))}</p>\n<p class="note">{esc(NOISE_NOTE)}</p>\n'
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


# --------------------------------------------------------------------------------------------------------
# Terminal (rich) and figure
# --------------------------------------------------------------------------------------------------------


def rich_tables(sheet: Sheet, digits: int = 2):
    """The sheet for a terminal: tables side by side, scores and Δmax on two colour scales, a footer."""
    from rich.columns import Columns
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    lo, hi = _score_range(sheet)
    dhi = _delta_max(sheet)

    def score(x: float) -> Text:
        if math.isnan(x):
            return Text(MISSING, style="dim")
        bg, fg = colour(SCORE_CMAP, x, lo, hi)
        return Text(num(x, digits), style=f"{fg} on {bg}")

    def delta(d: float, w: bool | None) -> Text:
        if math.isnan(d):
            return Text(MISSING, style="dim")
        bg, fg = colour(DELTA_CMAP, d, 0.0, dhi)
        return Text(_delta_text(d, w, digits), style=f"{fg} on {bg}")

    tables = []
    for t in sheet.tables:
        rt = RichTable(
            title=t.axis,
            caption=effect_text(t),
            caption_style="bold" if t.axis_effect.significant else "dim",
            show_edge=False,
            pad_edge=False,
            padding=(0, 1),
        )
        rt.add_column(sheet.design.seed_param, justify="right", style="bold")
        for v in t.values:
            rt.add_column(format_value(v), justify="right")
        rt.add_column("Δmax", justify="right")
        for i, seed in enumerate(t.seeds):
            rt.add_row(
                format_value(seed),
                *[score(x) for x in t.scores[i]],
                delta(t.delta_max_per_seed[i], t.within_noise_per_seed[i]),
                end_section=i == len(t.seeds) - 1,
            )
        rt.add_row("Δmax", *[delta(d, w) for d, w in zip(t.delta_max_per_value, t.within_noise_per_value)], "")
        tables.append(rt)
    lines = [Columns(tables, padding=(1, 3)), Text(_footer(sheet, digits), style="bold"), Text(NOISE_NOTE, style="dim")]
    lines += [Text(n, style="yellow") for n in _notes(sheet, lambda s: f"  {s}") if n]
    return Group(*lines)


def sheet_figure(sheet: Sheet, digits: int = 2):
    """A heatmap `Figure` laid out like the paper's sheet: one axes per table (rows = seeds, columns = the axis's
    values then Δmax, bottom row Δmax), scores and Δmax on two colour scales; save it with `save_figure`."""
    from matplotlib.colors import ListedColormap

    if not sheet.tables:
        raise MMTrackError("the sheet has no tables to draw; the design has no axes")
    lo, hi = _score_range(sheet)
    dhi = _delta_max(sheet)
    widths = [len(t.values) + 1 for t in sheet.tables]
    n_rows = max(len(t.seeds) for t in sheet.tables) + 1
    fig = new_figure(figsize=(0.85 * sum(widths) + 2.2, 0.42 * n_rows + 2.0), layout="constrained")
    axes = fig.subplots(1, len(sheet.tables), width_ratios=widths, squeeze=False)[0]
    im_s = im_d = None
    for ax, t in zip(axes, sheet.tables):
        S, V = t.scores.shape
        grid_s = np.full((S + 1, V + 1), np.nan)
        grid_s[:S, :V] = t.scores
        grid_d = np.full((S + 1, V + 1), np.nan)
        grid_d[:S, V] = t.delta_max_per_seed
        grid_d[S, :V] = t.delta_max_per_value
        blank = np.full((S + 1, V + 1), np.nan)
        blank[:S, :V] = np.where(np.isnan(t.scores), 1.0, np.nan)
        ax.imshow(np.ma.masked_invalid(blank), cmap=ListedColormap(["#e6e6e6"]), aspect="auto")
        im_s = ax.imshow(np.ma.masked_invalid(grid_s), cmap=SCORE_CMAP, vmin=lo, vmax=hi, aspect="auto")
        im_d = ax.imshow(np.ma.masked_invalid(grid_d), cmap=DELTA_CMAP, vmin=0.0, vmax=dhi, aspect="auto")
        within = np.full((S + 1, V + 1), False)
        within[:S, V] = [bool(w) for w in t.within_noise_per_seed]
        within[S, :V] = [bool(w) for w in t.within_noise_per_value]
        for r in range(S + 1):
            for c in range(V + 1):
                if r == S and c == V:
                    continue
                x, cmap, vmin, vmax = (
                    (grid_s[r, c], SCORE_CMAP, lo, hi) if r < S and c < V else (grid_d[r, c], DELTA_CMAP, 0.0, dhi)
                )
                if math.isnan(x):
                    ax.text(c, r, MISSING, ha="center", va="center", fontsize=8, color="#888888")
                    continue
                _, fg = colour(cmap, x, vmin, vmax)
                label = num(x, digits) + (WITHIN_NOISE_MARK if within[r, c] else "")
                ax.text(c, r, label, ha="center", va="center", fontsize=8, color=fg)
        ax.axvline(V - 0.5, color="white", lw=3)
        ax.axhline(S - 0.5, color="white", lw=3)
        labels = [format_value(v) for v in t.values] + ["Δmax"]
        long = max(map(len, labels)) > 8  # e.g. trivialaugment, wide_resnet50_2: tilt instead of overlapping
        ax.set_xticks(range(V + 1), labels, fontsize=8, rotation=25 if long else 0, ha="right" if long else "center")
        ax.set_yticks(range(S + 1), [format_value(s) for s in t.seeds] + ["Δmax"], fontsize=8)
        ax.tick_params(length=0)
        ax.set_title(
            f"{t.axis}\n{effect_text(t)}", fontsize=9, fontweight="bold" if t.axis_effect.significant else None
        )
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0].set_ylabel(f"{sheet.design.seed_param} (changing random seeds)", fontsize=9)
    fig.colorbar(im_s, ax=list(axes), fraction=0.02, pad=0.01, label=f"{sheet.metric} ({sheet.unit})")
    fig.colorbar(im_d, ax=list(axes), fraction=0.02, pad=0.01, label="Δmax (pp)")
    fig.suptitle(
        f"Multiplicity sheet: {sheet.metric}" + (f" — {sheet.experiment}" if sheet.experiment else ""), fontsize=11
    )
    fig.supxlabel(_footer(sheet, digits) + "\n" + NOISE_NOTE, fontsize=8)
    return fig


def _summary_cells(df: pd.DataFrame, digits: int) -> list[list[str]]:
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


_SUMMARY_HEADERS = ["metric", "Δmax^all (pp)", "× acc", "top axis", "η²", "p", "its Δmax (pp)", "noise floor (pp)"]
SUMMARY_NOTE = (
    "top axis = the axis with the largest significant effect beyond seed noise (η², permutation p < 0.05); "
    "seed = no axis moves the metric more than changing the seed does (its Δmax: the largest between "
    "seeds of one configuration)"
)


def render_summary(df: pd.DataFrame, fmt: str, digits: int = 2) -> str:
    """The summary table as csv, markdown, latex, html or json (strict: NaN -> null)."""
    check_format(fmt)
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return strict_json(df.to_dict(orient="records"))
    cells = _summary_cells(df, digits)
    if fmt == "markdown":
        lines = ["| " + " | ".join(_SUMMARY_HEADERS) + " |", "|---|" + "---:|---:|---|---:|---:|---:|---:|"]
        lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in cells]
        return "\n".join(lines + ["", md_escape(SUMMARY_NOTE)]) + "\n"
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
            f"% {SUMMARY_NOTE}",
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
    rows = ["<tr>" + "".join(f"<th>{esc(h)}</th>" for h in _SUMMARY_HEADERS) + "</tr>"]
    rows += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in cells]
    return html_page(
        "Multiplicity summary", "<table>\n" + "\n".join(rows) + f'\n</table>\n<p class="note">{esc(SUMMARY_NOTE)}</p>\n'
    )


def rich_summary(df: pd.DataFrame, digits: int = 2):
    """The summary table for a terminal."""
    from rich.table import Table as RichTable

    rt = RichTable(title="Multiplicity per metric (Δmax^all)", caption=SUMMARY_NOTE, caption_justify="left")
    for h in _SUMMARY_HEADERS:
        if h == "metric":  # metric names are the point of the table: never cut them
            rt.add_column(h, justify="left", no_wrap=True, min_width=max(map(len, df["metric"]), default=6))
        else:
            rt.add_column(h, justify="left" if h == "top axis" else "right")
    for row in _summary_cells(df, digits):
        rt.add_row(*row)
    return rt
