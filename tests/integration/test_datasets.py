"""The embedded dataset `digits-skewed`: sizes, the split by source digit, the colour skew, the fairness group,
the group evaluation set, the OOD set `digits-warped`, the fingerprint, and the errors of the dataset interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from mmtrack import data as datasets
from mmtrack.data import DataOptions, fingerprint, load_dataset
from mmtrack.data import digits as digits_data
from mmtrack.errors import MMTrackError

N_SOURCE = 1797  # scikit-learn's digits
N_TEST_SOURCE = N_SOURCE // 2  # TEST_FRACTION = 0.5, floor
N_VARIANTS = 6


def is_gray(images: torch.Tensor) -> torch.Tensor:
    """Per image: R == G == B at every pixel."""
    return ((images[:, 0] == images[:, 1]) & (images[:, 1] == images[:, 2])).flatten(1).all(1)


def strokes(images: torch.Tensor) -> torch.Tensor:
    """The grey stroke pattern under the tint: a tint's brightest channel is exactly 1 (HSV value 1), so the
    channel maximum of a colour image equals the grey image it was tinted from."""
    return images.max(dim=1).values


def test_sizes_and_interface(digits):
    assert digits.name == "digits-skewed"
    assert digits.classes == tuple(str(i) for i in range(10))
    assert digits.num_classes == 10
    assert len(digits.test) == N_TEST_SOURCE * N_VARIANTS == 5388
    assert len(digits.train) == (N_SOURCE - N_TEST_SOURCE) * N_VARIANTS == 5394
    for split in (digits.train, digits.test):
        assert split.images.dtype == torch.uint8
        assert tuple(split.images.shape[1:]) == (3, digits.image_size, digits.image_size)
        assert split.labels.dtype == torch.int64
        assert set(split.labels.tolist()) == set(range(10))
    assert set(digits.ood) == {"digits-warped"}
    assert len(digits.ood["digits-warped"]) == N_TEST_SOURCE * len(digits_data.WARPS)
    assert digits.fairness_group == ("skew", "gs-minority")
    values = {"color": ("color", "gray"), "skew": ("majority", "gs-minority", "color-minority")}
    assert digits.test.group_values == digits.group_split.group_values == values
    assert digits.group_split is digits.group_test and len(digits.group_test) == 2 * len(digits.test)


def test_split_by_source_digit_without_overlap(digits):
    """Every image's first (identity) variant is one of scikit-learn's digits; each source digit lands in
    exactly one split, and no image (of any variant) appears in both splits."""
    src = load_digits().images
    key_of_source = {np.round(x / 16 * 255).astype(np.uint8).tobytes(): i for i, x in enumerate(src)}
    assert len(key_of_source) == N_SOURCE  # the source digits are distinct images

    def sources(split):
        identity = strokes(split.images)[::N_VARIANTS]  # source-major order, identity variant first
        return [key_of_source.get(x.numpy().tobytes()) for x in identity]

    train_src, test_src = sources(digits.train), sources(digits.test)
    assert None not in train_src and None not in test_src
    assert len(set(train_src)) == len(train_src) and len(set(test_src)) == len(test_src)
    assert set(train_src).isdisjoint(test_src)
    assert set(train_src) | set(test_src) == set(range(N_SOURCE))
    # every variant of a source digit carries the source's label
    target = load_digits().target
    assert torch.equal(digits.train.labels, torch.from_numpy(np.repeat(target[train_src], N_VARIANTS)))
    assert torch.equal(digits.test.labels, torch.from_numpy(np.repeat(target[test_src], N_VARIANTS)))
    train_images = {x.numpy().tobytes() for x in strokes(digits.train.images)}
    test_images = {x.numpy().tobytes() for x in strokes(digits.test.images)}
    assert train_images.isdisjoint(test_images)


@pytest.mark.parametrize("split_name", ["train", "test"])
def test_colour_skew_per_class(digits, split_name):
    split = getattr(digits, split_name)
    gray = is_gray(split.images)
    for c in range(10):
        in_class = split.labels == c
        n = int(in_class.sum())
        minority = int(round(0.05 * n))
        n_gray = int((gray & in_class).sum())
        if c < 5:  # colour-majority classes: exactly round(5%) grayscale
            assert n_gray == minority, (c, n, n_gray)
        else:  # grayscale-majority classes: exactly round(5%) colour
            assert n - n_gray == minority, (c, n, n_gray)
    # the group attributes agree with the pixels
    assert torch.equal(split.group_mask("color", "gray"), gray)
    assert torch.equal(split.group_mask("color", "color"), ~gray)
    first_half = split.labels < 5
    assert torch.equal(split.group_mask("skew", "gs-minority"), gray & first_half)
    assert torch.equal(split.group_mask("skew", "color-minority"), ~gray & ~first_half)
    assert torch.equal(split.group_mask("skew", "majority"), (gray & ~first_half) | (~gray & first_half))


def test_colour_does_not_tell_the_class(digits):
    """Colour images are tinted with many hues, in every colour-majority class."""
    test = digits.test
    colour = ~is_gray(test.images)
    # the dominant channel of each colour image: all three occur within every class 0-4
    dominant = test.images.float().sum(dim=(2, 3)).argmax(1)
    for c in range(5):
        assert set(dominant[colour & (test.labels == c)].tolist()) == {0, 1, 2}


def test_group_set_holds_a_colour_and_a_grayscale_copy_of_every_test_image(digits):
    """As CIFAR10-Skewed is evaluated: the first half of the group set is the test images in colour, the second
    half the same images in grayscale; their strokes are exactly the test split's."""
    groups, n = digits.group_test, len(digits.test)
    gray = is_gray(groups.images)
    assert not bool(gray[:n].any()) and bool(gray[n:].all())
    assert torch.equal(groups.labels, torch.cat([digits.test.labels, digits.test.labels]))
    assert torch.equal(strokes(groups.images[:n]), strokes(digits.test.images))
    assert torch.equal(groups.images[n:, 0], strokes(digits.test.images))
    assert torch.equal(groups.group_mask("color", "gray"), gray)
    assert torch.equal(groups.group_mask("skew", "gs-minority"), gray & (groups.labels < 5))
    assert torch.equal(groups.group_mask("skew", "color-minority"), ~gray & (groups.labels >= 5))


def test_fairness_group_is_large_enough(digits):
    """>= 1,000 images, so that test-set sampling alone moves a Δmax over the study's 45 models by <= 5 pp."""
    from mmtrack.analysis.sheet import noise_floor

    attr, value = digits.fairness_group
    gs_minority = digits.group_split.group_mask(attr, value)
    n = int(gs_minority.sum())
    assert n >= 1000
    assert set(digits.group_split.labels[gs_minority].tolist()) == {0, 1, 2, 3, 4}
    assert noise_floor(np.full(45, 90.0), n) <= 5.0  # even at 90% accuracy on the group
    for attr, values in digits.group_split.group_values.items():  # every group, e.g. the unforeseen ones
        for v in values:
            assert int(digits.group_split.group_mask(attr, v).sum()) >= 1000, (attr, v)


def test_ood_digits_warped_is_the_test_digits_under_unseen_warps(digits):
    ood = digits.ood["digits-warped"]
    # labels: the test source digits, one per warp, source-major
    test_labels = digits.test.labels[::N_VARIANTS]
    assert torch.equal(ood.labels, test_labels.repeat_interleave(len(digits_data.WARPS)))
    # no OOD image (by its strokes) is a training or test image
    seen = {x.numpy().tobytes() for x in strokes(torch.cat([digits.train.images, digits.test.images]))}
    assert not any(x.numpy().tobytes() in seen for x in strokes(ood.images))
    # colour-skewed as in training: classes 0-4 mostly colour, 5-9 mostly gray
    gray = is_gray(ood.images)
    assert float(gray[ood.labels < 5].float().mean()) < 0.1 < 0.9 < float(gray[ood.labels >= 5].float().mean())


def test_fingerprint_is_stable_and_sensitive(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("MMTRACK_CACHE", str(tmp_path))  # an empty dataset cache: built from scratch
    again = digits_data.load_digits_skewed(DataOptions())
    assert (tmp_path / "datasets" / f"{digits_data.cache_key()}.pt").is_file()  # built once per machine
    assert digits_data.load_digits_skewed(DataOptions()).fingerprint == again.fingerprint  # read back from it
    assert again is not digits
    assert again.fingerprint == digits.fingerprint
    assert torch.equal(again.train.images, digits.train.images)
    assert torch.equal(again.test.images, digits.test.images)
    assert torch.equal(again.group_test.images, digits.group_test.images)
    assert torch.equal(again.ood["digits-warped"].images, digits.ood["digits-warped"].images)
    assert load_dataset("digits-skewed") is digits  # cached within a process
    changed = digits.test.images.clone()
    changed[0, 0, 0, 0] ^= 1
    same = fingerprint(digits.test.images, digits.test.labels, extra="v")
    assert fingerprint(digits.test.images, digits.test.labels, extra="v") == same
    assert fingerprint(changed, digits.test.labels, extra="v") != same
    assert fingerprint(digits.test.images, digits.test.labels, extra="w") != same
    assert len(digits.fingerprint) == 16


def test_group_mask_errors_list_what_exists(digits):
    with pytest.raises(MMTrackError, match=r"unknown group attribute 'race'; this dataset has: color, skew"):
        digits.test.group_mask("race", "asian")
    with pytest.raises(MMTrackError, match=r"unknown value 'purple'.*it has: color, gray"):
        digits.test.group_mask("color", "purple")
    # an OOD set has no groups
    with pytest.raises(MMTrackError, match="this dataset has: none"):
        digits.ood["digits-warped"].group_mask("color", "gray")


def test_unknown_dataset_and_fixed_image_size():
    with pytest.raises(MMTrackError, match=r"unknown dataset 'mnist'; choose one of: .*digits-skewed"):
        load_dataset("mnist")
    with pytest.raises(MMTrackError, match="fixed image size"):
        digits_data.load_digits_skewed(DataOptions(image_size=32))


def test_split_rejects_malformed_tensors():
    with pytest.raises(ValueError, match="uint8"):
        datasets.Split(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="differ in length"):
        datasets.Split(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))


def test_dataset_info_matches_what_the_loader_gives(digits):
    info = datasets.dataset_info("digits-skewed")
    assert info.groups == digits.group_split.group_values
    assert info.ood == tuple(digits.ood) and info.fairness_group == digits.fairness_group
    assert not info.needs_data
    assert datasets.dataset_info("utkface").needs_data and "fairface" in datasets.dataset_info("utkface").ood


def test_datasets_command_lists_groups_and_ood_sets(capsys, monkeypatch):
    from conftest import run_cli

    res = run_cli(capsys, monkeypatch, "datasets")
    assert res.code == 0, res.err
    for text in (
        "digits-skewed",
        "skew: majority, gs-minority, color-minority",
        "digits-warped",
        "utkface",
        "race: white, black, asian, indian, others",
        "fairface, celeba",
        "cifar10-gs",
        "built in",
    ):
        assert text in res.out, text
