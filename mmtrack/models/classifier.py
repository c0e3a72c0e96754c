"""A classifier as mmtrack trains, evaluates and logs it: input normalisation inside the model (so it consumes
images in [0, 1] and attack budgets are measured in pixel space), then the network (`mmtrack.models.resnet`), in
the memory layout of $MMTRACK_MEMORY_FORMAT; and batched inference on uint8 images."""

from __future__ import annotations

import torch
from torch import nn

from mmtrack import settings

# Activations and weights in channels-last layout: 1.2-1.4x faster training of these small ResNets on CPU
# (benchmarks/bench_study.py). $MMTRACK_MEMORY_FORMAT=contiguous restores the NCHW layout; a run records the
# layout it used (tag mmtrack.memory_format), since CPU kernels round differently in each.
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


memory_format = settings.memory_format


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
    from mmtrack.models.archs import build_network

    net = build_network(arch, num_classes, image_size, width, zero_init_residual)
    layout = memory_format()
    model = Classifier(Normalize(mean, std, layout), to_layout(net, layout))
    model.image_size = int(image_size)  # what it was built for (stacking's exactness check probes this size)
    return model


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


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, C) for uint8 images, batched on the model's device, returned on the CPU."""
    device = next(model.parameters()).device
    model.eval()
    out = [model(chunk.to(device).float().div_(255)).float().cpu() for chunk in images.split(batch_size)]
    return torch.cat(out) if out else torch.empty(0)
