"""`mmtrack sweep STUDY --estimate`: what the study will cost on this machine, measured, before it runs.

For each configuration (its seeds stacked as the sweep would stack them) it times a few training steps on the
study's real data and device, and one stacked forward pass over the test images; it projects from those:

- training: seconds per step x steps per epoch x epochs, for each stack of seeds;
- evaluation: forward passes (test, group and OOD images; input noise: every draw of the test images) at the
  measured forward cost per image, plus PGD (`pgd_max_examples` x (`pgd_steps` + 1) forward and backward
  passes per budget and model, at the measured training cost per image) — membership inference and logging
  are left out (seconds per run on the embedded study);
- the wall time: the sum over stacks divided by the workers (each timed with its share of the threads).

It is a projection: the tail (the last stack finishing alone) and the start-up are not in it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmtrack.study import Study
from mmtrack.training.config import RunConfig


@dataclass
class StackEstimate:
    config: RunConfig  # the first seed's
    seeds: int
    step_seconds: float
    steps: int  # per epoch
    train_seconds: float
    eval_seconds: float

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.eval_seconds


def stacks(study: Study, stack: int = 0) -> list[list[RunConfig]]:
    """The study's configurations in the groups a sweep trains together (at most `stack` seeds; 0: all)."""
    groups: dict[str, list[RunConfig]] = {}
    for cfg in study.configs():
        groups.setdefault(cfg.stack_key, []).append(cfg)
    size = stack or max(len(g) for g in groups.values())
    return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]


def estimate(
    study: Study, workers: int = 1, stack: int = 0, data_dir: str | None = None, threads: int = 1, device=None
):
    """One `StackEstimate` per stack of the study (a configuration's seeds, split by `stack`; stacks of one
    size of one configuration are timed once), and the projected wall seconds with `workers` workers, each
    timed with `threads` torch threads, on `device` (None: the default device)."""
    import torch

    from mmtrack.data import load_dataset
    from mmtrack.interventions import SharedForward, parse
    from mmtrack.training.device import use_device
    from mmtrack.training.train import step_seconds

    device = use_device(device)
    ivs = parse(study.interventions)
    settings = study.eval_settings()
    out: list[StackEstimate] = []
    timed: dict[tuple[str, int], StackEstimate] = {}
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        for group in stacks(study, stack):
            cfg, k = group[0], len(group)
            if (cfg.stack_key, k) not in timed:
                data = load_dataset(cfg.dataset, data_dir, cfg.image_size)
                per_step, steps = step_seconds(group, data, device)
                train = per_step * steps * cfg.epochs
                shared = SharedForward(_untrained(group, data, device), settings.batch_size)
                sample = data.test.images[: min(len(data.test), settings.batch_size)]
                start = _now(device)
                shared.of_images("estimate", sample)
                per_image = (_now(device) - start) / max(1, len(sample))  # all K models
                images = 0
                per_image_grad = per_step / cfg.batch_size  # all K models, forward and backward
                pgd = 0.0
                for iv in ivs:
                    if iv.kind in ("acc", "output_noise"):
                        images += len(data.test) if iv.kind == "acc" else 0
                    elif iv.kind == "group":
                        images += len(data.group_split) if data.group_test is not None else 0
                    elif iv.kind == "ood":
                        images += sum(len(s) for name, s in data.ood.items() if iv.arg in (None, name))
                    elif iv.kind == "input_noise":
                        images += settings.noise_draws * len(data.test)
                    elif iv.kind == "pgd_linf" and float(iv.arg or 0) > 0:
                        n = min(settings.pgd_max_examples, len(data.test))
                        pgd += n * (settings.pgd_steps + 1) * per_image_grad  # each model on its own: K x 1/K
                timed[(cfg.stack_key, k)] = StackEstimate(cfg, k, per_step, steps, train, images * per_image + pgd)
            t = timed[(cfg.stack_key, k)]
            out.append(StackEstimate(cfg, k, t.step_seconds, t.steps, t.train_seconds, t.eval_seconds))
    finally:
        torch.set_num_threads(previous)
    return out, sum(e.seconds for e in out) / max(1, workers)


def _untrained(group: list[RunConfig], data, device):
    from mmtrack.models import build_model, channel_stats

    mean, std = channel_stats(data.train.images[:256])
    return [build_model(c.arch, data.num_classes, data.image_size, c.width, mean, std).to(device) for c in group]


def _now(device) -> float:
    import time

    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
