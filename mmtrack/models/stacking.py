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
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mmtrack.models import Normalize, to_layout


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


def stack(models: list[nn.Sequential]) -> Stack:
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
            raise TypeError(f"cannot stack {type(module).__name__} ({name})")
    return Stack(net[0], to_layout(net[1], getattr(net[0], "memory_format", "contiguous")), k=len(models))


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
def unstack(net: Stack, models: list[nn.Module]) -> list[nn.Module]:
    """Write the stack's slices into the K plain networks (of the architecture `stack` was given) and return
    them, in eval mode on the stack's device."""
    device = next(net.parameters()).device
    for k, model in enumerate(models):
        model.load_state_dict(member_state(net, k, model))
        model.to(device).eval()
    return models
