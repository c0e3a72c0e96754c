"""Throughput of workers sharing one PostgreSQL + MLflow server stack on this machine, and what coordinating
through Optuna costs per configuration.

    .venv/bin/python benchmarks/bench_workers.py [--workers 1 2 3] [--seeds 2] [--noop 30]
        [--storage postgresql://... --tracking-uri http://...]    (default: a throwaway stack, started with
                                                                    tracking/start-stack.sh and stopped after)

For each N in --workers, a fresh study (3 learning rates x --seeds seeds of tiny digits-skewed ResNets) is run
by N local workers exactly as `mmtrack sweep --storage URL --workers N` does (`launch.sweep_with_storage`):
configs/min = configurations / wall time. Per configuration it reports the time in `execute` (train, evaluate,
log to the server) and in claiming it (queue lock, stale check, claim: the trial's `claim_seconds`).
A no-op loop (--noop configurations, nothing trained) then measures the pure queue cost of one configuration:
claim, and finish (outcome attributes + COMPLETE).
On a shared 2-core machine throughput stops growing at 2 workers: training is CPU-bound.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_stack() -> tuple[Path, str, str]:
    root = Path(tempfile.mkdtemp(prefix="mmtrack-bench-"))
    root.chmod(0o755)
    argv = [
        "bash",
        str(REPO / "tracking" / "start-stack.sh"),
        "--dir",
        str(root),
        "--pg-port",
        str(free_port()),
        "--port",
        str(free_port()),
        "--workers",
        "2",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    if proc.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        sys.exit(f"could not start the stack: {proc.stderr.strip()}")
    env = dict(
        line[len("export ") :].split("=", 1)
        for line in (root / "stack.env").read_text().splitlines()
        if line.startswith("export ")
    )
    return root, env["MLFLOW_TRACKING_URI"], env["MMTRACK_STORAGE"]


def stop_stack(root: Path) -> None:
    subprocess.run(["bash", str(REPO / "tracking" / "stop-stack.sh"), "--dir", str(root)], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def tiny_study(name: str, seeds: int):
    from mmtrack.study import parse_study

    return parse_study(
        {
            "name": name,
            "dataset": "digits-skewed",
            "design": "ofat",
            "epochs": 1,
            "seeds": list(range(seeds)),
            "fixed": {"width": 0.0625},
            "default": {"lr": 0.1, "augment": "none"},
            "axes": {"lr": [0.1, 0.05, 0.01], "augment": ["none"]},
            "interventions": ["acc", "group"],
        }
    )


def trial_timings(queue) -> tuple[list[float], list[float]]:
    """(claim seconds, execute seconds) of the completed trials of a queue."""
    trials = [t for t in queue.study.trials if t.state.name == "COMPLETE"]
    return ([t.user_attrs["claim_seconds"] for t in trials], [t.user_attrs["execute_seconds"] for t in trials])


def noop_costs(storage: str, uri: str, n: int, stamp: str) -> tuple[float, float]:
    """Mean seconds to claim and to finish one configuration when nothing is trained."""
    from mmtrack.execution import Event, OptunaQueue
    from mmtrack.study import parse_study

    study = parse_study(
        {
            "name": f"bench-noop-{stamp}",
            "dataset": "digits-skewed",
            "epochs": 1,
            "seeds": list(range(n)),
            "default": {"lr": 0.1},
            "axes": {"lr": [0.1]},
        }
    )
    queue = OptunaQueue(study, storage)
    queue.prepare(finished=set())
    claims, finishes = [], []
    while (claim := queue.claim("bench")) is not None:
        claims.append(claim.seconds)
        cfg = claim.config
        start = time.perf_counter()
        queue.finish(claim, Event("finished", cfg.run_name, cfg.hash, "none", seconds=0.0), 0.0)
        finishes.append(time.perf_counter() - start)
    queue.close()
    return statistics.mean(claims), statistics.mean(finishes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--seeds", type=int, default=2, help="seeds per learning rate (configurations = 3 x seeds)")
    ap.add_argument("--noop", type=int, default=30, help="configurations in the no-op queue loop")
    ap.add_argument("--storage", help="Optuna storage URL (default: a throwaway stack)")
    ap.add_argument("--tracking-uri", help="MLflow tracking server (with --storage)")
    args = ap.parse_args()

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from mmtrack.execution import OptunaQueue
    from mmtrack.execution.launch import sweep_with_storage

    root = None
    if args.storage:
        storage, uri = args.storage, args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    else:
        print("starting a throwaway PostgreSQL + mlflow server stack ...", flush=True)
        root, uri, storage = start_stack()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    try:
        for n in args.workers:
            study = tiny_study(f"bench-{stamp}-w{n}", args.seeds)
            start = time.perf_counter()
            summary = sweep_with_storage(study, storage, n, uri)
            wall = time.perf_counter() - start
            queue = OptunaQueue(study, storage)
            claim_s, exec_s = trial_timings(queue)
            queue.close()
            k = len(summary.finished)
            rows.append((n, k, wall, 60 * k / wall, statistics.mean(exec_s), 1000 * statistics.mean(claim_s)))
            print(f"  {n} worker(s): {k} configurations in {wall:.1f}s", flush=True)
        claim_noop, finish_noop = noop_costs(storage, uri, args.noop, stamp)
    finally:
        if root is not None:
            stop_stack(root)

    print(
        f"\ncpu cores: {os.cpu_count()}; {3 * args.seeds} tiny configurations per row (wall time includes "
        "starting the worker processes)"
    )
    print(
        f"{'workers':>7} {'configs':>7} {'wall s':>8} {'configs/min':>11} {'execute s/config':>16} "
        f"{'claim ms/config':>15}"
    )
    for n, k, wall, rate, exe, claim in rows:
        print(f"{n:>7} {k:>7} {wall:>8.1f} {rate:>11.2f} {exe:>16.2f} {claim:>15.1f}")
    print(
        f"\nqueue cost per configuration, nothing trained ({args.noop} configurations, 1 worker): "
        f"claim {1000 * claim_noop:.1f} ms, finish {1000 * finish_noop:.1f} ms "
        f"(= {100 * (claim_noop + finish_noop) / statistics.mean(r[4] for r in rows):.2f}% of a tiny "
        "configuration's execute time)"
    )


if __name__ == "__main__":
    main()
