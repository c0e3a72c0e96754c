"""CIFAR10-Skewed from CIFAR-10's python batches in `<root>/cifar-10-batches-py/`, read through
`torchvision.datasets.CIFAR10(root, train=..., download=False)`, which md5-checks every batch. Both splits
are skewed with `base.skew_colors` and a fixed seed (`CIFAR_SKEW_SEED`): classes 0-4 are 95% colour /
5% grayscale and classes 5-9 the reverse. The groups are `color` and `skew`; the fairness group is
skew/gs-minority. OOD set `cifar10-gs` is the whole test split in grayscale. The size is fixed at 32x32.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass
from mmtrack.data._decode import PREPROCESS_VERSION
from mmtrack.data.base import (
    SKEW_GROUPS,
    DataOptions,
    Dataset,
    DatasetInfo,
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

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR_SKEW_SEED = 20240315
CIFAR_SIZE = 32


def _cifar_files() -> list[str]:
    from torchvision.datasets import CIFAR10

    return [n for n, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]


@register("cifar10-skewed", DatasetInfo(SKEW_GROUPS, ("cifar10-gs",), ("skew", "gs-minority")))
def load_cifar10_skewed(options: DataOptions) -> Dataset:
    """CIFAR-10 with the CIFAR10-Skewed colour skew in both splits, and the all-grayscale OOD set cifar10-gs."""
    import torch
    from torchvision.datasets import CIFAR10

    if options.image_size not in (None, CIFAR_SIZE):
        raise MMTrackError(f"cifar10-skewed has a fixed image size of {CIFAR_SIZE}; drop --image-size")
    root = data_dir(options)
    folder = root / CIFAR10.base_folder
    missing = [n for n in _cifar_files() if not (folder / n).is_file()]
    if missing:
        raise MMTrackError(
            f"CIFAR-10 not found: {folder} lacks {', '.join(missing)}; download the python version "
            f"(cifar-10-python.tar.gz) from {CIFAR10_URL} and extract it into {root}"
        )
    try:
        sources = {
            split: CIFAR10(root=str(root), train=split == "train", download=False) for split in ("train", "test")
        }
    except RuntimeError as exc:
        raise MMTrackError(
            f"CIFAR-10: torchvision rejected {folder} ({exc}); its md5 check failed: re-download "
            f"cifar-10-python.tar.gz from {CIFAR10_URL}"
        ) from exc
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
    fp = fingerprint(
        train.images,
        train.labels,
        test.images,
        test.labels,
        extra=f"cifar10-skewed|{PREPROCESS_VERSION}|skew={CIFAR_SKEW_SEED}",
    )
    return Dataset(
        name="cifar10-skewed",
        classes=tuple(sources["train"].classes),
        train=train,
        test=test,
        ood=ood,
        fingerprint=fp,
        fairness_group=("skew", "gs-minority"),
        description="CIFAR-10, CIFAR10-Skewed colour skew in train and test (see mmtrack.data.cifar)",
    )
