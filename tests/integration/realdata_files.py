"""Tiny UTKFace and FairFace folders in their real on-disk formats, for the real-data tests (test_realdata.py,
test_e2e_utkface.py): solid-colour JPEGs whose colour encodes their labels. Not a test module."""

from __future__ import annotations

from PIL import Image

from mmtrack.data import utkface

# (age, gender, race) of the valid UTKFace fixture files; every other one uses the .jpg.chip.jpg variant.
AGES = [5, 10, 12, 15, 18, 19, 25, 30, 40, 58, 59, 60, 70, 80, 116, 22, 33, 44, 65, 8]
UTK = [(age, i % 2, i % 5) for i, age in enumerate(AGES)]
MALFORMED = ["39_1_20170116174525125.jpg.chip.jpg", "abc_0_0_20170101000000000.jpg", "notes.txt"]


def colour(gender: int, race: int, age: int = 0) -> tuple[int, int, int]:
    """Fixture images are solid colours that encode their labels (G: race, B: gender)."""
    return (min(2 * age, 255), 40 * race + 20, 100 * gender + 60)


def write_jpeg(path, rgb, size=(12, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, format="JPEG", quality=100, subsampling=0)


def utk_name(i: int, age: int, gender: int, race: int) -> str:
    return f"{age}_{gender}_{race}_2017010{i % 10}1200{i:05d}.jpg" + (".chip.jpg" if i % 2 else "")


def make_utkface(root, reverse: bool = False):
    folder = root / "UTKFace"
    items = list(enumerate(UTK))
    for i, (age, gender, race) in reversed(items) if reverse else items:
        write_jpeg(folder / utk_name(i, age, gender, race), colour(gender, race, age))
    write_jpeg(folder / MALFORMED[0], (0, 0, 0))
    write_jpeg(folder / MALFORMED[1], (0, 0, 0))
    (folder / MALFORMED[2]).write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\0")
    return folder


FAIRFACE = [("val/1.jpg", "Male"), ("val/2.jpg", "Female"), ("val/3.jpg", "Female"), ("val/10.jpg", "Male")]


def make_fairface(root):
    folder = root / "fairface"
    rows = ["file,age,gender,race,service_test"]
    for i, (file, gender) in enumerate(FAIRFACE):
        write_jpeg(folder / file, colour(utkface.FAIRFACE_GENDER[gender], i), size=(14, 14))
        rows.append(f"{file},20-29,{gender},East Asian,{'True' if i % 2 else 'False'}")
    (folder / "fairface_label_val.csv").write_text("\n".join(rows) + "\n")
