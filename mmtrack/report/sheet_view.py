"""A sheet drawn rather than written: the terminal view (rich tables side by side, scores and Δmax on two colour
scales) and the heatmap figure laid out like the paper's sheet. The text formats are `sheet_report`, the summary `summary_report`."""

from __future__ import annotations

import math

import numpy as np

from mmtrack.analysis.cells import MISSING, format_value
from mmtrack.analysis.sheet import Sheet
from mmtrack.errors import MMTrackError
from mmtrack.report._colour import DELTA_CMAP, SCORE_CMAP, colour
from mmtrack.report._figure import new_figure
from mmtrack.report._text import num
from mmtrack.report.sheet_report import (
    NOISE_NOTE,
    WITHIN_NOISE_MARK,
    cell_notes,
    delta_max,
    delta_text,
    effect_text,
    footer,
    score_range,
)


def rich_tables(sheet: Sheet, digits: int = 2):
    """The sheet for a terminal: tables side by side, scores and Δmax on two colour scales, a footer."""
    from rich.columns import Columns
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    lo, hi = score_range(sheet)
    dhi = delta_max(sheet)

    def score(x: float) -> Text:
        if math.isnan(x):
            return Text(MISSING, style="dim")
        bg, fg = colour(SCORE_CMAP, x, lo, hi)
        return Text(num(x, digits), style=f"{fg} on {bg}")

    def delta(d: float, w: bool | None) -> Text:
        if math.isnan(d):
            return Text(MISSING, style="dim")
        bg, fg = colour(DELTA_CMAP, d, 0.0, dhi)
        return Text(delta_text(d, w, digits), style=f"{fg} on {bg}")

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
    lines = [Columns(tables, padding=(1, 3)), Text(footer(sheet, digits), style="bold"), Text(NOISE_NOTE, style="dim")]
    lines += [Text(n, style="yellow") for n in cell_notes(sheet, lambda s: f"  {s}") if n]
    return Group(*lines)


def sheet_figure(sheet: Sheet, digits: int = 2):
    """A heatmap `Figure` laid out like the paper's sheet: one axes per table (rows = seeds, columns = the axis's
    values then Δmax, bottom row Δmax), scores and Δmax on two colour scales; save it with `save_figure`."""
    from matplotlib.colors import ListedColormap

    if not sheet.tables:
        raise MMTrackError("the sheet has no tables to draw; the design has no axes")
    lo, hi = score_range(sheet)
    dhi = delta_max(sheet)
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
    fig.supxlabel(footer(sheet, digits) + "\n" + NOISE_NOTE, fontsize=8)
    return fig
