"""The noise floor of a Δmax: the spread that test-set sampling alone exceeds with probability 1 - NOISE_LEVEL
when every model has the same true accuracy (the range of k normals of sigma sqrt(p(1-p)/n); see
`mmtrack.analysis.sheet` for where it is read)."""

from __future__ import annotations

import math
from functools import cache

import numpy as np

NOISE_LEVEL = 0.95  # quantile of the range of k iid normals used as the noise floor


@cache
def range_quantile(k: int, level: float = NOISE_LEVEL) -> float:
    """The `level` quantile of the range of k iid standard normals (studentized range, df = inf)."""
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(level, k, np.inf))


def noise_floor(scores: np.ndarray, n: float | None) -> float | None:
    """The Δmax (pp) that test-set sampling alone exceeds with probability 1 - NOISE_LEVEL, for these
    scores (pp; NaN ignored) of a metric measured on n examples; None if n is unknown or < 2 scores."""
    s = np.asarray(scores, dtype=float)
    s = s[~np.isnan(s)]
    if n is None or not np.isfinite(n) or n <= 0 or len(s) < 2:
        return None
    p = float(np.clip(s.mean() / 100.0, 0.0, 1.0))
    return range_quantile(len(s)) * math.sqrt(p * (1 - p) / n) * 100.0
