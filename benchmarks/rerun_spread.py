"""How far a rerun moves the findings: retrain the default configuration's 5 seeds of a finished study (same
commit, same machine) with other torch thread counts, then recompute the study's summary with the rerun's
default runs in place of the original ones.

    .venv/bin/python benchmarks/rerun_spread.py                         # digits-skewed, threads 1 and 2
    .venv/bin/python benchmarks/rerun_spread.py --threads 2 --study digits-skewed

The study's own sweep (`make demo`: --workers 2 on 2 cores) trained every configuration with 1 torch thread, so
`--threads 1` is a same-machine rerun (expected to reproduce every metric exactly) and `--threads 2` changes
only the order of floating-point reductions, as another machine's CPU would. Bit-identical results across
thread counts or CPUs are not something PyTorch promises; this prints, per summary metric, the Δmax^all of the
study, the same with the rerun's default runs, and the largest change of one seed's value, so that a finding
can be read against what a rerun moves. The reruns are logged into `<study>-rerun-t<N>` experiments.
"""

from __future__ import annotations

import argparse
import time

import torch

from mmtrack import analysis, api, tracking
from mmtrack.interventions import parse
from mmtrack.jobs.train_run import run_configs
from mmtrack.study import load_study

METRICS = ("acc", "acc/group/skew/gs-minority", "acc/ood/digits-warped", "acc/output_noise/5")
METRICS += ("acc/input_noise/1", "acc/pgd_linf/0.005")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="digits-skewed")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to rerun with")
    ap.add_argument("--metric", action="append", help="summary metrics (default: the README's six)")
    args = ap.parse_args()
    study = load_study(args.study)
    exp = api.open_experiment(study.name, refresh=True)
    metrics = args.metric or [m for m in METRICS if f"metrics.{m}" in exp.runs]
    first = study.configs()[0]  # the default configuration's first seed
    default = [c for c in study.configs() if c.stack_key == first.stack_key]  # the default, every seed
    runs = exp.runs[exp.runs["status"] == "FINISHED"]
    original = {int(r["params.seed"]): r for _, r in runs.iterrows() if r["tags.mmtrack.config_hash"] in
                {c.hash for c in default}}  # fmt: skip
    if len(original) != len(default):
        raise SystemExit(f"error: {study.name} has {len(original)} of the default's {len(default)} runs; run it first")
    base = summary(exp, runs, metrics)
    threads_used = sorted({str(r["tags.mmtrack.torch_threads"]) for r in original.values()})
    print(f"{study.name}: {len(runs)} runs; the default's {len(default)} seeds were trained with "
          f"{'/'.join(threads_used)} torch thread(s); CPU {original[0]['tags.mmtrack.env.cpu']}")  # fmt: skip
    client = tracking.connect()
    for n in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(n)
        exp_id = tracking.experiment_id(client, f"{study.name}-rerun-t{n}", create=True)
        start = time.perf_counter()
        results = run_configs(default, client, exp_id, parse(study.interventions), study.eval_settings())
        seconds = time.perf_counter() - start
        rerun = {cfg.seed: res.metrics for cfg, res in zip(default, results)}
        swapped = runs.copy()
        for i, r in swapped.iterrows():
            if r["tags.mmtrack.config_hash"] in {c.hash for c in default}:
                for m in metrics:
                    swapped.at[i, f"metrics.{m}"] = rerun[int(r["params.seed"])][m]
        moved = summary(exp, swapped, metrics)
        print(f"\nrerun with {n} torch thread(s) ({seconds:.0f} s):")
        print(f"{'metric (pp)':32} {'Δmax^all':>9} {'rerun':>9} {'moves':>7} {'max seed Δ':>11} {'seeds equal':>12}")
        for m in metrics:
            deltas = [abs(rerun[s][m] - float(original[s][f"metrics.{m}"])) for s in rerun]
            same = sum(d == 0 for d in deltas)
            print(
                f"{m:32} {base[m]:9.2f} {moved[m]:9.2f} {moved[m] - base[m]:+7.2f} "
                f"{100 * max(deltas):11.2f} {same:>7}/{len(deltas)}"
            )


def summary(exp, runs, metrics) -> dict[str, float]:
    """Δmax^all (pp) of each metric over the runs."""
    cells = analysis.assign_cells(runs, exp.design, exp.name)
    return {m: analysis.sheet_stats(cells, m).delta_max_all for m in metrics}


if __name__ == "__main__":
    main()
