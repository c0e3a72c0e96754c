"""The registry of on-disk layouts: one line per layout, in the order the declaration lists their keys.

Adding a layout (say, a Hugging Face `datasets` folder): a new module with a `Layout` subclass (see
`layout.py`), one line below, and a writer for it in the shared suite `tests/unit/test_layouts.py`."""

from __future__ import annotations

from mmtrack.data.declared.image_folder import ImageFolder
from mmtrack.data.declared.layout import Layout
from mmtrack.data.declared.manifest import Manifest

LAYOUTS: dict[str, Layout] = {
    layout.key: layout
    for layout in (
        ImageFolder(),
        Manifest(),
    )
}


def layout_of(source: dict) -> Layout:
    """The layout of a normalised source or declaration ({<layout key>: path or None, ...}, exactly one set)."""
    return next(layout for key, layout in LAYOUTS.items() if source.get(key) is not None)


def layout_for_path(path: str) -> Layout:
    """The layout a bare path means: the one whose suffix it ends with, else the default (no suffixes)."""
    lowered = path.lower()
    claimed = [layout for layout in LAYOUTS.values() if layout.suffixes and lowered.endswith(layout.suffixes)]
    return claimed[0] if claimed else next(layout for layout in LAYOUTS.values() if not layout.suffixes)
