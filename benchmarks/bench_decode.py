"""Your own data costs one decode: the first load of a declared dataset (`mmtrack.data.declared`) is limited by
JPEG decoding, and every later load comes from the decoded cache far faster than training consumes images.

    .venv/bin/python benchmarks/bench_decode.py [--n 20000] [--size 64] [--threads 2] [--train-images 1024]

Generates N small JPEGs (64x64, smooth colour fields plus noise, 10 classes) in an ImageFolder tree in a temp dir,
then measures, in this process:

1. baseline: PIL alone, a plain loop of `Image.open(p).convert("RGB").resize((S, S))` over every file;
2. mmtrack's decoding alone (`mmtrack.data._decode.decode_files`: forked worker processes writing into shared
   memory), no cache: images/s and the ratio to (1);
3. first load of the declared dataset (list the tree, stratified split, decode, hash, write the cache): images/s
   and the ratio to (1). What it spends beyond (2) is mostly writing the decoded cache (N x 3 x S x S bytes);
4. a later load (from the cache): images/s, and the ratio to
5. a training step's consumption: images/s of one epoch of the default tiny ResNet-18 (width 0.125, batch 128,
   RandAugment, SGD) on --train-images images at the same size. The ratio should be >= 10.
"""

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_tree(root: Path, n: int, side: int = 64, classes: int = 10) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side] / side
    files = []
    for i in range(n):
        c = i % classes
        base = np.stack([xx * rng.random() + yy * rng.random() + c / classes] * 3, -1) * 120
        pixels = np.clip(base + rng.normal(0, 25, (side, side, 3)), 0, 255).astype(np.uint8)
        path = root / f"class{c}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)
        files.append(path)
    return files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000, help="generated JPEGs")
    ap.add_argument("--size", type=int, default=64, help="decoded image size")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the training step")
    ap.add_argument("--train-images", type=int, default=1024, help="images of the timed training epoch")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="mmtrack-bench-decode-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # gigabytes otherwise, run after run
    os.environ["MMTRACK_CACHE"] = str(tmp / "cache")
    from PIL import Image

    from mmtrack.data import DataOptions, declared
    from mmtrack.training.config import RunConfig
    from mmtrack.training.train import train_model

    t = time.perf_counter()
    files = make_tree(tmp / "tree", args.n)
    print(f"generated {args.n} 64x64 JPEGs in {time.perf_counter() - t:.1f} s ({tmp / 'tree'}); {os.cpu_count()} CPUs")

    os.sync()  # the generated files' write-back is not charged to what is timed next
    t = time.perf_counter()
    for p in files:
        with Image.open(p) as im:
            im.convert("RGB").resize((args.size, args.size))
    pil = args.n / (time.perf_counter() - t)

    from mmtrack.data._decode import _workers, decode_files

    t = time.perf_counter()
    decode_files([str(p) for p in files], args.size)
    decode = args.n / (time.perf_counter() - t)

    spec = declared.normalize(
        {"name": "bench-decode", "images": str(tmp / "tree"), "image_size": args.size},
        tmp,
        "bench_decode.py",
        "bench-decode",
    )
    t = time.perf_counter()
    data = declared.load_declared(spec, DataOptions())
    first = args.n / (time.perf_counter() - t)
    t = time.perf_counter()
    data = declared.load_declared(spec, DataOptions())
    later = args.n / (time.perf_counter() - t)

    declared.register_declared(spec, remember=False)
    m = min(args.train_images, len(data.train))
    small = replace(
        data,
        train=replace(
            data.train, images=data.train.images[:m], labels=data.train.labels[:m], groups={}, group_values={}
        ),
    )
    cfg = RunConfig(dataset="bench-decode", epochs=1, image_size=args.size)  # the default tiny recipe
    stats = []
    train_model(cfg, small, torch.device("cpu"), on_epoch=stats.append)
    step = m / stats[0].seconds

    print(f"{args.n} images at {args.size}px:")
    print(f"  PIL alone (open+convert+resize loop)      : {pil:9.0f} images/s")
    print(
        f"  decode alone ({_workers(args.n)} processes, no cache)      : {decode:9.0f} images/s   {decode / pil:6.2f}x PIL"
    )
    print(
        f"  first load (list, split, decode, cache)   : {first:9.0f} images/s   {first / pil:6.2f}x PIL "
        "(decode, then write the cache)"
    )
    print(f"  later load (from the decoded cache)       : {later:9.0f} images/s")
    print(
        f"  training step ({cfg.arch} w{cfg.width:g} bs{cfg.batch_size} {cfg.augment}, {args.threads} threads): "
        f"{step:9.0f} images/s"
    )
    print(
        f"  cache / training consumption              : {later / step:9.1f}x   (>= 10: loading never limits training)"
    )


if __name__ == "__main__":
    main()
