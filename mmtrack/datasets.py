"""Datasets behind one small interface, and the embedded default `digits-skewed`.

A dataset is a name that maps to in-memory uint8 image tensors (N, 3, H, W) for a fixed train/test split,
its class names, the group attributes of every test image (for fairness metrics) and the out-of-distribution
(OOD) sets registered with it (for robustness metrics). Models consume images scaled to [0, 1].

Real datasets (UTKFace, FairFace, CelebA, CIFAR-10) register themselves from `mmtrack.realdata` with the
same decorator; they read their data from `--data-dir` / `MMTRACK_DATA`.

The embedded dataset `digits-skewed` mirrors CIFAR10-Skewed (Wang et al., CVPR 2020) on scikit-learn's
handwritten digits, so a study runs out of the box on two CPU cores:

1. `sklearn.datasets.load_digits()`: 1,797 real 8x8 digits (16 grey levels).
2. Split *by source digit* with its own fixed seed (`SPLIT_SEED`, independent of the training seed): half of
   the source digits go to train, half to test, so no source digit appears in both splits.
3. Each source digit (kept at its native 8x8) is expanded into `N_VARIANTS` deterministic affine variants
   (identity plus fixed small rotations, shifts and scalings), giving ~5,400 images per split.
4. Colour skew, identical in both splits: in every class exactly round(5%) of the images take the class's
   minority mode. Classes 0-4 are colour-majority (95% colour, 5% grayscale), classes 5-9 grayscale-majority.
   A colour image has its strokes tinted with a random saturated hue (seeded, so colour never tells the
   class); a grayscale image has equal R, G and B. `acc` is measured on this skewed test split.
5. Groups are measured, as CIFAR10-Skewed is evaluated, on a colour and a grayscale copy of every test image
   (`Dataset.group_test`, 10,776 images): `color` in {color, gray}, and `skew` in {majority, gs-minority,
   color-minority}. The fairness group `skew/gs-minority` (the grayscale images of classes 0-4) has 2,706 images,
   so its 95% noise floor for a Δmax over 45 models is ~3 pp (the skewed test split alone holds only 136).
6. OOD set `digits-warped`: the test digits under four warps no training image has (±25° rotations, a 20°
   shear, a 0.75 shrink), colour-skewed as in training.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mmtrack import settings
from mmtrack.errors import MMTrackError


@dataclass(frozen=True)
class Split:
    """One split held in memory: uint8 images (N, 3, H, W), int64 labels (N), and group codes.

    `groups[attribute]` is an int64 tensor (N) of indices into `group_values[attribute]`; -1 means the
    image has no value for that attribute (for example an age below the youngest bin).
    """

    images: torch.Tensor
    labels: torch.Tensor
    groups: dict[str, torch.Tensor] = field(default_factory=dict)
    group_values: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.labels) != len(self.images):
            raise ValueError("images and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def group_mask(self, attribute: str, value: str) -> torch.Tensor:
        """Boolean mask of the images whose `attribute` equals `value`."""
        if attribute not in self.group_values:
            raise MMTrackError(
                f"unknown group attribute {attribute!r}; this dataset has: {', '.join(self.group_values) or 'none'}"
            )
        values = self.group_values[attribute]
        if value not in values:
            raise MMTrackError(f"unknown value {value!r} of group attribute {attribute!r}; it has: {', '.join(values)}")
        return self.groups[attribute] == values.index(value)


@dataclass(frozen=True)
class Dataset:
    """A dataset with a fixed split, its groups and its registered OOD sets."""

    name: str
    classes: tuple[str, ...]
    train: Split
    test: Split
    ood: dict[str, Split]
    fingerprint: str
    fairness_group: tuple[str, str] | None = None  # (attribute, value) the paper's headline fairness metric uses
    description: str = ""
    group_test: Split | None = None  # where group accuracies are measured, when not on `test` itself

    @property
    def group_split(self) -> Split:
        """The split whose images carry the group attributes that fairness metrics are measured on."""
        return self.test if self.group_test is None else self.group_test

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class DataOptions:
    """Where and how to read a dataset: `data_dir` for real datasets, `image_size` where it is configurable."""

    data_dir: str | None = None
    image_size: int | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset offers, known without loading it (for `mmtrack datasets`)."""

    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # attribute -> values
    ood: tuple[str, ...] = ()  # OOD set names (real ones only when their files are present)
    fairness_group: tuple[str, str] | None = None
    needs_data: bool = True  # read from --data-dir / $MMTRACK_DATA (False: built from a package)


Loader = Callable[[DataOptions], Dataset]
_REGISTRY: dict[str, Loader] = {}
_INFO: dict[str, DatasetInfo] = {}


def register(name: str, info: DatasetInfo | None = None):
    """Decorator: make a loader available under `name` (with what it offers, for listings)."""

    def deco(fn: Loader) -> Loader:
        _REGISTRY[name] = fn
        _INFO[name] = info or DatasetInfo()
        return fn

    return deco


def dataset_info(name: str) -> DatasetInfo:
    check_dataset_name(name)
    return _INFO[name]


def dataset_names() -> list[str]:
    _import_real_datasets()
    return sorted(_REGISTRY)


def _import_real_datasets() -> None:
    try:
        import mmtrack.realdata  # noqa: F401  (registers utkface, cifar10-skewed)
    except ModuleNotFoundError as exc:  # pragma: no cover - only while the module does not exist
        if exc.name != "mmtrack.realdata":
            raise


def check_dataset_name(name: str) -> None:
    names = dataset_names()
    if name not in names:
        raise MMTrackError(f"unknown dataset {name!r}; choose one of: {', '.join(names)}")


def data_dir(options: DataOptions) -> Path:
    """The root folder of real datasets: --data-dir, else $MMTRACK_DATA, else ./data."""
    return settings.data_dir(options.data_dir)


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, data_dir: str | None = None, image_size: int | None = None) -> Dataset:
    """Load (and cache in this process) the dataset `name`."""
    check_dataset_name(name)
    return _REGISTRY[name](DataOptions(data_dir=data_dir, image_size=image_size))


def fingerprint(*tensors: torch.Tensor, extra: str = "") -> str:
    """A short sha256 of tensors' bytes, identifying exactly the data a run saw."""
    h = hashlib.sha256(extra.encode())
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB -> uint8 RGB with R = G = B (ITU-R 601-2 luma, as torchvision's rgb_to_grayscale)."""
    from torchvision.transforms.v2 import functional as F

    return F.rgb_to_grayscale(images, num_output_channels=3)


def skew_colors(labels: np.ndarray, rng: np.random.Generator, n_classes: int, minority: float = 0.05) -> np.ndarray:
    """Which images are grayscale, CIFAR10-Skewed style: in every class exactly round(minority * n_c) images
    take the minority mode; the first half of the classes is colour-majority, the second half gray-majority."""
    gray = np.zeros(len(labels), dtype=bool)
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        m = int(round(minority * len(idx)))
        chosen = rng.choice(idx, size=m, replace=False)
        if c < n_classes // 2:
            gray[chosen] = True
        else:
            gray[idx] = True
            gray[chosen] = False
    return gray


def skew_groups(labels: np.ndarray, gray: np.ndarray, n_classes: int) -> tuple[dict, dict]:
    """The group attributes of a skewed split: `color` {color, gray} and `skew` {majority, gs-minority,
    color-minority}."""
    first_half = labels < n_classes // 2
    skew = np.zeros(len(labels), dtype=np.int64)  # majority
    skew[first_half & gray] = 1  # grayscale images of colour-majority classes
    skew[~first_half & ~gray] = 2  # colour images of grayscale-majority classes
    groups = {"color": torch.from_numpy(gray.astype(np.int64)), "skew": torch.from_numpy(skew)}
    values = {"color": ("color", "gray"), "skew": ("majority", "gs-minority", "color-minority")}
    return groups, values


# --------------------------------------------------------------------------------------------- digits-skewed

SPLIT_SEED = 20240101
IMAGE_SIZE = 8
TEST_FRACTION = 0.5
# (rotation degrees, translate x, translate y, scale): identity first, then fixed small affine variants.
VARIANTS = ((0, 0, 0, 1.0), (-12, 0, 0, 1.0), (12, 0, 0, 1.0), (0, 1, 1, 0.9), (0, -1, -1, 1.1), (6, -1, 1, 0.95))
N_VARIANTS = len(VARIANTS)  # training images per source digit
# Warps no training image has (OOD set `digits-warped`): stronger rotations, a shear, a shrink.
WARPS = ((-25, 0, 0, 1.0, 0.0), (25, 0, 0, 1.0, 0.0), (0, 0, 0, 1.0, 20.0), (0, 0, 0, 0.75, 0.0))
DIGITS_VERSION = "digits-skewed-v2"


def _tint(gray01: torch.Tensor, gray: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Grey strokes (N, 1, H, W) in [0, 1] -> uint8 RGB: grayscale where `gray`, else tinted with a random hue."""
    import colorsys

    n = len(gray01)
    hues = rng.random(n)
    tints = np.array([colorsys.hsv_to_rgb(h, 0.9, 1.0) for h in hues], dtype=np.float32)
    tints[gray] = 1.0
    rgb = gray01 * torch.from_numpy(tints)[:, :, None, None]
    return (rgb * 255).round().clamp(0, 255).to(torch.uint8)


def _warp(x8: torch.Tensor, y: np.ndarray, warps) -> tuple[torch.Tensor, np.ndarray]:
    """Each 8x8 digit under every (angle, tx, ty, scale[, shear]) warp, source-major order (batched)."""
    from torchvision.transforms.v2 import functional as F

    out = [F.affine(x8, angle=float(w[0]), translate=[w[1], w[2]], scale=w[3],
                    shear=[float(w[4]) if len(w) > 4 else 0.0, 0.0]) for w in warps]
    images = torch.stack(out, dim=1).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    return images.clamp(0, 1), np.repeat(y, len(warps))


SKEW_GROUPS = {"color": ("color", "gray"), "skew": ("majority", "gs-minority", "color-minority")}


@register("digits-skewed", DatasetInfo(SKEW_GROUPS, ("digits-warped",), ("skew", "gs-minority"), needs_data=False))
def load_digits_skewed(options: DataOptions) -> Dataset:
    from sklearn.datasets import load_digits

    if options.image_size not in (None, IMAGE_SIZE):
        raise MMTrackError(f"digits-skewed has a fixed image size of {IMAGE_SIZE}; drop --image-size")
    digits = load_digits()
    x8 = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    order = rng.permutation(len(y))
    n_test = int(math.floor(TEST_FRACTION * len(y)))
    test_src, train_src = np.sort(order[:n_test]), np.sort(order[n_test:])

    splits = {}
    for name, src in (("train", train_src), ("test", test_src)):  # every variant, skewed as CIFAR10-Skewed
        images01, labels = _warp(x8[src], y[src], VARIANTS)
        gray = skew_colors(labels, rng, n_classes=10)
        groups, values = skew_groups(labels, gray, n_classes=10)
        splits[name] = Split(_tint(images01, gray, rng), torch.from_numpy(labels), groups, values)
    train, test = splits["train"], splits["test"]

    # Group evaluation set, as CIFAR10-Skewed is evaluated: a colour and a grayscale copy of every test image,
    # so that every group (e.g. `skew/gs-minority`, the grayscale images of classes 0-4) has thousands of images.
    images01, labels = _warp(x8[test_src], y[test_src], VARIANTS)
    gray = np.r_[np.zeros(len(labels), dtype=bool), np.ones(len(labels), dtype=bool)]
    labels = np.r_[labels, labels]
    groups, values = skew_groups(labels, gray, n_classes=10)
    group_test = Split(_tint(torch.cat([images01, images01]), gray, rng), torch.from_numpy(labels), groups, values)

    # OOD set: the test digits under warps no training image has, colour-skewed as in training.
    images01, labels = _warp(x8[test_src], y[test_src], WARPS)
    gray = skew_colors(labels, rng, n_classes=10)
    ood = {"digits-warped": Split(_tint(images01, gray, rng), torch.from_numpy(labels))}

    fp = fingerprint(train.images, train.labels, test.images, test.labels, group_test.images,
                     ood["digits-warped"].images, extra=DIGITS_VERSION)
    return Dataset(
        name="digits-skewed",
        classes=tuple(str(i) for i in range(10)),
        train=train,
        test=test,
        ood=ood,
        fingerprint=fp,
        fairness_group=("skew", "gs-minority"),
        group_test=group_test,
        description="scikit-learn digits, CIFAR10-Skewed-style colour skew (see mmtrack.datasets)",
    )
