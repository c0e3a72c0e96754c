"""`mmtrack sheet` (read the runs, build the sheet, render it as JSON) on a local store of 10,000 runs, cold (no
runs cache) and warm (cache), against
`mlflow.search_runs` of the same experiment, in one process. Targets: warm <= 1 s; cold no slower than
search_runs.

    .venv/bin/python benchmarks/bench_sheet.py [--runs 10000] [--store DIR]

The store is built once (it takes a few minutes) and reused from --store on later calls.
"""

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

AXES = {
    "lr": [0.1, 0.05, 0.01],
    "batch_size": [128, 256, 640],
    "augment": ["randaugment", "trivialaugment"],
    "optimizer": ["sgd", "adam"],
    "arch": ["resnet18", "resnet50", "wide_resnet50_2"],
}
DEFAULT = {axis: values[0] for axis, values in AXES.items()}
METRICS = (
    ["acc", "acc/group/skew/gs-minority", "acc/group/color/gray", "acc/ood/digits-warped"]
    + [f"acc/output_noise/{k}" for k in (1, 2, 3, 4, 5)]
    + [f"acc/pgd_linf/{d}" for d in (0.0001, 0.0005, 0.001, 0.005, 0.01)]
)


def build(client, exp_id: str, n_runs: int) -> None:
    import json
    import random

    from mlflow.entities import Metric, Param, RunTag

    points = [dict(DEFAULT)] + [{**DEFAULT, a: v} for a, vals in AXES.items() for v in vals[1:]]
    rng = random.Random(0)
    start = time.perf_counter()
    for i in range(n_runs):
        p = {**points[i % len(points)], "seed": i // len(points), "dataset": "digits-skewed", "epochs": 8}
        run = client.create_run(exp_id, run_name=f"r{i}")
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(m, rng.uniform(0.6, 0.95), now, 0) for m in METRICS],
            params=[Param(k, str(v)) for k, v in p.items()],
            tags=[RunTag("mmtrack.eval_n", json.dumps({m: 5388 for m in METRICS}))],
        )
        client.set_terminated(run.info.run_id, "FINISHED")
        if (i + 1) % 1000 == 0:
            print(f"  built {i + 1} runs ({time.perf_counter() - start:.0f}s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--store", default="benchmarks/out/sheet-store")
    args = ap.parse_args()
    os.environ["MMTRACK_TRACKING_DIR"] = str(Path(args.store).resolve())
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow

    from mmtrack import analysis, report, tracking

    client = tracking.connect()
    name = f"bench-{args.runs}"
    exp = client.get_experiment_by_name(name)
    if exp is None:
        exp_id = tracking.experiment_id(client, name, create=True)
        print(f"building a store of {args.runs} runs in {args.store} ...")
        build(client, exp_id, args.runs)
    else:
        exp_id = exp.experiment_id

    def sheet_once() -> float:
        t = time.perf_counter()
        runs = tracking.load_runs(client, exp_id)
        design = analysis.Design(axes=AXES, default=DEFAULT)
        s = analysis.build_sheet(runs, "acc/pgd_linf/0.005", design, name)
        report.render(s, "json")
        return time.perf_counter() - t, len(runs)

    search, cold = [], []
    for _ in range(2):  # alternating, best of two each: the OS page cache warms for both alike
        t = time.perf_counter()
        df = mlflow.search_runs([exp_id], max_results=100000)
        search.append(time.perf_counter() - t)
        tracking.drop_cache()
        cold_s, n = sheet_once()
        cold.append(cold_s)
    search_s, cold_s = min(search), min(cold)
    warm = [sheet_once()[0] for _ in range(3)]
    warm_s = min(warm)
    print(f"{n} runs ({len(df)} via mlflow.search_runs)")
    print(f"  mlflow.search_runs      : {search_s:7.2f} s")
    print(f"  mmtrack sheet, cold     : {cold_s:7.2f} s   ratio to search_runs {cold_s / search_s:.2f} (target <= 1)")
    print(
        f"  mmtrack sheet, warm     : {warm_s:7.2f} s   (target <= 1 s; ratio to search_runs {warm_s / search_s:.3f})"
    )


if __name__ == "__main__":
    main()
