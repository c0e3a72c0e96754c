"""The training job: one configuration, one MLflow run (`run_config`), or the seeds of one configuration trained
together as one stacked network, each into its own run (`run_configs`). Load the data, train, log the model and
predictions, then compute and log every intervention (each logged as soon as it is computed; a failing
intervention is recorded and the others are kept)."""

from __future__ import annotations

import time
import uuid

import torch

from mmtrack import interventions as iv_mod
from mmtrack import settings as mm_settings
from mmtrack import tracking
from mmtrack.data import Dataset, load_dataset
from mmtrack.interventions import EvalSettings, Evaluator, Intervention, SharedForward
from mmtrack.jobs import spool
from mmtrack.jobs.record import (
    RunResult,
    log_epoch,
    log_inputs,
    log_interventions,
    log_populations,
    populations,
    predictions_frame,
    run_tags,
)
from mmtrack.models import SPEC_FILE, WEIGHTS_FILE, model_spec
from mmtrack.models.fit import check_fits
from mmtrack.training.config import RunConfig
from mmtrack.training.device import use_device
from mmtrack.training.train import EpochStats, alone_reason, train_model, train_models


def _log_trained(
    logger: tracking.RunLogger,
    cfg: RunConfig,
    model: torch.nn.Module,
    evaluator: Evaluator,
    data: Dataset,
    interventions: list[Intervention],
    result: RunResult,
) -> None:
    """Predictions, weights and model, then every intervention, into the active run of `logger`."""
    start = time.perf_counter()
    logger.log_dataframe(predictions_frame(*evaluator.population("test")), tracking.predictions_path("test"))
    mm_settings.crash_point("artifacts")
    example = data.test.images[:2].float().div(255).numpy()
    logger.log_weights(model, model_spec(cfg.arch, data.num_classes, data.image_size, cfg.width))
    device = next(model.parameters()).device
    logger.log_model(model.cpu(), example)
    model.to(device)
    result.seconds["seconds/log_model"] = time.perf_counter() - start
    logger.log_metrics(result.seconds)
    log_interventions(logger, evaluator, interventions, result, {})
    stored = log_populations(logger, evaluator, populations(interventions, data), skip={"test"}, required=True)
    # no FINISHED run without its model and predictions: what was uploaded is listed back before the run ends
    weights = [f"{tracking.WEIGHTS}/{name}" for name in (WEIGHTS_FILE, SPEC_FILE)]
    logger.verify_artifacts([*weights, *(tracking.predictions_path(n) for n in ["test", *stored])])


def _kept(exc: tracking.TrackingUnavailable, path) -> tracking.TrackingUnavailable:
    return tracking.TrackingUnavailable(
        f"{exc.message}; the trained weights are kept in {path} (a rerun on this machine logs them without training)"
    )


def run_config(
    cfg: RunConfig,
    client,
    exp_id: str | None,
    interventions: list[Intervention],
    settings: EvalSettings = EvalSettings(),
    data_dir: str | None = None,
    data: Dataset | None = None,
    extra_tags: dict | None = None,
    on_epoch=None,
    run_id: str | None = None,
    run_name: str | None = None,
    device: str | None = None,
) -> RunResult:
    """Train and evaluate `cfg` as one MLflow run in experiment `exp_id` (or into the existing run `run_id`, the
    one `mlflow run` created) and return its metrics. A model of `cfg` that this machine trained before but could
    not log (`mmtrack.jobs.spool`) is logged instead of trained again; one that cannot be logged now is kept there."""
    start = time.perf_counter()
    data = data or load_dataset(cfg.dataset, data_dir, cfg.image_size)
    data_seconds = time.perf_counter() - start
    iv_mod.check_available(interventions, data)
    check_fits(cfg.arch, data.num_classes, data.image_size, cfg.width)
    device = use_device(device)
    tags = run_tags(cfg, data, device, extra_tags)
    spooled = spool.take(cfg, data)
    if spooled is not None:
        tags[tracking.SPOOLED_TAG] = str(spooled.folder)
    with tracking.RunLogger.start(client, exp_id, run_name or cfg.short_name(), tags, run_id=run_id) as logger:
        result = RunResult(logger.run_id)
        log_inputs(logger, cfg, data, settings, interventions)
        epochs: list[EpochStats] = []

        def epoch_logged(stats: EpochStats) -> None:
            epochs.append(stats)
            log_epoch(logger, stats)
            if on_epoch is not None:
                on_epoch(stats)

        if spooled is not None:  # the curves as they were measured, then the model as it was trained
            for stats in spooled.epochs:
                epoch_logged(stats)
            model = spooled.model.to(device).eval()
            result.seconds.update(spooled.seconds)
        else:
            start = time.perf_counter()
            model = train_model(cfg, data, device, on_epoch=epoch_logged)
            result.seconds.update({"seconds/data": data_seconds, "seconds/train": time.perf_counter() - start})
        try:
            _log_trained(logger, cfg, model, Evaluator(model, data, settings), data, interventions, result)
        except tracking.TrackingUnavailable as exc:
            raise _kept(exc, spool.keep(cfg, data, model, epochs, _train_seconds(result))) from None
    spool.drop(cfg)
    return result


def _train_seconds(result: RunResult) -> dict[str, float]:
    return {k: v for k, v in result.seconds.items() if k in ("seconds/data", "seconds/train", "seconds/train_stack")}


def run_configs(
    cfgs: list[RunConfig],
    client,
    exp_id: str,
    interventions: list[Intervention],
    settings: EvalSettings = EvalSettings(),
    data_dir: str | None = None,
    data: Dataset | None = None,
    extra_tags: dict | None = None,
    run_names: list[str] | None = None,
    device: str | None = None,
) -> list[RunResult | Exception]:
    """Train configurations that differ only in their seed together, as one stacked network
    (`train.train_models`), each into its own MLflow run (params, per-epoch metrics, predictions, weights, model
    and every intervention, exactly as `run_config` logs them; tag `mmtrack.stack` names the runs trained
    together). Returns each configuration's result, or the error its run FAILED with (a diverged seed fails
    alone). An error of the whole stack (before training ends) fails every run and propagates."""
    start = time.perf_counter()
    data = data or load_dataset(cfgs[0].dataset, data_dir, cfgs[0].image_size)
    data_seconds = time.perf_counter() - start
    iv_mod.check_available(interventions, data)
    device = use_device(device)
    check_fits(cfgs[0].arch, data.num_classes, data.image_size, cfgs[0].width)
    stack_tags = {
        tracking.STACK_TAG: uuid.uuid4().hex[:12],
        tracking.STACK_SEEDS_TAG: ",".join(str(c.seed) for c in cfgs),
    }
    if len(cfgs) > 1 and (why := alone_reason(cfgs[0], data)) is not None:
        stack_tags[tracking.STACK_ALONE_TAG] = why
    names = run_names or [cfg.short_name() for cfg in cfgs]
    loggers: list[tracking.RunLogger] = []
    ended: set[int] = set()
    try:
        for cfg, name in zip(cfgs, names):
            loggers.append(
                tracking.RunLogger.create(
                    client, exp_id, name, {**run_tags(cfg, data, device, extra_tags), **stack_tags}
                )
            )
            log_inputs(loggers[-1], cfg, data, settings, interventions)
        start = time.perf_counter()
        epochs: list[list[EpochStats]] = [[] for _ in cfgs]

        def epoch_logged(k: int, stats: EpochStats) -> None:
            epochs[k].append(stats)
            log_epoch(loggers[k], stats)

        models = train_models(cfgs, data, device, on_epoch=epoch_logged)
        train_seconds = time.perf_counter() - start
        live = [m for m in models if not isinstance(m, Exception)]
        shared = SharedForward(live, settings.batch_size) if live else None
        results: list[RunResult | Exception] = []
        gone: tracking.TrackingUnavailable | None = None
        for k, (cfg, logger, model) in enumerate(zip(cfgs, loggers, models)):
            ended.add(k)
            if isinstance(model, Exception):
                logger.fail(model)
                results.append(tracking.failed_run(model, logger.run_id))
                continue
            result = RunResult(logger.run_id)
            # the stack's training time, and each run's share of it (what the run cost)
            result.seconds.update(
                {
                    "seconds/data": data_seconds,
                    "seconds/train": train_seconds / len(cfgs),
                    "seconds/train_stack": train_seconds,
                }
            )
            evaluator = Evaluator(model, data, settings, shared=shared, member=live.index(model))
            if gone is not None:  # the server is away: keep the model without waiting for it once more
                logger.fail(gone)
                kept = _kept(gone, spool.keep(cfg, data, model, epochs[k], _train_seconds(result)))
                results.append(tracking.failed_run(kept, logger.run_id))
                continue
            try:
                with logger.resume():
                    _log_trained(logger, cfg, model, evaluator, data, interventions, result)
            except tracking.TrackingUnavailable as exc:  # kept locally, so that a retry need not train it again
                gone = exc
                kept = _kept(exc, spool.keep(cfg, data, model, epochs[k], _train_seconds(result)))
                results.append(tracking.failed_run(kept, logger.run_id))
                continue
            except Exception as exc:  # noqa: BLE001 - its run is FAILED with the error; the others go on
                results.append(exc)
                continue
            spool.drop(cfg)
            results.append(result)
        return results
    except BaseException as exc:
        for k, logger in enumerate(loggers):
            if k not in ended:
                logger.fail(exc)
        raise
