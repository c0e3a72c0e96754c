"""The embedded study end to end: wall time and where it goes, against the previous layout, as ratios.

    .venv/bin/python benchmarks/bench_study.py                 # 2 seeds of every configuration, both layouts
    .venv/bin/python benchmarks/bench_study.py --full          # the whole study (45 runs), both layouts
    .venv/bin/python benchmarks/bench_study.py --baseline contiguous --seeds 1   # the channels-last comparison

Each layout runs `mmtrack sweep STUDY --workers N` into a fresh store, in a subprocess of this process, and is
then read back from the runs it logged: every run records its stages as metrics (`seconds/data`,
`seconds/train`, `seconds/log_model`, `seconds/eval/<intervention>`). Start-up is the time from the sweep's
start to the first run's start (imports, store creation, spawning workers); the rest of the wall time that no
run accounts for is scheduling and the tail (the last worker finishing alone).

Layouts: `this` is the default (a configuration's seeds trained together as one stack, channels-last). The
baseline is `alone` (`--stack 1`: each seed trained on its own, the layout before stacking; default) or
`contiguous` (seeds alone in NCHW tensors, MMTRACK_MEMORY_FORMAT=contiguous, the layout before channels-last).
Both use the same recipe and worker count, so the ratio isolates the layout. It also prints Delta-max^all
(max - min over every run) of clean accuracy and of the fairness metric for both: stacking must not change what
the study measures. Target for the full study: <= 360 s with --workers 2 on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAYOUTS = {  # name -> (environment, sweep options)
    "contiguous": ({"MMTRACK_MEMORY_FORMAT": "contiguous"}, ["--stack", "1"]),
    "alone": ({"MMTRACK_MEMORY_FORMAT": "channels_last"}, ["--stack", "1"]),
    "this": ({"MMTRACK_MEMORY_FORMAT": "channels_last"}, []),
}
FAIRNESS = "acc/group/skew/gs-minority"  # the embedded study's fairness metric (the minority group)


def study_file(study: Path, seeds: int | None, out: Path) -> Path:
    raw = yaml.safe_load(study.read_text())
    raw["name"] = "bench-study"
    if seeds is not None:
        raw["seeds"] = raw["seeds"][:seeds]
    path = out / "bench-study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_layout(name: str, study: Path, workers: int, tmp: Path) -> dict:
    store = tmp / f"store-{name}"
    shutil.rmtree(store, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")}
    env.update(LAYOUTS[name][0], MMTRACK_TRACKING_DIR=str(store))
    start_ms = time.time() * 1000
    t = time.perf_counter()
    subprocess.run(
        [str(BIN / "mmtrack"), "sweep", str(study), "--workers", str(workers), *LAYOUTS[name][1]],
        env=env,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t
    return {"wall": wall, **stages(store, start_ms, wall, workers)}


def stages(store: Path, start_ms: float, wall: float, workers: int) -> dict:
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["bench-study"])
    runs = runs[runs.status == "FINISHED"]
    seconds = {
        c[len("metrics.seconds/") :]: runs[c].fillna(0).sum() for c in runs.columns if c.startswith("metrics.seconds/")
    }
    # the time each stack (runs trained together; a run alone is its own) held its worker
    stack = runs.get("tags.mmtrack.stack", pd.Series(index=runs.index, dtype=object)).fillna(runs.run_id)
    spans = runs.groupby(stack).agg(start=("start_time", "min"), end=("end_time", "max"))
    run_s = (spans.end - spans.start).dt.total_seconds()
    out = {"runs": len(runs), "start-up": (runs.start_time.min().timestamp() * 1000 - start_ms) / 1000}
    seconds.pop("train_stack", None)  # a stacked run's `seconds/train` is its share of the stack's time
    out["data"] = seconds.pop("data", 0.0) / workers
    out["training"] = seconds.pop("train", 0.0) / workers
    out["logging (model, predictions)"] = seconds.pop("log_model", 0.0) / workers
    for key in sorted(seconds):
        out[f"eval {key.split('/', 1)[1]}"] = seconds[key] / workers
    out["other per-run logging"] = (
        run_s.sum() - sum(v for k, v in out.items() if k not in ("runs", "start-up")) * workers
    ) / workers
    out["scheduling and tail"] = wall - out["start-up"] - run_s.sum() / workers
    # evaluation / training per architecture: the target is <= 0.5 for each
    evals = [c for c in runs.columns if c.startswith("metrics.seconds/eval/")]
    per_arch = (
        pd.DataFrame(
            {
                "arch": runs["params.arch"],
                "train": runs["metrics.seconds/train"],
                "eval": runs[evals].fillna(0).sum(axis=1),
            }
        )
        .groupby("arch")
        .sum()
    )
    out["eval/train"] = (per_arch["eval"] / per_arch["train"]).round(2).to_dict()
    out["spread"] = {m: float(runs[f"metrics.{m}"].max() - runs[f"metrics.{m}"].min()) for m in ("acc", FAIRNESS)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", type=Path, default=ROOT / "studies/digits-skewed.yaml")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=2, help="seeds of the study to run (default 2; --full: all)")
    ap.add_argument("--full", action="store_true", help="the whole study")
    ap.add_argument("--baseline", choices=["alone", "contiguous"], default="alone")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmtrack-bench-study-"))
    study = study_file(args.study, None if args.full else args.seeds, tmp)
    names = [args.baseline, "this"]
    results = {name: run_layout(name, study, args.workers, tmp) for name in names}
    shutil.rmtree(tmp, ignore_errors=True)
    this = results["this"]
    print(f"study {args.study.name}: {this['runs']} runs, --workers {args.workers}, {os.cpu_count()} CPUs")
    print(
        f"{'stage (wall s; per-run stages / workers)':44s}"
        + "".join(f"{n:>11s}" for n in names)
        + f"   this/{names[0]}"
    )
    keys = [k for k in this if k not in ("runs", "eval/train", "spread")]
    keys.insert(0, keys.pop(keys.index("wall")))
    for key in keys:
        row = f"{key:44s}" + "".join(f"{results[n].get(key, 0.0):11.1f}" for n in names)
        if results[names[0]].get(key, 0.0) > 0.5:
            row += f"   {this.get(key, 0.0) / results[names[0]][key]:.2f}"
        print(row)
    for n in names:
        print(f"evaluation / training per architecture ({n}): {results[n]['eval/train']}")
        print(f"Delta-max^all ({n}): " + ", ".join(f"{m} {v:.4f}" for m, v in results[n]["spread"].items()))
    print(f"speed-up of this layout over {names[0]}: {results[names[0]]['wall'] / this['wall']:.2f}x")
    if args.full:
        print(f"full study: {this['wall']:.0f} s = {this['wall'] / 60:.1f} min (target <= 6 min)")


if __name__ == "__main__":
    main()
