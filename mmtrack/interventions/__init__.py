"""Accuracy under intervention: specs and settings (`specs`, no torch) and the evaluator (`evaluator`, torch).

`Evaluator` and `SharedForward` are imported lazily, so `from mmtrack.interventions import parse` does not load torch."""

from __future__ import annotations

from mmtrack.interventions.specs import (
    DEFAULT_SPECS,
    INPUT_NOISE_DISTS,
    KIND_REGISTRY,
    KINDS,
    MIA_ATTACK_MODELS,
    MIA_ATTACKS,
    EvalSettings,
    Intervention,
    check_available,
    metric_number,
    parse,
)

__all__ = [
    "DEFAULT_SPECS",
    "INPUT_NOISE_DISTS",
    "KIND_REGISTRY",
    "KINDS",
    "MIA_ATTACKS",
    "MIA_ATTACK_MODELS",
    "EvalSettings",
    "Evaluator",
    "Intervention",
    "SharedForward",
    "check_available",
    "metric_number",
    "parse",
]


def __getattr__(name: str):
    if name in ("Evaluator", "SharedForward"):
        from mmtrack.interventions import evaluator

        return getattr(evaluator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
