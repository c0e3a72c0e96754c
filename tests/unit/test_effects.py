"""Axis effects (η², permutation p) and prediction multiplicity on hand-made inputs (pure numpy: no torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmtrack.analysis.effects import AxisEffect, axis_effect, n_assignments, top_axis
from mmtrack.analysis.multiplicity import contested_examples, multiplicity, vote_shares


def test_an_axis_that_shifts_every_seed_by_the_same_amount_explains_everything():
    seeds = np.array([[0.0], [0.3], [-0.2], [0.1], [0.25]])  # each seed's own offset, shared by every column
    table = seeds + np.array([90.0, 92.0, 95.0])  # the axis moves every seed by +2 and +5
    effect = axis_effect(table)
    within = sum(((table[:, j] - table[:, j].mean()) ** 2).sum() for j in range(3))
    total = ((table - table.mean()) ** 2).sum()
    assert effect.eta_squared == pytest.approx(1 - within / total)
    assert effect.eta_squared > 0.97
    assert not effect.exact and effect.permutations == 9999  # 15!/(5!)^3 = 756,756 assignments: sampled
    assert effect.p_value == pytest.approx(1 / 10_000)  # no shuffling reaches the observed split
    assert effect.significant and "*" in effect.label()


def test_columns_with_equal_means_have_no_effect():
    col = np.array([91.0, 93.0, 92.0, 90.0, 94.0])
    table = np.stack([col, col[::-1], np.roll(col, 2)], axis=1)  # same scores, shuffled between seeds
    effect = axis_effect(table)
    assert effect.eta_squared == pytest.approx(0.0, abs=1e-12)
    assert effect.p_value == pytest.approx(1.0)  # every shuffling is at least as extreme as SS_between = 0
    assert not effect.significant


def test_pure_noise_is_rarely_significant():
    rng = np.random.default_rng(7)
    ps = [axis_effect(rng.normal(92, 1, (5, 3)), permutations=999).p_value for _ in range(60)]
    share = np.mean(np.array(ps) < 0.05)
    assert share < 0.15  # the test's level is 5%: 60 noise tables give a few false positives at most
    assert 0.3 < np.mean(ps) < 0.7  # p is uniform under the null


def test_two_values_are_enumerated_exactly():
    low = np.array([90.0, 90.5, 91.0, 90.2, 90.8])
    effect = axis_effect(np.stack([low, low + 3], axis=1))
    assert effect.exact and effect.permutations == math.comb(10, 5) == 252
    assert effect.p_value == pytest.approx(2 / 252)  # the observed split and its mirror image


def test_missing_cells_are_left_out_and_degenerate_tables_have_no_effect():
    table = np.array([[90.0, 95.0], [np.nan, 96.0], [91.0, np.nan]])
    effect = axis_effect(table)
    assert effect.exact and effect.permutations == n_assignments([2, 2]) == 6
    assert axis_effect(np.full((5, 3), 93.0)) == AxisEffect(None, None, 0, True)
    assert axis_effect(np.array([[90.0, np.nan], [91.0, np.nan]])).eta_squared is None  # one column
    assert axis_effect(np.full((5, 3), 93.0)).label() == "η² –"


def test_the_p_value_is_reproducible_and_shift_invariant():
    rng = np.random.default_rng(3)
    table = rng.normal(90, 1, (5, 3)) + np.array([0, 0.8, 1.2])
    a, b = axis_effect(table), axis_effect(table + 5.0)
    assert a == axis_effect(table)  # fixed seed: same p every time
    assert a.eta_squared == pytest.approx(b.eta_squared) and a.p_value == b.p_value


def test_top_axis_is_the_largest_significant_effect_else_seed():
    strong, weak, noise = (
        AxisEffect(0.9, 0.001, 9999, False),
        AxisEffect(0.95, 0.2, 9999, False),
        AxisEffect(0.5, 0.04, 9999, False),
    )
    assert top_axis({"lr": strong, "arch": weak, "augment": noise}) == "lr"  # arch has larger η² but p 0.2
    assert top_axis({"arch": weak}) == "seed"
    assert top_axis({}) == "seed"


# ------------------------------------------------------------------------------------------ prediction multiplicity


def test_ambiguity_discrepancy_and_contested_rate_by_hand():
    preds = {
        "h0": np.array([0, 1, 1, 0, 2, 2, 1, 0, 1, 1]),
        "a": np.array([0, 1, 1, 0, 2, 2, 1, 0, 0, 0]),  # differs on 8, 9
        "b": np.array([1, 1, 1, 0, 2, 2, 1, 0, 1, 1]),  # differs on 0
        "c": np.array([0, 1, 1, 0, 2, 2, 1, 0, 1, 1]),
    }  # agrees
    m = multiplicity(preds, reference="h0")
    assert (m.n_models, m.n_examples) == (4, 10)
    assert m.ambiguity == pytest.approx(0.3)  # examples 0, 8, 9
    assert m.discrepancy == pytest.approx(0.2)  # model a: 2 of 10
    assert m.contested == pytest.approx(0.3)
    only = multiplicity(preds, run_ids=["h0", "c"], reference="h0")
    assert only.ambiguity == only.discrepancy == only.contested == 0.0
    free = multiplicity(preds, run_ids=["a", "b"])
    assert free.reference is None and free.ambiguity is None and free.contested == pytest.approx(0.3)
    group = multiplicity(preds, reference="h0", mask=np.arange(10) >= 8)  # a minority group: examples 8, 9
    assert group.n_examples == 2 and group.ambiguity == 1.0 and group.discrepancy == 1.0
    assert multiplicity({"h0": preds["h0"]}, reference="h0").contested is None  # one model: nothing to compare


def test_contested_examples_rank_the_most_divided_votes_first():
    preds = {f"m{i}": np.array([0, 1, 2, 0]) for i in range(6)}
    preds["m0"] = np.array([1, 1, 2, 0])  # example 0: 5 of 6 say 0
    preds["m1"] = np.array([1, 0, 2, 1])
    preds["m2"] = np.array([1, 0, 2, 1])  # example 0: 3-3 split; example 1: 4-2; example 3: 4-2
    labels = np.array([0, 0, 2, 0])
    shares = vote_shares(preds, n_classes=3)
    assert shares[0].tolist() == pytest.approx([0.5, 0.5, 0.0]) and shares[2].tolist() == [0, 0, 1]
    top = contested_examples(preds, labels, top=10)
    assert [e["index"] for e in top] == [0, 1, 3]  # 3-3 first; then 4-2 with fewer correct votes (example 1)
    assert top[0]["votes"] == {0: 0.5, 1: 0.5} and top[1]["correct_share"] == pytest.approx(2 / 6)
    assert all(e["index"] != 2 for e in top)  # unanimous: not contested
