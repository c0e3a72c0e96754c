"""Your own data, declared in a study file (`mmtrack.data.declared`): both layouts (ImageFolder tree, CSV manifest),
split columns / folders / a seeded stratified split, categorical and binned groups with intersections, OOD sets,
the decode cache, every bad-data case (one `error:` line, nothing trained), `mmtrack datasets list/show`, and a
tiny study end to end: `sweep --workers 2` (spawned workers), `sheet`, `select`, `evaluate` in a later process."""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import run_cli
from PIL import Image

from mmtrack.data import _decode, base, declared, load_dataset
from mmtrack.errors import MMTrackError
from mmtrack.study import Study, load_study, register_study_dataset

CLASSES = ("cat", "dog")
TINY_STUDY = {
    "design": "ofat",
    "epochs": 1,
    "seeds": [0],
    "fixed": {"width": 0.0625, "augment": "none", "batch_size": 32},
    "default": {"lr": 0.1},
    "axes": {"lr": [0.1]},
    "interventions": ["acc", "group", "ood"],
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A private decode cache and a registry without this test's declared datasets afterwards."""
    monkeypatch.setenv("MMTRACK_CACHE", str(tmp_path / "cache"))
    yield
    forget()


def forget() -> None:
    """What a later process knows: no declared dataset registered (the remembered ones stay on disk)."""
    for name in list(declared._SPECS):
        base._REGISTRY.pop(name, None)
        base._INFO.pop(name, None)
        declared._SPECS.pop(name)
    base.load_dataset.cache_clear()


def jpeg(path: Path, rgb, size=(12, 12), mode="RGB", fmt="JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, rgb)
    if mode != "RGB":
        im = im.convert(mode)
    im.save(path, format=fmt, **({"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}))


def colour(label: int, i: int) -> tuple[int, int, int]:
    """Images encode their class (R) and index (B), so decoded pixels can be checked."""
    return (40 + 160 * label, 100, (7 * i) % 250)


def make_manifest(root: Path, n: int = 24, split: bool = True, extra=None) -> Path:
    """root/img/NNN.jpg and root/labels.csv: path,label[,split],sex,age (ages 5..97)."""
    rows = []
    for i in range(n):
        label = i % 2
        jpeg(root / "img" / f"{i:03d}.jpg", colour(label, i))
        row = {
            "path": f"img/{i:03d}.jpg",
            "label": CLASSES[label],
            "sex": ("f", "m")[(i // 2) % 2],
            "age": str(5 + 4 * i),
        }
        if split:
            row["split"] = "test" if i % 3 == 0 else "train"
        rows.append(row)
    for row in extra or []:
        rows.append(row)
    write_csv(root / "labels.csv", rows)
    return root / "labels.csv"


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def make_folder(root: Path, n: int = 6, classes=CLASSES, fmt="JPEG", ext=".jpg") -> Path:
    for c, name in enumerate(classes):
        for i in range(n):
            jpeg(root / name / f"{i}{ext}", colour(c, i), fmt=fmt)
    return root


def write_study(tmp_path: Path, dataset, name: str = "own", **changes) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "dataset": dataset, **TINY_STUDY, **changes}, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------------ layouts


def test_manifest_with_split_column_groups_bins_intersections_and_ood(tmp_path):
    make_manifest(tmp_path / "data")
    make_folder(tmp_path / "data" / "ood", n=3)
    study = load_study(
        write_study(
            tmp_path,
            {
                "name": "pets",
                "manifest": "data/labels.csv",
                "image_size": 8,
                "groups": {"sex": {}, "age": {"bins": [0, 30, 60, 97]}},
                "intersections": [["sex", "age"]],
                "fairness_group": "sex/f",
                "ood": {"shelter": "data/ood"},
            },
        )
    )
    assert study.dataset == "pets" and study.dataset_spec["manifest"] == str(tmp_path / "data" / "labels.csv")
    ds = load_dataset("pets")
    assert ds.classes == CLASSES and (len(ds.train), len(ds.test)) == (16, 8)
    assert ds.train.images.shape == (16, 3, 8, 8) and ds.fairness_group == ("sex", "f")
    # no male test image is 30-60 (ages 41, 53 are i = 9, 12: female): that intersection is left out
    assert ds.test.group_values == {
        "sex": ("f", "m"),
        "age": ("0-30", "30-60", "60-97"),
        "sex_age": ("f_0-30", "f_30-60", "f_60-97", "m_0-30", "m_60-97"),
    }
    # test rows are i = 0, 3, ..., 21 (sorted by path): ages 5 + 4i, the last bin closed at 97
    i = np.arange(0, 24, 3)
    assert ds.test.labels.tolist() == (i % 2).tolist()
    assert ds.test.groups["age"].tolist() == np.digitize(5 + 4 * i, [30, 60]).tolist()
    assert ds.test.groups["sex"].tolist() == ((i // 2) % 2).tolist()
    names = [
        f"{ds.test.group_values['sex'][a]}_{ds.test.group_values['age'][b]}"
        for a, b in zip(ds.test.groups["sex"], ds.test.groups["age"])
    ]
    assert [ds.test.group_values["sex_age"][c] for c in ds.test.groups["sex_age"]] == names
    red = ds.test.images[:, 0].float().mean(dim=(1, 2))
    assert torch.allclose(red, 40 + 160 * ds.test.labels.float(), atol=6)
    assert list(ds.ood) == ["shelter"] and len(ds.ood["shelter"]) == 6
    assert "declared in" in ds.description and "labels.csv" in ds.description


def test_fingerprint_is_content_and_later_loads_decode_nothing(tmp_path, monkeypatch):
    spec = {"manifest": "labels.csv", "image_size": 8, "groups": ["sex"]}
    make_manifest(tmp_path / "a")
    a = declared.load_declared(declared.normalize(spec, tmp_path / "a", "a", "x"), base.DataOptions())
    # the same files, rows in another order, in another folder: the same content, the same fingerprint
    rows = list(csv.DictReader(open(tmp_path / "a" / "labels.csv")))
    make_manifest(tmp_path / "b")
    write_csv(tmp_path / "b" / "labels.csv", rows[::-1])
    b = declared.load_declared(declared.normalize(spec, tmp_path / "b", "b", "x"), base.DataOptions())
    assert a.fingerprint == b.fingerprint and torch.equal(a.test.images, b.test.images)
    jpeg(tmp_path / "b" / "img" / "000.jpg", (1, 2, 3))  # one changed image: another key and fingerprint
    monkeypatch.setattr(_decode, "read_image", lambda *a: pytest.fail("decoded an image"))
    spec_a = declared.normalize(spec, tmp_path / "a", "a", "x")
    assert declared.load_declared(spec_a, base.DataOptions()).fingerprint == a.fingerprint  # from the cache
    monkeypatch.undo()
    monkeypatch.setenv("MMTRACK_CACHE", str(tmp_path / "cache"))
    c = declared.load_declared(declared.normalize(spec, tmp_path / "b", "b", "x"), base.DataOptions())
    assert c.fingerprint != a.fingerprint
    d = declared.load_declared(
        declared.normalize({**spec, "channels": 1}, tmp_path / "a", "a", "x"), base.DataOptions()
    )
    assert d.fingerprint != a.fingerprint
    assert torch.equal(d.train.images[:, 0], d.train.images[:, 1])  # grayscale as 3 equal channels


def test_many_files_decode_in_worker_processes_with_the_same_results(tmp_path, monkeypatch):
    """From PROCESSES_FROM files on, forked workers decode into shared memory: the same images, modes, errors and
    per-chunk digests as decoding in this process, so the same fingerprints; an unreadable file is still named."""
    root = make_folder(tmp_path / "tree", n=150)  # 300 files: two chunks of 256
    (root / "cat" / "broken.jpg").write_bytes(b"not an image")
    jpeg(root / "dog" / "gray.png", (90, 90, 90), mode="L", fmt="PNG")
    files = sorted(str(p) for p in root.rglob("*.*"))
    monkeypatch.setenv("MMTRACK_THREADS", "2")
    monkeypatch.setattr(_decode, "PROCESSES_FROM", 10**9)
    assert _decode._workers(len(files)) == 1
    here = _decode.decode_files(files, 8)
    monkeypatch.setattr(_decode, "PROCESSES_FROM", 100)
    assert _decode._workers(len(files)) == 2
    forked = _decode.decode_files(files, 8)
    np.testing.assert_array_equal(forked.images, here.images)
    assert (forked.modes, forked.errors, forked.digests) == (here.modes, here.errors, here.digests)
    assert len(forked.digests) == 2 and forked.modes.count("L") == 1
    assert [f for f, e in zip(files, forked.errors) if e] == [str(root / "cat" / "broken.jpg")]
    with pytest.raises(MMTrackError, match="cannot decode image file .*broken.jpg"):
        _decode.decode_images(files, 8)
    decode_range = _decode._decode_range
    monkeypatch.setattr(_decode, "_decode_range", _die)  # a worker killed (out of memory): one line
    with pytest.raises(MMTrackError, match="a process decoding 302 images died .*MMTRACK_THREADS=1"):
        _decode.decode_files(files, 8)
    monkeypatch.setattr(_decode, "_decode_range", decode_range)
    # a daemonic process (a sweep worker) may not start processes: it decodes in itself
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    daemon = ctx.Process(target=_decode_in, args=(files, results), daemon=True)
    daemon.start()
    assert results.get(timeout=60) == here.digests
    daemon.join(60)
    (root / "cat" / "broken.jpg").unlink()
    spec = declared.normalize({"images": str(root), "image_size": 8, "channels": 1}, tmp_path, "t", "t")
    forked_ds = declared.load_declared(spec, base.DataOptions())
    monkeypatch.setenv("MMTRACK_CACHE", str(tmp_path / "cache2"))
    monkeypatch.setattr(_decode, "PROCESSES_FROM", 10**9)
    here_ds = declared.load_declared(spec, base.DataOptions())
    assert forked_ds.fingerprint == here_ds.fingerprint and torch.equal(forked_ds.train.images, here_ds.train.images)


def _die(bounds):
    os._exit(9)


def _decode_in(files: list[str], results) -> None:
    try:
        results.put(_decode.decode_files(files, 8).digests)
    except Exception as exc:  # noqa: BLE001 - the test shows what went wrong
        results.put(repr(exc))


def _build_slowly(marker: str) -> None:
    def build() -> dict:
        with open(marker, "a") as f:
            f.write("built\n")
        time.sleep(0.5)
        return {"values": torch.arange(5)}

    assert torch.equal(_decode.cached("concurrent-test", build)["values"], torch.arange(5))


def test_processes_missing_the_same_cache_build_it_once(tmp_path):
    """Two sweep workers starting on a cold cache: one decodes, the other waits for its file."""
    marker = tmp_path / "builds.txt"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_build_slowly, args=(str(marker),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert marker.read_text() == "built\n"
    assert (tmp_path / "cache" / "datasets" / "concurrent-test.pt").is_file()


def test_folder_with_train_test_folders_and_a_groups_table(tmp_path):
    root = tmp_path / "tree"
    make_folder(root / "train", n=4)
    make_folder(root / "test", n=2)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    write_csv(
        root / "groups.csv",
        [
            {"path": f"{s}/{c}/{i}.jpg", "site": ("a", "b")[i % 2]}
            for s, n in (("train", 4), ("test", 2))
            for c in CLASSES
            for i in range(n)
        ],
    )
    spec = declared.normalize(
        {"images": "tree", "groups_table": "tree/groups.csv", "groups": ["site"], "image_size": 8},
        tmp_path,
        "s",
        "tree",
    )
    p = declared.check(spec)
    assert p.split_how == "folders train/ and test/" and p.classes == CLASSES
    assert p.profile()["groups"] == {"site": {"a": 2, "b": 2}} and (p.profile()["train"], p.profile()["test"]) == (8, 4)
    assert any("skipped 1 file" in n for n in p.notes)
    ds = declared.load_declared(spec, base.DataOptions(image_size=16))
    assert ds.image_size == 16 and len(ds.test) == 4 and ds.test.groups["site"].tolist() == [0, 1, 0, 1]


def test_stratified_split_is_seeded_and_keeps_every_class(tmp_path):
    make_folder(tmp_path / "tree", n=10, classes=("a", "b", "c"), fmt="PNG", ext=".png")
    spec = declared.normalize({"images": "tree", "test_fraction": 0.3, "split_seed": 1}, tmp_path, "s", "t")
    p, q = declared.plan(spec), declared.plan(spec)
    assert np.array_equal(p.main.split, q.main.split)
    assert p.profile()["classes"] == {"a": (7, 3), "b": (7, 3), "c": (7, 3)}
    other = declared.plan(
        declared.normalize({"images": "tree", "test_fraction": 0.3, "split_seed": 2}, tmp_path, "s", "t")
    )
    assert not np.array_equal(p.main.split, other.main.split)
    assert p.split_how == "stratified 0.3 test, seed 1"


def test_mixed_image_modes_are_converted_with_a_warning(tmp_path, caplog):
    root = make_folder(tmp_path / "tree", n=3, fmt="PNG", ext=".png")
    jpeg(root / "cat" / "gray.png", (90, 90, 90), mode="L", fmt="PNG")
    jpeg(root / "dog" / "alpha.png", (90, 10, 90), mode="RGBA", fmt="PNG")
    spec = declared.normalize({"images": "tree", "image_size": 8}, tmp_path, "s", "modes")
    with caplog.at_level(logging.WARNING, logger="mmtrack.data.declared"):
        declared.check(spec)
        ds = declared.load_declared(spec, base.DataOptions())
    assert "mixed image modes (RGB 6, L 1, RGBA 1 of 8): converted to RGB" in caplog.text
    assert len(ds.train) + len(ds.test) == 8


# ----------------------------------------------------------------------------------------------- bad data


def _bad(tmp_path: Path, case: str):
    """Writes data with one problem; returns (dataset declaration, expected message regex)."""
    d = tmp_path / "data"
    if case == "missing files":
        make_manifest(d)
        (d / "img" / "004.jpg").unlink()
        (d / "img" / "007.jpg").unlink()
        return {
            "manifest": "data/labels.csv"
        }, r"2 of 24 image file\(s\) listed in .*labels.csv are missing, e.g. .*004.jpg"
    if case == "unreadable files":
        make_manifest(d)
        (d / "img" / "005.jpg").write_bytes(b"not a jpeg")
        (d / "img" / "006.jpg").write_bytes(b"")
        return (
            {"manifest": "data/labels.csv"},
            r"2 of 24 image file\(s\) of manifest .* cannot be read as images, "
            r"e.g. .*005.jpg \(UnidentifiedImageError",
        )
    if case == "ood labels":
        make_manifest(d)
        make_folder(d / "ood", n=2, classes=("cat", "dog", "fox"))
        return {
            "manifest": "data/labels.csv",
            "ood": {"zoo": "data/ood"},
        }, r"OOD set 'zoo' .*: labels the training set lacks: 'fox' \(2\)"
    if case == "group column missing":
        make_manifest(d)
        return {
            "manifest": "data/labels.csv",
            "groups": ["skin_type"],
        }, r"group column 'skin_type' is missing from .*labels.csv \(columns: age, label, path, sex, split\)"
    if case == "empty group":
        make_manifest(d)
        return {
            "manifest": "data/labels.csv",
            "groups": {"age": {"bins": [0, 50, 100, 200]}},
        }, r"group\(s\) with no test image: age/100-200 \(0 train\)"
    if case == "class without test images":
        jpeg(d / "img" / "fox.jpg", (1, 2, 3))
        make_manifest(d, extra=[{"path": "img/fox.jpg", "label": "fox", "split": "train"}])
        return {"manifest": "data/labels.csv"}, r"class 'fox' has no test image \(1 train, 0 test\)"
    if case == "leakage":
        make_manifest(
            d,
            extra=[
                {"path": "./img/001.jpg", "label": "dog", "split": "test"},
                {"path": "img/002.jpg", "label": "cat", "split": "test"},
            ],
        )
        return (
            {"manifest": "data/labels.csv"},
            r"2 image\(s\) are in both train and test \(leakage\), e.g. .*001.jpg, .*002.jpg; keep each image in one split",
        )
    if case == "no class folder":
        d.mkdir()
        return {"images": "data"}, r"image folder .*data has no class folder"
    raise AssertionError(case)


BAD = [
    "missing files",
    "unreadable files",
    "ood labels",
    "group column missing",
    "empty group",
    "class without test images",
    "leakage",
    "no class folder",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_data_fails_when_the_study_is_read(tmp_path, case):
    dataset, message = _bad(tmp_path, case)
    with pytest.raises(MMTrackError, match=message) as info:
        load_study(write_study(tmp_path, dataset))
    assert "\n" not in info.value.message


def test_bad_data_is_one_error_line_and_nothing_trained(tmp_path, capsys, monkeypatch):
    from mmtrack.jobs import train_run as run_mod

    monkeypatch.setattr(run_mod, "train_model", lambda *a, **k: pytest.fail("trained despite bad data"))
    monkeypatch.setenv("MMTRACK_TRACKING_DIR", str(tmp_path / "tracking"))
    dataset, _ = _bad(tmp_path, "leakage")
    res = run_cli(capsys, monkeypatch, "sweep", write_study(tmp_path, dataset))
    assert res.code == 2
    (line,) = [x for x in res.err.splitlines() if x.strip()]
    assert line.startswith("error: manifest ") and "(leakage)" in line
    assert not (tmp_path / "tracking" / "mlflow.db").exists()


@pytest.mark.parametrize(
    "dataset, message",
    [
        ({"manifest": "x.csv", "images": "y"}, "needs exactly one of images:"),
        ({"images": "y", "groups": {"age": {"bins": [3, 1]}}}, r"bins must increase"),
        ({"images": "y", "intersections": [["a", "b"]]}, r"must name distinct columns under groups:"),
        ({"images": "y", "colour": 3}, r"unknown key\(s\) colour"),
        ({"images": "y", "name": "digits-skewed"}, r"'digits-skewed' is a built-in dataset"),
        ("nowhere.yaml", r"dataset file .*nowhere.yaml not found"),
    ],
)
def test_bad_declarations(tmp_path, dataset, message):
    make_folder(tmp_path / "y", n=2)
    with pytest.raises(MMTrackError, match=message):
        load_study(write_study(tmp_path, dataset))


# -------------------------------------------------------------------------------------------- registration


def test_study_json_and_pickle_carry_the_declaration(tmp_path):
    make_folder(tmp_path / "data" / "tree", n=3)
    (tmp_path / "data" / "pets.yaml").write_text(yaml.safe_dump({"images": "tree", "image_size": 8}))
    study = load_study(write_study(tmp_path, "data/pets.yaml"))
    assert study.dataset == "pets" and study.dataset_spec["images"] == str(tmp_path / "data" / "tree")
    blob, as_json = pickle.dumps((study, study.configs())), study.to_json()
    forget()
    with pytest.raises(MMTrackError, match="unknown dataset"):
        base.check_dataset_name("nothing-here")
    restored, configs = pickle.loads(blob)  # what a spawned sweep worker does
    assert "pets" in declared._SPECS and configs[0].dataset == "pets" and restored == study
    forget()
    assert register_study_dataset(as_json) == "pets" and "pets" in base.dataset_names()
    assert Study.from_dict(json.loads(as_json)) == study
    forget()
    assert register_study_dataset(load_study("studies/digits-skewed.yaml").to_json()) is None
    assert "dataset_spec" not in json.loads(load_study("studies/digits-skewed.yaml").to_json())
    assert load_dataset("pets").classes == CLASSES  # remembered on this machine: a later process finds it


# ------------------------------------------------------------------------------------------------- the CLI


def test_datasets_list_and_show(tmp_path, capsys, monkeypatch):
    make_manifest(tmp_path / "data")
    path = write_study(
        tmp_path,
        {
            "name": "pets",
            "manifest": "data/labels.csv",
            "image_size": 8,
            "groups": {"sex": {}, "age": {"bins": [0, 30, 60, 97]}},
        },
        axes={"lr": [0.1, 0.05, 0.01]},
        seeds=[0, 1, 2],
    )
    res = run_cli(capsys, monkeypatch, "datasets", "list", path)
    assert res.code == 0, res.err
    for text in ("digits-skewed", "pets", "sex: (values from the data)", "age: 0-30, 30-60, 60-97", "declared in"):
        assert text in res.out, text
    res = run_cli(capsys, monkeypatch, "datasets", "show", path)
    assert res.code == 0, res.err
    out = " ".join(res.out.split())
    for text in (
        "pets: study",
        "9 runs",
        "2 classes; train 16, test 8",
        "split: column 'split'",
        "k = 9 models (the study's runs)",
        "p = 0.9",
        "acc/group/sex/f │ 4 │",
        "acc/group/age/30-60 │ 2 │",
    ):
        assert text in out, text
    from mmtrack.analysis.sheet import noise_floor

    assert f"{noise_floor(np.full(9, 90.0), 4):.1f} pp" in out
    res = run_cli(capsys, monkeypatch, "datasets", "show", "digits-skewed", "--models", "10", "--accuracy", "0.5")
    assert res.code == 0 and "k = 10 models (--models)" in " ".join(res.out.split())
    res = run_cli(capsys, monkeypatch, "datasets", "show", "nope")
    assert res.code == 2 and res.err.startswith("error: unknown dataset 'nope'")


@pytest.mark.slow
def test_own_data_study_end_to_end(tmp_path, capsys, monkeypatch, tracking_dir):
    """sweep --workers 2 (spawned workers unpickle the Study), sheet, select, then evaluate in a 'later process'
    on another machine (nothing registered or remembered: the declaration comes from the experiment's study tag)."""
    monkeypatch.delenv("MMTRACK_CACHE")  # the cache follows the tracking dir, as in normal use
    monkeypatch.setenv("MMTRACK_THREADS", "2")
    make_manifest(tmp_path / "data", n=32)
    make_folder(tmp_path / "data" / "ood", n=2)
    path = write_study(
        tmp_path,
        {
            "name": "pets",
            "manifest": "data/labels.csv",
            "image_size": 8,
            "groups": {"sex": {}, "age": {"bins": [0, 60, 200]}},
            "ood": {"shelter": "data/ood"},
        },
        name="pets-study",
        axes={"lr": [0.1, 0.05]},
    )
    res = run_cli(capsys, monkeypatch, "sweep", path, "--dry-run")
    assert res.code == 0 and "2 to do" in res.out, res.err
    res = run_cli(capsys, monkeypatch, "sweep", path, "--workers", "2")
    assert res.code == 0, res.out + res.err
    assert "2 finished" in res.out
    from mmtrack import tracking

    client = tracking.connect()
    exp = client.get_experiment_by_name("pets-study")
    runs = client.search_runs([exp.experiment_id])
    assert {r.data.params["dataset"] for r in runs} == {"pets"}
    assert len({r.data.tags[tracking.DATA_FINGERPRINT_TAG] for r in runs}) == 1
    assert "acc/group/age/60-200" in runs[0].data.metrics and "acc/ood/shelter" in runs[0].data.metrics
    assert json.loads(exp.tags[tracking.STUDY_TAG])["dataset_spec"]["name"] == "pets"
    res = run_cli(capsys, monkeypatch, "sheet", "--experiment", "pets-study", "--summary")
    assert res.code == 0 and "acc/group/sex/f" in res.out, res.err
    res = run_cli(capsys, monkeypatch, "select", "--experiment", "pets-study", "--by", "acc/group/sex/m", "--top", "50")
    assert res.code == 0, res.err
    forget()
    monkeypatch.setenv("MMTRACK_CACHE", str(tmp_path / "another-machine"))  # nothing remembered: the tag must do
    res = run_cli(capsys, monkeypatch, "evaluate", "--experiment", "pets-study", "-i", "output_noise:1")
    assert res.code == 0, res.err
    assert "2 run(s) evaluated" in res.out
