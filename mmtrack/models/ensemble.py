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


class SelectiveEnsemble(Ensemble):
    """A selective ensemble (Black, Leino & Fredrikson, ICLR 2022; Black, Raghavan & Barocas, FAccT 2022): the
    members vote (each its argmax); with n_A votes for the most voted class A and n_B for the runner-up, it
    answers A when a two-sided binomial test of n_A against n_A + n_B fair coin flips rejects at level `alpha`
    (`scipy.stats.binomtest`), and abstains otherwise. With K members the smallest p-value is 2·0.5^K: at
    alpha 0.05 it answers nothing with fewer than 6 members.

    Output (N, classes + 1), decisions as scores: A's column (answered) or the last column (abstained) holds
    `MARGIN` more than any other, so `argmax` is the decision and the abstain class is never a label: an accuracy
    counts abstentions as errors. Votes have no gradient: PGD attacks the mean-softmax ensemble (`attacked`) and
    this one decides on the perturbed images; output noise perturbs each member's logits before it votes
    (`vote`)."""

    MARGIN = 1000.0

    def __init__(self, members: list[nn.Module], alpha: float, stack: bool = True):
        from scipy.stats import binomtest

        super().__init__(members, stack)
        self.alpha = float(alpha)
        k = self.k
        answers = torch.zeros(k + 1, k + 1, dtype=torch.bool)  # [n_A, n_B] -> answer?
        for n_a in range(1, k + 1):
            for n_b in range(min(n_a, k - n_a) + 1):
                answers[n_a, n_b] = bool(binomtest(n_a, n_a + n_b, 0.5).pvalue <= self.alpha)
        self.register_buffer("answers", answers)

    @property
    def attacked(self) -> nn.Module:
        """What an attack's gradients come from: the same members, combined by their mean softmax."""
        return _MeanSoftmax(self)

    def vote(self, member_logits: torch.Tensor) -> torch.Tensor:
        """Decision scores (N, classes + 1) from the members' logits (N, K, classes)."""
        n_classes = member_logits.shape[-1]
        votes = nn.functional.one_hot(member_logits.argmax(-1), n_classes).sum(1)  # (N, classes)
        top = votes.topk(min(2, n_classes), dim=1)
        n_b = top.values[:, 1] if n_classes > 1 else torch.zeros_like(top.values[:, 0])
        answer = self.answers[top.values[:, 0], n_b]
        choice = torch.where(answer, top.indices[:, 0], torch.full_like(answer, n_classes, dtype=torch.long))
        return nn.functional.one_hot(choice, n_classes + 1).float() * self.MARGIN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vote(self.member_logits(x).float())


class _MeanSoftmax(nn.Module):
    """A selective ensemble's members as the plain (mean-softmax) ensemble, sharing its modules."""

    def __init__(self, ensemble: Ensemble):
        super().__init__()
        object.__setattr__(self, "ensemble", ensemble)  # not a submodule: no second copy in the module tree

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Ensemble.forward(self.ensemble, x)
