"""Building an architecture of the catalogue (`models.catalog`) as a network from scratch: mmtrack's width-scaled
ResNets (`resnet`), torchvision's classification builders (`torchvision.models.get_model(name, weights=None,
num_classes=...)`), or a builder registered under the entry-point group `mmtrack.architectures`. Whether a network
takes a dataset's images is `models.fit`."""

from __future__ import annotations

import functools
import importlib

from torch import nn

from mmtrack.errors import MMTrackError
from mmtrack.models import catalog
from mmtrack.models.resnet import ARCHS, SMALL_IMAGE_MAX, ScaledResNet

# torchvision builders that need more than num_classes to train from scratch as a plain classifier
TORCHVISION_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


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
