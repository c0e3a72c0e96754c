"""An ensemble's evaluation, its members stacked (`Ensemble`, the default) vs one after the other
(`Ensemble(..., stack=False)`), in the same process: the clean forward pass over the test split and PGD on the
ensemble, per architecture at the embedded width. Untrained weights (the time does not depend on them).

    .venv/bin/python benchmarks/bench_ensemble.py            # 5 members, ResNet-18 and ResNet-50
    .venv/bin/python benchmarks/bench_ensemble.py --members 3 --arch resnet18
"""

from __future__ import annotations

import argparse
import time

import torch

from mmtrack.data import load_dataset
from mmtrack.interventions import EvalSettings, Evaluator, parse
from mmtrack.models import build_model
from mmtrack.models.ensemble import Ensemble
from mmtrack.training.config import RunConfig


def timed(fn, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--arch", action="append", help="architectures (default: resnet18, resnet50)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("digits-skewed")
    settings = EvalSettings(pgd_steps=5, pgd_max_examples=200)
    pgd = parse(["pgd_linf:0.005"])[0]
    print(f"{args.members} members, {args.threads} threads, digits-skewed test split ({len(data.test)} images), "
          f"PGD 5 steps on {settings.pgd_max_examples} images")  # fmt: skip
    print(
        f"{'arch':18} {'clean: alone':>13} {'stacked':>8} {'ratio':>6} {'PGD: alone':>11} {'stacked':>8} {'ratio':>6}"
    )
    for arch in args.arch or ["resnet18", "resnet50"]:
        cfg = RunConfig(arch=arch)
        members = []
        for s in range(args.members):
            torch.manual_seed(s)
            members.append(build_model(cfg.arch, data.num_classes, data.image_size, cfg.width).eval())
        row = []
        for what in ("clean", "pgd"):
            secs = {}
            for name, stack in (("alone", False), ("stacked", True)):
                ens = Ensemble(members, stack=stack).eval()

                def run(ens=ens, what=what):
                    ev = Evaluator(ens, data, settings)
                    if what == "clean":
                        ev.population("test")
                    else:
                        ev.run(pgd)

                secs[name] = timed(run)
            row += [secs["alone"], secs["stacked"], secs["alone"] / secs["stacked"]]
        print(f"{arch:18} {row[0]:12.2f}s {row[1]:7.2f}s {row[2]:5.2f}× {row[3]:10.2f}s {row[4]:7.2f}s {row[5]:5.2f}×")


if __name__ == "__main__":
    main()
