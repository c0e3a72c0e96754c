"""Cost of each default intervention next to one training epoch of the default config (digits-skewed).
Target: evaluating all defaults costs less than training does.

    .venv/bin/python benchmarks/bench_interventions.py [--epochs 8] [--threads 2]
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import warnings

    warnings.filterwarnings("ignore")
    from mmtrack.data import load_dataset
    from mmtrack.interventions import DEFAULT_SPECS, Evaluator, parse
    from mmtrack.training.config import RunConfig
    from mmtrack.training.train import train_model

    data = load_dataset("digits-skewed")
    epochs: list[float] = []
    start = time.perf_counter()
    model = train_model(
        RunConfig(epochs=args.epochs), data, torch.device("cpu"), on_epoch=lambda s: epochs.append(s.seconds)
    )
    train_s = time.perf_counter() - start
    epoch_s = sum(epochs) / len(epochs)
    ev = Evaluator(model, data)
    rows, total = [], 0.0
    for iv in parse(DEFAULT_SPECS):
        t = time.perf_counter()
        metrics, _ = ev.run(iv)
        dt = time.perf_counter() - t
        total += dt
        rows.append((str(iv), dt, len(metrics)))
    print(f"training: {train_s:.2f} s for {args.epochs} epochs ({epoch_s:.2f} s / epoch), {args.threads} threads")
    print(f"{'intervention':<28}{'seconds':>9}{'x epoch':>9}{'metrics':>9}")
    for name, dt, n in rows:
        print(f"{name:<28}{dt:9.2f}{dt / epoch_s:9.2f}{n:9d}")
    print(f"{'all defaults':<28}{total:9.2f}{total / epoch_s:9.2f}")
    print(f"evaluation / training = {total / train_s:.2f}   (target < 1)")


if __name__ == "__main__":
    main()
