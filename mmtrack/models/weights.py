"""Model weights without pickle: safetensors (plain tensors, no code) plus a JSON description of how to rebuild
the network from mmtrack's own code (`model_spec`)."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

from torch import nn

from mmtrack.errors import MMTrackError
from mmtrack.models import catalog
from mmtrack.models.classifier import Classifier, build_model

WEIGHTS_FORMAT = "mmtrack-weights/1"
WEIGHTS_FILE, SPEC_FILE = "model.safetensors", "model.json"


def model_spec(arch: str, num_classes: int, image_size: int, width: float) -> dict:
    """What `build_model` needs to rebuild a model from code the catalogue names (the weights carry the rest):
    the architecture and where its builder is (`builder`: mmtrack, torchvision or an entry point; absent for
    mmtrack's own ResNets, as specs were before other builders existed), classes, image size and width."""
    spec = {
        "format": WEIGHTS_FORMAT,
        "arch": arch,
        "num_classes": int(num_classes),
        "image_size": int(image_size),
        "width": float(width),
    }
    if catalog.source(arch) != "mmtrack":
        spec["builder"] = catalog.source(arch)
    return spec


def save_weights(model: nn.Module, spec: dict, folder: Path) -> None:
    """The weights as safetensors (plain tensors, no code) and the build description as JSON."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(folder / WEIGHTS_FILE))
    if "builder" in spec:  # other builders' modules may read their state-dict version when loading (MNASNet)
        versions = {k: m["version"] for k, m in getattr(state, "_metadata", {}).items() if m.get("version") is not None}
        spec = {**spec, "module_versions": versions}
    (folder / SPEC_FILE).write_text(json.dumps(spec, sort_keys=True))


def load_weights(folder: Path) -> Classifier:
    """Rebuild a model from its description and load its safetensors weights: nothing here executes code that
    came with the files (no pickle). A description or weights that don't fit raise MMTrackError."""
    from safetensors.torch import load_file

    try:
        spec = json.loads((folder / SPEC_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise MMTrackError(f"unreadable model description {SPEC_FILE} ({exc})") from None
    checks = (
        (isinstance(spec, dict) and spec.get("format") == WEIGHTS_FORMAT, f"format is not {WEIGHTS_FORMAT}"),
        (
            isinstance(spec, dict)
            and isinstance(spec.get("arch"), str)
            and catalog.source(spec["arch"]) == spec.get("builder", "mmtrack"),
            "arch is not an architecture of this machine's catalogue (`mmtrack archs`)",
        ),
        (
            isinstance(spec, dict) and isinstance(spec.get("num_classes"), int) and 1 < spec["num_classes"] <= 100_000,
            "num_classes is not an integer in 2..100000",
        ),
        (
            isinstance(spec, dict) and isinstance(spec.get("image_size"), int) and 8 <= spec["image_size"] <= 4096,
            "image_size is not an integer in 8..4096",
        ),
        (
            isinstance(spec, dict) and isinstance(spec.get("width"), (int, float)) and 0 < spec["width"] <= 16,
            "width is not a number in (0, 16]",
        ),
    )
    for ok, what in checks:
        if not ok:
            raise MMTrackError(f"model description {SPEC_FILE} is invalid: {what}")
    model = build_model(spec["arch"], spec["num_classes"], spec["image_size"], float(spec["width"]))
    try:
        state = OrderedDict(load_file(str(folder / WEIGHTS_FILE)))
        versions = spec.get("module_versions")
        if isinstance(versions, dict):
            state._metadata = OrderedDict((str(k), {"version": int(v)}) for k, v in versions.items())
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt file or weights of another shape
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MMTrackError(f"weights {WEIGHTS_FILE} do not fit the described {spec['arch']} ({first})") from None
    return model.eval()
