"""The dataset interface and registry (timm-style: each dataset module registers its loader with `register`;
`mmtrack.data` imports every dataset module, so nothing here imports a dataset).

A dataset is a name that maps to in-memory uint8 image tensors (N, 3, H, W) for a fixed train/test split,
its class names, the group attributes of every test image (for fairness metrics) and the out-of-distribution
(OOD) sets registered with it (for robustness metrics). Models consume images scaled to [0, 1]. Real datasets
read their files from `--data-dir` / `MMTRACK_DATA`; the embedded `digits-skewed` is built from scikit-learn.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
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
        import torch

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
    source: str = ""  # a dataset declared in a file (`mmtrack.data.declared`): that file; "" for built-in ones


Loader = Callable[[DataOptions], Dataset]
_REGISTRY: dict[str, Loader] = {}
_INFO: dict[str, DatasetInfo] = {}
# Called with a name the registry lacks; one may register it and return True (declared datasets this machine has
# seen: `mmtrack.data.declared`), so a later process that knows only the name finds the dataset again.
_RESOLVERS: list[Callable[[str], bool]] = []


def register(name: str, info: DatasetInfo | None = None):
    """Decorator: make a loader available under `name` (with what it offers, for listings)."""

    def deco(fn: Loader) -> Loader:
        _REGISTRY[name] = fn
        _INFO[name] = info or DatasetInfo()
        return fn

    return deco


def add_resolver(resolve: Callable[[str], bool]) -> None:
    """Ask `resolve(name)` about a name the registry lacks; it may register the name and return True."""
    _RESOLVERS.append(resolve)


def dataset_info(name: str) -> DatasetInfo:
    check_dataset_name(name)
    return _INFO[name]


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


def check_dataset_name(name: str) -> None:
    if name not in _REGISTRY and isinstance(name, str):
        any(resolve(name) for resolve in _RESOLVERS)
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
    import torch

    first_half = labels < n_classes // 2
    skew = np.zeros(len(labels), dtype=np.int64)  # majority
    skew[first_half & gray] = 1  # grayscale images of colour-majority classes
    skew[~first_half & ~gray] = 2  # colour images of grayscale-majority classes
    groups = {"color": torch.from_numpy(gray.astype(np.int64)), "skew": torch.from_numpy(skew)}
    values = {"color": ("color", "gray"), "skew": ("majority", "gs-minority", "color-minority")}
    return groups, values


SKEW_GROUPS = {"color": ("color", "gray"), "skew": ("majority", "gs-minority", "color-minority")}
