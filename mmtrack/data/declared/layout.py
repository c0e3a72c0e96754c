"""The one interface every on-disk layout of a declared dataset implements, and the checks layouts share.

A layout turns the path a declaration gives (under its own key: `images:`, `manifest:`) into a `Listing`: the
image files, their label strings, the train/test split if the layout says one, and per-file columns (group values)
if it has any. Everything after the listing (classes, the stratified split, groups, OOD leakage) is the same for
every layout and lives in `plan.py`. Layouts register in `layouts.py`, one line each; the shared suite
`tests/unit/test_layouts.py` runs over every registered layout.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mmtrack.errors import MMTrackError

log = logging.getLogger("mmtrack.data.declared")

SPLITS = ("train", "test")  # split names, in code order: 0 = train, 1 = test
EXAMPLES = 3  # file names quoted in an error


@dataclass
class Listing:
    """What a layout read: files in decode order (absolute, normalised) and one label string per file."""

    what: str  # for messages: "manifest PATH", "image folder PATH"
    files: list[str]
    labels: list[str]
    split: np.ndarray | None = None  # 0 = train, 1 = test when the layout says (main set only); None: stratify
    split_how: str | None = None  # how the layout split, for the dataset description
    columns: dict[str, list[str]] | None = None  # per-file values (group columns), aligned with `files`
    columns_source: str = ""  # where `columns` came from, for messages


class Layout:
    """One on-disk layout. Subclasses set the class attributes and implement `main` and `ood`."""

    key: ClassVar[str]  # the declaration key that names it, e.g. "images"
    describe: ClassVar[str]  # in "needs exactly one of images: (a folder root/<class>/<image>) or ..."
    shorthand: ClassVar[str]  # in "must be a folder, a .csv manifest, or a mapping with ..."
    suffixes: ClassVar[tuple[str, ...]] = ()  # a bare path ending so means this layout; () = the default layout

    def main(self, spec: dict, notes: list[str]) -> Listing:
        """The training set (train and test) at `spec[self.key]`; checks its structure, opens no image."""
        raise NotImplementedError

    def ood(self, path: str, spec: dict, notes: list[str], what: str) -> Listing:
        """An OOD set at `path` (labels as strings; no split, no columns)."""
        raise NotImplementedError


def examples(items, n: int = EXAMPLES) -> str:
    items = [str(x) for x in items]
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def note(notes: list[str], message: str) -> None:
    """A warning that is logged now and kept for `mmtrack datasets show`."""
    notes.append(message)
    log.warning("%s", message)


def read_csv(path: str, what: str):
    """A CSV (or .tsv) as strings, headers and cells trimmed; one error line when it is missing or unreadable."""
    import pandas as pd

    if not os.path.isfile(path):
        raise MMTrackError(f"{what} {path} not found; fix the path (relative to the file that declares it)")
    try:
        table = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            sep=None if path.endswith(".tsv") else ",",
            engine="python" if path.endswith(".tsv") else "c",
            skipinitialspace=True,
        )
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for a bad file
        raise MMTrackError(
            f"{what} {path} is not a readable CSV ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        ) from None
    table.columns = [str(c).strip() for c in table.columns]
    return table.apply(lambda s: s.str.strip())


def table_paths(table, column: str, table_path: str) -> list[str]:
    """The absolute paths in `column` of a table (relative ones are relative to the table's folder)."""
    base_dir = os.path.dirname(table_path)
    raw = table[column].tolist()
    empty = [i + 2 for i, p in enumerate(raw) if not p]
    if empty:
        raise MMTrackError(
            f"{table_path}: {len(empty)} row(s) have an empty {column!r}, e.g. line(s) "
            f"{examples(empty)}; fill them or remove those rows"
        )
    return [os.path.normpath(p if os.path.isabs(p) else os.path.join(base_dir, p)) for p in raw]


def check_exist(files: list[str], what: str) -> None:
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise MMTrackError(
            f"{len(missing)} of {len(files)} image file(s) listed in {what} are missing, e.g. "
            f"{examples(missing)}; fix the paths (relative to the manifest) or remove those rows"
        )


def check_duplicates(files: list[str], split: np.ndarray | None, what: str) -> None:
    """No file twice: across train and test it is leakage, within one split a repeated row."""
    seen: dict[str, int] = {}
    across, twice = [], []
    for i, f in enumerate(files):
        if f in seen:
            j = seen[f]
            (across if split is not None and split[i] != split[j] else twice).append(f)
        else:
            seen[f] = i
    if across:
        raise MMTrackError(
            f"{what}: {len(across)} image(s) are in both train and test (leakage), e.g. "
            f"{examples(across)}; keep each image in one split"
        )
    if twice:
        raise MMTrackError(
            f"{what}: {len(twice)} image(s) are listed twice, e.g. {examples(twice)}; keep one row per image"
        )
