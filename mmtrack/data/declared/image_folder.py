"""The ImageFolder layout (torchvision's): `images: root` with root/<class>/**/<image>, or root/train/<class>/...
and root/test/<class>/... for a given split. Files are listed in sorted order; other files are skipped, noted."""

from __future__ import annotations

import os

import numpy as np

from mmtrack.data.declared.layout import SPLITS, Layout, Listing, examples, note
from mmtrack.errors import MMTrackError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's


def scan(root: str, notes: list[str], what: str) -> tuple[list[str], list[str]]:
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
        note(
            notes,
            f"{what}: skipped {len(skipped) + len(loose)} file(s) that are not images in class folders, "
            f"e.g. {examples(skipped + loose)}",
        )
    return files, labels


class ImageFolder(Layout):
    key = "images"
    describe = "a folder root/<class>/<image>"
    shorthand = "a folder"

    def main(self, spec: dict, notes: list[str]) -> Listing:
        root = spec["images"]
        what = f"image folder {root}"
        if not (os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "test"))):
            files, labels = scan(root, notes, what)
            return Listing(what, files, labels)
        tr_files, tr_labels = scan(os.path.join(root, "train"), notes, f"{root}/train")
        te_files, te_labels = scan(os.path.join(root, "test"), notes, f"{root}/test")
        others = sorted(
            e.name for e in os.scandir(root) if e.is_dir() and e.name not in SPLITS and not e.name.startswith(".")
        )
        if others:
            note(notes, f"{root}: ignored folder(s) {', '.join(others)} (only train/ and test/ are read)")
        lacking = sorted(set(te_labels) - set(tr_labels))
        if lacking:
            raise MMTrackError(
                f"{root}/test: class folder(s) the training set lacks: {examples(lacking)}; add "
                f"them under {root}/train or remove them"
            )
        split = np.array([0] * len(tr_files) + [1] * len(te_files), dtype=np.int64)
        return Listing(what, tr_files + te_files, tr_labels + te_labels, split, "folders train/ and test/")

    def ood(self, path: str, spec: dict, notes: list[str], what: str) -> Listing:
        files, labels = scan(path, notes, what)
        return Listing(f"{what} ({path})", files, labels)
