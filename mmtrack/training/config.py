"""One training configuration: the axes of multiplicity, the recipe's fixed choices, validation, a stable
hash and a readable run name."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from mmtrack.errors import MMTrackError

ARCHS = ("resnet18", "resnet50", "wide_resnet50_2")  # models.ARCHS builds each; execution.queue.ARCH_COST prices each
AXES = ("lr", "batch_size", "augment", "optimizer", "arch", "width")  # axes of multiplicity, in the paper's table order
AUGMENTS = ("randaugment", "trivialaugment", "none")
OPTIMIZERS = ("sgd", "adam")

# The recipe's fixed choices (the paper does not state them; see README "Training recipe"). Logged as params.
RECIPE = {
    "momentum": 0.9,  # SGD
    "weight_decay": 2e-3,  # SGD and Adam (L2, as torch.optim's weight_decay)
    "nesterov": False,
    "lr_schedule": "cosine",  # cosine annealing to 0 over all steps after the warm-up, stepped per batch
    "warmup_epochs": 1.0,  # linear warm-up from 0 to lr over this many epochs (per batch)
    "label_smoothing": 0.0,  # CrossEntropyLoss(label_smoothing=...)
    "zero_init_residual": False,  # torchvision's: the last BatchNorm of every residual branch starts at 0
    "adam_betas": "0.9,0.999",
    "loss": "cross_entropy",
    "augment_group": 8,  # consecutive images of a shuffled batch sharing one sampled augmentation op
}

# What a short run name may mention (the seed is always last).
NAME_KEYS = ("dataset", "arch", "width", "lr", "batch_size", "augment", "optimizer", "epochs", "image_size")

# Parameters that define a configuration (and so its hash); evaluation settings are not among them.
TRAIN_PARAMS = ("dataset", "arch", "width", "lr", "batch_size", "augment", "optimizer", "epochs", "seed", "image_size")


@dataclass(frozen=True)
class RunConfig:
    dataset: str = "digits-skewed"
    arch: str = "resnet18"
    width: float = 0.125
    lr: float = 0.1
    batch_size: int = 128
    augment: str = "randaugment"
    optimizer: str = "sgd"
    epochs: int = 20
    seed: int = 0
    image_size: int | None = None  # None: the dataset's default

    def __post_init__(self):
        validate(self)

    def params(self) -> dict:
        """The MLflow params of this configuration (training axes plus the fixed recipe)."""
        p = {f.name: getattr(self, f.name) for f in fields(self)}
        p["image_size"] = "default" if self.image_size is None else self.image_size
        return {**p, **RECIPE}

    @property
    def hash(self) -> str:
        """Stable across processes and machines: sha256 of the canonical JSON of the training params."""
        canon = {k: getattr(self, k) for k in TRAIN_PARAMS}
        canon["lr"] = float(self.lr)
        canon["width"] = float(self.width)
        canon["recipe"] = RECIPE
        return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def stack_key(self) -> str:
        """What the seeds of one configuration share, and configurations trained together (stacked) must: the
        hash of every training param but the seed."""
        return self.replace(seed=0).hash

    def short_name(self, reference: RunConfig | None = None) -> str:
        """The MLflow run name: what differs from `reference` (a study's default configuration; else mmtrack's
        defaults for this dataset), then the seed, e.g. `default · s0`, `lr=0.05 · s1`, `arch=resnet50 · s2`.
        It leads with what tells runs apart, so the runs table's truncation keeps it; `run_name` is the full
        description (tag `mmtrack.config_name`)."""
        ref = reference or RunConfig(dataset=self.dataset)
        diff = [
            f"{k}={getattr(self, k):g}" if isinstance(getattr(self, k), float) else f"{k}={getattr(self, k)}"
            for k in NAME_KEYS
            if getattr(self, k) != getattr(ref, k)
        ]
        return f"{' '.join(diff) or 'default'} · s{self.seed}"

    @property
    def run_name(self) -> str:
        width = "" if self.width == 1 else f"-w{self.width:g}"
        return (
            f"{self.arch}{width}-lr{self.lr:g}-bs{self.batch_size}-{self.augment}-{self.optimizer}"
            f"-e{self.epochs}-s{self.seed}"
        )

    def replace(self, **changes) -> RunConfig:
        return RunConfig(**{**asdict(self), **changes})


def validate(cfg: RunConfig) -> None:
    from mmtrack.data import check_dataset_name

    def allowed(name, value, choices):
        if value not in choices:
            raise MMTrackError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")

    allowed("arch", cfg.arch, ARCHS)
    allowed("augment", cfg.augment, AUGMENTS)
    allowed("optimizer", cfg.optimizer, OPTIMIZERS)
    for name in ("lr", "width"):
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise MMTrackError(f"{name} must be a positive number, got {value!r}")
    for name in ("batch_size", "epochs"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise MMTrackError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or cfg.seed < 0:
        raise MMTrackError(f"seed must be a non-negative integer, got {cfg.seed!r}")
    if cfg.image_size is not None and (not isinstance(cfg.image_size, int) or cfg.image_size < 8):
        raise MMTrackError(f"image_size must be an integer >= 8, got {cfg.image_size!r}")
    check_dataset_name(cfg.dataset)
