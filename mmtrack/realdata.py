"""Real datasets read from their own published on-disk formats: UTKFace (OOD sets FairFace and CelebA) and
CIFAR10-Skewed. Importing this module registers `utkface` and `cifar10-skewed` with `mmtrack.datasets`.

Nothing is downloaded. Every dataset is read from the data root `datasets.data_dir(options)` (`--data-dir`,
else `$MMTRACK_DATA`, else `./data`):

* `utkface`: the UTKFace "Aligned & Cropped Faces" folder `<root>/UTKFace/` (or `<root>/utkface/`, or
  `<root>/UTKFace/UTKFace/`). Files are named `[age]_[gender]_[race]_[date&time].jpg` or
  `....jpg.chip.jpg`. Files whose names do not parse are skipped, counted and logged. The task is binary
  perceived gender: classes (male, female), from gender 0 = male and 1 = female. Group attributes:
  - `race` is one of white, black, asian, indian, others (codes 0-4).
  - `age` bins are `12-19` = [12, 19), `19-59` = [19, 59) and `59-116` = [59, 116]. Images of ages below 12
    stay in train and test but have no age group (code -1). The paper shows only these three bins.
  - `race_age` holds the 15 intersections, like `asian_59-116`. It is -1 where the age group is.
  The split is a fixed 80/20 train/test split. It uses its own seed (`UTK_SPLIT_SEED`, independent of the
  training seed) over the sorted file names, so it is deterministic given the set of files. The fairness
  group is race/asian. The default image size is 64 (`UTK_DEFAULT_SIZE`), a GPU-friendly choice: the paper
  does not state one, and the files are 200x200.
  OOD sets are optional. If their folder is absent, the loader logs a warning and leaves them out:
  - `fairface`: FairFace's `fairface_label_val.csv` (columns file, age, gender, race, service_test) and the
    images it lists (`val/1.jpg`, ...) under `<root>/fairface/`. FairFace's own test set is the val split.
    Gender "Male" -> male, "Female" -> female.
  - `celeba`: the CelebA test partition, read through `torchvision.datasets.CelebA(root, split="test",
    target_type="attr", download=False)` from `<root>/celeba/`. It needs `img_align_celeba/` and the five
    `list_*.txt` / `identity_CelebA.txt` files. torchvision md5-checks those text files even with
    download=False. Gender comes from the `Male` attribute (1 -> male, else female).
* `cifar10-skewed`: CIFAR-10's python batches in `<root>/cifar-10-batches-py/`, read through
  `torchvision.datasets.CIFAR10(root, train=..., download=False)`, which md5-checks every batch. Both splits
  are skewed with `datasets.skew_colors` and a fixed seed (`CIFAR_SKEW_SEED`): classes 0-4 are 95% colour /
  5% grayscale and classes 5-9 the reverse. The groups are `color` and `skew`; the fairness group is
  skew/gs-minority. OOD set `cifar10-gs` is the whole test split in grayscale. The size is fixed at 32x32.

Preprocessing of JPEG datasets: PIL decode -> RGB -> centre crop to the largest square (a no-op for the square
UTKFace and FairFace images; CelebA's 178x218 faces are not squashed) -> PIL bilinear resize to S x S.
PIL antialiases when it downscales. The decoded uint8 tensors are cached once under
`<$MMTRACK_CACHE or ./tracking/cache>/datasets/<key>.pt`, so later runs decode no JPEG. The key is a sha256
of the source files (relative names, sizes, mtimes) and the preprocessing (image size, crop/resize,
`PREPROCESS_VERSION`). Changing, adding or removing a source file, or changing the image size, gives a new
key. Old cache files can be deleted at any time.

`Dataset.fingerprint` hashes the content of what a run sees: the decoded tensors, file names and labels (hashed
once when the cache is written), plus the split seed and the preprocessing. It does not depend on file mtimes,
so the same data copied to another machine keeps its fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from PIL import Image

from mmtrack import settings
from mmtrack.datasets import (
    SKEW_GROUPS,
    DataOptions,
    DatasetInfo,
    Dataset,
    Split,
    data_dir,
    fingerprint,
    register,
    skew_colors,
    skew_groups,
    to_grayscale,
)
from mmtrack.errors import MMTrackError

log = logging.getLogger(__name__)

UTKFACE_URL = "https://susanqq.github.io/UTKFace/"
FAIRFACE_URL = "https://github.com/joojs/fairface"
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

PREPROCESS_VERSION = "realdata-v1"  # bump when decoding or resizing changes: every cache key changes
RESIZE = "center-square-crop+pil-bilinear"

UTK_SPLIT_SEED = 20240214
UTK_TEST_FRACTION = 0.2
UTK_DEFAULT_SIZE = 64
GENDERS = ("male", "female")
RACES = ("white", "black", "asian", "indian", "others")
AGE_BINS = ("12-19", "19-59", "59-116")
AGE_EDGES = np.array([12, 19, 59, 117])  # [12, 19), [19, 59), [59, 116]; outside -> no age group (-1)
RACE_AGE = tuple(f"{race}_{age}" for race in RACES for age in AGE_BINS)
UTK_NAME = r"^(\d{1,3})_([01])_([0-4])_(\d+)\.jpg(?:\.chip\.jpg)?$"
UTK_FOLDERS = ("UTKFace/UTKFace", "UTKFace", "utkface")

FAIRFACE_FOLDERS = ("fairface", "FairFace")
FAIRFACE_CSV = "fairface_label_val.csv"
FAIRFACE_COLUMNS = ("file", "age", "gender", "race", "service_test")
FAIRFACE_GENDER = {"Male": 0, "Female": 1}
CELEBA_TEST_PARTITION = 2

CIFAR_SKEW_SEED = 20240315
CIFAR_SIZE = 32


# ------------------------------------------------------------------------------------------- decoding & cache


def cache_dir() -> Path:
    """Where decoded datasets are cached: `<cache dir>/datasets` (`$MMTRACK_CACHE`, else the tracking
    directory's `cache/`)."""
    return settings.cache_dir() / "datasets"


def source_key(kind: str, base: Path, files: list[Path], image_size: int) -> str:
    """Cache key of `kind` decoded at `image_size` from `files`: sha256 of their names relative to `base`,
    sizes and mtimes, and of the preprocessing."""
    h = hashlib.sha256(json.dumps({"kind": kind, "size": image_size, "resize": RESIZE,
                                   "version": PREPROCESS_VERSION}, sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(base).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return f"{kind}-{image_size}-{h.hexdigest()[:20]}"


def cached(key: str, build: Callable[[], dict]) -> dict:
    """The payload cached under `key` (a dict of tensors, lists and strings), building and saving it on a miss."""
    path = cache_dir() / f"{key}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception as exc:  # a truncated or foreign file: rebuild it
            log.warning("ignoring unreadable dataset cache %s (%s); rebuilding it", path, exc)
    payload = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    log.info("cached decoded dataset in %s", path)
    return payload


def decode_image(path: Path, size: int) -> np.ndarray:
    """One image file -> uint8 (size, size, 3): RGB, centre square crop, PIL bilinear (antialiased) resize."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split())
        raise MMTrackError(f"cannot decode image file {path} ({type(exc).__name__}: {reason}); "
                           "remove or replace this file") from exc
    w, h = im.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def decode_images(paths: list[Path], size: int) -> torch.Tensor:
    """Decode image files into one uint8 tensor (N, 3, size, size), with a small thread pool (PIL releases
    the GIL while decoding). One-time work: callers cache the result."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    if paths:
        log.info("decoding %d images from %s at %dx%d (one-time; cached afterwards)", len(paths),
                 paths[0].parent, size, size)
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        for i, arr in enumerate(pool.map(lambda p: decode_image(p, size), paths)):
            out[i] = arr
    finally:
        pool.shutdown(cancel_futures=True)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _decoded(kind: str, base: Path, sources: list[Path], size: int,
             inputs: Callable[[], tuple[list[Path], dict[str, torch.Tensor]]]) -> dict:
    """The cached payload {"images", "names", "content", **tensors} of a dataset part, keyed by `sources`.

    On a cache miss `inputs()` returns the image files to decode (in order) and extra tensors to store (e.g.
    labels read from a label file that is among `sources`). "content" hashes images, names and tensors."""

    def build() -> dict:
        files, tensors = inputs()
        images = decode_images(files, size)
        names = [f.relative_to(base).as_posix() for f in files]
        content = fingerprint(images, *(tensors[k] for k in sorted(tensors)), extra=f"{kind}\n" + "\n".join(names))
        return {"images": images, "names": names, "content": content, **tensors}

    return cached(source_key(kind, base, sources, size), build)


def _image_size(options: DataOptions, default: int) -> int:
    size = default if options.image_size is None else options.image_size
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise MMTrackError(f"image_size must be an integer >= 8, got {size!r}")
    return size


# ------------------------------------------------------------------------------------------------ UTKFace


def find_utkface(root: Path) -> Path:
    """The UTKFace image folder under `root`: the first candidate folder holding .jpg files."""
    for rel in UTK_FOLDERS:
        folder = root / rel
        if folder.is_dir() and any(e.name.lower().endswith(".jpg") for e in os.scandir(folder) if e.is_file()):
            return folder
    looked = ", ".join(str(root / rel) for rel in UTK_FOLDERS)
    raise MMTrackError(
        "UTKFace not found: expected the aligned & cropped images named [age]_[gender]_[race]_[date&time].jpg "
        f"(or .jpg.chip.jpg) in one of: {looked}; download 'Aligned&Cropped Faces' (UTKFace.tar.gz) from "
        f"{UTKFACE_URL} and extract it into {root} (or point --data-dir / MMTRACK_DATA at the folder holding it)"
    )


def parse_utkface_names(names: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """UTKFace file names -> (DataFrame of the parsed ones: name, age, gender, race; the names that don't parse)."""
    s = pd.Series(names, dtype=object)
    parts = s.str.extract(UTK_NAME, flags=re.IGNORECASE)
    ok = parts[0].notna().to_numpy()
    table = pd.DataFrame({
        "name": s[ok].to_numpy(),
        "age": parts.loc[ok, 0].astype(np.int64).to_numpy(),
        "gender": parts.loc[ok, 1].astype(np.int64).to_numpy(),
        "race": parts.loc[ok, 2].astype(np.int64).to_numpy(),
    })
    return table, s[~ok].tolist()


def age_codes(age: np.ndarray) -> np.ndarray:
    """Index into AGE_BINS of every age: [12, 19) -> 0, [19, 59) -> 1, [59, 116] -> 2, else -1."""
    code = np.searchsorted(AGE_EDGES, age, side="right") - 1
    code[(code < 0) | (code >= len(AGE_BINS))] = -1
    return code.astype(np.int64)


def utkface_groups(age: np.ndarray, race: np.ndarray) -> tuple[dict[str, torch.Tensor], dict[str, tuple[str, ...]]]:
    """Group attributes `race`, `age` and `race_age` (codes; -1 = no group) and their value names."""
    age_code = age_codes(age)
    race_age = np.where(age_code >= 0, race * len(AGE_BINS) + age_code, -1)
    groups = {name: torch.from_numpy(np.asarray(codes, dtype=np.int64))
              for name, codes in (("race", race), ("age", age_code), ("race_age", race_age))}
    return groups, {"race": RACES, "age": AGE_BINS, "race_age": RACE_AGE}


def split_indices(n: int, seed: int = UTK_SPLIT_SEED, test_fraction: float = UTK_TEST_FRACTION
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Fixed random (train, test) indices of n items, each sorted; round(test_fraction * n) go to test."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _read_utkface(root: Path, size: int) -> tuple[dict, pd.DataFrame]:
    folder = find_utkface(root)
    names = sorted(e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))
    table, skipped = parse_utkface_names(names)
    if skipped:
        log.warning("UTKFace: skipped %d file(s) in %s whose names are not [age]_[gender]_[race]_[date&time].jpg, "
                    "e.g. %s", len(skipped), folder, ", ".join(skipped[:3]))
    if table.empty:
        raise MMTrackError(f"UTKFace: no file in {folder} is named [age]_[gender]_[race]_[date&time].jpg; "
                           f"extract the aligned & cropped images from {UTKFACE_URL} there")
    files = [folder / n for n in table["name"]]
    payload = _decoded("utkface", folder, files, size, lambda: (files, {}))
    return payload, table


def _utkface_split(payload: dict, table: pd.DataFrame, idx: np.ndarray) -> Split:
    age, race = table["age"].to_numpy()[idx], table["race"].to_numpy()[idx]
    groups, values = utkface_groups(age, race)
    labels = torch.from_numpy(table["gender"].to_numpy()[idx].astype(np.int64))
    return Split(payload["images"][torch.from_numpy(idx)], labels, groups, values)


def _find_folder(root: Path, candidates: tuple[str, ...]) -> Path | None:
    return next((root / c for c in candidates if (root / c).is_dir()), None)


def read_fairface(root: Path, size: int) -> tuple[Split, str] | None:
    """FairFace's val split as an OOD Split with gender labels (and its content hash), or None if absent."""
    folder = _find_folder(root, FAIRFACE_FOLDERS)
    if folder is None:
        log.warning("FairFace not found at %s (expected %s and the val/ images it lists); loading utkface "
                    "without OOD set 'fairface'. Get it from %s", root / FAIRFACE_FOLDERS[0], FAIRFACE_CSV,
                    FAIRFACE_URL)
        return None
    csv = folder / FAIRFACE_CSV
    if not csv.is_file():
        raise MMTrackError(f"FairFace: {csv} is missing; put FairFace's label file {FAIRFACE_CSV} (from "
                           f"{FAIRFACE_URL}) there, or remove the folder {folder}")
    table = pd.read_csv(csv, dtype=str)
    missing_cols = [c for c in FAIRFACE_COLUMNS if c not in table.columns]
    if missing_cols:
        raise MMTrackError(f"FairFace: {csv} lacks column(s) {', '.join(missing_cols)}; expected the official "
                           f"columns {','.join(FAIRFACE_COLUMNS)}")
    gender = table["gender"].map(FAIRFACE_GENDER)
    if gender.isna().any():
        bad = sorted(set(table.loc[gender.isna(), "gender"].astype(str)))[:5]
        raise MMTrackError(f"FairFace: {csv} has gender values {bad}; expected 'Male' or 'Female'")
    files = [folder / f for f in table["file"]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise MMTrackError(f"FairFace: {len(missing)} image(s) listed in {csv} are missing, e.g. {missing[0]}; "
                           f"extract FairFace's images (fairface-img-margin025-trainval.zip from {FAIRFACE_URL}) "
                           f"into {folder}")
    labels = torch.tensor(gender.to_numpy(dtype=np.int64))
    payload = _decoded("fairface", folder, [csv, *files], size, lambda: (files, {"labels": labels}))
    return Split(payload["images"], payload["labels"]), payload["content"]


def _celeba_required() -> list[str]:
    from torchvision.datasets import CelebA

    return [name for _, _, name in CelebA.file_list if os.path.splitext(name)[1] not in (".zip", ".7z")]


def read_celeba(root: Path, size: int) -> tuple[Split, str] | None:
    """CelebA's test partition as an OOD Split with gender labels (and its content hash), or None if absent."""
    from torchvision.datasets import CelebA

    folder = root / CelebA.base_folder
    required = _celeba_required()
    if not folder.is_dir():
        log.warning("CelebA not found at %s (expected img_align_celeba/ and %s); loading utkface without OOD set "
                    "'celeba'. Get it from %s", folder, ", ".join(required), CELEBA_URL)
        return None
    missing = [n for n in required if not (folder / n).is_file()]
    missing += [] if (folder / "img_align_celeba").is_dir() else ["img_align_celeba/"]
    if missing:
        raise MMTrackError(f"CelebA: {folder} lacks {', '.join(missing)}; get the official files "
                           f"(img_align_celeba.zip extracted, and the list_*.txt files) from {CELEBA_URL}")
    partition = pd.read_csv(folder / "list_eval_partition.txt", sep=r"\s+", header=None, names=["file", "split"],
                            dtype={"file": str, "split": np.int64})
    test_files = [folder / "img_align_celeba" / f for f in partition.loc[partition["split"] == CELEBA_TEST_PARTITION,
                                                                         "file"]]
    if not test_files:
        raise MMTrackError(f"CelebA: {folder / 'list_eval_partition.txt'} lists no test image (partition 2)")
    missing_images = [str(f) for f in test_files if not f.is_file()]
    if missing_images:
        raise MMTrackError(f"CelebA: {len(missing_images)} test image(s) are missing, e.g. {missing_images[0]}; "
                           f"extract img_align_celeba.zip from {CELEBA_URL} into {folder}")
    sources = [folder / n for n in required] + test_files

    def inputs() -> tuple[list[Path], dict[str, torch.Tensor]]:
        try:
            ds = CelebA(root=str(root), split="test", target_type="attr", download=False)
        except RuntimeError as exc:
            raise MMTrackError(f"CelebA: torchvision rejected {folder} ({exc}); its md5 check of "
                               f"{', '.join(required)} failed: re-download the official files from {CELEBA_URL}"
                               ) from exc
        if "Male" not in ds.attr_names:
            raise MMTrackError(f"CelebA: {folder / 'list_attr_celeba.txt'} has no 'Male' attribute")
        files = [folder / "img_align_celeba" / f for f in ds.filename]
        male = ds.attr[:, ds.attr_names.index("Male")].to(torch.int64)
        return files, {"labels": 1 - male}  # Male = 1 -> "male" (0); else "female" (1)

    payload = _decoded("celeba", folder, sources, size, inputs)
    return Split(payload["images"], payload["labels"]), payload["content"]


@register("utkface", DatasetInfo({"race": RACES, "age": AGE_BINS, "race_age": RACE_AGE}, ("fairface", "celeba"),
                                  ("race", "asian")))
def load_utkface(options: DataOptions) -> Dataset:
    """UTKFace (gender task, race/age groups) with the OOD sets FairFace and CelebA when present."""
    root = data_dir(options)
    size = _image_size(options, UTK_DEFAULT_SIZE)
    payload, table = _read_utkface(root, size)
    train_idx, test_idx = split_indices(len(table))
    train, test = _utkface_split(payload, table, train_idx), _utkface_split(payload, table, test_idx)
    ood: dict[str, Split] = {}
    contents = [f"utkface:{payload['content']}"]
    for name, reader in (("fairface", read_fairface), ("celeba", read_celeba)):
        result = reader(root, size)
        if result is not None:
            ood[name], content = result
            contents.append(f"{name}:{content}")
    meta = f"{PREPROCESS_VERSION}|{RESIZE}|split={UTK_SPLIT_SEED}/{UTK_TEST_FRACTION}|" + "|".join(contents)
    return Dataset(
        name="utkface",
        classes=GENDERS,
        train=train,
        test=test,
        ood=ood,
        fingerprint=hashlib.sha256(meta.encode()).hexdigest()[:16],
        fairness_group=("race", "asian"),
        description=f"UTKFace aligned & cropped, perceived gender, {size}x{size}, fixed 80/20 split "
                    f"(OOD: {', '.join(ood) or 'none'}; see mmtrack.realdata)",
    )


# ------------------------------------------------------------------------------------------ CIFAR10-Skewed


def _cifar_files() -> list[str]:
    from torchvision.datasets import CIFAR10

    return [n for n, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]


@register("cifar10-skewed", DatasetInfo(SKEW_GROUPS, ("cifar10-gs",), ("skew", "gs-minority")))
def load_cifar10_skewed(options: DataOptions) -> Dataset:
    """CIFAR-10 with the CIFAR10-Skewed colour skew in both splits, and the all-grayscale OOD set cifar10-gs."""
    from torchvision.datasets import CIFAR10

    if options.image_size not in (None, CIFAR_SIZE):
        raise MMTrackError(f"cifar10-skewed has a fixed image size of {CIFAR_SIZE}; drop --image-size")
    root = data_dir(options)
    folder = root / CIFAR10.base_folder
    missing = [n for n in _cifar_files() if not (folder / n).is_file()]
    if missing:
        raise MMTrackError(f"CIFAR-10 not found: {folder} lacks {', '.join(missing)}; download the python version "
                           f"(cifar-10-python.tar.gz) from {CIFAR10_URL} and extract it into {root}")
    try:
        sources = {split: CIFAR10(root=str(root), train=split == "train", download=False)
                   for split in ("train", "test")}
    except RuntimeError as exc:
        raise MMTrackError(f"CIFAR-10: torchvision rejected {folder} ({exc}); its md5 check failed: re-download "
                           f"cifar-10-python.tar.gz from {CIFAR10_URL}") from exc
    rng = np.random.default_rng(CIFAR_SKEW_SEED)
    n_classes = len(sources["train"].classes)
    splits: dict[str, Split] = {}
    for name, ds in sources.items():
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # NHWC -> NCHW
        labels = np.asarray(ds.targets, dtype=np.int64)
        gray = skew_colors(labels, rng, n_classes=n_classes)
        skewed = images.clone()
        if gray.any():
            mask = torch.from_numpy(gray)
            skewed[mask] = to_grayscale(images[mask])
        groups, values = skew_groups(labels, gray, n_classes=n_classes)
        splits[name] = Split(skewed, torch.from_numpy(labels), groups, values)
        if name == "test":
            ood = {"cifar10-gs": Split(to_grayscale(images), torch.from_numpy(labels))}
    train, test = splits["train"], splits["test"]
    fp = fingerprint(train.images, train.labels, test.images, test.labels,
                     extra=f"cifar10-skewed|{PREPROCESS_VERSION}|skew={CIFAR_SKEW_SEED}")
    return Dataset(
        name="cifar10-skewed",
        classes=tuple(sources["train"].classes),
        train=train,
        test=test,
        ood=ood,
        fingerprint=fp,
        fairness_group=("skew", "gs-minority"),
        description="CIFAR-10, CIFAR10-Skewed colour skew in train and test (see mmtrack.realdata)",
    )


__all__ = [
    "cache_dir", "source_key", "cached", "decode_image", "decode_images", "find_utkface", "parse_utkface_names",
    "age_codes", "utkface_groups", "split_indices", "read_fairface", "read_celeba", "load_utkface",
    "load_cifar10_skewed",
]
