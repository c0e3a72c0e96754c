"""The declaration: what a study's `dataset:` may say, checked and normalised (absolute paths, every key present,
JSON-able) before any file is read. The keys and their meaning are documented in `mmtrack.data.declared`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from mmtrack.data.declared.layouts import LAYOUTS, layout_for_path
from mmtrack.errors import MMTrackError

DEFAULT_SIZE = 64
DEFAULT_TEST_FRACTION = 0.2
KEYS = (
    "name",
    *LAYOUTS,  # images, manifest: one per layout
    "columns",
    "groups_table",
    "image_size",
    "channels",
    "test_fraction",
    "split_seed",
    "classes",
    "groups",
    "intersections",
    "fairness_group",
    "ood",
    "description",
)
COLUMNS = {"path": "path", "label": "label", "split": "split"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def is_declaration(value) -> bool:
    """A study's `dataset:` value that declares a dataset (a mapping, or the name of a YAML file)."""
    return isinstance(value, dict) or (isinstance(value, str) and value.lower().endswith((".yaml", ".yml")))


def declaration(value, base_dir: Path, source: str, default_name: str) -> dict:
    """The normalised declaration of a study's `dataset:` value: a mapping, or a YAML file (relative to
    `base_dir`) holding one. Checks the declaration, reads no data."""
    if isinstance(value, str):
        import yaml

        path = Path(value).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise MMTrackError(
                f"{source}: dataset file {path} not found; give a declaration file (images: or "
                "manifest:, see studies/own-data-example.yaml) or a dataset name"
            )
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise MMTrackError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        return normalize(raw, path.parent, str(path.resolve()), path.stem)
    return normalize(value, base_dir, source, default_name)


def clean_value(value: str, column: str) -> str:
    """A group value as a metric name part: no '/' (it separates attribute and value), trimmed."""
    v = " ".join(value.split()).replace("/", "-").replace("\\", "-")
    if v in ("", ".", ".."):
        raise MMTrackError(
            f"group column {column!r} has the value {value!r}, which cannot name a metric; rename it in the data"
        )
    return v


def sort_key(values):
    """Sorted order of label/group values: numerically when every value is a number, else as text."""
    try:
        nums = {v: float(v) for v in values}
        return sorted(values, key=lambda v: (nums[v], v))
    except ValueError:
        return sorted(values)


def _abs(base_dir: Path, value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MMTrackError(f"{where} must be a path (a string), got {value!r}")
    p = Path(value).expanduser()
    return os.path.normpath(os.path.abspath(p if p.is_absolute() else base_dir / p))


def _source_of(raw, base_dir: Path, where: str) -> dict:
    """{<layout key>: abs path or None, ...} of a main or OOD entry (exactly one set)."""
    if isinstance(raw, str):
        raw = {layout_for_path(raw).key: raw}
    if not isinstance(raw, dict):
        shorthands = ", ".join(layout.shorthand for layout in LAYOUTS.values())
        raise MMTrackError(f"{where} must be {shorthands}, or a mapping with {' or '.join(f'{k}:' for k in LAYOUTS)}")
    given = [k for k in LAYOUTS if raw.get(k) is not None]
    if len(given) != 1:
        choices = " or ".join(f"{k}: ({layout.describe})" for k, layout in LAYOUTS.items())
        raise MMTrackError(f"{where} needs exactly one of {choices}")
    k = given[0]
    return {**{key: None for key in LAYOUTS}, k: _abs(base_dir, raw[k], f"{where}.{k}")}


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise MMTrackError(f"{where} must be a number, got {value!r}")
    return float(value)


def _group_spec(name, raw, where: str) -> dict:
    if not isinstance(name, str) or not name or "/" in name or name != name.strip():
        raise MMTrackError(
            f"{where}: group column {name!r} cannot name a metric acc/group/<column>/<value>; "
            "rename the column (no '/', no surrounding spaces)"
        )
    raw = {} if raw is None else raw
    if not isinstance(raw, dict) or set(raw) - {"values", "bins", "labels"}:
        raise MMTrackError(
            f"{where}.{name} must be a mapping with values: (categorical) or bins: [and labels:] "
            f"(numeric), or empty; got {raw!r}"
        )
    values, bins, labels = raw.get("values"), raw.get("bins"), raw.get("labels")
    if values is not None and bins is not None:
        raise MMTrackError(f"{where}.{name}: give values: (categorical) or bins: (numeric), not both")
    if values is not None:
        if not isinstance(values, list) or not values or len(set(map(str, values))) != len(values):
            raise MMTrackError(f"{where}.{name}.values must be a non-empty list of distinct values")
        values = [clean_value(str(v), name) for v in values]
    if bins is not None:
        if not isinstance(bins, list) or len(bins) < 2:
            raise MMTrackError(f"{where}.{name}.bins must list at least 2 increasing edges, e.g. [0, 30, 60, 120]")
        bins = [_number(b, f"{where}.{name}.bins") for b in bins]
        if any(b >= a for a, b in zip(bins[1:], bins)):
            raise MMTrackError(f"{where}.{name}.bins must increase, got {bins}")
        if labels is None:
            labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(bins, bins[1:])]
        if not isinstance(labels, list) or len(labels) != len(bins) - 1 or len(set(map(str, labels))) != len(labels):
            raise MMTrackError(f"{where}.{name}.labels must name each of the {len(bins) - 1} bins once")
        labels = [clean_value(str(v), name) for v in labels]
    elif labels is not None:
        raise MMTrackError(f"{where}.{name}.labels needs bins:")
    return {"values": values, "bins": bins, "labels": labels}


def _columns(raw: dict, base_dir: Path, where: str) -> dict:
    columns = raw.get("columns") or {}
    if (
        not isinstance(columns, dict)
        or set(columns) - set(COLUMNS)
        or not all(isinstance(v, str) and v for v in columns.values())
    ):
        raise MMTrackError(f"{where}.columns maps {', '.join(COLUMNS)} to the manifest's column names, got {columns!r}")
    table = raw.get("groups_table")
    return {
        "columns": {**COLUMNS, **columns},
        "split_column_given": "split" in columns,
        "groups_table": None if table is None else _abs(base_dir, table, f"{where}.groups_table"),
    }


def _options(raw: dict, where: str) -> dict:
    """image_size, channels, test_fraction, split_seed and classes, checked, defaults filled."""
    size = raw.get("image_size", DEFAULT_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise MMTrackError(f"{where}.image_size must be an integer >= 8, got {size!r}")
    channels = raw.get("channels", 3)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise MMTrackError(f"{where}.channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    fraction = raw.get("test_fraction", DEFAULT_TEST_FRACTION)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise MMTrackError(f"{where}.test_fraction must be a number between 0 and 1, got {fraction!r}")
    seed = raw.get("split_seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise MMTrackError(f"{where}.split_seed must be a non-negative integer, got {seed!r}")
    classes = raw.get("classes")
    if classes is not None and (
        not isinstance(classes, list) or len(classes) < 2 or len(set(map(str, classes))) != len(classes)
    ):
        raise MMTrackError(f"{where}.classes must list at least 2 distinct class names")
    return {
        "image_size": size,
        "channels": channels,
        "test_fraction": float(fraction),
        "split_seed": seed,
        "classes": None if classes is None else [str(c) for c in classes],
    }


def _group_rules(raw: dict, where: str) -> dict:
    """groups, intersections and fairness_group, checked against each other (not against the data yet)."""
    groups = raw.get("groups") or {}
    if isinstance(groups, list):
        groups = {g: None for g in groups}
    if not isinstance(groups, dict):
        raise MMTrackError(f"{where}.groups must map column names to {{}}, {{values: [...]}} or {{bins: [...]}}")
    groups = {g: _group_spec(g, v, f"{where}.groups") for g, v in groups.items()}
    inter = raw.get("intersections") or []
    if not isinstance(inter, list) or not all(isinstance(i, list) and len(i) >= 2 for i in inter):
        raise MMTrackError(f"{where}.intersections must be a list of lists of 2+ group columns, e.g. [[race, age]]")
    for cols in inter:
        missing = [c for c in cols if c not in groups]
        if missing or len(set(cols)) != len(cols):
            raise MMTrackError(
                f"{where}.intersections: {cols} must name distinct columns under groups: "
                f"({', '.join(groups) or 'none declared'})"
            )
    fair = raw.get("fairness_group")
    if fair is not None and (not isinstance(fair, str) or "/" not in fair):
        raise MMTrackError(f"{where}.fairness_group must be <column>/<value>, got {fair!r}")
    return {"groups": groups, "intersections": [list(map(str, i)) for i in inter], "fairness_group": fair}


def _ood_sets(raw: dict, base_dir: Path, where: str) -> dict:
    ood = raw.get("ood") or {}
    if not isinstance(ood, dict):
        raise MMTrackError(f"{where}.ood must map OOD set names to folders or manifests")
    for o in ood:
        if not isinstance(o, str) or not NAME_RE.match(o):
            raise MMTrackError(f"{where}.ood: set name {o!r} must be letters, digits, '.', '_' or '-'")
    return {o: _source_of(v, base_dir, f"{where}.ood.{o}") for o, v in ood.items()}


def normalize(raw, base_dir: Path, source: str, default_name: str) -> dict:
    """Check a declaration mapping and return it normalised (absolute paths, every key present)."""
    where = f"{source}: dataset"
    if not isinstance(raw, dict):
        raise MMTrackError(f"{where}: expected a mapping with images: or manifest: (keys: {', '.join(KEYS)})")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise MMTrackError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(KEYS)}")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise MMTrackError(f"{where}: name must be letters, digits, '.', '_' or '-' (at most 64), got {name!r}")
    description = raw.get("description", "")
    return {
        "name": name,
        "source": source,
        **_source_of(raw, base_dir, where),
        **_columns(raw, base_dir, where),
        **_options(raw, where),
        **_group_rules(raw, where),
        "ood": _ood_sets(raw, base_dir, where),
        "description": description if isinstance(description, str) else str(description),
    }
