"""The embedded study end to end: wall time and where it goes, against the previous layout, as ratios.

    .venv/bin/python benchmarks/bench_study.py            # one seed of every configuration, both layouts
    .venv/bin/python benchmarks/bench_study.py --full     # the whole study (45 runs), this layout only

Each layout runs `mmtrack sweep STUDY --workers N` into a fresh store, in a subprocess of this process, and is
then read back from the runs it logged: every run records its stages as metrics (`seconds/data`,
`seconds/train`, `seconds/log_model`, `seconds/eval/<intervention>`). Start-up is the time from the sweep's
start to the first run's start (imports, store creation, spawning workers); the rest of the wall time that no
run accounts for is scheduling and the tail (the last worker finishing alone).

Layouts: `previous` is the layout before channels-last (NCHW tensors, MMTRACK_MEMORY_FORMAT=contiguous); `this`
is the default. Both use the same recipe and worker count, so the ratio isolates the layout. Target for the
full study: <= 600 s with --workers 2 on 2 cores; evaluation <= 0.5x training for every architecture.
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
LAYOUTS = {"previous": {"MMTRACK_MEMORY_FORMAT": "contiguous"}, "this": {"MMTRACK_MEMORY_FORMAT": "channels_last"}}


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
    env.update(LAYOUTS[name], MMTRACK_TRACKING_DIR=str(store))
    start_ms = time.time() * 1000
    t = time.perf_counter()
    subprocess.run(
        [str(BIN / "mmtrack"), "sweep", str(study), "--workers", str(workers)],
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
    run_s = (runs.end_time - runs.start_time).dt.total_seconds()
    out = {"runs": len(runs), "start-up": (runs.start_time.min().timestamp() * 1000 - start_ms) / 1000}
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
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", type=Path, default=ROOT / "studies/digits-skewed.yaml")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=1, help="seeds of the study to run (default 1; --full: all)")
    ap.add_argument("--full", action="store_true", help="the whole study, this layout only")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmtrack-bench-study-"))
    study = study_file(args.study, None if args.full else args.seeds, tmp)
    names = ["this"] if args.full else ["previous", "this"]
    results = {name: run_layout(name, study, args.workers, tmp) for name in names}
    shutil.rmtree(tmp, ignore_errors=True)
    this = results["this"]
    print(f"study {args.study.name}: {this['runs']} runs, --workers {args.workers}, {os.cpu_count()} CPUs")
    print(
        f"{'stage (wall s; per-run stages / workers)':44s}"
        + "".join(f"{n:>11s}" for n in names)
        + ("   this/previous" if len(names) == 2 else "")
    )
    keys = [k for k in this if k not in ("runs", "eval/train")]
    keys.insert(0, keys.pop(keys.index("wall")))
    for key in keys:
        row = f"{key:44s}" + "".join(f"{results[n].get(key, 0.0):11.1f}" for n in names)
        if len(names) == 2 and results["previous"].get(key, 0.0) > 0.5:
            row += f"   {this.get(key, 0.0) / results['previous'][key]:.2f}"
        print(row)
    for n in names:
        print(f"evaluation / training per architecture ({n}): {results[n]['eval/train']}")
    if len(names) == 2:
        print(f"speed-up of this layout over the previous one: {results['previous']['wall'] / this['wall']:.2f}x")
    if args.full:
        print(f"full study: {this['wall']:.0f} s = {this['wall'] / 60:.1f} min (target <= 10 min)")


if __name__ == "__main__":
    main()
