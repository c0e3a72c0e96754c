"""torchvision's ResNets (ResNet-18, ResNet-50, Wide ResNet-50-2) trained from scratch, with a `width` factor
that scales every channel count, the small-image stem for small inputs, and input normalisation inside the
model so that it consumes images in [0, 1] (attack budgets are then measured in pixel space)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from mmtrack import settings
from mmtrack.errors import MMTrackError

# name -> (block, layers, width_per_group), exactly as torchvision.models.resnet18 / resnet50 / wide_resnet50_2
ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], 64),
    "resnet50": (Bottleneck, [3, 4, 6, 3], 64),
    "wide_resnet50_2": (Bottleneck, [3, 4, 6, 3], 128),
}
# Activations and weights in channels-last layout: 1.2-1.4x faster training of these small ResNets on CPU
# (benchmarks/bench_study.py). $MMTRACK_MEMORY_FORMAT=contiguous restores the NCHW layout; a run records the
# layout it used (tag mmtrack.memory_format), since CPU kernels round differently in each.
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


memory_format = settings.memory_format


SMALL_IMAGE_MAX = 32  # images up to this size (CIFAR-sized) get the 3x3 / stride 1 / no max-pool stem; larger ones torchvision's 7x7 / stride 2 / max-pool stem


class ScaledResNet(ResNet):
    """torchvision's ResNet with channel counts scaled by `width` (1.0 = torchvision's) and a choice of stem."""

    def __init__(
        self,
        block,
        layers,
        num_classes: int,
        width: float = 1.0,
        width_per_group: int = 64,
        small_stem: bool = True,
        zero_init_residual: bool = False,
    ):
        nn.Module.__init__(self)
        planes = [max(1, int(round(p * width))) for p in (64, 128, 256, 512)]
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = planes[0]
        self.dilation = 1
        self.groups = 1
        self.base_width = width_per_group
        if small_stem:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3] * block.expansion, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:  # as torchvision's ResNet(zero_init_residual=True)
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)


class Normalize(nn.Module):
    """Per-channel standardisation of [0, 1] inputs, stored with the model."""

    def __init__(self, mean, std, memory_format: str = "contiguous"):
        super().__init__()
        self.memory_format = memory_format
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layout = MEMORY_FORMATS[getattr(self, "memory_format", "contiguous")]  # absent in older pickled models
        return ((x - self.mean) / self.std).contiguous(memory_format=layout)


class Classifier(nn.Sequential):
    """Normalize -> ResNet. Input: float images in [0, 1], (N, 3, H, W). Output: logits."""


def build_model(
    arch: str,
    num_classes: int,
    image_size: int,
    width: float = 1.0,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    zero_init_residual: bool = False,
) -> Classifier:
    if arch not in ARCHS:
        raise MMTrackError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCHS)}")
    block, layers, wpg = ARCHS[arch]
    net = ScaledResNet(
        block,
        layers,
        num_classes,
        width=width,
        width_per_group=wpg,
        small_stem=image_size <= SMALL_IMAGE_MAX,
        zero_init_residual=zero_init_residual,
    )
    layout = memory_format()
    return Classifier(Normalize(mean, std, layout), to_layout(net, layout))


# oneDNN 3.12 (torch 2.14) writes past its scratchpad in the weight gradient of a strided 1x1 convolution whose
# source is channels-last and has fewer input channels than its channel block (8 on AVX2, 16 on AVX-512):
# uxlfoundation/oneDNN#6035. The heap corruption crashes training later (double free, segfault), at the embedded
# width (ResNet-18 w0.0625: a 4-channel downsample). Such convolutions run in NCHW instead: the same maths, the
# other kernel; only convolutions that hit the bug change, and only on CPU.
_ONEDNN_1X1_IC_BLOCK = 16


def _nchw_input(module: nn.Module, args: tuple) -> tuple:
    x = args[0]
    return (x.contiguous(),) + args[1:] if x.device.type == "cpu" else args


def to_layout(net: nn.Module, layout: str) -> nn.Module:
    """`net` in memory layout `layout` (`MEMORY_FORMATS`), in place, but for the convolutions oneDNN#6035 breaks
    in channels-last (see above), which keep NCHW weights and get NCHW inputs on CPU."""
    net = net.to(memory_format=MEMORY_FORMATS[layout])
    if layout != "channels_last":
        return net
    for m in net.modules():
        if (
            isinstance(m, nn.Conv2d)
            and m.kernel_size == (1, 1)
            and m.stride != (1, 1)
            and m.groups == 1
            and m.in_channels < _ONEDNN_1X1_IC_BLOCK
            and not m._forward_pre_hooks  # applied once
        ):
            m.weight.data = m.weight.data.clone(memory_format=torch.contiguous_format)
            m.register_forward_pre_hook(_nchw_input)
    return net


def channel_stats(images_uint8: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (the training split's, for Normalize)."""
    x = images_uint8.float().div_(255)
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


# ------------------------------------------------------------------------------------ weights without pickle

WEIGHTS_FORMAT = "mmtrack-weights/1"
WEIGHTS_FILE, SPEC_FILE = "model.safetensors", "model.json"


def model_spec(arch: str, num_classes: int, image_size: int, width: float) -> dict:
    """What `build_model` needs to rebuild a model from mmtrack's own code (the weights carry the rest)."""
    return {
        "format": WEIGHTS_FORMAT,
        "arch": arch,
        "num_classes": int(num_classes),
        "image_size": int(image_size),
        "width": float(width),
    }


def save_weights(model: nn.Module, spec: dict, folder: Path) -> None:
    """The weights as safetensors (plain tensors, no code) and the build description as JSON."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_FILE))
    (folder / SPEC_FILE).write_text(json.dumps(spec, sort_keys=True))


def load_weights(folder: Path) -> Classifier:
    """Rebuild a model from its description and load its safetensors weights: nothing here executes code that
    came with the files (no pickle). A description or weights that don't fit raise MMTrackError."""
    from safetensors.torch import load_file

    try:
        spec = json.loads((folder / SPEC_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise MMTrackError(f"unreadable model description {SPEC_FILE} ({exc})") from None
    checks = (
        (isinstance(spec, dict) and spec.get("format") == WEIGHTS_FORMAT, f"format is not {WEIGHTS_FORMAT}"),
        (isinstance(spec, dict) and spec.get("arch") in ARCHS, f"arch is not one of {', '.join(ARCHS)}"),
        (
            isinstance(spec, dict) and isinstance(spec.get("num_classes"), int) and 1 < spec["num_classes"] <= 100_000,
            "num_classes is not an integer in 2..100000",
        ),
        (
            isinstance(spec, dict) and isinstance(spec.get("image_size"), int) and 8 <= spec["image_size"] <= 4096,
            "image_size is not an integer in 8..4096",
        ),
        (
            isinstance(spec, dict) and isinstance(spec.get("width"), (int, float)) and 0 < spec["width"] <= 16,
            "width is not a number in (0, 16]",
        ),
    )
    for ok, what in checks:
        if not ok:
            raise MMTrackError(f"model description {SPEC_FILE} is invalid: {what}")
    model = build_model(spec["arch"], spec["num_classes"], spec["image_size"], float(spec["width"]))
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt file or weights of another shape
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MMTrackError(f"weights {WEIGHTS_FILE} do not fit the described {spec['arch']} ({first})") from None
    return model.eval()
