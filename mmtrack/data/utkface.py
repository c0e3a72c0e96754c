"""UTKFace (gender task; race and age groups) with its OOD sets FairFace and CelebA, read from their own
published on-disk formats. Nothing is downloaded; files are read from the data root (`--data-dir`, else
`$MMTRACK_DATA`, else `./data`):

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

Decoding and caching: `mmtrack.data._decode`. `Dataset.fingerprint` hashes the content of what a run sees: the
decoded tensors, file names and labels (hashed once when the cache is written), plus the split seed and the
preprocessing. It does not depend on file mtimes, so the same data copied to another machine keeps its
fingerprint.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch
from mmtrack.data._decode import PREPROCESS_VERSION, RESIZE, decoded, resolve_image_size
from mmtrack.data.base import DataOptions, Dataset, DatasetInfo, Split, data_dir, register
from mmtrack.errors import MMTrackError

log = logging.getLogger(__name__)

UTKFACE_URL = "https://susanqq.github.io/UTKFace/"
FAIRFACE_URL = "https://github.com/joojs/fairface"
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


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
    table = pd.DataFrame(
        {
            "name": s[ok].to_numpy(),
            "age": parts.loc[ok, 0].astype(np.int64).to_numpy(),
            "gender": parts.loc[ok, 1].astype(np.int64).to_numpy(),
            "race": parts.loc[ok, 2].astype(np.int64).to_numpy(),
        }
    )
    return table, s[~ok].tolist()


def age_codes(age: np.ndarray) -> np.ndarray:
    """Index into AGE_BINS of every age: [12, 19) -> 0, [19, 59) -> 1, [59, 116] -> 2, else -1."""
    code = np.searchsorted(AGE_EDGES, age, side="right") - 1
    code[(code < 0) | (code >= len(AGE_BINS))] = -1
    return code.astype(np.int64)


def utkface_groups(age: np.ndarray, race: np.ndarray) -> tuple[dict[str, torch.Tensor], dict[str, tuple[str, ...]]]:
    """Group attributes `race`, `age` and `race_age` (codes; -1 = no group) and their value names."""
    import torch

    age_code = age_codes(age)
    race_age = np.where(age_code >= 0, race * len(AGE_BINS) + age_code, -1)
    groups = {
        name: torch.from_numpy(np.asarray(codes, dtype=np.int64))
        for name, codes in (("race", race), ("age", age_code), ("race_age", race_age))
    }
    return groups, {"race": RACES, "age": AGE_BINS, "race_age": RACE_AGE}


def split_indices(
    n: int, seed: int = UTK_SPLIT_SEED, test_fraction: float = UTK_TEST_FRACTION
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
        log.warning(
            "UTKFace: skipped %d file(s) in %s whose names are not [age]_[gender]_[race]_[date&time].jpg, e.g. %s",
            len(skipped),
            folder,
            ", ".join(skipped[:3]),
        )
    if table.empty:
        raise MMTrackError(
            f"UTKFace: no file in {folder} is named [age]_[gender]_[race]_[date&time].jpg; "
            f"extract the aligned & cropped images from {UTKFACE_URL} there"
        )
    files = [folder / n for n in table["name"]]
    payload = decoded("utkface", folder, files, size, lambda: (files, {}))
    return payload, table


def _utkface_split(payload: dict, table: pd.DataFrame, idx: np.ndarray) -> Split:
    import torch

    age, race = table["age"].to_numpy()[idx], table["race"].to_numpy()[idx]
    groups, values = utkface_groups(age, race)
    labels = torch.from_numpy(table["gender"].to_numpy()[idx].astype(np.int64))
    return Split(payload["images"][torch.from_numpy(idx)], labels, groups, values)


def _find_folder(root: Path, candidates: tuple[str, ...]) -> Path | None:
    return next((root / c for c in candidates if (root / c).is_dir()), None)


def read_fairface(root: Path, size: int) -> tuple[Split, str] | None:
    """FairFace's val split as an OOD Split with gender labels (and its content hash), or None if absent."""
    import torch

    folder = _find_folder(root, FAIRFACE_FOLDERS)
    if folder is None:
        log.warning(
            "FairFace not found at %s (expected %s and the val/ images it lists); loading utkface "
            "without OOD set 'fairface'. Get it from %s",
            root / FAIRFACE_FOLDERS[0],
            FAIRFACE_CSV,
            FAIRFACE_URL,
        )
        return None
    csv = folder / FAIRFACE_CSV
    if not csv.is_file():
        raise MMTrackError(
            f"FairFace: {csv} is missing; put FairFace's label file {FAIRFACE_CSV} (from "
            f"{FAIRFACE_URL}) there, or remove the folder {folder}"
        )
    table = pd.read_csv(csv, dtype=str)
    missing_cols = [c for c in FAIRFACE_COLUMNS if c not in table.columns]
    if missing_cols:
        raise MMTrackError(
            f"FairFace: {csv} lacks column(s) {', '.join(missing_cols)}; expected the official "
            f"columns {','.join(FAIRFACE_COLUMNS)}"
        )
    gender = table["gender"].map(FAIRFACE_GENDER)
    if gender.isna().any():
        bad = sorted(set(table.loc[gender.isna(), "gender"].astype(str)))[:5]
        raise MMTrackError(f"FairFace: {csv} has gender values {bad}; expected 'Male' or 'Female'")
    files = [folder / f for f in table["file"]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise MMTrackError(
            f"FairFace: {len(missing)} image(s) listed in {csv} are missing, e.g. {missing[0]}; "
            f"extract FairFace's images (fairface-img-margin025-trainval.zip from {FAIRFACE_URL}) "
            f"into {folder}"
        )
    labels = torch.tensor(gender.to_numpy(dtype=np.int64))
    payload = decoded("fairface", folder, [csv, *files], size, lambda: (files, {"labels": labels}))
    return Split(payload["images"], payload["labels"]), payload["content"]


def _celeba_required() -> list[str]:
    from torchvision.datasets import CelebA

    return [name for _, _, name in CelebA.file_list if os.path.splitext(name)[1] not in (".zip", ".7z")]


def read_celeba(root: Path, size: int) -> tuple[Split, str] | None:
    """CelebA's test partition as an OOD Split with gender labels (and its content hash), or None if absent."""
    import torch
    from torchvision.datasets import CelebA

    folder = root / CelebA.base_folder
    required = _celeba_required()
    if not folder.is_dir():
        log.warning(
            "CelebA not found at %s (expected img_align_celeba/ and %s); loading utkface without OOD set "
            "'celeba'. Get it from %s",
            folder,
            ", ".join(required),
            CELEBA_URL,
        )
        return None
    missing = [n for n in required if not (folder / n).is_file()]
    missing += [] if (folder / "img_align_celeba").is_dir() else ["img_align_celeba/"]
    if missing:
        raise MMTrackError(
            f"CelebA: {folder} lacks {', '.join(missing)}; get the official files "
            f"(img_align_celeba.zip extracted, and the list_*.txt files) from {CELEBA_URL}"
        )
    partition = pd.read_csv(
        folder / "list_eval_partition.txt",
        sep=r"\s+",
        header=None,
        names=["file", "split"],
        dtype={"file": str, "split": np.int64},
    )
    test_files = [
        folder / "img_align_celeba" / f for f in partition.loc[partition["split"] == CELEBA_TEST_PARTITION, "file"]
    ]
    if not test_files:
        raise MMTrackError(f"CelebA: {folder / 'list_eval_partition.txt'} lists no test image (partition 2)")
    missing_images = [str(f) for f in test_files if not f.is_file()]
    if missing_images:
        raise MMTrackError(
            f"CelebA: {len(missing_images)} test image(s) are missing, e.g. {missing_images[0]}; "
            f"extract img_align_celeba.zip from {CELEBA_URL} into {folder}"
        )
    sources = [folder / n for n in required] + test_files

    def inputs() -> tuple[list[Path], dict[str, torch.Tensor]]:
        try:
            ds = CelebA(root=str(root), split="test", target_type="attr", download=False)
        except RuntimeError as exc:
            raise MMTrackError(
                f"CelebA: torchvision rejected {folder} ({exc}); its md5 check of "
                f"{', '.join(required)} failed: re-download the official files from {CELEBA_URL}"
            ) from exc
        if "Male" not in ds.attr_names:
            raise MMTrackError(f"CelebA: {folder / 'list_attr_celeba.txt'} has no 'Male' attribute")
        files = [folder / "img_align_celeba" / f for f in ds.filename]
        male = ds.attr[:, ds.attr_names.index("Male")].to(torch.int64)
        return files, {"labels": 1 - male}  # Male = 1 -> "male" (0); else "female" (1)

    payload = decoded("celeba", folder, sources, size, inputs)
    return Split(payload["images"], payload["labels"]), payload["content"]


@register(
    "utkface",
    DatasetInfo({"race": RACES, "age": AGE_BINS, "race_age": RACE_AGE}, ("fairface", "celeba"), ("race", "asian")),
)
def load_utkface(options: DataOptions) -> Dataset:
    """UTKFace (gender task, race/age groups) with the OOD sets FairFace and CelebA when present."""
    root = data_dir(options)
    size = resolve_image_size(options, UTK_DEFAULT_SIZE)
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
        f"(OOD: {', '.join(ood) or 'none'}; see mmtrack.data.utkface)",
    )
