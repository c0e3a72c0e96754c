"""One training configuration: every training choice declared once (`PARAMS`: name, type, default, allowed values,
help, short form), and from that one table the `RunConfig`, its validation, the study schema's keys, the CLI
options, the MLflow params, the readable run names and the stable hash.

The paper's axes (lr, batch size, augmentation, optimizer, architecture) are params like the recipe's fixed
choices (weight decay, momentum, warm-up, label smoothing, ...): any of them can be held under a study's `fixed:`
or varied under `axes:`. Defaults are the recipe the embedded study was trained with, so its runs and hashes do
not change. Seeds: `seed` drives every source of randomness; `init_seed`, `order_seed`, `augment_seed`,
`data_seed` and `numerics_seed` (optional) override one source each (see README "Sources of randomness")."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from mmtrack.errors import MMTrackError
from mmtrack.models import catalog

ARCHS = catalog.RESNETS  # mmtrack's own; `arch` takes any of `models.catalog` (torchvision's, entry points) too
AUGMENTS = ("randaugment", "trivialaugment", "none")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("cosine", "linear", "constant")  # after the warm-up, stepped per batch
NOT_APPLICABLE = "n/a"  # the logged value of a param an architecture does not have (width); it matches any value


@dataclass(frozen=True)
class Param:
    """One training choice. `kind`: "positive" (a number > 0), "nonneg" (a number >= 0), "fraction" ([0, 1)),
    "count" (an integer > 0), "seed" (an integer >= 0), "size" (an integer >= 8), "choice" (one of `choices`),
    "flag" (a bool), "betas" ("b1,b2" with each in [0, 1)). `recipe`: one of the recipe's fixed choices (logged
    and hashed as part of the recipe). `optional`: None means "not set" (the dataset's image size, a seed source
    that follows `seed`). `short`: the label in run names (`lr=0.05`), `abbrev` shortens values there."""

    name: str
    kind: str
    default: Any
    help: str
    short: str = ""
    choices: tuple[str, ...] = ()
    recipe: bool = False
    optional: bool = False
    abbrev: tuple[tuple[Any, str], ...] = ()

    @property
    def type(self) -> type:
        return {"positive": float, "nonneg": float, "fraction": float, "flag": bool, "choice": str, "betas": str}.get(
            self.kind, int
        )


SEED_SOURCES = ("init", "order", "augment", "data", "numerics")  # each has a `<source>_seed` param

PARAMS: tuple[Param, ...] = (
    Param("dataset", "choice", "digits-skewed", "Dataset name (`mmtrack datasets` lists them).", "data"),
    Param(
        "arch",
        "choice",
        "resnet18",
        "Architecture: resnet18, resnet50, wide_resnet50_2 (width-scaled), or any torchvision.models classification "
        "builder, trained from scratch (`mmtrack archs` lists them).",
        "arch",
        abbrev=(("resnet18", "r18"), ("resnet50", "r50"), ("wide_resnet50_2", "wrn50")),
    ),
    Param(
        "width",
        "positive",
        0.125,
        "Channel-count factor of mmtrack's ResNets (1 = torchvision's widths); other architectures have none.",
        "w",
    ),
    Param("lr", "positive", 0.1, "Learning rate.", "lr"),
    Param("batch_size", "count", 128, "Batch size.", "bs"),
    Param(
        "augment",
        "choice",
        "randaugment",
        "Augmentation policy.",
        "aug",
        AUGMENTS,
        abbrev=(("randaugment", "ra"), ("trivialaugment", "ta")),
    ),
    Param("optimizer", "choice", "sgd", "Optimizer.", "opt", OPTIMIZERS),
    Param("epochs", "count", 20, "Training epochs.", "ep"),
    Param("seed", "seed", 0, "The seed behind every source of randomness (the *_seed params override one each).", "s"),
    Param("image_size", "size", None, "Image size in pixels (default: the dataset's).", "px", optional=True),
    # the recipe's fixed choices (the paper does not state them; README "Training recipe")
    Param("momentum", "fraction", 0.9, "SGD momentum.", "mom", recipe=True),
    Param(
        "weight_decay",
        "nonneg",
        2e-3,
        "Weight decay (L2, as torch.optim's weight_decay), SGD and Adam.",
        "wd",
        recipe=True,
    ),
    Param("nesterov", "flag", False, "Nesterov momentum (SGD).", "nesterov", recipe=True),
    Param(
        "lr_schedule",
        "choice",
        "cosine",
        "Learning-rate schedule after the warm-up, per batch.",
        "sched",
        LR_SCHEDULES,
        recipe=True,
    ),
    Param(
        "warmup_epochs",
        "nonneg",
        1.0,
        "Linear warm-up from 0 to lr over this many epochs (per batch).",
        "wu",
        recipe=True,
    ),
    Param("label_smoothing", "fraction", 0.0, "CrossEntropyLoss(label_smoothing=...).", "ls", recipe=True),
    Param(
        "zero_init_residual",
        "flag",
        False,
        "torchvision's zero_init_residual: the last BatchNorm of every residual branch starts at 0.",
        "zir",
        recipe=True,
    ),
    Param("adam_betas", "betas", "0.9,0.999", "Adam's betas, as 'b1,b2'.", "betas", recipe=True),
    Param(
        "augment_group",
        "count",
        8,
        "Consecutive images of a shuffled batch sharing one sampled augmentation op (1: per image).",
        "ag",
        recipe=True,
    ),
    # one source of randomness each: init, order and augment follow `seed` unless set; data and numerics are off
    # unless set (the whole training split; no perturbation)
    Param("init_seed", "seed", None, "Seed of the weight initialisation alone (default: seed).", "init", optional=True),
    Param("order_seed", "seed", None, "Seed of the batch order alone (default: seed).", "order", optional=True),
    Param(
        "augment_seed", "seed", None, "Seed of the augmentation draws alone (default: seed).", "augseed", optional=True
    ),
    Param(
        "data_seed",
        "seed",
        None,
        "Train on a bootstrap resample of the training split drawn with this seed (default: the whole split; the "
        "test and evaluation sets never change).",
        "data",
        optional=True,
    ),
    Param(
        "numerics_seed",
        "seed",
        None,
        "Move one initial weight, chosen by this seed, by one ulp (default: none).",
        "ulp",
        optional=True,
    ),
)
PARAM = {p.name: p for p in PARAMS}
RECIPE_FIXED = {"loss": "cross_entropy"}  # recipe entries no study may change
RECIPE = {**{p.name: p.default for p in PARAMS if p.recipe}, **RECIPE_FIXED}  # the default recipe (as logged)
SOURCE_PARAMS = tuple(f"{s}_seed" for s in SEED_SOURCES)
# What a study may vary under `axes:` (or hold under `fixed:`): the paper's axes first, in its table order (sheets
# keep it), then every other training choice. Not the dataset, and never a seed (seeds are rows).
PAPER_AXES = ("lr", "batch_size", "augment", "optimizer", "arch", "width")
AXES = PAPER_AXES + tuple(p.name for p in PARAMS if p.name not in (*PAPER_AXES, "dataset", "seed", *SOURCE_PARAMS))
# Parameters that define a configuration (and so its hash); evaluation settings are not among them.
TRAIN_PARAMS = ("dataset", "arch", "width", "lr", "batch_size", "augment", "optimizer", "epochs", "seed", "image_size")
# What a short run name may mention (the seed is always last), in this order.
NAME_KEYS = tuple(p.name for p in PARAMS if p.name not in ("dataset", "seed"))


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
    momentum: float = 0.9
    weight_decay: float = 2e-3
    nesterov: bool = False
    lr_schedule: str = "cosine"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    zero_init_residual: bool = False
    adam_betas: str = "0.9,0.999"
    augment_group: int = 8
    init_seed: int | None = None
    order_seed: int | None = None
    augment_seed: int | None = None
    data_seed: int | None = None
    numerics_seed: int | None = None

    def __post_init__(self):
        validate(self)

    def recipe(self) -> dict:
        return {**{p.name: getattr(self, p.name) for p in PARAMS if p.recipe}, **RECIPE_FIXED}

    def params(self) -> dict:
        """The MLflow params of this configuration: the training params, the recipe, and each seed source that is
        set (an unset one follows `seed` and is not logged)."""
        p = {name: getattr(self, name) for name in TRAIN_PARAMS}
        p["image_size"] = "default" if self.image_size is None else self.image_size
        if not catalog.has_width(self.arch):
            p["width"] = NOT_APPLICABLE
        sources = {name: getattr(self, name) for name in SOURCE_PARAMS if getattr(self, name) is not None}
        if len(sources) == 1:  # one source varied (design seed-sources): its name and seed, for the sheets
            ((name, value),) = sources.items()
            sources.update(source=name.removesuffix("_seed"), source_seed=value)
        return {**p, **self.recipe(), **sources}

    def source_seed(self, source: str) -> int | None:
        """The seed of one source of randomness: its own `<source>_seed` when set, else `seed` for init, order and
        augment; data and numerics are off unless set (None)."""
        own = getattr(self, f"{source}_seed")
        return own if own is not None or source in ("data", "numerics") else self.seed

    @property
    def hash(self) -> str:
        """Stable across processes and machines: sha256 of the canonical JSON of the training params (numbers
        normalised), the recipe and the seed sources that are set."""
        canon = {k: getattr(self, k) for k in TRAIN_PARAMS}
        canon["recipe"] = self.recipe()
        sources = {k: getattr(self, k) for k in SOURCE_PARAMS if getattr(self, k) is not None}
        if sources:  # absent when unset: the hashes of runs logged before the seed sources existed stay
            canon["sources"] = sources
        for name, value in [*canon.items(), *canon["recipe"].items()]:
            if name in PARAM and PARAM[name].type is float:
                (canon if name in canon else canon["recipe"])[name] = float(value)
        return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def stack_key(self) -> str:
        """What the seeds of one configuration share, and configurations trained together (stacked) must: the
        hash of every training param but the seed and the seed sources."""
        return self.replace(seed=0, **{k: None for k in SOURCE_PARAMS}).hash

    def short_name(self, reference: RunConfig | None = None) -> str:
        """The MLflow run name: what differs from `reference` (a study's default configuration; else mmtrack's
        defaults for this dataset) in short forms, then the seed, e.g. `default · s0`, `lr=0.05 · s1`,
        `aug=ta · s3`, `arch=r50 · s2`. It leads with what tells runs apart and stays short, so the runs
        table's truncation (about 22 characters) keeps the seed; `run_name` is the full description (tag
        `mmtrack.config_name`)."""
        ref = reference or RunConfig(dataset=self.dataset)
        diff = [short(PARAM[k], getattr(self, k)) for k in NAME_KEYS if getattr(self, k) != getattr(ref, k)]
        return f"{' '.join(diff) or 'default'} · s{self.seed}"

    @property
    def run_name(self) -> str:
        width = "" if self.width == 1 or not catalog.has_width(self.arch) else f"-w{self.width:g}"
        recipe = "".join(
            f"-{short(p, getattr(self, p.name)).replace('=', '')}"
            for p in PARAMS
            if (p.recipe or p.name in SOURCE_PARAMS) and getattr(self, p.name) != p.default
        )
        return (
            f"{self.arch}{width}-lr{self.lr:g}-bs{self.batch_size}-{self.augment}-{self.optimizer}"
            f"-e{self.epochs}{recipe}-s{self.seed}"
        )

    def replace(self, **changes) -> RunConfig:
        return RunConfig(**{**asdict(self), **changes})


# torchvision's architecture families in run names (`arch=shfv2_x0_5 · s0` keeps its seed within ~22 characters)
ARCH_FAMILIES = (
    ("shufflenet_v2_", "shfv2_"),
    ("mobilenet_v", "mbv"),
    ("efficientnet_", "effnet_"),
    ("wide_resnet", "wrn"),
    ("squeezenet", "sqz"),
    ("densenet", "dn"),
    ("convnext_", "cnx_"),
    ("regnet_", "reg"),
    ("resnext", "rnx"),
    ("inception_v3", "incv3"),
    ("googlenet", "goog"),
    ("mnasnet", "mnas"),
)


def short(param: Param, value) -> str:
    """A param's value as a run name shows it: `lr=0.05`, `aug=ta`, `nesterov`, `init=3`, `arch=mbv3_small`."""
    if param.kind == "flag":
        return param.short if value else f"no-{param.short}"
    shown = dict(param.abbrev).get(value, value)
    if param.name == "arch" and shown == value:
        shown = next((new + value[len(old) :] for old, new in ARCH_FAMILIES if value.startswith(old)), value)
    shown = f"{shown:g}" if isinstance(shown, float) else str(shown)
    return f"{param.short}={shown}"


def _allowed(param: Param) -> str:
    return {
        "positive": "a positive number",
        "nonneg": "a number >= 0",
        "fraction": "a number in [0, 1)",
        "count": "a positive integer",
        "seed": "a non-negative integer",
        "size": "an integer >= 8",
        "flag": "true or false",
        "betas": "'b1,b2' with each in [0, 1)",
    }.get(param.kind, "")


def check_value(param: Param, value) -> None:
    """One line naming the param and what it allows, when `value` does not fit."""
    if value is None and param.optional:
        return
    if param.kind == "choice":
        if param.name == "dataset":
            from mmtrack.data import check_dataset_name

            check_dataset_name(value)
        elif param.name == "arch":
            catalog.check(value)
        elif value not in param.choices:
            raise MMTrackError(f"unknown {param.name} {value!r}; choose one of: {', '.join(param.choices)}")
        return
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    ok = {
        "positive": is_number and math.isfinite(value) and value > 0,
        "nonneg": is_number and math.isfinite(value) and value >= 0,
        "fraction": is_number and 0 <= value < 1,
        "count": is_int and value > 0,
        "seed": is_int and value >= 0,
        "size": is_int and value >= 8,
        "flag": isinstance(value, bool),
        "betas": _betas_ok(value),
    }[param.kind]
    if not ok:
        raise MMTrackError(f"{param.name} must be {_allowed(param)}, got {value!r}")


def _betas_ok(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        betas = [float(b) for b in value.split(",")]
    except ValueError:
        return False
    return len(betas) == 2 and all(0 <= b < 1 for b in betas)


def validate(cfg: RunConfig) -> None:
    for f in fields(cfg):
        if f.name != "dataset":
            check_value(PARAM[f.name], getattr(cfg, f.name))
    if cfg.width != PARAM["width"].default and not catalog.has_width(cfg.arch):
        raise MMTrackError(
            f"width applies to mmtrack's ResNets ({', '.join(catalog.RESNETS)}) only; {cfg.arch} has none: leave "
            f"width at its default ({PARAM['width'].default:g})"
        )
    check_value(PARAM["dataset"], cfg.dataset)  # last: it may read a remembered declaration


def coerce(name: str, text: str):
    """A param's value from text (a CLI option, `mlflow run -P`): typed as the param declares; '' or 'none' for
    an optional one means unset. A value that does not parse fails with one line naming the param."""
    param = PARAM.get(name)
    if param is None:
        raise MMTrackError(f"unknown training parameter {name!r}; choose one of: {', '.join(PARAM)}")
    if param.optional and text.strip().lower() in ("", "none", "default"):
        return None
    try:
        if param.type is bool:
            if text.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.strip().lower() in ("true", "1", "yes")
        if param.type is int:
            number = float(text)
            return int(number) if number.is_integer() else number  # 20.0 from `mlflow run -P epochs=20`
        return param.type(text)
    except ValueError:
        raise MMTrackError(
            f"{name} must be {_allowed(param) or 'one of: ' + ', '.join(param.choices)}, got {text!r}"
        ) from None
