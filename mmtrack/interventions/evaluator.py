"""Evaluator: computes every intervention of `mmtrack.interventions.specs` for one trained model on one dataset
(accuracies under intervention; see that module for the table of specs and the choices the paper leaves open)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from mmtrack import stacking
from mmtrack.data import Dataset, Split
from mmtrack.errors import MMTrackError
from mmtrack.interventions.specs import KINDS, EvalSettings, Intervention, metric_number
from mmtrack.train import predict_logits


def _accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return float((pred == labels).float().mean()) if len(labels) else float("nan")


def _fixed_subset(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[: min(k, n)].sort().values


class SumOfLosses(nn.Module):
    """The loss of K networks stacked (`mmtrack.stacking.Stack`, logits (N, K, classes)) on one label each:
    the sum of their mean cross-entropies. Network k reads only its own input channels, so the gradient of
    the sum with respect to those channels is network k's own loss gradient, and ART's PGD on the stack (sign
    of the gradient, projection and clipping all element by element) runs the K per-model attacks at once."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == 2:  # ART hands one-hot labels to a loss it does not know
            target = target.argmax(1)
        return sum(nn.functional.cross_entropy(logits[:, j], target) for j in range(logits.shape[1]))


class SharedForward:
    """The forward passes of models trained together, made once for all of them: the models stacked
    (`mmtrack.stacking`) see each batch of inputs side by side, and the logits (K, N, classes) are kept per input
    set, so the evaluators of the K models (`Evaluator(..., shared=, member=k)`) each read their slice. One model
    alone is its own "stack" of one. The stack takes `batch_size // K` images per pass, the activation memory of
    one model's batch (on 2 CPU threads also the fastest: 1.2-1.3x over K separate passes of `batch_size`,
    less for Wide ResNet-50-2; benchmarks/bench_stacked.py)."""

    def __init__(self, models: list[nn.Module], batch_size: int = 1024):
        self.k = len(models)
        self.net = stacking.stack(models).eval() if self.k > 1 else models[0].eval()
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
        """Metrics (name -> accuracy) and counts (name -> number of examples) of one intervention."""
        return getattr(self, self._METHODS[iv.kind])(iv.arg)

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
        return self._of_images("group_test", self.data.group_test.images)

    def _group(self, arg):
        test, pred = self.data.group_split, self.group_logits.argmax(1)
        attrs = test.group_values if arg is None else [str(arg).partition("/")[0]]
        metrics, counts = {}, {}
        for attr in attrs:
            only = str(arg).partition("/")[2] if arg is not None else ""
            for value in [only] if only else test.group_values[attr]:
                mask = test.group_mask(attr, value)
                if int(mask.sum()) == 0:
                    continue  # an empty group has no accuracy
                name = f"acc/group/{attr}/{value}"
                metrics[name], counts[name] = _accuracy(pred[mask], test.labels[mask]), int(mask.sum())
        return metrics, counts

    def _ood(self, arg):
        metrics, counts = {}, {}
        for name in [arg] if arg is not None else list(self.data.ood):
            split: Split = self.data.ood[name]
            logits = self._of_images(f"ood/{name}", split.images)
            metrics[f"acc/ood/{name}"], counts[f"acc/ood/{name}"] = (
                _accuracy(logits.argmax(1), split.labels),
                len(split),
            )
        return metrics, counts

    def _output_noise(self, lam: float):
        logits, labels = self.test_logits, self.data.test.labels
        name = f"acc/output_noise/{metric_number(lam)}"
        if lam == 0:
            self._record(name[4:], logits.argmax(1))
            return {name: _accuracy(logits.argmax(1), labels)}, {name: len(labels)}
        g = torch.Generator().manual_seed(self.s.noise_seed)
        noise = torch.empty((self.s.noise_draws, *logits.shape)).exponential_(1.0 / lam, generator=g)
        pred = (logits.unsqueeze(0) + noise).argmax(-1)  # (draws, N)
        self._record(name[4:], pred)
        return {name: float((pred == labels).float().mean())}, {name: len(labels)}

    def _input_noise(self, lam: float):
        test = self.data.test
        name = f"acc/input_noise/{metric_number(lam)}"
        # Normalize's per-channel std of the training images (an ensemble's: its members')
        std = getattr(self.model, "input_std", None)
        std = (std if std is not None else self.model[0].std).cpu()

        def noisy_batches():  # every draw of every batch, from one seeded generator: the same for every model
            g = torch.Generator().manual_seed(self.s.noise_seed)
            for _ in range(self.s.noise_draws):
                for images in test.images.split(self.s.batch_size):
                    if self.s.input_noise_dist == "gaussian":
                        noise = torch.randn(images.shape, generator=g) * lam * std
                    else:  # Laplace(0, 1) by inverse CDF, seeded; rand can return 0.0, where log1p(-2|u|) = -inf
                        u = torch.rand(images.shape, generator=g).clamp_min(2.0**-24) - 0.5
                        noise = -torch.sign(u) * torch.log1p(-2 * u.abs()) * lam * std
                    yield images.float().div(255) + noise

        logits = self.shared.logits(("input_noise", lam, self.s.input_noise_dist), noisy_batches)[self.member]
        self._record(name[4:], logits.argmax(1).view(self.s.noise_draws, len(test)))
        correct = int((logits.argmax(1) == test.labels.repeat(self.s.noise_draws)).sum())
        return {name: correct / (self.s.noise_draws * len(test))}, {name: len(test)}

    def art_classifier(self, model: nn.Module | None = None, k: int = 1):
        """ART's PyTorchClassifier around this model, or around `model`: a `Stack` of `k` networks seen as one
        classifier of (N, 3k, H, W) inputs, network j reading channels 3j..3j+2, with the sum of the k
        cross-entropies as its loss (`SumOfLosses`)."""
        from art.estimators.classification import PyTorchClassifier

        c, h, w = self.data.test.images.shape[1:]
        return PyTorchClassifier(
            model=model if model is not None else self.model,
            loss=nn.CrossEntropyLoss() if model is None else SumOfLosses(),
            input_shape=(c * k, h, w),
            nb_classes=self.data.num_classes,
            clip_values=(0.0, 1.0),
            device_type="gpu" if self.device.type == "cuda" else "cpu",
        )

    def _pgd_linf(self, delta: float):
        test = self.data.test
        idx = _fixed_subset(len(test), self.s.pgd_max_examples, self.s.subset_seed)
        x, y = test.images[idx].float().div(255).numpy(), test.labels[idx].numpy()
        name = f"acc/pgd_linf/{metric_number(delta)}"
        if delta == 0:
            pred = self.test_logits[idx].argmax(1).numpy()
        elif self.shared.k > 1 and not self.s.pgd_random_start:
            # the K attacks at once (see `SumOfLosses`); a random start would draw other numbers than K attacks
            pred = self.shared.cached(("pgd_linf", delta), lambda: self._pgd_stacked(delta, x, y))[self.member]
        else:
            pred = self._logits_float(self._pgd_attack(self.art_classifier(), delta, x, y)).argmax(1).numpy()
        self._record(name[4:], pred, index=idx.numpy())
        return {name: float((pred == y).mean())}, {name: len(y)}

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
            mia = MembershipInferenceBlackBox(
                self.art_classifier(), input_type="prediction", attack_model_type=self.s.mia_attack_model
            )
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

    # kind -> method: one entry per kind of `specs.KINDS` (checked at import)
    _METHODS = {
        "acc": "_acc",
        "group": "_group",
        "ood": "_ood",
        "output_noise": "_output_noise",
        "input_noise": "_input_noise",
        "pgd_linf": "_pgd_linf",
        "mia": "_mia",
    }


assert set(Evaluator._METHODS) == set(KINDS) and all(hasattr(Evaluator, m) for m in Evaluator._METHODS.values())
