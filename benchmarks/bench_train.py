"""Training overhead of mmtrack (MLflow run, params, per-epoch metrics, model + predictions logging) against a
bare PyTorch loop over the same model and data, in one process. Target: ratio <= 1.05.

    .venv/bin/python benchmarks/bench_train.py [--epochs 20] [--threads 2]
"""

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bare_loop(cfg, data) -> float:
    """The same training, written as a plain PyTorch loop: no MLflow, no callbacks."""
    import math

    from mmtrack.models import build_model, channel_stats
    from mmtrack.training.config import RECIPE
    from mmtrack.training.train import Augmenter, lr_factor, make_optimizer, seed_everything

    start = time.perf_counter()
    seed_everything(cfg.seed)
    mean, std = channel_stats(data.train.images)
    model = build_model(cfg.arch, data.num_classes, data.image_size, cfg.width, mean, std)
    opt = make_optimizer(cfg, model.parameters())
    x, y = data.train.images, data.train.labels
    steps = math.ceil(len(y) / cfg.batch_size)  # warm-up, then per-step cosine, as mmtrack.training.train
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_factor(steps * cfg.epochs, round(RECIPE["warmup_epochs"] * steps))
    )
    aug, gen = Augmenter(cfg.augment), torch.Generator().manual_seed(cfg.seed)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=RECIPE["label_smoothing"])
    for _ in range(cfg.epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(cfg.batch_size):
            loss = loss_fn(model(aug(x[idx]).float().div_(255)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        acc = (model(data.test.images.float().div(255)).argmax(1) == data.test.labels).float().mean().item()
    return time.perf_counter() - start, acc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)  # the embedded study's budget
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="alternate bare/mmtrack this many times; keep the best")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="mmtrack-bench-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    os.environ["MMTRACK_TRACKING_DIR"] = tmp
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    from mmtrack import tracking
    from mmtrack.data import load_dataset
    from mmtrack.interventions import parse
    from mmtrack.jobs.train_run import run_config
    from mmtrack.training.config import RunConfig

    cfg = RunConfig(epochs=args.epochs)
    data = load_dataset(cfg.dataset)
    client = tracking.connect()
    exp = tracking.experiment_id(client, "bench-train", create=True)
    run_config(RunConfig(epochs=1), client, exp, parse(["acc"]), data=data)  # warm-up: imports, DB, caches
    bare_times, mm_times = [], []
    for _ in range(args.repeat):  # alternating, so a noisy neighbour slows both sides alike
        bare_s, bare_acc = bare_loop(cfg, data)
        bare_times.append(bare_s)
        start = time.perf_counter()
        result = run_config(cfg, client, exp, parse(["acc"]), data=data)
        mm_times.append(time.perf_counter() - start)
    bare_s, mm_s = min(bare_times), min(mm_times)
    print(
        f"default config, {args.epochs} epochs, {args.threads} threads, digits-skewed ({len(data.train)} train images)"
    )
    print(f"  bare PyTorch loop : {bare_s:7.2f} s   acc {100 * bare_acc:.2f}%")
    print(f"  mmtrack run       : {mm_s:7.2f} s   acc {100 * result.metrics['acc']:.2f}%  (run {result.run_id})")
    print(f"  overhead ratio    : {mm_s / bare_s:7.3f}   (target <= 1.05)")


if __name__ == "__main__":
    main()
