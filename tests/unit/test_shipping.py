"""Which model do I ship? The comparison table by hand: accuracy counts abstentions as errors, ambiguity counts
only examples where two models both answer, differently."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mmtrack.analysis.shipping import ship_table

A = 9  # the abstain class


def _preds(pred, labels=(0, 1, 2, 3), groups=("x", "x", "y", "y")):
    return pd.DataFrame(
        {
            "index": range(len(pred)),
            "label": labels,
            "pred": pred,
            "group/g": pd.Categorical(groups, categories=["x", "y"]),
        }
    )


def test_by_hand():
    single = {"s1": _preds([0, 1, 2, 0]), "s2": _preds([0, 2, 2, 3])}
    selective = {"e1": _preds([0, A, 2, A]), "e2": _preds([0, A, 1, 3])}
    df = ship_table({"single": single, "selective": selective, "none": {}}, {"selective": A})
    assert list(df["kind"].unique()) == ["single", "selective"]
    s = df[(df.kind == "single") & (df.group == "all")].iloc[0]
    assert (s.models, s.examples, s.acc, s.abstain, s.answered_acc) == (2, 4, 6 / 8, 0.0, 6 / 8)
    assert s.ambiguity == 0.5  # examples 1 and 3 get different answers
    e = df[(df.kind == "selective") & (df.group == "all")].iloc[0]
    assert e.acc == 4 / 8 and e.abstain == 3 / 8
    assert e.answered_acc == pytest.approx((2 / 2 + 2 / 3) / 2)  # each model's accuracy where it answers
    assert e.ambiguity == 1 / 4  # only example 2 is answered by both, differently; 1 and 3 have an abstention
    y = df[(df.kind == "selective") & (df.group == "g=y")].iloc[0]
    assert (y.examples, y.acc, y.abstain, y.ambiguity) == (2, 2 / 4, 1 / 4, 1 / 2)


def test_one_model_has_no_ambiguity_and_misaligned_predictions_are_refused():
    df = ship_table({"one": {"a": _preds([0, 1, 2, 3])}}, {})
    assert math.isnan(df.iloc[0].ambiguity) and df.iloc[0].acc == 1.0
    short = _preds([0, 1, 2], labels=(0, 1, 2), groups=("x", "x", "y"))
    with pytest.raises(ValueError, match="different examples"):
        ship_table({"k": {"a": _preds([0, 1, 2, 3]), "b": short}}, {})
