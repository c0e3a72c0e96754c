"""K networks of one architecture as one network whose channels are the K networks' side by side.

Every convolution becomes a grouped convolution (`groups=K`: group k sees only network k's channels), every
BatchNorm normalises the K·C channels one by one (per-channel statistics, so network k's are its own), the final
`nn.Linear` becomes `StackedLinear` (one matrix per network) and `Normalize` holds the K networks' means and
stds. ReLU, pooling, flattening and the residual sums act channel by channel. So a forward pass of the stack on
the K networks' inputs side by side (N, 3·K, H, W) is the K networks' forward passes, output (N, K, classes),
and the gradient of the sum of the K losses is, slice by slice, each network's own gradient. The optimizers
mmtrack uses (SGD with momentum, weight decay and Nesterov; Adam) update element by element, so training the
stack is training the K networks, up to the order of floating-point sums inside the grouped kernels.

`stack(models)` builds the stack from K networks; `unstack(net, models)` writes the stack's slices back into
K plain networks of the same architecture (what is logged, loaded and attacked: nothing downstream sees a stack).

Not every architecture can be stacked exactly: one with a module stacking cannot express (LayerNorm, attention,
...) or a forward that mixes channels (ShuffleNet's channel shuffle, DenseNet's concatenations) raises
`NotStackable` (`stack` checks the stack's forward against the K networks' own on a random batch, so no stack
silently changes the maths). For inference such networks run side by side instead (`side_by_side`, the same
interface); for training, `training_reason` also names the modules whose randomness a stack would draw
differently (dropout, stochastic depth): those train one seed at a time.
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from mmtrack.models.classifier import Normalize, to_layout


class NotStackable(TypeError):
    """These networks cannot be stacked exactly; the message says why."""


class StackedLinear(nn.Module):
    """K `nn.Linear` layers side by side: input (N, K·in), output (N, K, out); weight (K, out, in)."""

    def __init__(self, linears: list[nn.Linear]):
        super().__init__()
        self.k = len(linears)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]).clone())
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in linears]).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.k, -1).transpose(0, 1)  # (K, N, in)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2)).transpose(0, 1)


class Stack(nn.Sequential):
    """Normalize -> stacked ResNet. Input: (N, 3·K, H, W) floats in [0, 1], network k's images in channels
    3k..3k+2 (or (N, 3, H, W): the same images for every network). Output: logits (N, K, classes)."""

    def __init__(self, *modules: nn.Module, k: int):
        super().__init__(*modules)
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] * self.k == self[0].mean.shape[1]:
            x = x.repeat(1, self.k, 1, 1)
        return super().forward(x)


def _conv(convs: list[nn.Conv2d]) -> nn.Conv2d:
    c, k = convs[0], len(convs)
    out = nn.Conv2d(
        c.in_channels * k,
        c.out_channels * k,
        c.kernel_size,
        c.stride,
        c.padding,
        c.dilation,
        groups=c.groups * k,
        bias=c.bias is not None,
        padding_mode=c.padding_mode,
    )
    with torch.no_grad():
        out.weight.copy_(torch.cat([m.weight for m in convs]))
        if c.bias is not None:
            out.bias.copy_(torch.cat([m.bias for m in convs]))
    return out


def _batchnorm(bns: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    b = bns[0]
    out = nn.BatchNorm2d(b.num_features * len(bns), b.eps, b.momentum, b.affine, b.track_running_stats)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(b, name) is not None:
                getattr(out, name).copy_(torch.cat([getattr(m, name) for m in bns]))
        if b.num_batches_tracked is not None:
            out.num_batches_tracked.copy_(b.num_batches_tracked)
    return out


def _normalize(norms: list[Normalize]) -> Normalize:
    mean = torch.cat([m.mean for m in norms], 1).flatten()
    std = torch.cat([m.std for m in norms], 1).flatten()
    return Normalize(mean, std, getattr(norms[0], "memory_format", "contiguous"))


_STACKERS = {nn.Conv2d: _conv, nn.BatchNorm2d: _batchnorm, nn.Linear: StackedLinear, Normalize: _normalize}


def stack(models: list[nn.Sequential], check: bool = True) -> Stack:
    """One `Stack` holding copies of the K networks' parameters and buffers (the networks are left as they are).
    Every module with parameters or buffers must be one `_STACKERS` knows; the others act channel by channel."""
    template = models[0]
    specs = [[(n, type(m)) for n, m in net.named_modules()] for net in models]
    if any(s != specs[0] for s in specs):
        raise ValueError("only networks of one architecture can be stacked")
    net = copy.deepcopy(template)
    for name, module in template.named_modules():
        if type(module) in _STACKERS:
            parent, _, attr = name.rpartition(".")
            stacked = _STACKERS[type(module)]([m.get_submodule(name) for m in models])
            setattr(net.get_submodule(parent) if parent else net, attr, stacked)
        elif not list(module.children()) and (list(module.parameters(False)) or list(module.buffers(False))):
            raise NotStackable(f"cannot stack {type(module).__name__} ({name})")
    out = Stack(net[0], to_layout(net[1], getattr(net[0], "memory_format", "contiguous")), k=len(models))
    if len(models) > 1 and check:
        key = (type(template[1]).__name__, tuple((n, tuple(t.shape)) for n, t in template.named_parameters()))
        if key not in _EXACT:  # the verdict depends on the architecture alone: checked once per process
            try:
                _check_exact(models)
                _EXACT[key] = None
            except NotStackable as exc:
                _EXACT[key] = str(exc)
        if _EXACT[key] is not None:
            raise NotStackable(_EXACT[key])
    return out


_EXACT: dict[tuple, str | None] = {}


@torch.no_grad()
def _check_exact(models: list[nn.Module]) -> None:
    """The stack's forward is the K networks' own, up to summation order; else NotStackable (a forward that
    mixes channels, which no module type reveals). Checked on copies whose weights are redrawn from a generator
    of their own (so the outputs are far from zero whatever the initialisation; the global RNG and the networks
    are untouched), on a random batch in eval mode."""
    g = torch.Generator().manual_seed(0)
    probes = [copy.deepcopy(m).cpu().eval() for m in models]
    for probe in probes:
        for name, t in probe.named_parameters():
            fan_in = t[0].numel() if t.dim() > 1 else 1
            t.copy_(
                torch.randn(t.shape, generator=g) / fan_in**0.5
                + (1.0 if name.endswith("weight") and t.dim() == 1 else 0.0)
            )
    size = _probe_size(models[0])
    x = torch.rand(2, probes[0][0].mean.shape[1], size, size, generator=g)
    together = stack(probes, check=False).eval()(x).float()
    alone = torch.stack([m(x).float() for m in probes], dim=1)
    if together.shape != alone.shape or float((together - alone).abs().max()) > 1e-4 * float(alone.abs().max()):
        raise NotStackable(f"{type(models[0][1]).__name__}'s forward mixes the networks' channels")


def _probe_size(model: nn.Module) -> int:
    """The image size the network was built for (`image_size` an mmtrack builder recorded), else 32."""
    return int(getattr(model, "image_size", 32))


RANDOM_IN_TRAINING = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "StochasticDepth")


def training_reason(models: list[nn.Module]) -> str | None:
    """Why these networks cannot be trained as one stack exactly (None: they can): a module stacking cannot
    express or a channel-mixing forward, or randomness in training (dropout, stochastic depth) that a stack would
    draw differently from the networks alone."""
    random = sorted(
        {type(m).__name__ for m in models[0].modules() if type(m).__name__ in RANDOM_IN_TRAINING and getattr(m, "p", 0)}
    )
    if random:
        return f"{', '.join(random)} draws randomness in training"
    try:
        stack(models)
    except (NotStackable, ValueError) as exc:
        return str(exc)
    return None


class SideBySide(nn.Module):
    """K networks that cannot be stacked, with a stack's interface: input (N, 3·K, H, W) (network k's images in
    channels 3k..3k+2) or (N, 3, H, W) (the same images for every network); output (N, K, classes). Each network
    runs on its own: the maths of each is its own, exactly."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.nets = nn.ModuleList(models)
        self.k = len(models)
        self.channels = models[0][0].mean.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.split(self.channels, dim=1) if x.shape[1] == self.channels * self.k else [x] * self.k
        return torch.stack([m(p) for m, p in zip(self.nets, parts)], dim=1)


def side_by_side(models: list[nn.Module]) -> nn.Module:
    """The K networks as one module of the stack's interface: stacked when they can be exactly, else side by
    side (inference: the same numbers either way, up to summation order)."""
    try:
        return stack(models)
    except (NotStackable, ValueError):
        return SideBySide(models)


def member_state(net: Stack, k: int, like: nn.Module) -> dict[str, torch.Tensor]:
    """Network k's state dict, cut from the stack's: each tensor is the slice along the one axis the stack
    widened K times (a StackedLinear's leading K axis; channels elsewhere); counters are shared."""
    own = like.state_dict()
    out = {}
    for key, t in net.state_dict().items():
        shape = own[key].shape
        if t.shape == shape:  # num_batches_tracked: every network took the same steps
            out[key] = t.clone()
        elif t.dim() == len(shape) + 1 and t.shape[0] == net.k:
            out[key] = t[k].clone()
        else:
            (axis,) = [d for d in range(t.dim()) if t.shape[d] != shape[d]]
            out[key] = t.narrow(axis, k * shape[axis], shape[axis]).clone()
    return out


@torch.no_grad()
def unstack(net: Stack | SideBySide, models: list[nn.Module]) -> list[nn.Module]:
    """Write the stack's slices into the K plain networks (of the architecture `stack` was given) and return
    them, in eval mode on the stack's device."""
    device = next(net.parameters()).device
    if isinstance(net, SideBySide):
        return [m.to(device).eval() for m in net.nets]
    for k, model in enumerate(models):
        model.load_state_dict(member_state(net, k, model))
        model.to(device).eval()
    return models


@functools.cache
def arch_reason(arch: str, num_classes: int, image_size: int, width: float) -> str | None:
    """`training_reason` of an architecture (two fresh networks; the global RNG is left as it was): why its seeds
    train one at a time, or None when they train as one stack."""
    from mmtrack.models.classifier import build_model

    state = torch.get_rng_state()
    try:
        return training_reason([build_model(arch, num_classes, image_size, width) for _ in range(2)])
    finally:
        torch.set_rng_state(state)
