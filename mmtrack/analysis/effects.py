"""Axis effect beyond seed noise: does an axis move a metric more than changing the seed does?

A sheet table holds k axis values (columns) × s seeds (rows). Its question is whether the columns differ by more
than the rows' spread explains. We answer it with a one-way analysis of variance, without its normal-theory p:

* **η² = SS_between / SS_total**, where the groups are the axis values and the observations are all the table's
  scores (missing cells left out): the share of the table's variance that lies between axis values. 1 = the axis
  explains every difference, 0 = the column means are equal.
* **p-value by permutation** of "the axis values don't matter": under that null hypothesis every score could
  have come from any column, so the scores are shuffled across the table's cells (column sizes kept) and the
  statistic SS_between recomputed. p = share of shufflings with SS_between ≥ the observed one. We enumerate
  every distinct assignment when there are at most `max_exact` of them (e.g. 2 values × 5 seeds: 252), else draw
  `permutations` (default 9,999) random shufflings from a fixed seed and use (1 + hits) / (1 + permutations)
  (Phipson & Smyth 2010: never 0, exact in level). Same table, same p, on every machine.

Caveats, also stated in the report: seeds are treated as exchangeable noise (a seed shared across columns is
not modelled as a block), and the p-values of a sheet's several tables are not corrected for multiplicity.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

PERMUTATIONS = 9_999
MAX_EXACT = 20_000  # enumerate every distinct assignment up to this many (cheaper than, and as exact as, sampling)
ALPHA = 0.05
SEED = 20240101
_REL_TOL = 1e-9  # ties: float sums of the same numbers in another order differ in the last bits


@dataclass(frozen=True)
class AxisEffect:
    eta_squared: float | None  # None when the table has no variance or fewer than 2 columns with scores
    p_value: float | None
    permutations: int  # shufflings evaluated (all distinct ones when exact)
    exact: bool

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA

    def to_dict(self) -> dict:
        return {
            "eta_squared": self.eta_squared,
            "p_value": self.p_value,
            "permutations": self.permutations,
            "exact": self.exact,
        }

    def label(self) -> str:
        """`η² 0.81 · p 0.002` (with `*` when p < 0.05), or `η² –` when it is undefined."""
        if self.eta_squared is None or self.p_value is None:
            return "η² –"
        return f"η² {self.eta_squared:.2f} · p {format_p(self.p_value)}{'*' if self.significant else ''}"


def format_p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.0e}" if p > 0 else "0"


def _ss_between(sums: np.ndarray, sizes: np.ndarray, total: float, n: int) -> np.ndarray:
    """SS_between from the column sums (…, k): Σ_j S_j² / n_j − (Σ x)² / n."""
    return (sums**2 / sizes).sum(axis=-1) - total**2 / n


def n_assignments(sizes: list[int]) -> int:
    """Distinct ways to deal n scores into columns of these sizes: n! / Π n_j!."""
    out, left = 1, sum(sizes)
    for size in sizes:
        out *= math.comb(left, size)
        left -= size
    return out


def _exact_sums(x: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Column sums of every distinct assignment of `x` to columns of `sizes` (the last column takes the rest)."""
    n = len(x)
    rows: list[list[float]] = []

    def deal(remaining: tuple[int, ...], j: int, acc: list[float]) -> None:
        if j == len(sizes) - 1:
            rows.append([*acc, float(x[list(remaining)].sum())])
            return
        for chosen in itertools.combinations(remaining, sizes[j]):
            rest = tuple(i for i in remaining if i not in chosen)
            deal(rest, j + 1, [*acc, float(x[list(chosen)].sum())])

    deal(tuple(range(n)), 0, [])
    return np.array(rows)


def axis_effect(
    scores: np.ndarray, permutations: int = PERMUTATIONS, seed: int = SEED, max_exact: int = MAX_EXACT
) -> AxisEffect:
    """η² and permutation p of the columns of `scores` (seeds × axis values, NaN where missing)."""
    scores = np.asarray(scores, dtype=float)
    columns = [col[~np.isnan(col)] for col in scores.T]
    columns = [c for c in columns if len(c)]
    if len(columns) < 2:
        return AxisEffect(None, None, 0, True)
    x = np.concatenate(columns)
    sizes = np.array([len(c) for c in columns])
    n, total = len(x), float(x.sum())
    ss_total = float(((x - x.mean()) ** 2).sum())
    if ss_total <= 1e-12 * max(1.0, float((x**2).sum())):
        return AxisEffect(None, None, 0, True)  # every score equal: nothing to explain
    observed = float(_ss_between(np.array([c.sum() for c in columns]), sizes, total, n))
    eta = min(1.0, max(0.0, observed / ss_total))
    threshold = observed - _REL_TOL * ss_total
    count = n_assignments(sizes.tolist())
    if count <= max_exact:
        stats = _ss_between(_exact_sums(x, sizes.tolist()), sizes, total, n)
        return AxisEffect(eta, float((stats >= threshold).mean()), count, True)
    rng = np.random.default_rng(seed)
    shuffled = rng.permuted(np.broadcast_to(x, (permutations, n)), axis=1)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    onehot = np.eye(len(sizes))[groups]  # (n, k)
    stats = _ss_between(shuffled @ onehot, sizes, total, n)
    hits = int((stats >= threshold).sum())
    return AxisEffect(eta, (1 + hits) / (1 + permutations), permutations, False)


def top_axis(effects: dict[str, AxisEffect]) -> str:
    """The axis with the largest significant effect (η²), or "seed" when no axis beats the seed noise."""
    significant = {axis: e.eta_squared for axis, e in effects.items() if e.significant and e.eta_squared is not None}
    return max(significant, key=lambda a: significant[a]) if significant else "seed"


def top_column_spread(
    scores: np.ndarray, permutations: int = 1_999, seed: int = SEED
) -> tuple[int | None, float, AxisEffect]:
    """Which column of `scores` (seed index × sources of randomness, NaN where missing) spreads its scores most:
    its index, its range (Δmax), and a permutation p of that range: how often the largest column range of the
    scores reassigned to the columns at random (sizes kept) reaches it. A small p says that source moves the
    metric more than the sources would if they were exchangeable."""
    scores = np.asarray(scores, dtype=float)
    columns = [col[~np.isnan(col)] for col in scores.T]
    ranges = np.array([np.ptp(c) if len(c) > 1 else np.nan for c in columns])
    if np.isnan(ranges).all():
        return None, math.nan, AxisEffect(None, None, 0, True)
    top = int(np.nanargmax(ranges))
    kept = [c for c in columns if len(c) > 1]
    x = np.concatenate(kept)
    sizes = np.cumsum([len(c) for c in kept])[:-1]
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        parts = np.split(rng.permutation(x), sizes)
        hits += max(np.ptp(part) for part in parts) >= ranges[top] - 1e-12
    return top, float(ranges[top]), AxisEffect(None, (1 + hits) / (1 + permutations), permutations, False)
