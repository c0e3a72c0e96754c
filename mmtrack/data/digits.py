"""The embedded dataset `digits-skewed` mirrors CIFAR10-Skewed (Wang et al., CVPR 2020) on scikit-learn's
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

import hashlib
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
from mmtrack.data._decode import cached
from mmtrack.data.base import (
    SKEW_GROUPS,
    DataOptions,
    Dataset,
    DatasetInfo,
    Split,
    fingerprint,
    register,
    skew_colors,
    skew_groups,
)
from mmtrack.errors import MMTrackError

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

    import torch

    n = len(gray01)
    hues = rng.random(n)
    tints = np.array([colorsys.hsv_to_rgb(h, 0.9, 1.0) for h in hues], dtype=np.float32)
    tints[gray] = 1.0
    rgb = gray01 * torch.from_numpy(tints)[:, :, None, None]
    return (rgb * 255).round().clamp(0, 255).to(torch.uint8)


def _warp(x8: torch.Tensor, y: np.ndarray, warps) -> tuple[torch.Tensor, np.ndarray]:
    """Each 8x8 digit under every (angle, tx, ty, scale[, shear]) warp, source-major order (batched)."""
    import torch
    from torchvision.transforms.v2 import functional as F

    out = [
        F.affine(
            x8, angle=float(w[0]), translate=[w[1], w[2]], scale=w[3], shear=[float(w[4]) if len(w) > 4 else 0.0, 0.0]
        )
        for w in warps
    ]
    images = torch.stack(out, dim=1).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    return images.clamp(0, 1), np.repeat(y, len(warps))


def _build() -> dict:
    """Every split of digits-skewed as plain tensors (what the cache stores)."""
    import torch
    from sklearn.datasets import load_digits

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
        splits[name] = _plain(_tint(images01, gray, rng), labels, groups, values)

    # Group evaluation set, as CIFAR10-Skewed is evaluated: a colour and a grayscale copy of every test image,
    # so that every group (e.g. `skew/gs-minority`, the grayscale images of classes 0-4) has thousands of images.
    images01, labels = _warp(x8[test_src], y[test_src], VARIANTS)
    gray = np.r_[np.zeros(len(labels), dtype=bool), np.ones(len(labels), dtype=bool)]
    labels = np.r_[labels, labels]
    groups, values = skew_groups(labels, gray, n_classes=10)
    splits["group_test"] = _plain(_tint(torch.cat([images01, images01]), gray, rng), labels, groups, values)

    # OOD set: the test digits under warps no training image has, colour-skewed as in training.
    images01, labels = _warp(x8[test_src], y[test_src], WARPS)
    gray = skew_colors(labels, rng, n_classes=10)
    splits["digits-warped"] = _plain(_tint(images01, gray, rng), labels, {}, {})
    return splits


def _plain(images, labels: np.ndarray, groups: dict, values: dict) -> dict:
    import torch

    return {
        "images": images,
        "labels": torch.from_numpy(labels),
        "groups": dict(groups),
        "values": {k: list(v) for k, v in values.items()},
    }


def _split(d: dict) -> Split:
    return Split(d["images"], d["labels"], dict(d["groups"]), {k: tuple(v) for k, v in d["values"].items()})


def cache_key() -> str:
    """The built dataset depends on this code (DIGITS_VERSION) and on the libraries that build it."""
    from importlib.metadata import version

    libs = "-".join(version(p) for p in ("scikit-learn", "torch", "torchvision"))
    return f"{DIGITS_VERSION}-{hashlib.sha256(libs.encode()).hexdigest()[:12]}"


@register("digits-skewed", DatasetInfo(SKEW_GROUPS, ("digits-warped",), ("skew", "gs-minority"), needs_data=False))
def load_digits_skewed(options: DataOptions) -> Dataset:
    """Built once per machine (about 2 s, mostly the warps) and read from the dataset cache after that; the
    fingerprint is always computed from what was loaded."""
    if options.image_size not in (None, IMAGE_SIZE):
        raise MMTrackError(f"digits-skewed has a fixed image size of {IMAGE_SIZE}; drop --image-size")
    payload = cached(cache_key(), _build)
    train, test, group_test = _split(payload["train"]), _split(payload["test"]), _split(payload["group_test"])
    ood = {"digits-warped": _split(payload["digits-warped"])}
    fp = fingerprint(
        train.images,
        train.labels,
        test.images,
        test.labels,
        group_test.images,
        ood["digits-warped"].images,
        extra=DIGITS_VERSION,
    )
    return Dataset(
        name="digits-skewed",
        classes=tuple(str(i) for i in range(10)),
        train=train,
        test=test,
        ood=ood,
        fingerprint=fp,
        fairness_group=("skew", "gs-minority"),
        group_test=group_test,
        description="scikit-learn digits, CIFAR10-Skewed-style colour skew (see mmtrack.data.digits)",
    )
