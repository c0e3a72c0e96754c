"""Does ensembling help? Single models beside the ensembles built from them (`mmtrack ensemble`), metric by
metric: the spread (Δmax^all) of each, how much the ensembles shrink it, and the noise floors that say whether
what is left is more than test-set sampling. Pure pandas, like the sheets it compares."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from mmtrack.analysis.sheet import Sheet

COLUMNS = (
    "metric",
    "single_delta_max_all",
    "single_models",
    "ensemble_delta_max_all",
    "ensembles",
    "ratio",
    "single_noise_floor",
    "ensemble_noise_floor",
)


def ensemble_comparison(single: Sequence[Sheet], ensembles: Sequence[Sheet]) -> pd.DataFrame:
    """One row per metric with both sheets: Δmax^all over the single models and over the ensembles, the ratio
    (ensembles / single: below 1, ensembling shrinks the spread), and each Δmax^all's noise floor."""
    by_metric = {s.metric: s for s in ensembles}
    rows = []
    for s in single:
        e = by_metric.get(s.metric)
        if e is None:
            continue
        ratio = e.delta_max_all / s.delta_max_all if s.delta_max_all else math.nan
        rows.append(
            {
                "metric": s.metric,
                "single_delta_max_all": s.delta_max_all,
                "single_models": s.n_models,
                "ensemble_delta_max_all": e.delta_max_all,
                "ensembles": e.n_models,
                "ratio": ratio,
                "single_noise_floor": math.nan if s.noise_floor_all is None else s.noise_floor_all,
                "ensemble_noise_floor": math.nan if e.noise_floor_all is None else e.noise_floor_all,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))
