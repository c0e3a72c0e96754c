"""Does ensembling help? The comparison of `analysis.ensemble_comparison` as a terminal table, markdown, and one
sentence per metric (the report's section)."""

from __future__ import annotations

import math

import pandas as pd

from mmtrack.report._text import md_escape

HEADERS = ("metric", "single Δmax^all (pp)", "models", "one seed per config (pp)", "ensembles Δmax^all (pp)")
HEADERS += ("ensembles", "× single", "× one seed")
HEADERS += ("noise floor single", "noise floor ens.")
NOTE = (
    "× single = ensembles' Δmax^all / single models' (below 1: ensembling shrinks the spread), × one seed = the same "
    "against one seed per configuration; one seed per config "
    "= Δmax^all over each configuration's first seed, as many single models as ensembles (fewer models spread "
    "less by themselves); noise floor = the Δmax^all that test-set sampling alone exceeds with 5% probability "
    "for that many models"
)


def _cells(df: pd.DataFrame) -> list[list[str]]:
    def num(x, fmt="{:.2f}"):
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)

    return [
        [
            str(r.metric),
            num(r.single_delta_max_all),
            str(int(r.single_models)),
            num(r.one_seed_delta_max_all),
            num(r.ensemble_delta_max_all),
            str(int(r.ensembles)),
            num(r.ratio, "{:.2f}×"),
            num(r.ratio_one_seed, "{:.2f}×"),
            num(r.single_noise_floor),
            num(r.ensemble_noise_floor),
        ]
        for r in df.itertuples()
    ]


def rich_ensemble_comparison(df: pd.DataFrame):
    from rich.table import Table as RichTable

    rt = RichTable(title="Single models vs ensembles (Δmax^all)", caption=NOTE, caption_justify="left")
    for h in HEADERS:
        rt.add_column(h, justify="left" if h == "metric" else "right", no_wrap=h == "metric")
    for row in _cells(df):
        rt.add_row(*row)
    return rt


def markdown_ensemble_comparison(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in _cells(df)]
    return "\n".join(lines) + f"\n\n{NOTE}\n"


def ensemble_sentences(df: pd.DataFrame) -> list[str]:
    """One sentence per metric: single spread, ensemble spread, against the noise floor."""
    out = []
    for r in df.itertuples():
        # like for like where possible: against as many single models (one seed per configuration)
        ratio = r.ratio if math.isnan(r.ratio_one_seed) else r.ratio_one_seed
        verdict = (
            "cannot be compared"
            if math.isnan(ratio)
            else "shrinks it"
            if ratio < 0.9
            else "leaves it about as wide"
            if ratio <= 1.1
            else "widens it"
        )
        floor = r.ensemble_noise_floor
        within = (
            " (within the noise floor of test-set sampling)"
            if not math.isnan(floor) and r.ensemble_delta_max_all <= floor
            else ""
        )
        one = (
            f" ({r.one_seed_delta_max_all:.2f} pp over one seed per configuration)"
            if not math.isnan(r.one_seed_delta_max_all)
            else ""
        )
        out.append(
            f"{r.metric}: {r.single_delta_max_all:.2f} pp over {int(r.single_models)} single models{one}, "
            f"{r.ensemble_delta_max_all:.2f} pp over {int(r.ensembles)} ensembles{within}: ensembling {verdict} "
            f"({ratio:.2f}×)."
        )
    return out
