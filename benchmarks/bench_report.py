"""`mmtrack report` on a swept study (default: the embedded `digits-skewed`, 45 runs, after `make demo`), stage by
stage, cold (no runs or predictions cache) and warm, against the baseline of the same process building every sheet
of the experiment as JSON (what `mmtrack sheet --format json` does). Target: the whole command <= 10 s warm on
2 cores.

    .venv/bin/python benchmarks/bench_report.py [--experiment digits-skewed]
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def one_pass(label: str, experiment: str) -> None:
    from mmtrack import analysis, report
    from mmtrack.api import open_experiment

    exp, t_runs = timed(lambda: open_experiment(experiment))
    cells = analysis.assign_cells(exp.runs, exp.design, exp.name)
    metrics = analysis.sheet_metrics(exp.runs)
    _, t_sheets = timed(lambda: report.render_sheets([analysis.sheet_stats(cells, m) for m in metrics], "json"))
    preds, t_preds = timed(exp.predictions)
    audit, t_audit = timed(lambda: analysis.build_audit(exp.runs, exp.design, exp.name, exp.study, preds))
    _, t_page = timed(lambda: report.render_audit(audit))
    total = t_runs + t_preds + t_audit + t_page
    print(
        f"{label}: {len(exp.runs)} runs, {len(metrics)} metrics | runs table {t_runs:.2f} s | predictions "
        f"{t_preds:.2f} s | audit {t_audit:.2f} s | page {t_page:.2f} s | report {total:.2f} s vs sheets "
        f"alone {t_runs + t_sheets:.2f} s: ratio {total / (t_runs + t_sheets):.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="digits-skewed")
    args = ap.parse_args()

    from mmtrack import settings, tracking

    tracking.quiet_libraries()
    for sub in ("runs", "predictions"):  # cold: nothing cached
        shutil.rmtree(settings.cache_dir() / sub, ignore_errors=True)
    for label in ("cold", "warm"):
        one_pass(label, args.experiment)
    out = Path(tempfile.mkdtemp(prefix="bench-report-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)  # gigabytes otherwise, run after run
    start = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "mmtrack"), "report", "--experiment", args.experiment, "--out", str(out)],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    print(
        f"`mmtrack report` warm, whole command (imports, contested images, writing the page): {wall:.2f} s "
        f"(target <= 10 s), page {(out / 'report.html').stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
