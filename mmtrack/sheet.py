"""Moved: the computation to `mmtrack.analysis.sheet`, the rendering to `mmtrack.report`. Kept for old imports."""

from mmtrack.analysis.sheet import *  # noqa: F403
