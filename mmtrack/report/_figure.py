"""Figures are matplotlib `Figure` objects built with the object-oriented API (no pyplot state, no
`matplotlib.use`: a report never changes the caller's backend) and written by one function."""

from __future__ import annotations

import warnings
from pathlib import Path


def new_figure(**kwargs):
    """A `Figure` with an Agg canvas of its own (text sizes need one for layout), outside pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, stem: str | Path, dpi: int = 150) -> list[Path]:
    """Write `fig` as `stem`.png and `stem`.svg (folders created); returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [Path(f"{stem}.png"), Path(f"{stem}.svg")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # constrained layout's "not applied" notes on tiny figures
        for path in paths:
            fig.savefig(path, dpi=dpi)
    return paths
