"""Which architectures exist, without importing torch: the three width-scaled ResNets of the paper (mmtrack's
own), every classification builder of `torchvision.models` by its name (trained from scratch, `num_classes` from
the dataset), and builders other packages register through the Python entry-point group `mmtrack.architectures`
(`name = "package.module:builder"`, a callable `builder(num_classes, image_size, **kwargs) -> nn.Module`).
Nothing is ever loaded from a path written in a run or an artifact: a model's JSON spec names a builder of this
catalogue.

`TORCHVISION` is the list of the pinned torchvision (tests/integration/test_archs.py checks it against
`torchvision.models.list_models`); a name missing from it is looked up in the installed torchvision, so a newer
one's models work too."""

from __future__ import annotations

import functools

from mmtrack.errors import MMTrackError

RESNETS = ("resnet18", "resnet50", "wide_resnet50_2")  # mmtrack's width-scaled ResNets (these names mean them)
ENTRY_POINT_GROUP = "mmtrack.architectures"
# torchvision.models.list_models(module=torchvision.models) of torchvision 0.29
TORCHVISION = (
    "alexnet",
    *(f"convnext_{s}" for s in ("base", "large", "small", "tiny")),
    *(f"densenet{n}" for n in (121, 161, 169, 201)),
    *(f"efficientnet_b{i}" for i in range(8)),
    *(f"efficientnet_v2_{s}" for s in ("l", "m", "s")),
    "googlenet",
    "inception_v3",
    "maxvit_t",
    *(f"mnasnet{s}" for s in ("0_5", "0_75", "1_0", "1_3")),
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    *(f"regnet_x_{s}" for s in ("16gf", "1_6gf", "32gf", "3_2gf", "400mf", "800mf", "8gf")),
    *(f"regnet_y_{s}" for s in ("128gf", "16gf", "1_6gf", "32gf", "3_2gf", "400mf", "800mf", "8gf")),
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "resnext50_32x4d",
    *(f"shufflenet_v2_x{s}" for s in ("0_5", "1_0", "1_5", "2_0")),
    "squeezenet1_0",
    "squeezenet1_1",
    *(f"swin_{s}" for s in ("b", "s", "t", "v2_b", "v2_s", "v2_t")),
    *(f"vgg{n}{bn}" for n in (11, 13, 16, 19) for bn in ("", "_bn")),
    *(f"vit_{s}" for s in ("b_16", "b_32", "h_14", "l_16", "l_32")),
    "wide_resnet101_2",
    "wide_resnet50_2",
)


@functools.cache
def entry_points() -> dict[str, str]:
    """Registered builders: name -> "module:attribute" (not imported here)."""
    from importlib.metadata import entry_points as eps

    return {ep.name: ep.value for ep in eps(group=ENTRY_POINT_GROUP)}


def source(arch: str) -> str | None:
    """Where `arch` is built: "mmtrack" (a width-scaled ResNet), "entry_point", "torchvision", or None (unknown)."""
    if arch in RESNETS:
        return "mmtrack"
    if arch in entry_points():
        return "entry_point"
    if arch in TORCHVISION or arch in _installed_torchvision():
        return "torchvision"
    return None


def has_width(arch: str) -> bool:
    """Whether `width` (the channel-count factor) means something for `arch`: mmtrack's ResNets only."""
    return arch in RESNETS


def names() -> list[str]:
    """Every architecture, mmtrack's first, then registered builders, then torchvision's (sorted)."""
    others = sorted((set(TORCHVISION) | set(entry_points())) - set(RESNETS))
    return [*RESNETS, *others]


def check(arch) -> None:
    if not isinstance(arch, str) or source(arch) is None:
        raise MMTrackError(
            f"unknown arch {arch!r}; choose one of: {', '.join(RESNETS)}, or any classification builder of "
            "torchvision.models (`mmtrack archs` lists them)"
        )


def _installed_torchvision() -> tuple[str, ...]:
    """Names the installed torchvision has beyond `TORCHVISION` (imports torchvision: only for a name that is in
    none of the lists above)."""
    try:
        import torchvision
    except ImportError:
        return ()
    return tuple(torchvision.models.list_models(module=torchvision.models))
