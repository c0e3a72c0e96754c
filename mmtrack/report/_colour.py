"""Colour scales shared by the HTML pages, the terminal tables and the figures: a value on a matplotlib colormap
as a (background, foreground) pair, the foreground picked for contrast."""

from __future__ import annotations

import functools

SCORE_CMAP = "Blues"
DELTA_CMAP = "YlOrBr"


def colour(cmap: str, x: float, lo: float, hi: float) -> tuple[str, str]:
    """(background, foreground) hex colours for x on colormap `cmap` over [lo, hi] (256 levels)."""
    frac = 0.5 if hi <= lo else min(max((x - lo) / (hi - lo), 0.0), 1.0)
    return _level_colour(cmap, round(255 * frac))


@functools.lru_cache(maxsize=4096)
def _level_colour(cmap: str, level: int) -> tuple[str, str]:
    """Cached: matplotlib rebuilds a colormap's lookup table on every `colormaps[...]` access."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    r, g, b, _ = colormaps[cmap](0.08 + 0.8 * level / 255)
    fg = "#000000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "#ffffff"
    return to_hex((r, g, b)), fg
