"""`output_noise:λ` and `input_noise:λ`: privacy, accuracy with seeded noise on the logits or on the inputs
(see `mmtrack.interventions.specs` for the distributions)."""

from __future__ import annotations

import torch

from mmtrack.interventions.evaluator import Evaluator, _accuracy
from mmtrack.interventions.specs import metric_number


def output_noise(ev: Evaluator, lam: float):
    logits, labels = ev.test_logits, ev.data.test.labels
    name = f"acc/output_noise/{metric_number(lam)}"
    if lam == 0:
        ev._record(name[4:], logits.argmax(1))
        return {name: _accuracy(logits.argmax(1), labels)}, {name: len(labels)}
    g = torch.Generator().manual_seed(ev.s.noise_seed)
    vote = getattr(ev.model, "vote", None)
    if vote is not None:  # a voting ensemble: every member's released logits get the noise, then it votes
        members = ev.shared.cached(("member_logits", "test"), lambda: _member_logits(ev))
        noisy = (
            members + torch.empty(members.shape).exponential_(1.0 / lam, generator=g) for _ in range(ev.s.noise_draws)
        )
        with torch.no_grad():
            pred = torch.stack([vote(m.to(ev.device)).argmax(-1).cpu() for m in noisy])  # (draws, N)
        ev._record(name[4:], pred)
        return {name: float((pred == labels).float().mean())}, {name: len(labels)}
    noise = torch.empty((ev.s.noise_draws, *logits.shape)).exponential_(1.0 / lam, generator=g)
    pred = (logits.unsqueeze(0) + noise).argmax(-1)  # (draws, N)
    ev._record(name[4:], pred)
    return {name: float((pred == labels).float().mean())}, {name: len(labels)}


@torch.no_grad()
def _member_logits(ev: Evaluator) -> torch.Tensor:
    """Every member's logits (N, K, classes) on the test images."""
    chunks = ev.data.test.images.split(ev.s.batch_size)
    return torch.cat([ev.model.member_logits(c.to(ev.device).float().div(255)).float().cpu() for c in chunks])


def input_noise(ev: Evaluator, lam: float):
    test = ev.data.test
    name = f"acc/input_noise/{metric_number(lam)}"
    std = ev.input_std.cpu()  # the training images' per-channel std

    def noisy_batches():  # every draw of every batch, from one seeded generator: the same for every model
        g = torch.Generator().manual_seed(ev.s.noise_seed)
        for _ in range(ev.s.noise_draws):
            for images in test.images.split(ev.s.batch_size):
                if ev.s.input_noise_dist == "gaussian":
                    noise = torch.randn(images.shape, generator=g) * lam * std
                else:  # Laplace(0, 1) by inverse CDF, seeded; rand can return 0.0, where log1p(-2|u|) = -inf
                    u = torch.rand(images.shape, generator=g).clamp_min(2.0**-24) - 0.5
                    noise = -torch.sign(u) * torch.log1p(-2 * u.abs()) * lam * std
                yield images.float().div(255) + noise

    logits = ev.shared.logits(("input_noise", lam, ev.s.input_noise_dist), noisy_batches)[ev.member]
    ev._record(name[4:], logits.argmax(1).view(ev.s.noise_draws, len(test)))
    correct = int((logits.argmax(1) == test.labels.repeat(ev.s.noise_draws)).sum())
    return {name: correct / (ev.s.noise_draws * len(test))}, {name: len(test)}
