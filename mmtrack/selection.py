"""Moved: the computation to `mmtrack.analysis.selection`, the rendering to `mmtrack.report`. Kept for old imports."""

from mmtrack.analysis.selection import *  # noqa: F403
