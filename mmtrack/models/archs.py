"""Building an architecture of the catalogue (`models.catalog`) as a network from scratch: mmtrack's width-scaled
ResNets (`resnet`), torchvision's classification builders (`torchvision.models.get_model(name, weights=None,
num_classes=...)`), or a builder registered under the entry-point group `mmtrack.architectures`. And checking,
before anything trains, that a network takes the dataset's images."""

from __future__ import annotations

import functools
import importlib

import torch
from torch import nn

from mmtrack.errors import MMTrackError
from mmtrack.models import catalog
from mmtrack.models.resnet import ARCHS, SMALL_IMAGE_MAX, ScaledResNet

# torchvision builders that need more than num_classes to train from scratch as a plain classifier
TORCHVISION_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}
TRY_SIZES = (8, 16, 32, 64, 96, 128, 160, 224, 299)  # image sizes tried to name the smallest a network takes


def build_network(arch: str, num_classes: int, image_size: int, width: float, zero_init_residual: bool) -> nn.Module:
    """The untrained network (random initialisation from torch's global generator)."""
    catalog.check(arch)
    where = catalog.source(arch)
    if where == "mmtrack":
        block, layers, wpg = ARCHS[arch]
        return ScaledResNet(
            block,
            layers,
            num_classes,
            width=width,
            width_per_group=wpg,
            small_stem=image_size <= SMALL_IMAGE_MAX,
            zero_init_residual=zero_init_residual,
        )
    kwargs = {"zero_init_residual": True} if zero_init_residual else {}
    if where == "entry_point":
        module, _, attr = catalog.entry_points()[arch].partition(":")
        builder = functools.reduce(getattr, attr.split("."), importlib.import_module(module))
        call = functools.partial(builder, num_classes=num_classes, image_size=image_size, **kwargs)
    else:
        import torchvision

        call = functools.partial(
            torchvision.models.get_model,
            arch,
            weights=None,
            num_classes=num_classes,
            **TORCHVISION_KWARGS.get(arch, {}),
            **kwargs,
        )
    try:
        return call()
    except TypeError as exc:
        if kwargs:
            raise MMTrackError(f"zero_init_residual does not apply to {arch} ({exc})") from None
        raise


@functools.cache
def takes(arch: str, num_classes: int, image_size: int, width: float) -> bool:
    """Whether the network takes (2, 3, image_size, image_size) images in a forward pass, with no weights change."""
    from mmtrack.models.classifier import build_model

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
