"""Seeds trained together against seeds trained one after another, per architecture, as ratios in one process.

    .venv/bin/python benchmarks/bench_stacked.py                   # 5 seeds, 2 epochs, 2 threads, every arch
    .venv/bin/python benchmarks/bench_stacked.py --threads 1 --epochs 1 --arch resnet18
    .venv/bin/python benchmarks/bench_stacked.py --device cuda:0 --image-size 64 --width 1 --precision bf16

For each architecture of the embedded study (width 0.125, digits-skewed at 8x8, batch 128, RandAugment, SGD):
- train: `train_model` once per seed (the baseline, `--stack 1`) vs `train_models` on all seeds (one stack);
- eval: an `Evaluator` per model vs the evaluators of one stack sharing its forward passes and its PGD attack,
  over the interventions that are stacked (clean accuracy, groups, OOD, output noise, input noise, PGD at two
  budgets); membership inference attacks each model on its own in both, so it is left out here.
Timings are the best of `--repeat` rounds; training images/s count every seed's images, and the peak memory is
the device's (CUDA: `max_memory_allocated`; CPU: the process's peak resident set). `--image-size` resizes
digits-skewed's images (bilinear) to the size asked for, `--width` scales the ResNets, `--precision` sets
MMTRACK_PRECISION (fp32, tf32, bf16: the last two on CUDA only). Target: stacked training >= 1.5x for ResNet-18
on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import time

import torch

from mmtrack.data import Split, load_dataset
from mmtrack.interventions import EvalSettings, Evaluator, SharedForward, parse
from mmtrack.models import ARCHS
from mmtrack.training.config import RunConfig
from mmtrack.training.device import precision, use_device
from mmtrack.training.train import train_model, train_models

STACKED = ["acc", "group", "ood", "output_noise:1,2,3,4,5", "input_noise:0.5,1", "pgd_linf:0.001,0.01"]


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def evaluate(models, data, stacked: bool) -> None:
    ivs, settings = parse(STACKED), EvalSettings()
    shared = SharedForward(models, settings.batch_size) if stacked else None
    for k, model in enumerate(models):
        ev = Evaluator(model, data, settings, shared=shared, member=k)
        for iv in ivs:
            ev.run(iv)


def resized(data, size: int):
    """digits-skewed at `size` px (bilinear): every split an intervention reads, so evaluation runs too."""
    if size == data.image_size:
        return data

    def split(sp: Split) -> Split:
        x = torch.nn.functional.interpolate(sp.images.float(), size=(size, size), mode="bilinear", antialias=True)
        return dataclasses.replace(sp, images=x.round().clamp(0, 255).to(torch.uint8))

    changed = {"train": split(data.train), "test": split(data.test)}
    if data.group_test is not None:
        changed["group_test"] = split(data.group_test)
    return dataclasses.replace(data, **changed, ood={name: split(sp) for name, sp in data.ood.items()})


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process peak RSS)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", choices=list(ARCHS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0 (default cpu)")
    ap.add_argument("--image-size", type=int, default=None, help="resize digits-skewed to this many px")
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32")
    args = ap.parse_args()
    os.environ["MMTRACK_PRECISION"] = args.precision
    torch.set_num_threads(args.threads)
    device = use_device(args.device)
    base = load_dataset("digits-skewed")
    data = resized(base, args.image_size or base.image_size)
    print(
        f"{args.seeds} seeds, {args.epochs} epochs, {args.threads} threads, digits-skewed at {data.image_size}px, "
        f"width {args.width:g}, {device} in {precision(device)}"
    )
    print(
        f"{'arch':<17} {'train 1-by-1':>12} {'stacked':>8} {'ratio':>6} {'img/s 1-by-1':>13} {'stacked':>8} "
        f"{'eval 1-by-1':>12} {'stacked':>8} {'ratio':>6}  peak memory"
    )
    for arch in args.arch or list(ARCHS):
        cfgs = [RunConfig(arch=arch, width=args.width, epochs=args.epochs, seed=s) for s in range(args.seeds)]
        seq, models = best(lambda: [train_model(c, data, device) for c in cfgs], args.repeat)  # noqa: B023
        stk, _ = best(lambda: train_models(cfgs, data, device), args.repeat)  # noqa: B023
        e_seq, _ = best(lambda: evaluate(models, data, False), args.repeat)  # noqa: B023
        e_stk, _ = best(lambda: evaluate(models, data, True), args.repeat)  # noqa: B023
        images = args.seeds * args.epochs * len(data.train)
        print(
            f"{arch:<17} {seq:>11.2f}s {stk:>7.2f}s {seq / stk:>5.2f}x {images / seq:>13.0f} {images / stk:>8.0f} "
            f"{e_seq:>11.2f}s {e_stk:>7.2f}s {e_seq / e_stk:>5.2f}x  {peak_memory(device)}"
        )


if __name__ == "__main__":
    main()
