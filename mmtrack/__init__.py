"""mmtrack: benchmark model multiplicity for trustworthy ML on MLflow.

The public API for notebooks (see `mmtrack.api` and the README's "Python API"): `open_experiment`, `Experiment`,
`render`, `load_study`, `RunConfig`. Names resolve on first use, so `import mmtrack` stays light (no torch, no
MLflow until an experiment is opened).
"""

from mmtrack._version import __version__

_API = {
    "open_experiment": "mmtrack.api",
    "Experiment": "mmtrack.api",
    "render": "mmtrack.report",
    "render_sheets": "mmtrack.report",
    "save_figure": "mmtrack.report",
    "sheet_figure": "mmtrack.report",
    "selection_figure": "mmtrack.report",
    "render_audit": "mmtrack.report",
    "analyse": "mmtrack.analysis",
    "build_sheet": "mmtrack.analysis",
    "summary": "mmtrack.analysis",
    "load_study": "mmtrack.study",
    "RunConfig": "mmtrack.training.config",
    "MMTrackError": "mmtrack.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'mmtrack' has no attribute {name!r}")
