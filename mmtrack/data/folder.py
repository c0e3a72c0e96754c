"""Your own data, declared in a file with no code: a labelled image folder or CSV manifest, its groups table and
OOD sets become a dataset like the built-in ones (the people who most need a multiplicity audit have their own
images, and should not have to write a loader inside the package).

A declaration is a mapping, inline under a study's `dataset:` or in its own YAML file that the study names
(`dataset: skin.yaml`, relative to the study). Paths are relative to the file that declares them:

    name: skin-lesions               # the dataset's name (param `dataset`; default: the study's or file's name)
    images: data/skin                # an ImageFolder tree root/<class>/<image> (or root/train/<class>/...,
                                     # root/test/<class>/...), or instead:
    manifest: data/skin/labels.csv   # a CSV path,label[,split][,<group columns>...]; paths relative to the CSV
    columns: {path: file, label: diagnosis, split: fold}   # other column names (optional)
    groups_table: data/skin/groups.csv   # path,<group columns>...: groups of a folder's (or manifest's) images
    image_size: 64                   # decoded to image_size x image_size (centre square crop, bilinear)
    channels: 3                      # 3 = RGB; 1 = grayscale (kept as 3 equal channels for the models)
    test_fraction: 0.2               # without a split column or train/ test/ folders: a stratified split,
    split_seed: 0                    # seeded, independent of the training seed
    classes: [benign, malignant]     # class order (default: sorted; numeric labels numerically)
    groups:                          # each -> acc/group/<column>/<value>, measured on the test split
      skin_type: {}                  # categorical: every value found (or {values: [I, II, ...]} in this order)
      age: {bins: [0, 30, 60, 120]}  # numeric: [0,30) [30,60) [60,120] -> 0-30, 30-60, 60-120 (or labels: [...])
    intersections: [[skin_type, age]]    # -> acc/group/skin_type_age/<I_0-30>, ... (combinations with test images)
    fairness_group: skin_type/VI     # the headline group (optional)
    ood:                             # each -> acc/ood/<name>: other folders or manifests with the same labels
      hospital-b: data/hospital-b    # a folder root/<class>/<image>, or a .csv manifest path,label
      phone: {manifest: data/phone.csv}

Checks (one `MMTrackError` line each, before anything trains): missing or unreadable image files (counted,
named), duplicate paths across splits (leakage), labels of an OOD set the training set lacks, a group column
missing, a group value with no test image, a class with no train or no test image. Mixed image modes (grayscale,
RGBA, palette files among RGB ones) are converted, with a warning.

Structure first, pixels later: `plan()` reads only the manifest / folder listing (no image), which is enough for
split sizes and group sizes (`mmtrack datasets show`); `check()` also opens every image's header unless the decoded
cache exists; `load_declared()` decodes through `mmtrack.data._decode`'s content-keyed cache (file names, sizes
and mtimes), so later runs decode no image. The fingerprint hashes the decoded pixels, relative file names,
labels, split and group codes: the same data copied elsewhere keeps it.

Registration. A study registers its declared dataset when it is built and when it is unpickled (spawned sweep
workers), and its JSON (`Study.to_json`, the experiment tag `mmtrack.study`) carries the declaration with
absolute paths, so a later process can call `register_declared(study["dataset_spec"])`. Every registration is
also remembered under `<cache dir>/declared/<name>.json`; an unknown dataset name is looked up there, so
`mmtrack evaluate` / `mmtrack train --dataset NAME` on this machine find a dataset a study declared.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
from mmtrack.data import base
from mmtrack.data._decode import CHUNK, PREPROCESS_VERSION, RESIZE, cache_dir, cached, decode_files
from mmtrack.data.base import DataOptions, Dataset, DatasetInfo, Split, fingerprint, to_grayscale
from mmtrack.errors import MMTrackError

log = logging.getLogger(__name__)

DECLARED_VERSION = "declared-v1"  # bump when planning (split, groups) changes meaning: fingerprints change
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
DEFAULT_SIZE = 64
DEFAULT_TEST_FRACTION = 0.2
KEYS = (
    "name",
    "images",
    "manifest",
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
SPLITS = ("train", "test")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
EXAMPLES = 3  # file names quoted in an error


def _examples(items, n: int = EXAMPLES) -> str:
    items = [str(x) for x in items]
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


# ------------------------------------------------------------------------------------------- the declaration


def is_declaration(value) -> bool:
    """A study's `dataset:` value that declares a dataset (a mapping, or the name of a YAML file)."""
    return isinstance(value, dict) or (isinstance(value, str) and value.lower().endswith((".yaml", ".yml")))


def declaration(value, base_dir: Path, source: str, default_name: str) -> dict:
    """The normalised declaration (absolute paths, defaults filled; JSON-able) of a study's `dataset:` value: a
    mapping, or a YAML file (relative to `base_dir`) holding one. Checks the declaration, reads no data."""
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


def _abs(base_dir: Path, value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MMTrackError(f"{where} must be a path (a string), got {value!r}")
    p = Path(value).expanduser()
    return os.path.normpath(os.path.abspath(p if p.is_absolute() else base_dir / p))


def _source_of(raw, base_dir: Path, where: str) -> dict:
    """{images: abs | None, manifest: abs | None} of a main or OOD entry."""
    if isinstance(raw, str):
        raw = {"manifest": raw} if raw.lower().endswith((".csv", ".tsv")) else {"images": raw}
    if not isinstance(raw, dict):
        raise MMTrackError(f"{where} must be a folder, a .csv manifest, or a mapping with images: or manifest:")
    given = [k for k in ("images", "manifest") if raw.get(k) is not None]
    if len(given) != 1:
        raise MMTrackError(
            f"{where} needs exactly one of images: (a folder root/<class>/<image>) or manifest: (a CSV path,label,...)"
        )
    k = given[0]
    return {"images": None, "manifest": None, k: _abs(base_dir, raw[k], f"{where}.{k}")}


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
        values = [_clean_value(str(v), name) for v in values]
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
        labels = [_clean_value(str(v), name) for v in labels]
    elif labels is not None:
        raise MMTrackError(f"{where}.{name}.labels needs bins:")
    return {"values": values, "bins": bins, "labels": labels}


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
    spec: dict = {"name": name, "source": source, **_source_of(raw, base_dir, where)}
    columns = raw.get("columns") or {}
    if (
        not isinstance(columns, dict)
        or set(columns) - set(COLUMNS)
        or not all(isinstance(v, str) and v for v in columns.values())
    ):
        raise MMTrackError(f"{where}.columns maps {', '.join(COLUMNS)} to the manifest's column names, got {columns!r}")
    spec["columns"] = {**COLUMNS, **columns}
    spec["split_column_given"] = "split" in columns
    table = raw.get("groups_table")
    spec["groups_table"] = None if table is None else _abs(base_dir, table, f"{where}.groups_table")
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
    spec.update(
        image_size=size,
        channels=channels,
        test_fraction=float(fraction),
        split_seed=seed,
        classes=None if classes is None else [str(c) for c in classes],
    )
    groups = raw.get("groups") or {}
    if isinstance(groups, list):
        groups = {g: None for g in groups}
    if not isinstance(groups, dict):
        raise MMTrackError(f"{where}.groups must map column names to {{}}, {{values: [...]}} or {{bins: [...]}}")
    spec["groups"] = {g: _group_spec(g, v, f"{where}.groups") for g, v in groups.items()}
    inter = raw.get("intersections") or []
    if not isinstance(inter, list) or not all(isinstance(i, list) and len(i) >= 2 for i in inter):
        raise MMTrackError(f"{where}.intersections must be a list of lists of 2+ group columns, e.g. [[race, age]]")
    for cols in inter:
        missing = [c for c in cols if c not in spec["groups"]]
        if missing or len(set(cols)) != len(cols):
            raise MMTrackError(
                f"{where}.intersections: {cols} must name distinct columns under groups: "
                f"({', '.join(spec['groups']) or 'none declared'})"
            )
    spec["intersections"] = [list(map(str, i)) for i in inter]
    fair = raw.get("fairness_group")
    if fair is not None and (not isinstance(fair, str) or "/" not in fair):
        raise MMTrackError(f"{where}.fairness_group must be <column>/<value>, got {fair!r}")
    spec["fairness_group"] = fair
    ood = raw.get("ood") or {}
    if not isinstance(ood, dict):
        raise MMTrackError(f"{where}.ood must map OOD set names to folders or manifests")
    for o in ood:
        if not isinstance(o, str) or not NAME_RE.match(o):
            raise MMTrackError(f"{where}.ood: set name {o!r} must be letters, digits, '.', '_' or '-'")
    spec["ood"] = {o: _source_of(v, base_dir, f"{where}.ood.{o}") for o, v in ood.items()}
    description = raw.get("description", "")
    spec["description"] = description if isinstance(description, str) else str(description)
    return spec


# ---------------------------------------------------------------------------------------------- the plan


@dataclass
class Part:
    """A set of image files with their labels: the main set (train and test) or one OOD set."""

    what: str  # for messages: the manifest or folder it came from
    files: list[str]  # absolute, normalised paths, in decode order
    labels: np.ndarray  # class index per file
    split: np.ndarray | None = None  # 0 = train, 1 = test (the main set only)
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # attribute -> code per file (-1: no group)
    group_values: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class Plan:
    """What a declaration holds, known from the manifests and folder listings alone (no image decoded)."""

    spec: dict
    classes: tuple[str, ...]
    main: Part
    ood: dict[str, Part]
    split_how: str
    notes: list[str] = field(default_factory=list)  # warnings (also logged)

    def profile(self) -> dict:
        """Sizes for `mmtrack datasets show`: per-class train/test counts, group test sizes, OOD sizes."""
        test = self.main.split == 1
        return {
            "classes": {
                c: (int(((self.main.labels == i) & ~test).sum()), int(((self.main.labels == i) & test).sum()))
                for i, c in enumerate(self.classes)
            },
            "train": int((~test).sum()),
            "test": int(test.sum()),
            "group_test": int(test.sum()),
            "groups": {
                a: {v: int((self.main.groups[a][test] == j).sum()) for j, v in enumerate(vals)}
                for a, vals in self.main.group_values.items()
            },
            "ood": {o: len(p.files) for o, p in self.ood.items()},
        }


def _note(notes: list[str], message: str) -> None:
    notes.append(message)
    log.warning("%s", message)


def _sort_key(values):
    """Sorted order of label/group values: numerically when every value is a number, else as text."""
    try:
        nums = {v: float(v) for v in values}
        return sorted(values, key=lambda v: (nums[v], v))
    except ValueError:
        return sorted(values)


def _clean_value(value: str, column: str) -> str:
    """A group value as a metric name part: no '/' (it separates attribute and value), trimmed."""
    v = " ".join(value.split()).replace("/", "-").replace("\\", "-")
    if v in ("", ".", ".."):
        raise MMTrackError(
            f"group column {column!r} has the value {value!r}, which cannot name a metric; rename it in the data"
        )
    return v


def _read_csv(path: str, what: str):
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


def _manifest_paths(table, column: str, manifest: str) -> list[str]:
    base_dir = os.path.dirname(manifest)
    raw = table[column].tolist()
    empty = [i + 2 for i, p in enumerate(raw) if not p]
    if empty:
        raise MMTrackError(
            f"{manifest}: {len(empty)} row(s) have an empty {column!r}, e.g. line(s) "
            f"{_examples(empty)}; fill them or remove those rows"
        )
    return [os.path.normpath(p if os.path.isabs(p) else os.path.join(base_dir, p)) for p in raw]


def _check_exist(files: list[str], what: str) -> None:
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise MMTrackError(
            f"{len(missing)} of {len(files)} image file(s) listed in {what} are missing, e.g. "
            f"{_examples(missing)}; fix the paths (relative to the manifest) or remove those rows"
        )


def _scan(root: str, notes: list[str], what: str) -> tuple[list[str], list[str]]:
    """(files, class names) of an ImageFolder tree root/<class>/**/<image>, sorted; other files are noted."""
    if not os.path.isdir(root):
        raise MMTrackError(f"image folder {root} not found ({what}); fix the path or create root/<class>/<image>")
    class_dirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not class_dirs:
        raise MMTrackError(f"image folder {root} has no class folder; expected root/<class>/<image> ({what})")
    files, labels, skipped = [], [], []
    for c in class_dirs:
        found = []
        for dirpath, dirnames, names in os.walk(os.path.join(root, c), followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for n in sorted(names):
                if n.startswith("."):
                    continue
                (found if n.lower().endswith(IMAGE_EXTENSIONS) else skipped).append(os.path.join(dirpath, n))
        if not found:
            raise MMTrackError(
                f"class folder {os.path.join(root, c)} has no image ({', '.join(IMAGE_EXTENSIONS)}); "
                "add images or remove the folder"
            )
        files += found
        labels += [c] * len(found)
    loose = [e.name for e in os.scandir(root) if e.is_file() and not e.name.startswith(".")]
    if skipped or loose:
        _note(
            notes,
            f"{what}: skipped {len(skipped) + len(loose)} file(s) that are not images in class folders, "
            f"e.g. {_examples(skipped + loose)}",
        )
    return files, labels


def _class_index(labels: list[str], classes: tuple[str, ...], what: str, training: bool) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({x for x in labels if x not in index})
    if unknown:
        counts = {u: labels.count(u) for u in unknown}
        listed = ", ".join(f"{u!r} ({counts[u]})" for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        if training:
            raise MMTrackError(
                f"{what}: labels {listed} are not among classes: ({', '.join(classes)}); add them "
                "there or fix the labels"
            )
        raise MMTrackError(
            f"{what}: labels the training set lacks: {listed} (training classes: "
            f"{', '.join(classes)}); remove those images or use the training labels"
        )
    return np.array([index[x] for x in labels], dtype=np.int64)


def _stratified(labels: np.ndarray, classes: tuple[str, ...], fraction: float, seed: int) -> np.ndarray:
    """0 (train) / 1 (test) per image: in every class round(fraction * n) test images (at least 1, and at least
    one left to train), drawn with `seed` over the class's images in file-name order (`plan` sorts them)."""
    split = np.zeros(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for c in range(len(classes)):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            raise MMTrackError(
                f"class {classes[c]!r} has {len(idx)} image(s); a train/test split needs at least 2 "
                "per class: add images or remove the class"
            )
        n_test = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        split[rng.permutation(idx)[:n_test]] = 1
    return split


def _duplicates(files: list[str], split: np.ndarray | None, what: str) -> None:
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
            f"{_examples(across)}; keep each image in one split"
        )
    if twice:
        raise MMTrackError(
            f"{what}: {len(twice)} image(s) are listed twice, e.g. {_examples(twice)}; keep one row per image"
        )


def _group_columns(spec: dict, main: Part, table, notes: list[str]) -> dict[str, list[str]]:
    """Raw group values per image (strings, '' = none), from the groups table, else the manifest (whose rows
    are `main.files` in order)."""
    sources = [] if table is None else [(spec["manifest"], table)]
    if spec["groups_table"] and spec["groups"]:
        gt = _read_csv(spec["groups_table"], "groups table")
        col = spec["columns"]["path"]
        if col not in gt.columns:
            raise MMTrackError(
                f"groups table {spec['groups_table']} has no {col!r} column (columns: "
                f"{', '.join(gt.columns)}); add one with each image's path relative to the table"
            )
        paths = _manifest_paths(gt, col, spec["groups_table"])
        _duplicates(paths, None, f"groups table {spec['groups_table']}")
        pos = {f: i for i, f in enumerate(main.files)}
        rows = [pos.get(q, -1) for q in paths]
        unmatched = [q for q, r in zip(paths, rows) if r < 0]
        if unmatched:
            _note(
                notes,
                f"groups table {spec['groups_table']}: {len(unmatched)} row(s) name no image of the dataset, "
                f"e.g. {_examples(unmatched)}",
            )
        no_row = len(main.files) - (len(rows) - len(unmatched))
        if no_row:
            _note(notes, f"groups table {spec['groups_table']}: {no_row} image(s) have no row (no group value)")
        aligned = {c: [""] * len(main.files) for c in gt.columns}
        for i, r in enumerate(rows):
            if r >= 0:
                for c in gt.columns:
                    aligned[c][r] = gt[c].iat[i]
        sources.insert(0, (spec["groups_table"], aligned))
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


def _codes(spec: dict, g: str, raw: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    gs = spec["groups"][g]
    codes = np.full(len(raw), -1, dtype=np.int64)
    present = np.array([v != "" for v in raw], dtype=bool)
    if gs["bins"] is not None:
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
                f"{_examples(sorted(set(bad)))}; fix them or drop bins: (categorical)"
            )
        edges = np.asarray(gs["bins"])
        idx = np.searchsorted(edges, nums, side="right") - 1
        idx[nums == edges[-1]] = len(edges) - 2  # the last bin is closed: [lo, hi]
        ok = present & (idx >= 0) & (idx < len(edges) - 1)
        codes[ok] = idx[ok]
        return codes, tuple(gs["labels"])
    cleaned = [_clean_value(v, g) if v else "" for v in raw]
    found = {v for v in cleaned if v}
    if gs["values"] is not None:
        values = tuple(gs["values"])
        extra = sorted(found - set(values))
        if extra:
            raise MMTrackError(
                f"group column {g!r} has value(s) {_examples(extra)} not among groups.{g}.values "
                f"({', '.join(values)}); add them there or fix the data"
            )
    else:
        values = tuple(_sort_key(found))
    lookup = {v: i for i, v in enumerate(values)}
    codes = np.array([lookup[v] if v else -1 for v in cleaned], dtype=np.int64)
    return codes, values


def _groups(spec: dict, main: Part, table, notes: list[str]) -> None:
    raw = _group_columns(spec, main, table, notes)
    test = main.split == 1
    for g in spec["groups"]:
        codes, values = _codes(spec, g, raw[g])
        if not (codes >= 0).any():
            raise MMTrackError(f"group column {g!r} has no value for any image; fill it or remove it from groups:")
        empty = [(v, int((codes == j).sum())) for j, v in enumerate(values) if not (codes[test] == j).any()]
        if empty:
            listed = ", ".join(f"{g}/{v} ({n} train)" for v, n in empty[:5])
            raise MMTrackError(
                f"group(s) with no test image: {listed}; add test images, merge values or change "
                f"groups.{g} (its accuracy could not be measured)"
            )
        main.groups[g], main.group_values[g] = codes, values
    for cols in spec["intersections"]:
        name = "_".join(cols)
        if name in main.groups:
            raise MMTrackError(f"intersection {name!r} has the name of a group column; rename the column")
        combos: list[tuple[int, ...]] = [()]
        for c in cols:
            combos = [(*k, j) for k in combos for j in range(len(main.group_values[c]))]
        stacked = np.stack([main.groups[c] for c in cols], axis=1)
        valid = (stacked >= 0).all(axis=1)
        flat = np.zeros(len(stacked), dtype=np.int64)
        for c, col in zip(cols, stacked.T):
            flat = flat * len(main.group_values[c]) + np.where(col >= 0, col, 0)
        flat = np.where(valid, flat, -1)
        kept = [k for i, k in enumerate(combos) if (flat[test] == i).any()]
        dropped = len(combos) - len(kept)
        if dropped:
            _note(
                notes,
                f"intersection {name}: {dropped} of {len(combos)} combination(s) have no test image and are left out",
            )
        remap = np.full(len(combos) + 1, -1, dtype=np.int64)
        for new, k in enumerate(kept):
            remap[combos.index(k)] = new
        main.groups[name] = remap[flat]  # -1 -> remap[-1] = -1
        main.group_values[name] = tuple("_".join(main.group_values[c][j] for c, j in zip(cols, k)) for k in kept)


def _read_manifest(path: str, what: str, cols: dict, needs: str):
    """(table, image paths, labels) of a manifest whose path and label columns exist and which lists images."""
    table = _read_csv(path, what)
    for k in ("path", "label"):
        if cols[k] not in table.columns:
            raise MMTrackError(
                f"{what} {path} has no {cols[k]!r} column (columns: {', '.join(table.columns)}); it needs {needs}"
            )
    if table.empty:
        raise MMTrackError(f"{what} {path} lists no image")
    return table, _manifest_paths(table, cols["path"], path), table[cols["label"]].tolist()


def _ood_part(name: str, src: dict, spec: dict, classes: tuple[str, ...], notes: list[str]) -> Part:
    what = f"OOD set {name!r}"
    if src["manifest"]:
        cols = spec["columns"]
        _, files, labels = _read_manifest(src["manifest"], f"{what} manifest", cols, f"{cols['path']},{cols['label']}")
        _check_exist(files, src["manifest"])
        what = f"{what} ({src['manifest']})"
    else:
        files, labels = _scan(src["images"], notes, what)
        what = f"{what} ({src['images']})"
    _duplicates(files, None, what)
    return Part(what, files, _class_index(labels, classes, what, training=False))


def plan(spec: dict) -> Plan:
    """Read the declaration's manifests / folder listings and check their structure; decode nothing."""
    notes: list[str] = []
    table = None
    split_how = f"stratified {spec['test_fraction']:g} test, seed {spec['split_seed']}"
    if spec["manifest"]:
        manifest = spec["manifest"]
        cols = spec["columns"]
        needs = f"{cols['path']},{cols['label']}[,{cols['split']}][,<group columns>...]"
        table, files, labels = _read_manifest(manifest, "manifest", cols, needs)
        empty = [i + 2 for i, x in enumerate(labels) if not x]
        if empty:
            raise MMTrackError(
                f"{manifest}: {len(empty)} row(s) have an empty {cols['label']!r}, e.g. line(s) "
                f"{_examples(empty)}; label them or remove those rows"
            )
        split = None
        if cols["split"] in table.columns:
            given = table[cols["split"]].str.lower().tolist()
            bad = sorted({s for s in given if s not in SPLITS})
            if bad:
                raise MMTrackError(
                    f"manifest {manifest}: column {cols['split']!r} has value(s) {_examples(bad)}; use train or test"
                )
            split = np.array([SPLITS.index(s) for s in given], dtype=np.int64)
            split_how = f"column {cols['split']!r}"
        elif spec["split_column_given"]:
            raise MMTrackError(
                f"manifest {manifest} has no {cols['split']!r} column (columns.split); add it or drop "
                "columns.split for a stratified split"
            )
        _duplicates(files, split, f"manifest {manifest}")
        _check_exist(files, manifest)
        order = sorted(range(len(files)), key=files.__getitem__)  # the file set decides, not the row order
        files, labels = [files[i] for i in order], [labels[i] for i in order]
        split = None if split is None else split[order]
        table = table.iloc[order].reset_index(drop=True)
        what = f"manifest {manifest}"
    else:
        root = spec["images"]
        if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "test")):
            tr_files, tr_labels = _scan(os.path.join(root, "train"), notes, f"{root}/train")
            te_files, te_labels = _scan(os.path.join(root, "test"), notes, f"{root}/test")
            others = sorted(
                e.name for e in os.scandir(root) if e.is_dir() and e.name not in SPLITS and not e.name.startswith(".")
            )
            if others:
                _note(notes, f"{root}: ignored folder(s) {', '.join(others)} (only train/ and test/ are read)")
            lacking = sorted(set(te_labels) - set(tr_labels))
            if lacking:
                raise MMTrackError(
                    f"{root}/test: class folder(s) the training set lacks: {_examples(lacking)}; add "
                    f"them under {root}/train or remove them"
                )
            files, labels = tr_files + te_files, tr_labels + te_labels
            split = np.array([0] * len(tr_files) + [1] * len(te_files), dtype=np.int64)
            split_how = "folders train/ and test/"
        else:
            files, labels = _scan(root, notes, f"image folder {root}")
            split = None
        what = f"image folder {root}"
    found = sorted(set(labels))
    classes = tuple(spec["classes"]) if spec["classes"] else tuple(_sort_key(found))
    if len(classes) < 2:
        raise MMTrackError(f"{what} has {len(classes)} class ({_examples(classes)}); a classifier needs at least 2")
    y = _class_index(labels, classes, what, training=True)
    if split is None:
        split = _stratified(y, classes, spec["test_fraction"], spec["split_seed"])
    for i, c in enumerate(classes):
        n_train, n_test = int(((y == i) & (split == 0)).sum()), int(((y == i) & (split == 1)).sum())
        if n_test == 0 or n_train == 0:
            missing = "test" if n_test == 0 else "train"
            raise MMTrackError(
                f"{what}: class {c!r} has no {missing} image ({n_train} train, {n_test} test); add "
                f"{missing} images or remove the class"
            )
    main = Part(what, files, y, split)
    _groups(spec, main, table, notes)
    fair = spec["fairness_group"]
    if fair is not None:
        attr, _, value = fair.partition("/")
        if value not in main.group_values.get(attr, ()):
            have = ", ".join(f"{a}/{v}" for a, vs in main.group_values.items() for v in vs[:3]) or "none"
            raise MMTrackError(f"fairness_group {fair!r} is not a group of {spec['name']} (e.g. {have}); fix it")
    ood = {o: _ood_part(o, src, spec, classes, notes) for o, src in spec["ood"].items()}
    main_files = set(files)
    for o, part in ood.items():
        shared = [f for f in part.files if f in main_files]
        if shared:
            raise MMTrackError(
                f"OOD set {o!r} shares {len(shared)} image(s) with the training data (leakage), e.g. "
                f"{_examples(shared)}; an OOD set must hold other images"
            )
    return Plan(spec, classes, main, ood, split_how, notes)


# -------------------------------------------------------------------------------------- files and decoding


def _size(spec: dict, image_size: int | None) -> int:
    size = spec["image_size"] if image_size is None else image_size
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise MMTrackError(f"image_size must be an integer >= 8, got {size!r}")
    return size


def _key(part: Part, spec: dict, size: int) -> tuple[str, str]:
    """(cache key, base folder) of a part: `_decode.source_key`'s scheme (file names relative to the files'
    common folder, sizes, mtimes; the preprocessing), on plain strings: pathlib costs seconds per 100k files."""
    if len(part.files) > 1:  # the files' common folder is their folders' (~10x faster than on 100k files)
        base_dir = os.path.commonpath(list({os.path.dirname(f) for f in part.files}))
    else:
        base_dir = os.path.dirname(part.files[0])
    kind = f"declared-c{spec['channels']}"
    h = hashlib.sha256(
        json.dumps(
            {"kind": kind, "size": size, "resize": RESIZE, "version": PREPROCESS_VERSION}, sort_keys=True
        ).encode()
    )
    cut = len(os.path.join(base_dir, ""))
    for f in part.files:
        st = os.stat(f)
        h.update(f"{f[cut:]}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return f"{kind}-{size}-{h.hexdigest()[:20]}", base_dir


def _open_header(path: str) -> tuple[str | None, str | None]:
    """(PIL mode, None) of an image file, or (None, why it cannot be read); reads the header only."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode, None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:80]}"


def _unreadable(part: Part, failures: list[tuple[str, str]]) -> MMTrackError:
    listed = ", ".join(f"{f} ({why})" for f, why in failures[:2]) + (", ..." if len(failures) > 2 else "")
    return MMTrackError(
        f"{len(failures)} of {len(part.files)} image file(s) of {part.what} cannot be read as images, "
        f"e.g. {listed}; remove or replace them"
    )


def _mode_note(part: Part, modes: dict[str, int], channels: int) -> str | None:
    if len(modes) <= 1:
        return None  # one mode throughout: nothing mixed
    listed = ", ".join(f"{m} {n}" for m, n in sorted(modes.items(), key=lambda kv: (-kv[1], kv[0])))
    return (
        f"{part.what}: mixed image modes ({listed} of {len(part.files)}): converted to "
        f"{'RGB' if channels == 3 else 'grayscale'}"
    )


def _reason(path: str, message: str) -> str:
    """The reason in `read_image`'s "cannot decode image file PATH (WHY); remove or replace this file"."""
    return message.split(f"{path} (", 1)[-1].rsplit("); remove", 1)[0][:80]


def _pool():
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))


def check(spec: dict, image_size: int | None = None) -> Plan:
    """`plan()`, then open every image's header (unless its decoded cache exists): unreadable files fail now,
    with counts and names; mixed image modes are noted. What a study runs before anything trains."""
    p = plan(spec)
    size = _size(spec, image_size)
    for part in [p.main, *p.ood.values()]:
        key, _ = _key(part, spec, size)
        if (cache_dir() / f"{key}.pt").is_file():
            continue
        pool = _pool()
        try:
            results = list(pool.map(_open_header, part.files))
        finally:
            pool.shutdown(cancel_futures=True)
        failures = [(f, why) for f, (_, why) in zip(part.files, results) if why]
        if failures:
            raise _unreadable(part, failures)
        modes: dict[str, int] = {}
        for mode, _ in results:
            modes[mode] = modes.get(mode, 0) + 1
        note = _mode_note(part, modes, spec["channels"])
        if note:
            _note(p.notes, note)
    return p


def _decode(part: Part, spec: dict, size: int) -> dict:
    """The cached payload {images, names, content, modes} of a part, decoding (once) on a cache miss."""
    import torch

    key, base_dir = _key(part, spec, size)

    def build() -> dict:
        log.info("decoding %s (one-time; cached afterwards)", part.what)
        out, modes_of, errors, digests = decode_files(part.files, size)
        failures = [(f, _reason(f, e)) for f, e in zip(part.files, errors) if e]
        if failures:
            raise _unreadable(part, failures)
        modes = Counter(modes_of)
        cut = len(os.path.join(base_dir, ""))
        names = [f[cut:].replace(os.sep, "/") for f in part.files]
        h = hashlib.sha256(f"{DECLARED_VERSION}\n{size}\n".encode() + "\n".join(names).encode())
        if spec["channels"] == 1:  # a chunk at a time (a float copy of the whole set would be 4x its size)
            for i, start in enumerate(range(0, len(out), CHUNK)):
                out[start : start + CHUNK] = to_grayscale(torch.from_numpy(out[start : start + CHUNK])).numpy()
                digests[i] = hashlib.sha256(memoryview(out[start : start + CHUNK])).digest()
        for digest in digests:  # one per CHUNK images
            h.update(digest)
        content = h.hexdigest()[:16]
        return {
            "images": torch.from_numpy(out),
            "names": names,
            "content": content,
            "modes": json.dumps(dict(modes), sort_keys=True),
        }

    payload = cached(key, build)
    note = _mode_note(part, json.loads(payload.get("modes", "{}")), spec["channels"])
    if note:
        log.warning("%s", note)
    return payload


def _split(images: torch.Tensor, part: Part, idx: np.ndarray) -> Split:
    import torch

    t = torch.from_numpy(idx)
    return Split(
        images[t],
        torch.from_numpy(part.labels[idx]),
        {a: torch.from_numpy(c[idx]) for a, c in part.groups.items()},
        dict(part.group_values),
    )


def load_declared(spec: dict, options: DataOptions) -> Dataset:
    """The Dataset of a declaration: planned from its files, decoded through the cache."""
    import torch

    size = _size(spec, options.image_size)
    p = plan(spec)
    payload = _decode(p.main, spec, size)
    images = payload["images"]
    train_idx, test_idx = np.flatnonzero(p.main.split == 0), np.flatnonzero(p.main.split == 1)
    ood, contents = {}, [f"main:{payload['content']}"]
    for o, part in p.ood.items():
        op = _decode(part, spec, size)
        ood[o] = Split(op["images"], torch.from_numpy(part.labels))
        contents.append(f"{o}:{op['content']}:{fingerprint(torch.from_numpy(part.labels))}")
    codes = [torch.from_numpy(p.main.labels), torch.from_numpy(p.main.split)]
    codes += [torch.from_numpy(p.main.groups[a]) for a in p.main.groups]
    meta = json.dumps(
        {
            "version": [DECLARED_VERSION, PREPROCESS_VERSION, RESIZE],
            "size": size,
            "channels": spec["channels"],
            "classes": p.classes,
            "split": p.split_how,
            "groups": p.main.group_values,
            "codes": fingerprint(*codes),
            "parts": contents,
        },
        sort_keys=True,
    )
    source = spec["manifest"] or spec["images"]
    fair = spec["fairness_group"]
    return Dataset(
        name=spec["name"],
        classes=p.classes,
        train=_split(images, p.main, train_idx),
        test=_split(images, p.main, test_idx),
        ood=ood,
        fingerprint=hashlib.sha256(meta.encode()).hexdigest()[:16],
        fairness_group=tuple(fair.split("/", 1)) if fair else None,
        description=(spec["description"] + " · " if spec["description"] else "")
        + f"declared in {spec['source']}: {'manifest' if spec['manifest'] else 'image folder'} {source}, "
        f"{size}x{size} {'RGB' if spec['channels'] == 3 else 'grayscale'}, split: {p.split_how} "
        f"(OOD: {', '.join(ood) or 'none'})",
    )


# ------------------------------------------------------------------------------------------- the registry

_SPECS: dict[str, str] = {}  # name -> canonical JSON of the declaration registered in this process


def info(spec: dict) -> DatasetInfo:
    """What `mmtrack datasets list` shows of a declaration, without reading its data: categorical values found
    in the data show as ()."""
    groups: dict[str, tuple[str, ...]] = {}
    for g, gs in spec["groups"].items():
        groups[g] = tuple(gs["labels"] or gs["values"] or ())
    for cols in spec["intersections"]:
        groups["_".join(cols)] = ()
    fair = spec["fairness_group"]
    return DatasetInfo(
        groups, tuple(spec["ood"]), tuple(fair.split("/", 1)) if fair else None, needs_data=True, source=spec["source"]
    )


def _remembered(name: str) -> Path:
    return cache_dir().parent / "declared" / f"{name}.json"


def register_declared(spec: dict, remember: bool = True) -> str:
    """Register a normalised declaration under its name (again after a change; a built-in name is refused) and
    remember it on this machine. Returns the name. Cheap: reads no data."""
    name = spec["name"]
    canon = json.dumps(spec, sort_keys=True)
    if name in base._REGISTRY and name not in _SPECS:
        raise MMTrackError(f"{spec['source']}: dataset name {name!r} is a built-in dataset; choose another name")
    if _SPECS.get(name) != canon:
        if name in _SPECS:
            base.load_dataset.cache_clear()  # the same name now means other data
        _SPECS[name] = canon
        base.register(name, info(spec))(functools.partial(load_declared, spec))
    if remember:
        path = _remembered(name)
        try:
            if not path.is_file() or path.read_text() != canon:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
                tmp.write_text(canon)
                os.replace(tmp, path)
        except OSError as exc:  # a read-only cache: this process still has it
            log.debug("could not remember declared dataset %s: %s", name, exc)
    return name


def _resolve(name: str) -> bool:
    """A dataset name this machine saw declared (by a study): register it again from what was remembered."""
    if not NAME_RE.match(name):
        return False
    path = _remembered(name)
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(spec, dict) or spec.get("name") != name:
        return False
    register_declared(spec, remember=False)
    log.info("dataset %s: declared in %s (remembered in %s)", name, spec.get("source"), path)
    return True


def declared_specs() -> dict[str, dict]:
    """The declarations registered in this process, by name."""
    return {n: json.loads(s) for n, s in _SPECS.items()}


base._RESOLVERS.append(_resolve)
