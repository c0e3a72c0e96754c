"""Accuracy under intervention (Ganesh, WACV 2024): every trustworthy metric as an accuracy on one scale.

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
import numpy as np
import torch
from torch import nn

from mmtrack.datasets import Dataset, Split
from mmtrack.errors import MMTrackError
from mmtrack.train import predict_logits

KINDS = ("acc", "group", "ood", "output_noise", "input_noise", "pgd_linf", "mia")
MIA_ATTACKS = ("rule_based", "black_box")
INPUT_NOISE_DISTS = ("laplace", "gaussian")  # noise of scale λ·σ_c: Laplace(0, λσ) or Normal(0, λσ)
MIA_ATTACK_MODELS = ("rf", "gb", "nn", "lr", "dt", "knn", "svm")  # ART's MembershipInferenceBlackBox models
DEFAULT_SPECS = (
    "acc", "group", "ood", "output_noise:1,2,3,4,5", "input_noise:0.5,1",
    "pgd_linf:0.0001,0.0005,0.001,0.005,0.01", "mia",
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
        check(isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and math.isfinite(ratio) and ratio > 0,
              "pgd_step_ratio", "a positive number")
        check(isinstance(self.pgd_random_start, bool), "pgd_random_start", "true or false")
        check(self.input_noise_dist in INPUT_NOISE_DISTS, "input_noise_dist", f"one of {', '.join(INPUT_NOISE_DISTS)}")
        check(self.mia_attack_model in MIA_ATTACK_MODELS, "mia_attack_model", f"one of {', '.join(MIA_ATTACK_MODELS)}")

    def params(self) -> dict:
        return {f"eval.{k}": v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Intervention:
    kind: str
    arg: str | float | None = None  # group "attr/value" or "attr", OOD name, λ, δ, attack name

    def __str__(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{_fmt(self.arg)}"


def _fmt(x) -> str:
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
        if kind not in KINDS:
            raise MMTrackError(f"unknown intervention {kind!r}; choose one of: {', '.join(KINDS)} "
                               "(e.g. pgd_linf:0.005, output_noise:5, group:race/asian)")
        args = [a.strip() for a in rest.split(",") if a.strip()] if rest else []
        if kind in ("output_noise", "input_noise", "pgd_linf"):
            if not args:
                raise MMTrackError(f"intervention {kind} needs a value, e.g. {kind}:0.005")
            for a in args:
                try:
                    value = float(a)
                except ValueError:
                    raise MMTrackError(f"{kind} value {a!r} is not a number") from None
                if not math.isfinite(value) or value < 0:
                    raise MMTrackError(f"{kind} value must be a non-negative number, got {a}")
                if kind == "pgd_linf" and value > 1:
                    raise MMTrackError(f"pgd_linf budget δ is in [0, 1] pixel space, got {a}")
                out.append(Intervention(kind, value))
        elif kind == "mia":
            for a in args or [None]:
                if a is not None and a not in MIA_ATTACKS:
                    raise MMTrackError(f"unknown MIA attack {a!r}; choose one of: {', '.join(MIA_ATTACKS)}")
                out.append(Intervention(kind, a))
        elif kind == "acc":
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
            raise MMTrackError(f"unknown OOD set {iv.arg!r} for {data.name}; it has: "
                               f"{', '.join(data.ood) or 'none'}")


def _accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return float((pred == labels).float().mean()) if len(labels) else float("nan")


def _fixed_subset(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[: min(k, n)].sort().values


class Evaluator:
    """Computes interventions for one trained model on one dataset. Yields (metrics, counts) per intervention;
    the clean test logits are computed once and shared."""

    def __init__(self, model: nn.Module, data: Dataset, settings: EvalSettings = EvalSettings()):
        self.model, self.data, self.s = model.eval(), data, settings
        self.device = next(model.parameters()).device
        self._logits: torch.Tensor | None = None
        self._group_logits: torch.Tensor | None = None

    @property
    def test_logits(self) -> torch.Tensor:
        if self._logits is None:
            self._logits = predict_logits(self.model, self.data.test.images, self.s.batch_size)
        return self._logits

    def run(self, iv: Intervention) -> tuple[dict[str, float], dict[str, int]]:
        """Metrics (name -> accuracy) and counts (name -> number of examples) of one intervention."""
        return getattr(self, f"_{iv.kind}")(iv.arg)

    # ---- the interventions

    def _acc(self, _arg):
        test = self.data.test
        return {"acc": _accuracy(self.test_logits.argmax(1), test.labels)}, {"acc": len(test)}

    @property
    def group_logits(self) -> torch.Tensor:
        """Logits of the images group accuracies are measured on (the test split unless the dataset has a
        separate group evaluation set)."""
        if self.data.group_test is None:
            return self.test_logits
        if self._group_logits is None:
            self._group_logits = predict_logits(self.model, self.data.group_test.images, self.s.batch_size)
        return self._group_logits

    def _group(self, arg):
        test, pred = self.data.group_split, self.group_logits.argmax(1)
        attrs = test.group_values if arg is None else [str(arg).partition("/")[0]]
        metrics, counts = {}, {}
        for attr in attrs:
            only = str(arg).partition("/")[2] if arg is not None else ""
            for value in ([only] if only else test.group_values[attr]):
                mask = test.group_mask(attr, value)
                if int(mask.sum()) == 0:
                    continue  # an empty group has no accuracy
                name = f"acc/group/{attr}/{value}"
                metrics[name], counts[name] = _accuracy(pred[mask], test.labels[mask]), int(mask.sum())
        return metrics, counts

    def _ood(self, arg):
        metrics, counts = {}, {}
        for name in ([arg] if arg is not None else list(self.data.ood)):
            split: Split = self.data.ood[name]
            logits = predict_logits(self.model, split.images, self.s.batch_size)
            metrics[f"acc/ood/{name}"], counts[f"acc/ood/{name}"] = _accuracy(logits.argmax(1), split.labels), len(split)
        return metrics, counts

    def _output_noise(self, lam: float):
        logits, labels = self.test_logits, self.data.test.labels
        name = f"acc/output_noise/{_fmt(lam)}"
        if lam == 0:
            return {name: _accuracy(logits.argmax(1), labels)}, {name: len(labels)}
        g = torch.Generator().manual_seed(self.s.noise_seed)
        noise = torch.empty((self.s.noise_draws, *logits.shape)).exponential_(1.0 / lam, generator=g)
        pred = (logits.unsqueeze(0) + noise).argmax(-1)  # (draws, N)
        return {name: float((pred == labels).float().mean())}, {name: len(labels)}

    def _input_noise(self, lam: float):
        test = self.data.test
        name = f"acc/input_noise/{_fmt(lam)}"
        std = self.model[0].std.cpu()  # Normalize's per-channel std of the training images
        g = torch.Generator().manual_seed(self.s.noise_seed)
        correct = 0
        for _ in range(self.s.noise_draws):
            for images, labels in zip(test.images.split(self.s.batch_size), test.labels.split(self.s.batch_size)):
                if self.s.input_noise_dist == "gaussian":
                    noise = torch.randn(images.shape, generator=g) * lam * std
                else:  # Laplace(0, 1) by inverse CDF, seeded; rand can return 0.0, where log1p(-2|u|) = -inf
                    u = torch.rand(images.shape, generator=g).clamp_min(2.0 ** -24) - 0.5
                    noise = -torch.sign(u) * torch.log1p(-2 * u.abs()) * lam * std
                x = images.float().div(255) + noise
                with torch.no_grad():
                    correct += int((self.model(x.to(self.device)).argmax(1).cpu() == labels).sum())
        return {name: correct / (self.s.noise_draws * len(test))}, {name: len(test)}

    def art_classifier(self):
        from art.estimators.classification import PyTorchClassifier

        shape = tuple(self.data.test.images.shape[1:])
        return PyTorchClassifier(model=self.model, loss=nn.CrossEntropyLoss(), input_shape=shape,
                                 nb_classes=self.data.num_classes, clip_values=(0.0, 1.0),
                                 device_type="gpu" if self.device.type == "cuda" else "cpu")

    def _pgd_linf(self, delta: float):
        from art.attacks.evasion import ProjectedGradientDescent

        test = self.data.test
        idx = _fixed_subset(len(test), self.s.pgd_max_examples, self.s.subset_seed)
        x, y = test.images[idx].float().div(255).numpy(), test.labels[idx].numpy()
        name = f"acc/pgd_linf/{_fmt(delta)}"
        if delta == 0:
            pred = self.test_logits[idx].argmax(1).numpy()
            return {name: float((pred == y).mean())}, {name: len(y)}
        attack = ProjectedGradientDescent(
            self.art_classifier(), norm=np.inf, eps=delta, eps_step=self.s.pgd_step_ratio * delta / self.s.pgd_steps,
            max_iter=self.s.pgd_steps, targeted=False, num_random_init=int(self.s.pgd_random_start),
            batch_size=self.s.batch_size, verbose=False)
        torch.manual_seed(self.s.subset_seed)  # ART's random start (when enabled) draws from torch/numpy
        np.random.seed(self.s.subset_seed)
        x_adv = attack.generate(x=x, y=y)
        logits = self._logits_float(x_adv)
        return {name: float((logits.argmax(1).numpy() == y).mean())}, {name: len(y)}

    @torch.no_grad()
    def _logits_float(self, x01: np.ndarray) -> torch.Tensor:
        out = [self.model(torch.from_numpy(c).to(self.device)).cpu()
               for c in np.array_split(x01, max(1, math.ceil(len(x01) / self.s.batch_size)))]
        return torch.cat(out)

    def _mia(self, attack: str | None):
        from sklearn.metrics import roc_auc_score

        train, test = self.data.train, self.data.test
        k = min(self.s.mia_examples, len(train), len(test))
        mi = _fixed_subset(len(train), k, self.s.subset_seed + 1)
        ni = _fixed_subset(len(test), k, self.s.subset_seed + 2)
        x_in, y_in = train.images[mi], train.labels[mi]
        x_out, y_out = test.images[ni], test.labels[ni]
        metrics, counts = {}, {}

        def record(name, inferred, truth, scores=None):
            tpr, fpr = inferred[truth == 1].mean(), inferred[truth == 0].mean()
            metrics[f"mia/{name}/accuracy"] = float((inferred == truth).mean())
            metrics[f"mia/{name}/advantage"] = float(tpr - fpr)
            if scores is not None:
                metrics[f"mia/{name}/auc"] = float(roc_auc_score(truth, scores))
            for key in list(metrics):
                if key.startswith(f"mia/{name}/"):
                    counts[key] = len(truth)

        if attack in (None, "rule_based"):
            from art.attacks.inference.membership_inference import MembershipInferenceBlackBoxRuleBased

            x = torch.cat([x_in, x_out]).float().div(255).numpy()
            y = torch.cat([y_in, y_out]).numpy()
            truth = np.r_[np.ones(k), np.zeros(k)]
            inferred = MembershipInferenceBlackBoxRuleBased(self.art_classifier()).infer(x, y).ravel()
            record("rule_based", inferred, truth)
        if attack in (None, "black_box"):
            from art.attacks.inference.membership_inference import MembershipInferenceBlackBox

            p_in = torch.softmax(predict_logits(self.model, x_in, self.s.batch_size), 1).numpy()
            p_out = torch.softmax(predict_logits(self.model, x_out, self.s.batch_size), 1).numpy()
            h = k // 2  # attack model trained on the first half, scored on the second
            mia = MembershipInferenceBlackBox(self.art_classifier(), input_type="prediction",
                                              attack_model_type=self.s.mia_attack_model)
            np.random.seed(self.s.subset_seed)
            mia.fit(y=y_in[:h].numpy(), test_y=y_out[:h].numpy(), pred=p_in[:h], test_pred=p_out[:h])
            y_eval = np.r_[y_in[h:].numpy(), y_out[h:].numpy()]
            p_eval = np.r_[p_in[h:], p_out[h:]]
            truth = np.r_[np.ones(k - h), np.zeros(k - h)]
            proba = mia.infer(None, y_eval, pred=p_eval, probabilities=True)
            proba = np.asarray(proba)
            score = proba[:, 1] if proba.ndim == 2 and proba.shape[1] == 2 else proba.ravel()
            record("black_box", (score >= 0.5).astype(float), truth, score)
        return metrics, counts

