"""Training one configuration (`train_model`) or the seeds of one configuration as one stacked network
(`train_models`): pure PyTorch, no MLflow. The data stays in memory as uint8 tensors on the
model's device; each step indexes a shuffled batch, augments it and converts it to [0, 1] floats."""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mmtrack.data import Dataset
from mmtrack.models import build_model, channel_stats, stacking
from mmtrack.training.config import RunConfig
from mmtrack.training.device import pick_device, precision, precision_context  # noqa: F401 - re-exported

log = logging.getLogger("mmtrack")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (initialisation draws from torch's; the augmentation
    stream continues from it unless `augment_seed` starts its own)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Augmenter:
    """torchvision.transforms.v2 RandAugment / TrivialAugmentWide on uint8 batches.

    v2 auto-augment policies sample one op per call and apply it to the whole tensor, so a call on a whole
    batch would give every image the same op. We call it once per group of `group` consecutive images of the
    shuffled batch: every group gets an independently sampled op and magnitude, at batch-level cost. With
    `group=1` this is the textbook per-image policy (slower on CPU)."""

    def __init__(self, name: str, group: int = 8):
        from torchvision.transforms import v2

        self.group = group
        self.transform = {"randaugment": v2.RandAugment, "trivialaugment": v2.TrivialAugmentWide}[name]()
        self.num_ops = getattr(self.transform, "num_ops", 1)  # RandAugment: 2 ops in a row; TrivialAugment: 1
        self.fixed_magnitude = isinstance(self.transform, v2.RandAugment)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """One call of the torchvision policy per group (the reference `sample` + `apply` reproduce exactly)."""
        return torch.cat([self.transform(chunk) for chunk in batch.split(self.group)])

    def sample(self, batch: torch.Tensor) -> list[list[tuple[str, float]]]:
        """For each group of `batch`, the ops and magnitudes the policy draws, drawn from torch's global generator
        exactly as its own call on that group does (so `apply` gives the same images and leaves the generator
        where the calls would)."""
        t, (h, w) = self.transform, batch.shape[-2:]
        plans = []
        for _ in range(math.ceil(len(batch) / self.group)):
            ops = []
            for _ in range(self.num_ops):
                transform_id, (magnitudes_fn, signed) = t._get_random_item(t._AUGMENTATION_SPACE)
                magnitudes = magnitudes_fn(t.num_magnitude_bins, h, w)
                if magnitudes is None:
                    magnitude = 0.0
                else:
                    # RandAugment: its fixed magnitude bin; TrivialAugmentWide: a bin drawn per call
                    index = t.magnitude if self.fixed_magnitude else int(torch.randint(t.num_magnitude_bins, ()))
                    magnitude = float(magnitudes[index])
                    if signed and torch.rand(()) <= 0.5:
                        magnitude *= -1
                ops.append((transform_id, magnitude))
            plans.append(ops)
        return plans

    def apply(self, batches: list[torch.Tensor], plans: list[list[list[tuple[str, float]]]]) -> list[torch.Tensor]:
        """The sampled ops on the batches of every model at once: for each op slot, the groups (of any model) that
        drew the same op and magnitude go through one torchvision call (the ops act image by image, so this is
        each group's own call, image for image), instead of one call per group per model."""
        out = [b.clone() for b in batches]
        groups = [
            (k, g * self.group, min(len(b), (g + 1) * self.group), ops)
            for k, (b, plan) in enumerate(zip(batches, plans))
            for g, ops in enumerate(plan)
        ]
        t = self.transform
        for slot in range(self.num_ops):
            buckets: dict[tuple[str, float], list[tuple[int, int, int]]] = {}
            for k, start, end, ops in groups:
                buckets.setdefault(ops[slot], []).append((k, start, end))
            for (transform_id, magnitude), where in buckets.items():
                if transform_id == "Identity":
                    continue
                images = torch.cat([out[k][start:end] for k, start, end in where])
                images = t._apply_image_or_video_transform(
                    images, transform_id, magnitude, interpolation=t.interpolation, fill=t._fill
                )
                offset = 0
                for k, start, end in where:
                    out[k][start:end] = images[offset : offset + end - start]
                    offset += end - start
        return out


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
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.nesterov,
        )
    betas = tuple(float(b) for b in cfg.adam_betas.split(","))
    return torch.optim.Adam(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)


def lr_factor(total_steps: int, warmup_steps: int, schedule: str = "cosine") -> Callable[[int], float]:
    """The learning-rate multiplier at each step: linear warm-up over `warmup_steps`, then `schedule` (cosine
    or linear to 0, or constant)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "constant":
            return 1.0
        if schedule == "linear":
            return 1.0 - t
        return 0.5 * (1 + math.cos(math.pi * t))

    return factor


def train_model(
    cfg: RunConfig,
    data: Dataset,
    device: torch.device | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> nn.Module:
    """Train `cfg` on `data` from scratch and return the model (in eval mode)."""
    (model,) = train_models([cfg], data, device, None if on_epoch is None else lambda _k, stats: on_epoch(stats))
    if isinstance(model, Exception):
        raise model
    return model


def same_but_seed(cfgs: list[RunConfig]) -> bool:
    """True when the configurations differ in their seeds only (`seed` and the seed sources; the ones
    `train_models` can stack), and no two are the same."""
    return len({cfg.stack_key for cfg in cfgs}) == 1 and len({cfg.hash for cfg in cfgs}) == len(cfgs)


def alone_reason(cfg: RunConfig, data: Dataset) -> str | None:
    """Why the seeds of `cfg` cannot train as one stack exactly (`stacking.arch_reason`), or None."""
    return stacking.arch_reason(cfg.arch, data.num_classes, data.image_size, cfg.width)


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in str(exc) or "can't allocate memory" in str(exc))
    )


def train_models(
    cfgs: list[RunConfig],
    data: Dataset,
    device: torch.device | None = None,
    on_epoch: Callable[[int, EpochStats], None] | None = None,
) -> list[nn.Module | Exception]:
    """Train configurations that differ only in their seed, together as one stacked network (`mmtrack.models.stacking`),
    and return model k of `cfgs[k]` (in eval mode), or the error it stopped on (a model whose loss diverged
    stops being reported; the others train on: their channels never mix).

    Model k is the model `train_model(cfgs[k])` trains, up to floating-point summation order: its own
    initialisation (drawn after `seed_everything` of its init seed, then nudged by one ulp when its numerics seed
    is set), its own training sample (the split, or a bootstrap resample drawn with its data seed), its own data
    order (a generator seeded with its order seed) and its own augmentation draws (the global RNG stream that its
    init seed continues, or its augment seed starts, saved and restored around each of its augmentations). `on_epoch(k, stats)` reports model k's epochs. When the stack does not fit in memory before
    its first epoch ends, it is trained in halves (one warning line each time)."""
    if not same_but_seed(cfgs):
        raise ValueError("train_models stacks configurations that differ only in their (distinct) seeds")
    device = device or pick_device()
    if len(cfgs) > 1 and (why := alone_reason(cfgs[0], data)) is not None:  # one seed at a time, exactly
        log.info("%s: training %d seeds one at a time (%s)", cfgs[0].arch, len(cfgs), why)
        out: list[nn.Module | Exception] = []
        for k, cfg in enumerate(cfgs):
            report_k = None if on_epoch is None else functools.partial(lambda k, _j, stats: on_epoch(k, stats), k)
            out += train_models([cfg], data, device, report_k)
        return out
    reported = [False]

    def report(k: int, stats: EpochStats) -> None:
        reported[0] = True
        if on_epoch is not None:
            on_epoch(k, stats)

    try:
        return _train_stacked(cfgs, data, device, report)
    except Exception as exc:  # noqa: BLE001 - only running out of memory before any epoch is retried
        if len(cfgs) == 1 or reported[0] or not is_out_of_memory(exc):
            raise
    if device.type == "cuda":
        torch.cuda.empty_cache()
    half = (len(cfgs) + 1) // 2
    log.warning(
        "%d models stacked do not fit in %s memory; training them in groups of %d", len(cfgs), device.type, half
    )
    first = train_models(cfgs[:half], data, device, on_epoch)
    return first + train_models(
        cfgs[half:], data, device, None if on_epoch is None else lambda k, stats: on_epoch(k + half, stats)
    )


class StackTrainer:
    """The training state of configurations that differ only in their seed: their models (stacked when more
    than one), one optimizer and learning-rate schedule over the stack, each seed's data order and
    augmentation stream. `epoch()` trains one epoch; `models()` gives the plain models back."""

    def __init__(self, cfgs: list[RunConfig], data: Dataset, device: torch.device):
        self.cfg, self.k, self.device = cfgs[0], len(cfgs), device
        mean, std = channel_stats(data.train.images)
        self.plain, self.streams = [], []
        for c in cfgs:
            seed_everything(c.source_seed("init"))
            model = build_model(
                c.arch,
                data.num_classes,
                data.image_size,
                c.width,
                mean,
                std,
                zero_init_residual=c.zero_init_residual,
            )
            self.plain.append(perturb_one_weight(model, c.numerics_seed) if c.numerics_seed is not None else model)
            if c.augment_seed is not None:  # its own augmentation stream
                seed_everything(c.augment_seed)
            self.streams.append(torch.get_rng_state())  # the augmentation draws of this model continue from here
        self.net = (self.plain[0] if self.k == 1 else stacking.stack(self.plain)).to(device)
        self.x, self.y = data.train.images.to(device), data.train.labels.to(device)
        self.augment = Augmenter(self.cfg.augment, self.cfg.augment_group) if self.cfg.augment != "none" else None
        self.optimizer = make_optimizer(self.cfg, self.net.parameters())
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=self.cfg.label_smoothing)
        self.gens = [torch.Generator().manual_seed(c.source_seed("order")) for c in cfgs]
        n, bs = len(self.y), self.cfg.batch_size
        # each model's training sample: the split itself, or a bootstrap resample (data_seed) of the same size
        self.samples = [bootstrap(n, c.data_seed, device) if c.data_seed is not None else None for c in cfgs]
        self.n_used = n if n % bs != 1 else n - 1  # a batch of one image breaks BatchNorm
        self.steps_per_epoch = math.ceil(self.n_used / bs)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_factor(
                self.steps_per_epoch * self.cfg.epochs,
                round(self.cfg.warmup_epochs * self.steps_per_epoch),
                self.cfg.lr_schedule,
            ),
        )
        self.autocast = precision_context(device)

    def batches(self) -> list[tuple[torch.Tensor, ...]]:
        """One epoch's batches: per step, each model's indices into the training images (its own order)."""
        perms = [torch.randperm(len(self.y), generator=g)[: self.n_used].to(self.device) for g in self.gens]
        perms = [p if sample is None else sample[p] for p, sample in zip(perms, self.samples)]
        return list(zip(*(p.split(self.cfg.batch_size) for p in perms)))

    def step(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step of every model on its batch: (per-model loss (K), per-model correct (K))."""
        images = [self.x[idx] for idx in batch]
        if self.augment is not None:  # each model's draws from its own stream, then every op once for all
            plans = []
            for j, xb in enumerate(images):
                torch.set_rng_state(self.streams[j])
                plans.append(self.augment.sample(xb))
                self.streams[j] = torch.get_rng_state()
            images = self.augment.apply(images, plans)
        yb = torch.stack([self.y[idx] for idx in batch], 1)  # (B, K)
        with self.autocast:
            logits = self.net(torch.cat(images, 1).float().div_(255))
            logits = logits.unsqueeze(1) if self.k == 1 else logits  # (B, K, classes)
            losses = torch.stack([self.loss_fn(logits[:, j].float(), yb[:, j]) for j in range(self.k)])
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        self.optimizer.step()
        self.scheduler.step()
        return losses.detach() * len(yb), (logits.detach().argmax(-1) == yb).sum(0)

    def epoch(self) -> tuple[list[float], list[float], float]:
        """Train one epoch: per-model mean train loss and accuracy, and the wall seconds."""
        start = time.perf_counter()
        self.net.train()
        total_loss = torch.zeros(self.k, device=self.device)
        correct = torch.zeros(self.k, device=self.device, dtype=torch.long)
        for batch in self.batches():
            loss, right = self.step(batch)
            total_loss += loss
            correct += right
        return (total_loss / self.n_used).tolist(), (correct / self.n_used).tolist(), time.perf_counter() - start

    def models(self) -> list[nn.Module]:
        self.net.eval()
        return [self.plain[0].eval()] if self.k == 1 else stacking.unstack(self.net, self.plain)


def bootstrap(n: int, seed: int, device: torch.device) -> torch.Tensor:
    """A bootstrap resample of n training images: n indices drawn with replacement by a generator of `seed`."""
    return torch.randint(0, n, (n,), generator=torch.Generator().manual_seed(seed)).to(device)


@torch.no_grad()
def perturb_one_weight(model: nn.Module, seed: int) -> nn.Module:
    """The numerics source: one initial weight, chosen by `seed` among every parameter's elements, moved by one
    ulp (to the next float32 towards +inf). Summers & Dinneen (ICML 2021) find that this alone spreads results
    as far as a new seed."""
    params = [p for p in model.parameters() if p.numel()]
    sizes = torch.tensor([p.numel() for p in params])
    g = torch.Generator().manual_seed(seed)
    flat = int(torch.randint(0, int(sizes.sum()), (1,), generator=g))
    i = int(torch.searchsorted(sizes.cumsum(0), flat, right=True))
    p = params[i]
    idx = flat - int(sizes[:i].sum())
    view = p.view(-1) if p.is_contiguous() else p.reshape(-1)
    value = view[idx].clone()
    view[idx] = torch.nextafter(value, torch.tensor(float("inf"), dtype=value.dtype))
    if not p.is_contiguous():  # channels-last weights: write the element back through the strided tensor
        p.copy_(view.reshape(p.shape))
    return model


def _train_stacked(
    cfgs: list[RunConfig], data: Dataset, device: torch.device, on_epoch: Callable[[int, EpochStats], None]
) -> list[nn.Module | Exception]:
    trainer = StackTrainer(cfgs, data, device)
    errors: list[Exception | None] = [None] * len(cfgs)
    for epoch in range(trainer.cfg.epochs):
        losses, accs, seconds = trainer.epoch()
        for j in range(len(cfgs)):
            if errors[j] is not None:
                continue
            if not np.isfinite(losses[j]):
                errors[j] = FloatingPointError(f"training diverged at epoch {epoch}: train_loss is {losses[j]}")
                continue
            on_epoch(j, EpochStats(epoch, losses[j], accs[j], seconds))
        if all(e is not None for e in errors):
            break
    return [err if err is not None else model for err, model in zip(errors, trainer.models())]


def step_seconds(cfgs: list[RunConfig], data: Dataset, device: torch.device, steps: int = 3) -> tuple[float, int]:
    """Seconds per training step of these configurations stacked (`steps` steps after one warm-up step, timed
    together: one synchronisation at the end, as training has none per step), and the steps of one epoch: what
    `mmtrack sweep --estimate` projects from."""
    trainer = StackTrainer(cfgs, data, device)
    trainer.net.train()
    batches = trainer.batches()
    batches = (batches * (steps + 1))[: steps + 1]
    trainer.step(batches[0])
    _sync(device)
    start = time.perf_counter()
    for batch in batches[1:]:
        trainer.step(batch)
    _sync(device)
    return (time.perf_counter() - start) / steps, trainer.steps_per_epoch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
