"""Sweep throughput, in one script:
1. `--workers 2` vs `--workers 1` on the same configurations (target >= 1.7x);
2. mmtrack's sweep against a shell loop of one `mlflow run` per configuration (target >= 2x faster);
3. with --full: the embedded study's wall time with --workers 2, all interventions (target <= 10 min; see
   also bench_study.py, which breaks it down by stage).

    .venv/bin/python benchmarks/bench_sweep.py [--configs 4] [--full]

Parts 1-2 run the first --configs configurations of studies/digits-skewed.yaml (all interventions), each
into a fresh store, so every timing trains the same work from scratch.
"""

import argparse
import atexit
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


def study_subset(n: int, out: Path) -> Path:
    """A study holding the first n configurations of the embedded one (default config over n seeds)."""
    raw = yaml.safe_load((ROOT / "studies/digits-skewed.yaml").read_text())
    raw["name"] = "bench-sweep"
    raw["seeds"] = list(range(n))
    raw["axes"] = {axis: [raw["default"][axis]] for axis in raw["axes"]}
    path = out / "bench-sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def timed(cmd: list[str], env: dict, cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def fresh_env(tmp: Path, tag: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")}
    store = tmp / f"store-{tag}"
    shutil.rmtree(store, ignore_errors=True)
    env["MMTRACK_TRACKING_DIR"] = str(store)
    env["PATH"] = f"{BIN}:{env['PATH']}"
    return env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=4)
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmtrack-bench-sweep-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # gigabytes otherwise, run after run
    study = study_subset(args.configs, tmp)
    mm = str(BIN / "mmtrack")
    w1 = timed([mm, "sweep", str(study), "--workers", "1"], fresh_env(tmp, "w1"), ROOT)
    w2 = timed([mm, "sweep", str(study), "--workers", "2"], fresh_env(tmp, "w2"), ROOT)
    env = fresh_env(tmp, "mlflow-run")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'store-mlflow-run' / 'mlflow.db'}"
    (tmp / "store-mlflow-run").mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for seed in range(args.configs):  # what a user without mmtrack sweep would do: a shell loop of mlflow run
        subprocess.run(
            ["mlflow", "run", ".", "-P", f"seed={seed}", "--env-manager", "local"],
            env=env,
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    loop = time.perf_counter() - t
    n = args.configs
    print(f"{n} configurations of the embedded study (default config x {n} seeds, all interventions)")
    print(f"  mmtrack sweep --workers 1 : {w1:7.1f} s  ({60 * n / w1:.2f} configs/min)")
    print(f"  mmtrack sweep --workers 2 : {w2:7.1f} s  ({60 * n / w2:.2f} configs/min)")
    print(f"  shell loop of mlflow run  : {loop:7.1f} s  ({60 * n / loop:.2f} configs/min)")
    print(f"  workers 2 vs 1            : {w1 / w2:7.2f}x  (target >= 1.7x)")
    print(f"  sweep (2 workers) vs loop : {loop / w2:7.2f}x  (target >= 2x)")
    if args.full:
        full = timed(
            [mm, "sweep", str(ROOT / "studies/digits-skewed.yaml"), "--workers", "2"], fresh_env(tmp, "full"), ROOT
        )
        print(f"  embedded study (45 runs), --workers 2: {full / 60:.1f} min  (target <= 10 min)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
