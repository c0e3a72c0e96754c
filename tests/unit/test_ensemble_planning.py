"""Which ensembles `mmtrack ensemble` builds, planned on hand-made runs tables (mlflow.search_runs format): over
each configuration's seeds (all, or draws of K), over every configuration of one seed, and the experiment each
kind goes into. Pure pandas: nothing is trained or logged."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from mmtrack.analysis.ensembles import Planned, experiment_name, plan_config_ensembles, plan_seed_ensembles
from mmtrack.errors import MMTrackError


def run(run_id: str, lr: str, seed: str | None, status: str = "FINISHED", name: str | None = None, **params) -> dict:
    row = {
        "run_id": run_id,
        "status": status,
        "params.lr": lr,
        "params.batch_size": "256",
        "params.eval.noise_draws": "5",  # an evaluation setting: never part of a configuration
        "tags.mlflow.runName": name or (f"{'default' if lr == '0.1' else f'lr={lr}'} · s{seed}"),
    }
    if seed is not None:
        row["params.seed"] = seed
    row.update({f"params.{k}": v for k, v in params.items()})
    return row


def runs(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


# lr 0.1 x seeds 0, 1, 2 (listed out of order; "10" sorts after "2" as a number), lr 0.05 x seeds 0, 1 and a
# FAILED seed 2, lr 0.01 with one seed only (no ensemble), and a RUNNING run.
TABLE = runs(
    run("a2", "0.1", "2"),
    run("a0", "0.1", "0"),
    run("a10", "0.1", "10"),
    run("b0", "0.05", "0"),
    run("b1", "0.05", "1"),
    run("b2", "0.05", "2", status="FAILED"),
    run("c0", "0.01", "0"),
    run("r1", "0.01", "1", status="RUNNING"),
)


def test_one_ensemble_of_all_seeds_per_configuration():
    planned = plan_seed_ensembles(TABLE)
    assert planned == [  # members in the order of their seeds, as numbers (10 after 2)
        Planned("default · ens3", {"batch_size": "256", "lr": "0.1"}, ["a0", "a2", "a10"], [0, 2, 10], 0),
        Planned("lr=0.05 · ens2", {"batch_size": "256", "lr": "0.05"}, ["b0", "b1"], [0, 1], 0),
    ]
    # neither the FAILED nor the RUNNING run, nor a configuration with one FINISHED seed, makes an ensemble
    assert not {"b2", "c0", "r1"} & {m for p in planned for m in p.members}


def test_k_of_the_seeds_every_subset_when_there_are_few():
    planned = plan_seed_ensembles(TABLE, size=2, draws=5)
    default = [p for p in planned if p.params["lr"] == "0.1"]
    assert [(p.name, p.members, p.seeds, p.draw) for p in default] == [
        ("default · ens2 #0", ["a0", "a2"], [0, 2], 0),
        ("default · ens2 #1", ["a0", "a10"], [0, 10], 1),
        ("default · ens2 #2", ["a2", "a10"], [2, 10], 2),
    ]
    (other,) = [p for p in planned if p.params["lr"] == "0.05"]  # one pair: no draw number in its name
    assert (other.name, other.members, other.draw) == ("lr=0.05 · ens2", ["b0", "b1"], 0)
    assert plan_seed_ensembles(TABLE, size=3) == plan_seed_ensembles(TABLE)[:1]  # lr 0.05 has 2 seeds, not 3
    assert plan_seed_ensembles(TABLE, size=4) == []


def test_k_of_the_seeds_a_fixed_draw_when_there_are_many():
    table = runs(*(run(f"s{s}", "0.1", str(s)) for s in range(6)))  # 6 choose 3 = 20 subsets
    planned = plan_seed_ensembles(table, size=3, draws=4)
    assert [p.draw for p in planned] == [0, 1, 2, 3] and [p.name for p in planned][-1] == "default · ens3 #3"
    subsets = [tuple(p.seeds) for p in planned]
    assert len(set(subsets)) == 4 and set(subsets) <= set(itertools.combinations(range(6), 3))
    assert subsets == sorted(subsets)  # drawn, then kept in the order of the subsets
    assert all(p.members == [f"s{s}" for s in p.seeds] for p in planned)
    assert plan_seed_ensembles(table, size=3, draws=4) == planned  # the same draw every time
    others = {tuple(p.seeds) for seed in range(1, 6) for p in plan_seed_ensembles(table, size=3, draws=4, seed=seed)}
    assert others - set(subsets)  # the draw's own seed picks the subsets


def test_a_param_missing_from_a_configuration_is_not_in_its_params():
    table = runs(
        run("x0", "0.1", "0", momentum="0.9"),
        run("x1", "0.1", "1", momentum="0.9"),
        run("y0", "0.1", "0"),
        run("y1", "0.1", "1"),
    )
    planned = plan_seed_ensembles(table)
    assert [(p.members, p.params) for p in planned] == [
        (["x0", "x1"], {"batch_size": "256", "lr": "0.1", "momentum": "0.9"}),
        (["y0", "y1"], {"batch_size": "256", "lr": "0.1"}),
    ]


def test_one_ensemble_per_seed_over_every_configuration():
    table = pd.concat([TABLE, runs(run("c1", "0.01", "1"))], ignore_index=True)
    assert plan_config_ensembles(table) == [
        Planned("every configuration · s0 · ens3", {"batch_size": "256"}, ["a0", "b0", "c0"], [0, 0, 0], 0),
        Planned("every configuration · s1 · ens2", {"batch_size": "256"}, ["b1", "c1"], [1, 1], 1),
    ]  # seeds 2 and 10 have one FINISHED run each (b2 FAILED): no ensemble; the RUNNING r1 is left out
    one_config = runs(run("a0", "0.1", "0"), run("a1", "0.1", "1"))
    assert plan_config_ensembles(one_config) == []  # one run per seed: nothing to ensemble


def test_plans_need_a_seed_param():
    no_seed = runs(run("a", "0.1", None), run("b", "0.05", None))
    with pytest.raises(MMTrackError, match="these runs have no seed param; ensembles over seeds need runs"):
        plan_seed_ensembles(no_seed)
    with pytest.raises(MMTrackError, match="these runs have no seed param; ensembles over configurations pair"):
        plan_config_ensembles(no_seed)


@pytest.mark.parametrize(
    "args, name",
    [
        (("digits",), "digits-ensembles"),
        (("digits", None), "digits-ensembles"),
        (("digits", 3), "digits-ensembles-k3"),
        (("digits", None, "configs"), "digits-ensembles-configs"),
        (("digits", None, True), "digits-ensembles-selected"),
        (("digits", 3, "selected"), "digits-ensembles-selected"),  # a kind has no size in its name
    ],
)
def test_each_kind_of_ensemble_has_its_own_experiment(args, name):
    assert experiment_name(*args) == name
