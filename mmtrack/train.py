"""Training one configuration: pure PyTorch, no MLflow. The data stays in memory as uint8 tensors on the
model's device; each step indexes a shuffled batch, augments it and converts it to [0, 1] floats."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mmtrack import settings
from mmtrack.config import RECIPE, RunConfig
from mmtrack.data import Dataset
from mmtrack.models import build_model, channel_stats


def pick_device() -> torch.device:
    """CUDA when present, else CPU; MMTRACK_DEVICE overrides (e.g. `cpu`)."""
    name = settings.device_name()
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """One seed controls all randomness: initialisation, data order and augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Augmenter:
    """torchvision.transforms.v2 RandAugment / TrivialAugmentWide on uint8 batches.

    v2 auto-augment policies sample one op per call and apply it to the whole tensor, so a call on a whole
    batch would give every image the same op. We call it once per group of `group` consecutive images of the
    shuffled batch: every group gets an independently sampled op and magnitude, at batch-level cost. With
    `group=1` this is the textbook per-image policy (slower on CPU)."""

    def __init__(self, name: str, group: int = RECIPE["augment_group"]):
        from torchvision.transforms import v2

        self.group = group
        self.transform = {"randaugment": v2.RandAugment, "trivialaugment": v2.TrivialAugmentWide}[name]()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.transform(chunk) for chunk in batch.split(self.group)])


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_acc: float
    seconds: float


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=RECIPE["momentum"],
            weight_decay=RECIPE["weight_decay"],
            nesterov=RECIPE["nesterov"],
        )
    betas = tuple(float(b) for b in RECIPE["adam_betas"].split(","))
    return torch.optim.Adam(params, lr=cfg.lr, betas=betas, weight_decay=RECIPE["weight_decay"])


def lr_factor(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """The learning-rate multiplier at each step: linear warm-up over `warmup_steps`, then cosine to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return factor


def train_model(
    cfg: RunConfig,
    data: Dataset,
    device: torch.device | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> nn.Module:
    """Train `cfg` on `data` from scratch and return the model (in eval mode)."""
    device = device or pick_device()
    seed_everything(cfg.seed)
    mean, std = channel_stats(data.train.images)
    model = build_model(
        cfg.arch,
        data.num_classes,
        data.image_size,
        cfg.width,
        mean,
        std,
        zero_init_residual=RECIPE["zero_init_residual"],
    ).to(device)
    x, y = data.train.images.to(device), data.train.labels.to(device)
    augment = Augmenter(cfg.augment) if cfg.augment != "none" else None
    optimizer = make_optimizer(cfg, model.parameters())
    loss_fn = nn.CrossEntropyLoss(label_smoothing=RECIPE["label_smoothing"])
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(y)
    n_used = n if n % cfg.batch_size != 1 else n - 1  # a batch of one image breaks BatchNorm
    steps_per_epoch = math.ceil(n_used / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(steps_per_epoch * cfg.epochs, round(RECIPE["warmup_epochs"] * steps_per_epoch))
    )
    for epoch in range(cfg.epochs):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen)[:n_used].to(device)
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for idx in perm.split(cfg.batch_size):
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb)
            logits = model(xb.float().div_(255))
            loss = loss_fn(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
        stats = EpochStats(epoch, total_loss.item() / n_used, correct.item() / n_used, time.perf_counter() - start)
        if not np.isfinite(stats.train_loss):
            raise FloatingPointError(f"training diverged at epoch {epoch}: train_loss is {stats.train_loss}")
        if on_epoch is not None:
            on_epoch(stats)
    model.eval()
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, C) for uint8 images, batched on the model's device, returned on the CPU."""
    device = next(model.parameters()).device
    model.eval()
    out = [model(chunk.to(device).float().div_(255)).float().cpu() for chunk in images.split(batch_size)]
    return torch.cat(out) if out else torch.empty(0)
