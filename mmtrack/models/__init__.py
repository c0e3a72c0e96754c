"""The networks mmtrack trains and evaluates, as `nn.Module`s: the width-scaled ResNets (`resnet`), the
classifier around them with its input normalisation (`classifier`), their weights without pickle (`weights`),
K networks trained as one (`stacking`) and ensembles of trained networks (`ensemble`).

A new architecture goes in a module here, registered in `resnet.ARCHS` (and `training.config.ARCHS`).

MLflow's pickled models (`model/`, logged by every training run) name `mmtrack.models.Classifier`,
`mmtrack.models.ScaledResNet`, `mmtrack.models.Normalize` and the forward pre-hook `mmtrack.models._nchw_input`:
those names stay importable from here, so models logged before this package was split keep loading
(tests/integration/test_house.py).
"""

from mmtrack.models.classifier import (
    MEMORY_FORMATS,
    Classifier,
    Normalize,
    build_model,
    channel_stats,
    memory_format,
    predict_logits,
    to_layout,
)
from mmtrack.models.classifier import _nchw_input as _nchw_input  # named by pickled models
from mmtrack.models.resnet import ARCHS, ScaledResNet
from mmtrack.models.weights import SPEC_FILE, WEIGHTS_FILE, load_weights, model_spec, save_weights

__all__ = [
    "ARCHS",
    "MEMORY_FORMATS",
    "SPEC_FILE",
    "WEIGHTS_FILE",
    "Classifier",
    "Normalize",
    "ScaledResNet",
    "build_model",
    "channel_stats",
    "load_weights",
    "memory_format",
    "model_spec",
    "predict_logits",
    "save_weights",
    "to_layout",
]
