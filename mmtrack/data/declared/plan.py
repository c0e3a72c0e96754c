"""The plan: what a declaration holds, known from its layouts' listings alone (no image decoded): classes, the
train/test split (the layout's, else stratified and seeded), groups, OOD sets, and the structural checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmtrack.data.declared import groups
from mmtrack.data.declared.layout import check_duplicates, examples
from mmtrack.data.declared.layouts import layout_of
from mmtrack.data.declared.schema import sort_key
from mmtrack.errors import MMTrackError


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


def class_index(labels: list[str], classes: tuple[str, ...], what: str, training: bool) -> np.ndarray:
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


def stratified(labels: np.ndarray, classes: tuple[str, ...], fraction: float, seed: int) -> np.ndarray:
    """0 (train) / 1 (test) per image: in every class round(fraction * n) test images (at least 1, and at least
    one left to train), drawn with `seed` over the class's images in file-name order (layouts sort them)."""
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


def _ood_part(name: str, src: dict, spec: dict, classes: tuple[str, ...], notes: list[str]) -> Part:
    layout = layout_of(src)
    listing = layout.ood(src[layout.key], spec, notes, f"OOD set {name!r}")
    check_duplicates(listing.files, None, listing.what)
    return Part(listing.what, listing.files, class_index(listing.labels, classes, listing.what, training=False))


def _check_classes(y: np.ndarray, split: np.ndarray, classes: tuple[str, ...], what: str) -> None:
    for i, c in enumerate(classes):
        n_train, n_test = int(((y == i) & (split == 0)).sum()), int(((y == i) & (split == 1)).sum())
        if n_test == 0 or n_train == 0:
            missing = "test" if n_test == 0 else "train"
            raise MMTrackError(
                f"{what}: class {c!r} has no {missing} image ({n_train} train, {n_test} test); add "
                f"{missing} images or remove the class"
            )


def plan(spec: dict) -> Plan:
    """Read the declaration's manifests / folder listings and check their structure; decode nothing."""
    notes: list[str] = []
    listing = layout_of(spec).main(spec, notes)
    what = listing.what
    classes = tuple(spec["classes"]) if spec["classes"] else tuple(sort_key(set(listing.labels)))
    if len(classes) < 2:
        raise MMTrackError(f"{what} has {len(classes)} class ({examples(classes)}); a classifier needs at least 2")
    y = class_index(listing.labels, classes, what, training=True)
    split, split_how = listing.split, listing.split_how
    if split is None:
        split = stratified(y, classes, spec["test_fraction"], spec["split_seed"])
        split_how = f"stratified {spec['test_fraction']:g} test, seed {spec['split_seed']}"
    _check_classes(y, split, classes, what)
    main = Part(what, listing.files, y, split)
    raw = groups.raw_columns(spec, listing.files, listing.columns, listing.columns_source, notes)
    main.groups, main.group_values = groups.assign(spec, raw, split, notes)
    fair = spec["fairness_group"]
    if fair is not None:
        attr, _, value = fair.partition("/")
        if value not in main.group_values.get(attr, ()):
            have = ", ".join(f"{a}/{v}" for a, vs in main.group_values.items() for v in vs[:3]) or "none"
            raise MMTrackError(f"fairness_group {fair!r} is not a group of {spec['name']} (e.g. {have}); fix it")
    ood = {o: _ood_part(o, src, spec, classes, notes) for o, src in spec["ood"].items()}
    main_files = set(listing.files)
    for o, part in ood.items():
        shared = [f for f in part.files if f in main_files]
        if shared:
            raise MMTrackError(
                f"OOD set {o!r} shares {len(shared)} image(s) with the training data (leakage), e.g. "
                f"{examples(shared)}; an OOD set must hold other images"
            )
    return Plan(spec, classes, main, ood, split_how, notes)
