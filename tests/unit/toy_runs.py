"""The hand-made runs tables (mlflow.search_runs format) that the sheet, selection, golden and report-layer tests
share: a toy OFAT experiment (`make_runs`, `sheet_of`) and runs with given metrics (`metric_runs`, `POOL`). Data
only, not a test module: every number is checked where it is used (test_sheet.py computed the sheet's by hand)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmtrack.analysis.sheet import Design, build_sheet

NAN = float("nan")

# ------------------------------------------------------------------------------------------------ a toy OFAT study

T0 = pd.Timestamp("2024-01-01", tz="UTC")

# OFAT design, 2 axes x 3 seeds. (lr, batch_size, seed) -> acc. Params are written in varied string forms.
ACC = {
    ("0.1", "128", "0"): 0.9300,
    ("0.10", "128", "1"): 0.9250,
    ("0.1", "128.0", "2"): 0.9310,  # default
    ("0.05", "128", "0"): 0.9200,
    ("0.05", "128", "1"): 0.9280,
    ("0.05", "128", "2"): 0.9150,
    ("0.01", "128", "0"): 0.9100,
    ("1e-2", "128", "1"): 0.9220,
    ("0.01", "128", "2"): 0.9260,
    ("0.1", "256", "0"): 0.9350,
    ("0.1", "256", "1"): 0.9180,
    ("0.1", "256", "2"): 0.9240,
}
RUN_ID = {k: f"r-{float(k[0]):g}-{float(k[1]):g}-{k[2]}" for k in ACC}  # e.g. r-0.05-128-1
STUDY = {
    "name": "toy",
    "design": "ofat",
    "seed_param": "seed",
    "default": {"lr": 0.1, "batch_size": 128},
    "axes": {"lr": [0.1, 0.05, 0.01], "batch_size": [128, 256]},
    "seeds": [0, 1, 2],
}


def row(run_id, lr, bs, seed, acc, status="FINISHED", end=0, eval_n='{"acc": 5000, "acc/group/g": 500}', **extra):
    r = {
        "run_id": run_id,
        "run_name": run_id,
        "status": status,
        "start_time": T0,
        "end_time": T0 + pd.Timedelta(minutes=end),
        "params.lr": lr,
        "params.batch_size": bs,
        "params.seed": seed,
        "params.epochs": "10",
        "params.momentum": "0.9",
        "metrics.acc": acc,
        "metrics.acc/group/g": 2 * acc - 1,
        "metrics.train_loss": 0.1,
        "tags.mmtrack.eval_n": eval_n,
    }
    r.update(extra)
    return r


def make_runs(extra_rows=(), drop=()):
    rows = [row(RUN_ID[k], *k, acc, end=i) for i, (k, acc) in enumerate(ACC.items()) if RUN_ID[k] not in drop]
    # A FAILED run that would change every number if it were counted.
    rows.append(row("failed", "0.05", "128", "0", 0.99, status="FAILED", end=100))
    return pd.DataFrame(rows + list(extra_rows))


def sheet_of(runs=None, **kw):
    return build_sheet(make_runs() if runs is None else runs, "acc", Design.from_study(STUDY), "toy", **kw)


# ------------------------------------------------------------------------------------------------ runs with metrics


def metric_runs(metrics: dict[str, list[float]], status: list[str] | None = None) -> pd.DataFrame:
    """A runs table in mlflow.search_runs format with runs r0, r1, ... and the given metric columns."""
    n = len(next(iter(metrics.values())))
    table = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(n)],
            "run_name": [f"name-{i}" for i in range(n)],
            "status": status or ["FINISHED"] * n,
            "start_time": pd.to_datetime([1_700_000_000 + i for i in range(n)], unit="s", utc=True),
            "params.seed": [str(i) for i in range(n)],
        }
    )
    for name, values in metrics.items():
        table[f"metrics.{name}"] = np.asarray(values, dtype=float)
    return table


# r4 is FAILED and must be ignored everywhere. r1 lacks acc/v.
POOL = metric_runs(
    {
        "acc/a": [0.90, 0.85, 0.80, 0.70, 0.99],
        "acc/b": [0.80, 0.85, 0.90, 0.70, 0.99],
        "acc/u": [0.70, 0.75, 0.60, 0.90, 0.10],
        "acc/v": [0.50, NAN, 0.55, 0.40, 0.10],
        "train_loss": [0.1, 0.2, 0.3, 0.4, 0.5],
        "seconds/train": [10.0, 20.0, 30.0, 40.0, 50.0],
    },
    status=["FINISHED"] * 4 + ["FAILED"],
)
