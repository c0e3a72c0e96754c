"""Ensembles of trained models as one classifier: the mean of the members' softmax probabilities (deep
ensembles, Lakshminarayanan et al. 2017; over seeds, Black, Raghavan & Barocas 2022).

`Ensemble(members)` is an `nn.Module` like any single model mmtrack evaluates: its output is the log of the
mean of the members' softmax, so `argmax` is the ensemble's prediction, `softmax(output)` its probabilities, and
cross-entropy on the output is the ensemble's own loss. So every intervention, PGD through ART included, runs on
the ensemble itself, by the same `Evaluator` as a single model; for one member the output is that member's own
logits (whose softmax is the same distribution), so an ensemble of one scores exactly as its member. Members of one
architecture run as one stacked network (`mmtrack.models.stacking`), others one after the other.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmtrack.models import stacking


class Ensemble(nn.Module):
    """K trained models (Normalize -> network, see `mmtrack.models`) as one classifier. Input: (N, 3, H, W)
    floats in [0, 1]; output (N, classes): log of the mean of the K softmax distributions (K = 1: the member's
    logits)."""

    def __init__(self, members: list[nn.Module], stack: bool = True):
        """`stack`: members of one of mmtrack's architectures run as one stacked network (False: one after the
        other, e.g. for other modules)."""
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.k = len(members)
        self.net: nn.Module = nn.ModuleList(members) if self.k > 1 else members[0]
        self.stacked = False
        if stack and self.k > 1:
            try:
                self.net, self.stacked = stacking.stack(list(members)), True
            except (ValueError, TypeError):  # architectures differ: one after the other
                pass
        self.input_std = members[0][0].std  # Normalize's per-channel std (input noise is scaled by it)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, classes) of every member."""
        if self.stacked:
            return self.net(x)
        if isinstance(self.net, nn.ModuleList):
            return torch.stack([m(x) for m in self.net], dim=1)
        return self.net(x).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.k == 1:  # its softmax is the member's: the member's own logits, bit for bit
            return self.net(x)
        log_p = torch.log_softmax(self.member_logits(x).float(), dim=-1)
        return torch.logsumexp(log_p, dim=1) - math.log(self.k)


def mean_softmax(logits: torch.Tensor) -> torch.Tensor:
    """The combination rule by hand: the mean over members (dim 1) of their softmax, (N, classes)."""
    return torch.softmax(logits.float(), dim=-1).mean(dim=1)
