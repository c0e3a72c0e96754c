"""Data loading is not the bottleneck: images/s when loading UTKFace from the decoded cache, against the
images/s of the training step (ResNet-18, default recipe, RandAugment) at the same image size.

    .venv/bin/python benchmarks/bench_data.py [--images 2000] [--size 64] [--width 0.25]

Builds a synthetic folder in UTKFace's on-disk format (200x200 JPEGs, real file-name scheme) in a temp dir.
"""

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_folder(root: Path, n: int) -> None:
    from PIL import Image

    folder = root / "UTKFace"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        age, gender, race = int(rng.integers(1, 100)), int(rng.integers(0, 2)), int(rng.integers(0, 5))
        pixels = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{age}_{gender}_{race}_20170116{i:09d}.jpg.chip.jpg", quality=90)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="mmtrack-bench-data-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # gigabytes otherwise, run after run
    os.environ["MMTRACK_CACHE"] = str(tmp / "cache")
    make_folder(tmp / "data", args.images)
    from mmtrack.data import DataOptions, utkface
    from mmtrack.training.config import RunConfig
    from mmtrack.training.train import train_model

    opts = DataOptions(data_dir=str(tmp / "data"), image_size=args.size)
    t = time.perf_counter()
    data = utkface.load_utkface(opts)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    data = utkface.load_utkface(opts)
    warm = time.perf_counter() - t
    n = len(data.train) + len(data.test)
    cfg = RunConfig(dataset="utkface", epochs=1, width=args.width, image_size=args.size)
    stats = []
    train_model(cfg, data, torch.device("cpu"), on_epoch=stats.append)
    train_ips = len(data.train) / stats[0].seconds
    print(f"{n} UTKFace-format images, {args.size}px, {args.threads} threads")
    print(f"  first load (decode JPEG + resize): {n / cold:10.0f} images/s")
    print(f"  load from cache                  : {n / warm:10.0f} images/s")
    print(f"  training step (resnet18 w{args.width:g})    : {train_ips:10.0f} images/s")
    print(f"  cache / training throughput      : {n / warm / train_ips:10.1f}x  (> 1: loading is not the bottleneck)")


if __name__ == "__main__":
    main()
