"""Intervention specs and evaluation settings: parsing and validation, no torch (so reading a study file or
`mmtrack sweep --dry-run` stays light). The evaluator that computes them is `mmtrack.interventions.evaluator`.

Accuracy under intervention (Ganesh, WACV 2024): every trustworthy metric as an accuracy on one scale.

Each intervention is named and parameterised by a spec string, evaluates a trained model (images in [0, 1]),
and yields MLflow metrics (fractions) under one namespace:

| spec                       | metric(s)                           | what                                          |
|----------------------------|-------------------------------------|-----------------------------------------------|
| `acc`                      | `acc`                               | clean test accuracy                           |
| `group[:attr[/value]]`     | `acc/group/<attr>/<value>`          | fairness: accuracy on one group's test images |
| `ood[:name]`               | `acc/ood/<name>`                    | robustness: accuracy on a registered OOD set  |
| `output_noise:λ[,λ…]`      | `acc/output_noise/<λ>`              | privacy: Exp(scale λ) noise on every logit    |
| `input_noise:λ[,λ…]`       | `acc/input_noise/<λ>`               | privacy: Laplace(scale λ·σ_c) noise on inputs |
| `pgd_linf:δ[,δ…]`          | `acc/pgd_linf/<δ>`                  | security: ART PGD, L∞ budget δ in pixel space |
| `mia[:rule_based|black_box]` | `mia/<attack>/accuracy|advantage|auc` | privacy risk: ART membership inference   |

Choices the paper leaves open (also logged as `eval.*` params):
- Output noise: λ is the *scale* (mean) of the exponential distribution, as the paper's Fig. 6 implies (larger
  λ, larger perturbation); noise is added to logits before the argmax; accuracy is averaged over
  `noise_draws` seeded draws.
- Input noise: Laplace noise (the symmetric, two-sided exponential: the DP Laplace mechanism) with scale
  λ·σ_c, where σ_c is the training images' per-channel std, i.e. scale λ in the model's standardised input
  units; no clipping; averaged over `noise_draws` seeded draws.
- PGD: ART's ProjectedGradientDescent (PyTorch back end), untargeted, `pgd_steps` iterations of step size
  2.5·δ/steps, no random start, on a fixed subset of `pgd_max_examples` test images (chosen with a fixed seed,
  the same for every run) so that evaluation costs less than training. δ = 0 is the clean accuracy on that
  subset (ART rejects a zero step size).
- MIA: members are training images, non-members test images, `mia_examples` of each (fixed seed). The
  rule-based attack calls an example a member when the model classifies it correctly; the black-box attack
  trains ART's attack model (`mia_attack_model`, random forest by default) on the model's probabilities for half
  of the members/non-members and is scored on the other half. advantage = TPR − FPR.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmtrack.errors import MMTrackError

if TYPE_CHECKING:
    from mmtrack.data import Dataset

MIA_ATTACKS = ("rule_based", "black_box")
INPUT_NOISE_DISTS = ("laplace", "gaussian")  # noise of scale λ·σ_c: Laplace(0, λσ) or Normal(0, λσ)
MIA_ATTACK_MODELS = ("rf", "gb", "nn", "lr", "dt", "knn", "svm")  # ART's MembershipInferenceBlackBox models
DEFAULT_SPECS = (
    "acc",
    "group",
    "ood",
    "output_noise:1,2,3,4,5",
    "input_noise:0.5,1",
    "pgd_linf:0.0001,0.0005,0.001,0.005,0.01",
    "mia",
)


@dataclass(frozen=True)
class EvalSettings:
    """How interventions are computed; logged as `eval.<name>` params."""

    noise_draws: int = 5
    noise_seed: int = 0
    input_noise_dist: str = "laplace"
    pgd_steps: int = 10
    pgd_step_ratio: float = 2.5  # step size = ratio * δ / steps
    pgd_random_start: bool = False
    pgd_max_examples: int = 500
    mia_examples: int = 1000
    mia_attack_model: str = "rf"
    subset_seed: int = 0
    batch_size: int = 1024
    # also store each example's predictions under output/input noise and PGD (predictions/<kind>/<value>.parquet)
    intervention_predictions: bool = False

    def __post_init__(self):
        """Bad settings fail where they are written (a study file, the command line), not in every run."""

        def check(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise MMTrackError(f"eval setting {name} must be {what}, got {getattr(self, name)!r}")

        def integer(x) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        for name in ("noise_draws", "pgd_steps", "pgd_max_examples", "mia_examples", "batch_size"):
            check(integer(getattr(self, name)) and getattr(self, name) > 0, name, "a positive integer")
        for name in ("noise_seed", "subset_seed"):
            check(integer(getattr(self, name)) and getattr(self, name) >= 0, name, "a non-negative integer")
        ratio = self.pgd_step_ratio
        check(
            isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and math.isfinite(ratio) and ratio > 0,
            "pgd_step_ratio",
            "a positive number",
        )
        check(isinstance(self.pgd_random_start, bool), "pgd_random_start", "true or false")
        check(isinstance(self.intervention_predictions, bool), "intervention_predictions", "true or false")
        check(self.input_noise_dist in INPUT_NOISE_DISTS, "input_noise_dist", f"one of {', '.join(INPUT_NOISE_DISTS)}")
        check(self.mia_attack_model in MIA_ATTACK_MODELS, "mia_attack_model", f"one of {', '.join(MIA_ATTACK_MODELS)}")

    def params(self) -> dict:
        return {f"eval.{k}": v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Kind:
    """One kind of intervention: what computes it (`module:function` in `mmtrack.interventions`, imported when
    first run, so this registry stays free of torch) and the arguments its spec takes."""

    compute: str  # e.g. "pgd:pgd_linf" -> mmtrack.interventions.pgd.pgd_linf(evaluator, arg) -> (metrics, counts)
    args: str = "names"  # "none"; "names" (optional, e.g. group:race/asian); "numbers" (at least one, >= 0); "choices"
    choices: tuple[str, ...] = ()  # the allowed names of "choices"
    max_value: float | None = None  # the largest allowed number of "numbers"
    unit: str = ""  # how a number is read, in the error for one too large


# The registry: one line per kind. A new intervention is one file in mmtrack/interventions/ and one line here.
KIND_REGISTRY: dict[str, Kind] = {
    "acc": Kind("accuracy:acc", args="none"),
    "group": Kind("group:group"),
    "ood": Kind("ood:ood"),
    "output_noise": Kind("noise:output_noise", args="numbers"),
    "input_noise": Kind("noise:input_noise", args="numbers"),
    "pgd_linf": Kind("pgd:pgd_linf", args="numbers", max_value=1, unit="budget δ is in [0, 1] pixel space"),
    "mia": Kind("mia:mia", args="choices", choices=MIA_ATTACKS),
}
KINDS = tuple(KIND_REGISTRY)


@dataclass(frozen=True)
class Intervention:
    kind: str
    arg: str | float | None = None  # group "attr/value" or "attr", OOD name, λ, δ, attack name

    def __str__(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{metric_number(self.arg)}"


def metric_number(x) -> str:
    """Numbers in metric names as written by users: 5, 0.5, 0.0001 (never 1e-04)."""
    if isinstance(x, float):
        return np.format_float_positional(x, trim="-")
    return str(x)


def parse(specs) -> list[Intervention]:
    """Parse spec strings like `pgd_linf:0.005,0.01` (several may be given; comma lists expand)."""
    out: list[Intervention] = []
    for spec in specs:
        kind, _, rest = str(spec).strip().partition(":")
        kind = kind.strip()
        if kind not in KIND_REGISTRY:
            raise MMTrackError(
                f"unknown intervention {kind!r}; choose one of: {', '.join(KIND_REGISTRY)} "
                "(e.g. pgd_linf:0.005, output_noise:5, group:race/asian)"
            )
        args = [a.strip() for a in rest.split(",") if a.strip()] if rest else []
        spec = KIND_REGISTRY[kind]
        if spec.args == "numbers":
            if not args:
                raise MMTrackError(f"intervention {kind} needs a value, e.g. {kind}:0.005")
            for a in args:
                try:
                    value = float(a)
                except ValueError:
                    raise MMTrackError(f"{kind} value {a!r} is not a number") from None
                if not math.isfinite(value) or value < 0:
                    raise MMTrackError(f"{kind} value must be a non-negative number, got {a}")
                if spec.max_value is not None and value > spec.max_value:
                    raise MMTrackError(f"{kind} {spec.unit}, got {a}")
                out.append(Intervention(kind, value))
        elif spec.args == "choices":
            for a in args or [None]:
                if a is not None and a not in spec.choices:
                    what = "MIA attack" if kind == "mia" else f"{kind} argument"
                    raise MMTrackError(f"unknown {what} {a!r}; choose one of: {', '.join(spec.choices)}")
                out.append(Intervention(kind, a))
        elif spec.args == "none":
            out.append(Intervention(kind))
        else:
            for a in args or [None]:
                out.append(Intervention(kind, a))
    return list(dict.fromkeys(out))


def check_available(interventions: list[Intervention], data: Dataset) -> None:
    """Fail early, with what exists, on groups or OOD sets the dataset does not have."""
    groups = data.group_split
    for iv in interventions:
        if iv.kind == "group" and iv.arg is not None:
            attr, _, value = str(iv.arg).partition("/")
            if value:
                groups.group_mask(attr, value)
            elif attr not in groups.group_values:
                groups.group_mask(attr, "")  # raises, listing the attributes
        if iv.kind == "ood" and iv.arg is not None and iv.arg not in data.ood:
            raise MMTrackError(f"unknown OOD set {iv.arg!r} for {data.name}; it has: {', '.join(data.ood) or 'none'}")
