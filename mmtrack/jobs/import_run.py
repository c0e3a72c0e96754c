"""`mmtrack import`: models trained elsewhere, logged as training runs of an experiment, so that `evaluate`,
`sheet`, `select`, `report` and `ensemble` treat them as runs mmtrack trained.

Only tensors are read: safetensors, or a PyTorch state dict through `torch.load(weights_only=True)` (never a full
pickle). The architecture is one of the catalogue (`mmtrack archs`), built as mmtrack builds it, with the input
standardisation the models were trained with (`--mean`/`--std`, per channel, in [0, 1] units) stored in front of
it; a state dict of the bare network or of a whole mmtrack classifier (`0.mean`, `0.std`, `1.*`) both load.

Everything is checked before anything is logged: every file is read and loaded into its architecture, and the
params make one design (`study.imported.check_models`). Each model then becomes one run, FINISHED only with its
weights, model, test predictions and clean accuracy; a model already imported (same file, same params) is
skipped, so a rerun after an outage logs only what is missing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mmtrack import tracking
from mmtrack.data import Dataset, load_dataset
from mmtrack.errors import MMTrackError
from mmtrack.interventions import EvalSettings, Evaluator, parse
from mmtrack.jobs.record import RunResult, dataset_profile, log_interventions, predictions_frame, run_env_tags
from mmtrack.models import SPEC_FILE, WEIGHTS_FILE, catalog, model_spec
from mmtrack.models.classifier import Classifier, build_model
from mmtrack.models.fit import check_fits
from mmtrack.study.imported import ModelFile, check_models, list_models
from mmtrack.tags import IMPORTED_FROM_TAG, KIND_TAG, WEIGHTS_SHA256_TAG
from mmtrack.training.config import NOT_APPLICABLE
from mmtrack.training.device import use_device

NESTED_KEYS = ("state_dict", "model_state_dict", "model")  # where training scripts often keep the weights
PREFIXES = ("module.", "_orig_mod.")  # added by DistributedDataParallel / DataParallel and torch.compile


@dataclass
class Imported:
    """What happened to one listed model: the run it is (new or found) and its clean accuracy."""

    model: ModelFile
    run_id: str
    acc: float | None
    skipped: bool = False


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: safetensors, or a state dict `torch.load(weights_only=True)` accepts
    (also nested under state_dict/model_state_dict/model, and with DDP's or torch.compile's key prefixes)."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt file, a full pickle, anything else: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = "; save model.state_dict(), not the model" if "weights_only" in str(exc) else ""
        raise MMTrackError(f"cannot read weights {path} ({first[:200]}){hint}") from None
    if isinstance(state, dict) and not _tensors(state):
        state = next((state[k] for k in NESTED_KEYS if isinstance(state.get(k), dict) and _tensors(state[k])), state)
    if not isinstance(state, dict) or not state or not _tensors(state):
        raise MMTrackError(f"{path} holds no state dict (a mapping of names to tensors); save model.state_dict()")
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def _tensors(d: dict) -> bool:
    return bool(d) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def build_imported(
    m: ModelFile, data: Dataset, mean: Sequence[float], std: Sequence[float], state: dict[str, torch.Tensor]
) -> Classifier:
    """The model of `m` (its `arch` and `width` params): the catalogue's network with `state` loaded, behind
    the input standardisation `mean`/`std` (or the one a whole classifier's state carries)."""
    arch, width = m.params["arch"], _width(m.params["width"])
    model = build_model(arch, data.num_classes, data.image_size, width, mean=mean, std=std)
    whole = {"0.mean", "0.std"} <= set(state)
    try:
        (model if whole else model[1]).load_state_dict(state, strict=True)
    except RuntimeError as exc:
        text = str(exc).replace("\n", " ").replace("\t", "")
        described = f"{arch}" + (f" width {width:g}" if catalog.has_width(arch) else "")
        raise MMTrackError(
            f"model {m.label}: its weights do not fit {described} with {data.num_classes} classes "
            f"({text[:300]}); check --arch/--width"
        ) from None
    return model.eval()


def _width(value: str) -> float:
    return 1.0 if value == NOT_APPLICABLE else float(value)


def resolve(models: list[ModelFile], arch: str | None, width: float | None) -> None:
    """Each model's `arch` and `width` params: its own (a CSV column), else the command's; checked."""
    for m in models:
        m.params.setdefault("arch", arch or "")
        if not m.params["arch"]:
            raise MMTrackError(f"model {m.label} has no architecture; pass --arch (`mmtrack archs` lists them)")
        catalog.check(m.params["arch"])
        if not catalog.has_width(m.params["arch"]):
            m.params["width"] = NOT_APPLICABLE
            continue
        w = m.params.get("width", 1.0 if width is None else width)
        try:
            m.params["width"] = str(float(w))
        except ValueError:
            raise MMTrackError(f"model {m.label}: width {w!r} is not a number") from None


def _stats(text: str | None, name: str, channels: int, default: float) -> list[float]:
    if text is None:
        return [default] * channels
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise MMTrackError(f"--{name} takes {channels} comma-separated numbers, got {text!r}") from None
    if len(values) == 1:
        values *= channels
    if len(values) != channels or (name == "std" and min(values) <= 0):
        raise MMTrackError(f"--{name} takes {channels} numbers (one per channel{', > 0' if name == 'std' else ''})")
    return values


def import_models(
    client,
    experiment: str,
    source: Path,
    dataset: str,
    arch: str | None = None,
    width: float | None = None,
    image_size: int | None = None,
    seed_param: str = "seed",
    mean: str | None = None,
    std: str | None = None,
    data_dir: str | None = None,
    settings: EvalSettings = EvalSettings(),
    device: str | None = None,
    on_model: Callable[[Imported], None] | None = None,
) -> list[Imported]:
    """Log every model `source` lists as a run of `experiment` (see the module doc); returns one `Imported` per
    model, in listing order."""
    models = list_models(source)
    resolve(models, arch, width)
    data = load_dataset(dataset, data_dir, image_size)
    channels = data.test.images.shape[1]
    mean_v, std_v = _stats(mean, "mean", channels, 0.0), _stats(std, "std", channels, 1.0)
    for a, w in {(m.params["arch"], _width(m.params["width"])) for m in models}:
        check_fits(a, data.num_classes, data.image_size, w)
    exp_id = tracking.find_experiment(client, experiment)
    runs = None
    if exp_id is not None:
        if tracking.experiment_study(client, exp_id):
            raise MMTrackError(
                f"experiment {experiment!r} holds the runs of a study (mmtrack sweep); import into another experiment"
            )
        runs = tracking.load_runs(client, exp_id, use_cache=False)
    found = _already(runs, models)
    todo = [m for m in models if m.label not in found]
    if todo:
        check_models(todo, seed_param, runs)
    for m in todo:  # every model loads before any run is created (then it is let go: one in memory at a time)
        model = build_imported(m, data, mean_v, std_v, read_state(m.path))
        with torch.no_grad():
            out = model(data.test.images[:2].float().div(255))
        if tuple(out.shape) != (2, data.num_classes):
            raise MMTrackError(f"model {m.label} gives outputs of shape {tuple(out.shape)[1:]}, not {data.num_classes}")
        del model
    exp_id = exp_id or tracking.experiment_id(client, experiment, create=True)
    dev = use_device(device)
    out: list[Imported] = []
    for m in models:
        if m.label in found:
            result = Imported(m, found[m.label][0], found[m.label][1], skipped=True)
        else:
            model = build_imported(m, data, mean_v, std_v, read_state(m.path)).to(dev)
            run = _log_one(client, exp_id, m, model, data, dataset, image_size, mean_v, std_v)
            result = Imported(m, run.run_id, run.metrics.get("acc"))
        out.append(result)
        if on_model is not None:
            on_model(result)
    if any(not r.skipped for r in out):
        tracking.mark_changed(client, exp_id)
    return out


def _already(runs, models: list[ModelFile]) -> dict[str, tuple[str, float | None]]:
    """Models a FINISHED run of the experiment already holds (same file, same params): label -> (run id, acc).
    The same file under other params is an error."""
    if runs is None or tracking.column(WEIGHTS_SHA256_TAG) not in runs:
        return {}
    fin = runs[(runs["status"] == "FINISHED") & runs[tracking.column(WEIGHTS_SHA256_TAG)].notna()]
    by_sha = {row[tracking.column(WEIGHTS_SHA256_TAG)]: row for _, row in fin.iterrows()}
    found = {}
    for m in models:
        row = by_sha.get(m.sha256)
        if row is None:
            continue
        logged = {k: row.get(f"params.{k}") for k in m.params}
        if logged != m.params:
            raise MMTrackError(
                f"duplicate model: {m.label} is already run {row['run_id']} with other params "
                f"({', '.join(f'{k}={v}' for k, v in logged.items())}); one file is one model"
            )
        acc = row.get("metrics.acc")
        found[m.label] = (str(row["run_id"]), None if acc is None else float(acc))
    return found


def _log_one(client, exp_id, m: ModelFile, model, data, dataset, image_size, mean, std) -> RunResult:
    tags = {
        KIND_TAG: "imported",
        IMPORTED_FROM_TAG: str(m.path.resolve())[:500],
        WEIGHTS_SHA256_TAG: m.sha256,
        tracking.CONFIG_NAME_TAG: m.describe()[:500],
        **run_env_tags(data, next(model.parameters()).device),
    }
    settings = EvalSettings()
    name = Path(m.label).with_suffix("").as_posix().replace("/", "-")
    with tracking.RunLogger.start(client, exp_id, name, tags) as logger:
        result = RunResult(logger.run_id)
        start = time.perf_counter()
        logger.log_params(
            {
                **m.params,
                "dataset": dataset,
                "image_size": "default" if image_size is None else image_size,
                "import.mean": json.dumps(mean),
                "import.std": json.dumps(std),
                **settings.params(),
                "eval.interventions": "acc",
            }
        )
        logger.log_dataset(data.name, data.fingerprint, data.description, dataset_profile(data))
        evaluator = Evaluator(model, data, settings)
        logger.log_dataframe(predictions_frame(*evaluator.population("test")), tracking.predictions_path("test"))
        spec = model_spec(m.params["arch"], data.num_classes, data.image_size, _width(m.params["width"]))
        logger.log_weights(model, spec)
        device = next(model.parameters()).device
        logger.log_model(model.cpu(), data.test.images[:2].float().div(255).numpy())
        model.to(device)
        logger.log_metrics({"seconds/log_model": time.perf_counter() - start})
        log_interventions(logger, evaluator, parse(["acc"]), result, {})
        if result.failed_interventions:  # no imported run without its clean accuracy
            raise MMTrackError(f"model {m.label}: clean accuracy failed ({result.failed_interventions['acc']})")
        weights = [f"{tracking.WEIGHTS}/{name}" for name in (WEIGHTS_FILE, SPEC_FILE)]
        logger.verify_artifacts([*weights, tracking.predictions_path("test")])
    return result
