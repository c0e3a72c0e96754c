"""The layout contract (`mmtrack.data.declared.layout`), one suite run over every registered layout: each layout
lists the same examples (files, labels, a given split, OOD sets) from its own on-disk format, and a declaration
plans to the same dataset whichever layout holds it. A new layout adds a writer to `WRITERS` (the test below fails
until it does) and passes this suite. Structure only: no image is decoded, neither torch nor MLflow is loaded."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from PIL import Image

from mmtrack.data.declared import LAYOUTS, normalize, plan
from mmtrack.data.declared.layouts import layout_for_path, layout_of
from mmtrack.errors import MMTrackError

# (path relative to the data root, label, split): 3 cats and 3 dogs, one of each given as test
EXAMPLES = [
    ("cat/a.png", "cat", "train"),
    ("cat/b.png", "cat", "test"),
    ("cat/sub/c.png", "cat", "train"),
    ("dog/d.png", "dog", "train"),
    ("dog/e.png", "dog", "train"),
    ("dog/f.png", "dog", "test"),
]
OOD = [("cat/x.png", "cat", None), ("dog/y.png", "dog", None)]


def png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(path)


def write_folder(root: Path, examples, with_split: bool) -> str:
    """root/<class>/<image>, or root/train/<class>/... and root/test/<class>/... for a given split."""
    for i, (rel, _, split) in enumerate(examples):
        png(root / split / rel if with_split else root / rel, 10 * i)
    return str(root)


def write_manifest(root: Path, examples, with_split: bool) -> str:
    """root/labels.csv with path,label[,split] rows (in reverse order: the layout sorts), images beside it."""
    for i, (rel, _, _) in enumerate(examples):
        png(root / "img" / rel, 10 * i)
    path = root / "labels.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"] if with_split else ["path", "label"])
        for rel, label, split in reversed(examples):
            w.writerow([f"img/{rel}", label, split] if with_split else [f"img/{rel}", label])
    return str(path)


WRITERS = {"images": write_folder, "manifest": write_manifest}


def test_every_layout_has_a_writer_here():
    assert set(WRITERS) == set(LAYOUTS)


@pytest.fixture(params=list(LAYOUTS))
def key(request) -> str:
    return request.param


def declare(tmp_path: Path, key: str, with_split: bool = False, **more) -> dict:
    where = WRITERS[key](tmp_path / "main", EXAMPLES, with_split)
    ood = WRITERS[key](tmp_path / "ood", OOD, False)
    return normalize({key: where, "ood": {"shelter": {key: ood}}, **more}, tmp_path, "t.yaml", "pets")


def test_lists_every_image_with_its_label_in_file_order(tmp_path, key):
    spec = declare(tmp_path, key)
    listing = LAYOUTS[key].main(spec, [])
    assert len(listing.files) == len(EXAMPLES) and listing.files == sorted(listing.files)
    assert all(os.path.isabs(f) and os.path.isfile(f) for f in listing.files)
    assert [(Path(f).name, label) for f, label in zip(listing.files, listing.labels)] == [
        (Path(rel).name, label) for rel, label, _ in EXAMPLES
    ]
    assert listing.split is None  # no split given: plan() stratifies


def test_a_given_split_is_kept(tmp_path, key):
    spec = declare(tmp_path, key, with_split=True)
    listing = LAYOUTS[key].main(spec, [])
    by_name = {Path(f).name: int(s) for f, s in zip(listing.files, listing.split)}
    assert by_name == {Path(rel).name: ("train", "test").index(split) for rel, _, split in EXAMPLES}
    assert listing.split_how


def test_an_ood_set_is_listed_with_its_labels(tmp_path, key):
    spec = declare(tmp_path, key)
    src = spec["ood"]["shelter"]
    listing = LAYOUTS[key].ood(src[key], spec, [], "OOD set 'shelter'")
    pairs = sorted((Path(f).name, label) for f, label in zip(listing.files, listing.labels))  # in the set's order
    assert pairs == [("x.png", "cat"), ("y.png", "dog")]
    assert "shelter" in listing.what and src[key] in listing.what


def test_a_missing_path_is_one_line_naming_it(tmp_path, key):
    spec = normalize(
        {key: str(tmp_path / "absent.csv" if key == "manifest" else tmp_path / "absent")}, tmp_path, "t", "x"
    )
    with pytest.raises(MMTrackError) as err:
        LAYOUTS[key].main(spec, [])
    assert "absent" in err.value.message and "\n" not in err.value.message


def test_a_bare_path_and_a_normalised_source_name_their_layout(tmp_path, key):
    path = WRITERS[key](tmp_path / "data", EXAMPLES, False)
    assert layout_for_path(path) is LAYOUTS[key]
    spec = normalize({"ood": {"o": path}, key: path}, tmp_path, "t", "x")
    assert layout_of(spec) is LAYOUTS[key] and layout_of(spec["ood"]["o"]) is LAYOUTS[key]


@pytest.mark.parametrize("with_split", [False, True])
def test_the_same_data_plans_the_same_in_every_layout(tmp_path, with_split):
    """Classes, split (given, or stratified with the seed), per-class sizes and OOD sizes do not depend on the
    layout: the plan sees only the listing."""
    profiles, splits = {}, {}
    for key in LAYOUTS:
        p = plan(declare(tmp_path / key, key, with_split=with_split, test_fraction=0.4, split_seed=3))
        profiles[key] = p.profile()
        splits[key] = {Path(f).name: int(s) for f, s in zip(p.main.files, p.main.split)}
        assert p.classes == ("cat", "dog") and sorted(p.main.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    first = next(iter(LAYOUTS))
    assert all(profiles[k] == profiles[first] for k in LAYOUTS), profiles
    assert all(splits[k] == splits[first] for k in LAYOUTS), splits
    assert profiles[first]["ood"] == {"shelter": 2}
