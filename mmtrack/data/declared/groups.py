"""Group rules: which group each image is in, per declared column (categorical values or numeric bins) and per
intersection of columns. Values come from the groups table, else from the layout's own columns (a manifest's)."""

from __future__ import annotations

import numpy as np

from mmtrack.data.declared.layout import check_duplicates, examples, note, read_csv, table_paths
from mmtrack.data.declared.schema import clean_value, sort_key
from mmtrack.errors import MMTrackError


def raw_columns(spec: dict, files: list[str], own: dict | None, own_source: str, notes: list[str]) -> dict:
    """Raw group values per image (strings, '' = none) of every declared group column, from the groups table,
    else the layout's own columns `own` (aligned with `files`)."""
    sources = [] if own is None else [(own_source, own)]
    if spec["groups_table"] and spec["groups"]:
        sources.insert(0, (spec["groups_table"], _groups_table(spec, files, notes)))
    columns: dict[str, list[str]] = {}
    for g in spec["groups"]:
        holder = next((t for _, t in sources if g in t), None)
        if holder is None:
            have = sorted({str(c) for _, t in sources for c in t})
            where = " or ".join(src for src, _ in sources) or "the image folder (it has no columns: add groups_table:)"
            raise MMTrackError(
                f"group column {g!r} is missing from {where} (columns: {', '.join(have) or 'none'}); "
                "add the column or remove it from groups:"
            )
        columns[g] = list(holder[g])
    return columns


def _groups_table(spec: dict, files: list[str], notes: list[str]) -> dict[str, list[str]]:
    """The groups table's columns aligned with `files` ('' where an image has no row)."""
    path = spec["groups_table"]
    gt = read_csv(path, "groups table")
    col = spec["columns"]["path"]
    if col not in gt.columns:
        raise MMTrackError(
            f"groups table {path} has no {col!r} column (columns: "
            f"{', '.join(gt.columns)}); add one with each image's path relative to the table"
        )
    paths = table_paths(gt, col, path)
    check_duplicates(paths, None, f"groups table {path}")
    pos = {f: i for i, f in enumerate(files)}
    rows = [pos.get(q, -1) for q in paths]
    unmatched = [q for q, r in zip(paths, rows) if r < 0]
    if unmatched:
        note(
            notes,
            f"groups table {path}: {len(unmatched)} row(s) name no image of the dataset, e.g. {examples(unmatched)}",
        )
    no_row = len(files) - (len(rows) - len(unmatched))
    if no_row:
        note(notes, f"groups table {path}: {no_row} image(s) have no row (no group value)")
    aligned = {c: [""] * len(files) for c in gt.columns}
    for i, r in enumerate(rows):
        if r >= 0:
            for c in gt.columns:
                aligned[c][r] = gt[c].iat[i]
    return aligned


def codes(rule: dict, g: str, raw: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """(code per image, -1 = none; the group values in code order) of column `g` under its rule."""
    if rule["bins"] is not None:
        return _binned(rule, g, raw)
    cleaned = [clean_value(v, g) if v else "" for v in raw]
    found = {v for v in cleaned if v}
    if rule["values"] is not None:
        values = tuple(rule["values"])
        extra = sorted(found - set(values))
        if extra:
            raise MMTrackError(
                f"group column {g!r} has value(s) {examples(extra)} not among groups.{g}.values "
                f"({', '.join(values)}); add them there or fix the data"
            )
    else:
        values = tuple(sort_key(found))
    lookup = {v: i for i, v in enumerate(values)}
    return np.array([lookup[v] if v else -1 for v in cleaned], dtype=np.int64), values


def _binned(rule: dict, g: str, raw: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    nums = np.full(len(raw), np.nan)
    bad = []
    for i, v in enumerate(raw):
        if v:
            try:
                nums[i] = float(v)
            except ValueError:
                bad.append(v)
    if bad:
        raise MMTrackError(
            f"group column {g!r} has bins but {len(bad)} non-numeric value(s), e.g. "
            f"{examples(sorted(set(bad)))}; fix them or drop bins: (categorical)"
        )
    present = np.array([v != "" for v in raw], dtype=bool)
    edges = np.asarray(rule["bins"])
    idx = np.searchsorted(edges, nums, side="right") - 1
    idx[nums == edges[-1]] = len(edges) - 2  # the last bin is closed: [lo, hi]
    ok = present & (idx >= 0) & (idx < len(edges) - 1)
    out = np.full(len(raw), -1, dtype=np.int64)
    out[ok] = idx[ok]
    return out, tuple(rule["labels"])


def intersection(
    cols: list[str], groups: dict[str, np.ndarray], values: dict[str, tuple[str, ...]], test: np.ndarray, notes
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes and values of the intersection of `cols` (e.g. race_age/<White_0-30>): combinations without a test
    image are left out (noted)."""
    name = "_".join(cols)
    combos: list[tuple[int, ...]] = [()]
    for c in cols:
        combos = [(*k, j) for k in combos for j in range(len(values[c]))]
    stacked = np.stack([groups[c] for c in cols], axis=1)
    valid = (stacked >= 0).all(axis=1)
    flat = np.zeros(len(stacked), dtype=np.int64)
    for c, col in zip(cols, stacked.T):
        flat = flat * len(values[c]) + np.where(col >= 0, col, 0)
    flat = np.where(valid, flat, -1)
    kept = [k for i, k in enumerate(combos) if (flat[test] == i).any()]
    dropped = len(combos) - len(kept)
    if dropped:
        note(
            notes, f"intersection {name}: {dropped} of {len(combos)} combination(s) have no test image and are left out"
        )
    remap = np.full(len(combos) + 1, -1, dtype=np.int64)
    for new, k in enumerate(kept):
        remap[combos.index(k)] = new
    return remap[flat], tuple("_".join(values[c][j] for c, j in zip(cols, k)) for k in kept)  # -1 -> remap[-1]


def assign(spec: dict, raw: dict[str, list[str]], split: np.ndarray, notes: list[str]):
    """(codes, values) per group column and intersection; every group must have a test image."""
    test = split == 1
    groups: dict[str, np.ndarray] = {}
    values: dict[str, tuple[str, ...]] = {}
    for g, rule in spec["groups"].items():
        c, v = codes(rule, g, raw[g])
        if not (c >= 0).any():
            raise MMTrackError(f"group column {g!r} has no value for any image; fill it or remove it from groups:")
        empty = [(val, int((c == j).sum())) for j, val in enumerate(v) if not (c[test] == j).any()]
        if empty:
            listed = ", ".join(f"{g}/{val} ({n} train)" for val, n in empty[:5])
            raise MMTrackError(
                f"group(s) with no test image: {listed}; add test images, merge values or change "
                f"groups.{g} (its accuracy could not be measured)"
            )
        groups[g], values[g] = c, v
    for cols in spec["intersections"]:
        name = "_".join(cols)
        if name in groups:
            raise MMTrackError(f"intersection {name!r} has the name of a group column; rename the column")
        groups[name], values[name] = intersection(cols, groups, values, test, notes)
    return groups, values
