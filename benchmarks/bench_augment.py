"""Augmentation per training step: one torchvision call per group of each model (the reference) against each
model's draws followed by one call per distinct op for all models (`Augmenter.sample` + `apply`), as ratios
measured in one process. The two give the same images (tests/integration/test_augment.py); training uses the
batched path.

    .venv/bin/python benchmarks/bench_augment.py                   # K = 1 and 5 models, batch 128, both policies
    .venv/bin/python benchmarks/bench_augment.py --image-size 64 --device cuda:0
"""

from __future__ import annotations

import argparse
import time

import torch

from mmtrack.data import load_dataset
from mmtrack.training.train import Augmenter


def timed(fn, repeat: int, device: torch.device) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=None, help="resize digits-skewed (bilinear)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images = load_dataset("digits-skewed").train.images
    if args.image_size:
        size = (args.image_size, args.image_size)
        images = torch.nn.functional.interpolate(images[:4096].float(), size=size, mode="bilinear")
        images = images.round().clamp(0, 255).to(torch.uint8)
    images = images.to(device)
    print(f"batch {args.batch_size}, {images.shape[-1]} px, {device}, {args.steps} steps, best of {args.repeat}")
    print(f"{'policy':<15} {'K':>2} {'per group (ms/step)':>20} {'batched (ms/step)':>18} {'ratio':>6}")
    for policy in ("randaugment", "trivialaugment"):
        aug = Augmenter(policy)
        for k in (1, 5):
            gens = [torch.Generator().manual_seed(j) for j in range(k)]
            batches = [
                [images[torch.randint(0, len(images), (args.batch_size,), generator=g).to(device)] for g in gens]
                for _ in range(args.steps)
            ]
            streams = [torch.manual_seed(j).get_state() for j in range(k)]

            def per_group(batches=batches, streams=streams, aug=aug):
                for step in batches:
                    for j, b in enumerate(step):
                        torch.set_rng_state(streams[j])
                        aug(b)

            def batched(batches=batches, streams=streams, aug=aug):
                for step in batches:
                    plans = []
                    for j, b in enumerate(step):
                        torch.set_rng_state(streams[j])
                        plans.append(aug.sample(b))
                    aug.apply(step, plans)

            a = timed(per_group, args.repeat, device) / args.steps * 1000
            b = timed(batched, args.repeat, device) / args.steps * 1000
            print(f"{policy:<15} {k:>2} {a:>20.2f} {b:>18.2f} {a / b:>5.2f}x")


if __name__ == "__main__":
    main()
