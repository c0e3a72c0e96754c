"""The ε-Rashomon set (issue 36, item 2): the models within ε points of the best clean accuracy, and the spread
of the other metrics among them. Pure pandas."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mmtrack.analysis import Design, build_sheet
from mmtrack.analysis.rashomon import rashomon_set, spread_by_epsilon, within
from mmtrack.errors import MMTrackError


def runs() -> pd.DataFrame:
    """lr 0.1 / 0.01 x seeds 0-2: lr 0.01 lags in accuracy and spreads the fairness metric; one FAILED run."""
    rows = []
    acc = {
        ("0.1", 0): 0.98,
        ("0.1", 1): 0.975,
        ("0.1", 2): 0.972,
        ("0.01", 0): 0.955,
        ("0.01", 1): 0.96,
        ("0.01", 2): 0.965,
    }
    fair = {
        ("0.1", 0): 0.90,
        ("0.1", 1): 0.91,
        ("0.1", 2): 0.89,
        ("0.01", 0): 0.70,
        ("0.01", 1): 0.80,
        ("0.01", 2): 0.75,
    }
    for i, ((lr, seed), a) in enumerate(acc.items()):
        rows.append(
            {
                "run_id": f"r{i}",
                "status": "FINISHED",
                "params.lr": lr,
                "params.seed": str(seed),
                "metrics.acc": a,
                "metrics.acc/group/x": fair[(lr, seed)],
                "tags.mlflow.runName": f"lr={lr} · s{seed}",
            }
        )
    rows.append({"run_id": "dead", "status": "FAILED", "params.lr": "0.1", "params.seed": "3", "metrics.acc": math.nan})
    return pd.DataFrame(rows)


def test_the_set_keeps_the_models_within_eps_of_the_best():
    rs = rashomon_set(runs(), 1.0)
    assert rs.best == pytest.approx(98.0) and sorted(rs.kept) == ["r0", "r1", "r2"]
    assert [name for _, name, _ in sorted(rs.dropped, key=lambda d: d[2])] == [
        "lr=0.01 · s0",
        "lr=0.01 · s1",
        "lr=0.01 · s2",
    ]
    assert rs.note().startswith(
        "Rashomon set: 3 of 6 models within 1 pp of the best acc (98.00 pp); fell out: lr=0.01 · s0 (95.50)"
    )
    assert sorted(rashomon_set(runs(), 1.5).kept) == ["r0", "r1", "r2", "r5"]  # 96.5 is within 1.5 of 98
    assert len(rashomon_set(runs(), 0).kept) == 1
    assert len(rashomon_set(runs(), 100).kept) == 6 and rashomon_set(runs(), 100).note().endswith("none fell out")


def test_sheets_on_the_set_measure_only_near_equal_models():
    design = Design(axes={"lr": ["0.1", "0.01"]}, default={"lr": "0.1"})
    everything = build_sheet(runs(), "acc/group/x", design)
    near = build_sheet(within(runs(), rashomon_set(runs(), 1.0)), "acc/group/x", design)
    assert everything.delta_max_all == pytest.approx(21.0) and everything.n_models == 6
    assert near.delta_max_all == pytest.approx(2.0) and near.n_models == 3  # the spread that survives
    assert "dead" in set(within(runs(), rashomon_set(runs(), 1.0))["run_id"])  # runs not FINISHED are left alone


def test_the_spread_against_eps_runs_from_the_best_model_to_every_model():
    curve = spread_by_epsilon(runs(), ["acc/group/x"])  # at every ε where a model joins
    assert list(curve["epsilon"]) == pytest.approx([0.0, 0.5, 0.8, 1.5, 2.0, 2.5])
    assert list(curve["models"]) == [1, 2, 3, 4, 5, 6]
    assert math.isnan(curve["delta_max_all"].iloc[0]) and curve["delta_max_all"].iloc[-1] == pytest.approx(21.0)


def test_bad_eps_or_metric_is_one_line():
    with pytest.raises(MMTrackError, match="--rashomon must be a number of points >= 0, got -1"):
        rashomon_set(runs(), -1)
    with pytest.raises(MMTrackError, match="acc/ood"):
        rashomon_set(runs(), 1, "acc/ood")
