"""Whether a network takes a dataset's images, checked before anything trains: one forward pass at the image
size, and the smallest size it takes when it does not ("vgg11_bn needs images of at least 32 px")."""

from __future__ import annotations

import functools

import torch

from mmtrack.errors import MMTrackError
from mmtrack.models.classifier import build_model

TRY_SIZES = (8, 16, 32, 64, 96, 128, 160, 224, 299)  # image sizes tried to name the smallest a network takes


@functools.cache
def takes(arch: str, num_classes: int, image_size: int, width: float) -> bool:
    """Whether the network takes (2, 3, image_size, image_size) images in a forward pass, with no weights change."""
    state = torch.get_rng_state()  # the check draws no randomness any training would see
    try:
        model = build_model(arch, num_classes, image_size, width).eval()
        with torch.no_grad():
            out = model(torch.rand(2, 3, image_size, image_size))
        return tuple(out.shape) == (2, num_classes)
    except (RuntimeError, ValueError, IndexError, AssertionError):
        return False
    finally:
        torch.set_rng_state(state)


def check_fits(arch: str, num_classes: int, image_size: int, width: float) -> None:
    """One line when `arch` cannot take images of `image_size` px, naming the smallest size it takes."""
    if takes(arch, num_classes, image_size, width):
        return
    bigger = next((s for s in TRY_SIZES if s > image_size and takes(arch, num_classes, s, width)), None)
    if bigger is None:
        raise MMTrackError(f"{arch} does not take {image_size} px images (nor any size up to {TRY_SIZES[-1]} px)")
    raise MMTrackError(f"{arch} needs images of at least {bigger} px; set image_size: {bigger}")
