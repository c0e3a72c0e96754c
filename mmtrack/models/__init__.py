"""The networks mmtrack trains and evaluates, as `nn.Module`s: which architectures exist (`catalog`, no torch),
how each is built (`archs`: mmtrack's width-scaled ResNets in `resnet`, any torchvision classification builder,
builders registered under the entry-point group `mmtrack.architectures`), the classifier around them with its
input normalisation (`classifier`), their weights without pickle (`weights`), K networks trained as one
(`stacking`) and ensembles of trained networks (`ensemble`).

A new architecture is a builder registered through the entry-point group (no change here), or, for one of
mmtrack's own, a module here named in `catalog` and built in `archs`.

The names below resolve on first use, so `mmtrack.models.catalog` stays torch-free. MLflow's pickled models
(`model/`, logged by every training run) name `mmtrack.models.Classifier`, `mmtrack.models.ScaledResNet`,
`mmtrack.models.Normalize` and the forward pre-hook `mmtrack.models._nchw_input`: those names stay importable from
here, so models logged before this package was split keep loading (tests/integration/test_house.py).
"""

from __future__ import annotations

import importlib

_NAMES = {
    "MEMORY_FORMATS": "classifier",
    "Classifier": "classifier",
    "Normalize": "classifier",
    "build_model": "classifier",
    "channel_stats": "classifier",
    "memory_format": "classifier",
    "predict_logits": "classifier",
    "to_layout": "classifier",
    "_nchw_input": "classifier",
    "ARCHS": "resnet",
    "ScaledResNet": "resnet",
    "SPEC_FILE": "weights",
    "WEIGHTS_FILE": "weights",
    "load_weights": "weights",
    "model_spec": "weights",
    "save_weights": "weights",
}
__all__ = sorted(n for n in _NAMES if not n.startswith("_"))


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"mmtrack.models.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
