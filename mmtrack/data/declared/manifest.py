"""The CSV manifest layout: `manifest: labels.csv` with rows path,label[,split][,<group columns>...] (names set by
`columns:`), paths relative to the CSV. Rows are sorted by file, so the file set decides, not the row order."""

from __future__ import annotations

import numpy as np

from mmtrack.data.declared.layout import (
    SPLITS,
    Layout,
    Listing,
    check_duplicates,
    check_exist,
    examples,
    read_csv,
    table_paths,
)
from mmtrack.errors import MMTrackError


def read_manifest(path: str, what: str, cols: dict, needs: str):
    """(table, image paths, labels) of a manifest whose path and label columns exist and which lists images."""
    table = read_csv(path, what)
    for k in ("path", "label"):
        if cols[k] not in table.columns:
            raise MMTrackError(
                f"{what} {path} has no {cols[k]!r} column (columns: {', '.join(table.columns)}); it needs {needs}"
            )
    if table.empty:
        raise MMTrackError(f"{what} {path} lists no image")
    return table, table_paths(table, cols["path"], path), table[cols["label"]].tolist()


def _split_column(table, spec: dict, manifest: str) -> tuple[np.ndarray | None, str | None]:
    cols = spec["columns"]
    if cols["split"] in table.columns:
        given = table[cols["split"]].str.lower().tolist()
        bad = sorted({s for s in given if s not in SPLITS})
        if bad:
            raise MMTrackError(
                f"manifest {manifest}: column {cols['split']!r} has value(s) {examples(bad)}; use train or test"
            )
        return np.array([SPLITS.index(s) for s in given], dtype=np.int64), f"column {cols['split']!r}"
    if spec["split_column_given"]:
        raise MMTrackError(
            f"manifest {manifest} has no {cols['split']!r} column (columns.split); add it or drop "
            "columns.split for a stratified split"
        )
    return None, None


class Manifest(Layout):
    key = "manifest"
    describe = "a CSV path,label,..."
    shorthand = "a .csv manifest"
    suffixes = (".csv", ".tsv")

    def main(self, spec: dict, notes: list[str]) -> Listing:
        manifest, cols = spec["manifest"], spec["columns"]
        needs = f"{cols['path']},{cols['label']}[,{cols['split']}][,<group columns>...]"
        table, files, labels = read_manifest(manifest, "manifest", cols, needs)
        empty = [i + 2 for i, x in enumerate(labels) if not x]
        if empty:
            raise MMTrackError(
                f"{manifest}: {len(empty)} row(s) have an empty {cols['label']!r}, e.g. line(s) "
                f"{examples(empty)}; label them or remove those rows"
            )
        split, split_how = _split_column(table, spec, manifest)
        check_duplicates(files, split, f"manifest {manifest}")
        check_exist(files, manifest)
        order = sorted(range(len(files)), key=files.__getitem__)  # the file set decides, not the row order
        table = table.iloc[order].reset_index(drop=True)
        return Listing(
            f"manifest {manifest}",
            [files[i] for i in order],
            [labels[i] for i in order],
            None if split is None else split[order],
            split_how,
            columns={c: table[c].tolist() for c in table.columns},
            columns_source=manifest,
        )

    def ood(self, path: str, spec: dict, notes: list[str], what: str) -> Listing:
        cols = spec["columns"]
        _, files, labels = read_manifest(path, f"{what} manifest", cols, f"{cols['path']},{cols['label']}")
        check_exist(files, path)
        return Listing(f"{what} ({path})", files, labels)
