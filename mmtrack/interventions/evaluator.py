"""Evaluator: computes every intervention of `mmtrack.interventions.specs` for one trained model on one dataset
(accuracies under intervention; see that module for the table of specs and the choices the paper leaves open)."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from mmtrack.data import Dataset, Split
from mmtrack.errors import MMTrackError
from mmtrack.interventions.specs import KIND_REGISTRY, EvalSettings, Intervention
from mmtrack.models import stacking


def _accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return float((pred == labels).float().mean()) if len(labels) else float("nan")


def _fixed_subset(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[: min(k, n)].sort().values


class SumOfLosses(nn.Module):
    """The loss of K networks stacked (`mmtrack.models.stacking.Stack`, logits (N, K, classes)) on one label each:
    the sum of their mean cross-entropies. Network k reads only its own input channels, so the gradient of
    the sum with respect to those channels is network k's own loss gradient, and ART's PGD on the stack (sign
    of the gradient, projection and clipping all element by element) runs the K per-model attacks at once."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == 2:  # ART hands one-hot labels to a loss it does not know
            target = target.argmax(1)
        return sum(nn.functional.cross_entropy(logits[:, j], target) for j in range(logits.shape[1]))


class SharedForward:
    """The forward passes of models trained together, made once for all of them: the models stacked
    (`mmtrack.models.stacking`) see each batch of inputs side by side, and the logits (K, N, classes) are kept per input
    set, so the evaluators of the K models (`Evaluator(..., shared=, member=k)`) each read their slice. One model
    alone is its own "stack" of one. The stack takes `batch_size // K` images per pass, the activation memory of
    one model's batch (on 2 CPU threads also the fastest: 1.2-1.3x over K separate passes of `batch_size`,
    less for Wide ResNet-50-2; benchmarks/bench_stacked.py)."""

    def __init__(self, models: list[nn.Module], batch_size: int = 1024):
        self.k = len(models)
        self.net = stacking.side_by_side(models).eval() if self.k > 1 else models[0].eval()
        self.net.to(next(models[0].parameters()).device)
        self.device = next(self.net.parameters()).device
        self.batch_size = batch_size
        self.chunk = max(1, batch_size // self.k)
        self._cache: dict[object, torch.Tensor] = {}

    def cached(self, key: object, compute: Callable[[], object]):
        """`compute()`, the first time `key` is asked for; what it gave, after."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def logits(self, key: object, batches: Callable[[], Iterable[torch.Tensor]]) -> torch.Tensor:
        """Logits (K, N, classes) on the CPU of the float batches in [0, 1] `batches()` yields (each model sees
        the same ones), computed the first time `key` is asked for."""

        @torch.no_grad()
        def compute() -> torch.Tensor:
            out = []
            for batch in batches():
                for x in batch.split(self.chunk):
                    logits = self.net(x.to(self.device)).float().cpu()
                    out.append(logits.unsqueeze(1) if self.k == 1 else logits)
            return torch.cat(out).transpose(0, 1) if out else torch.empty(self.k, 0)

        return self.cached(key, compute)

    def of_images(self, key: object, images: torch.Tensor) -> torch.Tensor:
        """Logits (K, N, classes) of uint8 images."""
        return self.logits(key, lambda: (c.float().div_(255) for c in images.split(self.chunk)))


class Evaluator:
    """Computes interventions for one trained model on one dataset. Yields (metrics, counts) per intervention;
    the clean test logits are computed once and shared. With `shared` (the `SharedForward` of the models
    trained with this one, this one being number `member`), every intervention that is a forward pass (clean,
    group, OOD, output and input noise) reads this model's slice of the stack's logits, PGD (without random
    start) is one ART attack on the stack (`SumOfLosses`), and membership inference runs on this model alone."""

    def __init__(
        self,
        model: nn.Module,
        data: Dataset,
        settings: EvalSettings = EvalSettings(),
        shared: SharedForward | None = None,
        member: int = 0,
    ):
        self.model, self.data, self.s = model.eval(), data, settings
        self.device = next(model.parameters()).device
        self.shared = shared if shared is not None else SharedForward([model], settings.batch_size)
        self.member = member if shared is not None else 0
        # population (e.g. "pgd_linf/0.005") -> (test indices or None for all, predictions (draws, n) or (n,)),
        # kept when settings.intervention_predictions: what `predictions/<population>.parquet` stores
        self.recorded: dict[str, tuple[np.ndarray | None, np.ndarray]] = {}

    def _of_images(self, key: str, images: torch.Tensor) -> torch.Tensor:
        return self.shared.of_images(key, images)[self.member]

    @property
    def test_logits(self) -> torch.Tensor:
        return self._of_images("test", self.data.test.images)

    def population(self, name: str) -> tuple[torch.Tensor, Split]:
        """(logits, split) of a population a clean accuracy is measured on: `test`, `group` (the group
        evaluation set) or `ood/<set>`; computed once and shared with the interventions that measure it."""
        if name == "test":
            return self.test_logits, self.data.test
        if name == "group":
            return self.group_logits, self.data.group_split
        kind, _, ood = name.partition("/")
        if kind == "ood" and ood in self.data.ood:
            return self._of_images(f"ood/{ood}", self.data.ood[ood].images), self.data.ood[ood]
        raise MMTrackError(f"unknown population {name!r}; populations: test, group, ood/<set>")

    def _record(self, population: str, pred: torch.Tensor | np.ndarray, index=None) -> None:
        if self.s.intervention_predictions:
            pred = pred.numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
            self.recorded[population] = (None if index is None else np.asarray(index), pred)

    def run(self, iv: Intervention) -> tuple[dict[str, float], dict[str, int]]:
        """Metrics (name -> accuracy) and counts (name -> number of examples) of one intervention, computed by
        its kind's function (`specs.KIND_REGISTRY`: one file per kind in this package)."""
        module, _, function = KIND_REGISTRY[iv.kind].compute.partition(":")
        return getattr(importlib.import_module(f"mmtrack.interventions.{module}"), function)(self, iv.arg)

    @property
    def input_std(self) -> torch.Tensor:
        """The per-channel std of the training images (the model's `Normalize`; an ensemble's: its members'),
        which scales input noise."""
        std = getattr(self.model, "input_std", None)
        return std if std is not None else self.model[0].std

    @property
    def group_logits(self) -> torch.Tensor:
        """Logits of the images group accuracies are measured on (the test split unless the dataset has a
        separate group evaluation set)."""
        if self.data.group_test is None:
            return self.test_logits
        return self._of_images("group_test", self.data.group_test.images)

    def art_classifier(self, model: nn.Module | None = None, k: int = 1):
        """ART's PyTorchClassifier around this model, or around `model`: a `Stack` of `k` networks seen as one
        classifier of (N, 3k, H, W) inputs, network j reading channels 3j..3j+2, with the sum of the k
        cross-entropies as its loss (`SumOfLosses`)."""
        from art.estimators.classification import PyTorchClassifier

        from mmtrack.training.device import art_device

        c, h, w = self.data.test.images.shape[1:]
        with art_device(self.device):  # ART moves the model to cuda:<current device>: make it the model's
            return PyTorchClassifier(
                # a model whose decisions have no gradient (a selective ensemble) names what attacks follow
                model=model if model is not None else getattr(self.model, "attacked", self.model),
                loss=nn.CrossEntropyLoss() if model is None else SumOfLosses(),
                input_shape=(c * k, h, w),
                nb_classes=self.data.num_classes,
                clip_values=(0.0, 1.0),
                device_type="gpu" if self.device.type == "cuda" else "cpu",
            )

    def _pgd_attack(self, classifier, delta: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        from art.attacks.evasion import ProjectedGradientDescent

        attack = ProjectedGradientDescent(
            classifier,
            norm=np.inf,
            eps=delta,
            eps_step=self.s.pgd_step_ratio * delta / self.s.pgd_steps,
            max_iter=self.s.pgd_steps,
            targeted=False,
            num_random_init=int(self.s.pgd_random_start),
            batch_size=self.s.batch_size,
            verbose=False,
        )
        torch.manual_seed(self.s.subset_seed)  # ART's random start (when enabled) draws from torch/numpy
        np.random.seed(self.s.subset_seed)
        return attack.generate(x=x, y=y)

    def _pgd_stacked(self, delta: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Predictions (K, N) of the K models of the shared stack, each on the PGD examples against itself:
        one ART attack on the stack, network j perturbing its own copy of the images."""
        k, net = self.shared.k, self.shared.net
        x_adv = self._pgd_attack(self.art_classifier(net, k), delta, np.tile(x, (1, k, 1, 1)), y)
        with torch.no_grad():
            out = [
                net(torch.from_numpy(c).to(self.device)).float().cpu()
                for c in np.array_split(x_adv, max(1, math.ceil(len(x_adv) / self.shared.chunk)))
            ]
        return torch.cat(out).argmax(-1).T.numpy()

    @torch.no_grad()
    def _logits_float(self, x01: np.ndarray) -> torch.Tensor:
        out = [
            self.model(torch.from_numpy(c).to(self.device)).cpu()
            for c in np.array_split(x01, max(1, math.ceil(len(x01) / self.s.batch_size)))
        ]
        return torch.cat(out)
