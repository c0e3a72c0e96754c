"""Model-selection experiment (paper §5) on hand-computed runs tables."""

from __future__ import annotations

import io
import json

import numpy as np
import optuna
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from rich.console import Console
from toy_runs import NAN, POOL, metric_runs

from mmtrack.analysis.selection import (
    RangeStats,
    Selection,
    analyse,
    select_pareto,
    select_top,
    select_within,
    top_count,
)
from mmtrack.errors import MMTrackError
from mmtrack.report import render, rich_table, save_figure, selection_figure, selection_log

# a descends, b ascends over r0..r9: top-8 on a = r0..r7, top-8 on b = r2..r9.
TEN = metric_runs(
    {
        "a": [0.90, 0.89, 0.88, 0.87, 0.86, 0.85, 0.84, 0.83, 0.82, 0.81],
        "b": [0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87, 0.88, 0.89, 0.90],
    }
)


def ids(*numbers: int) -> list[str]:
    return sorted(f"r{i}" for i in numbers)


# ----------------------------------------------------------------------------------------------- top-k


def test_top_count_ceil_and_floor():
    assert top_count(75, 10) == 8  # 7.5 -> 8
    assert top_count(75, 45) == 34 and top_count(75, 45, "floor") == 33
    assert top_count(50, 45) == 23 and top_count(50, 45, "floor") == 22
    assert top_count(70, 10) == 7 and top_count(70, 10, "floor") == 7  # exact products are not bumped


def test_top_k_ceil_rule_is_intersection_of_per_metric_sets():
    sel = select_top(TEN, ["a", "b"], 75)
    assert sel == Selection(rule="top", k=75.0, eps=None, run_ids=ids(2, 3, 4, 5, 6, 7), n_selected=6)
    assert select_top(TEN, ["a"], 75).run_ids == ids(*range(8))
    assert select_top(TEN, ["a", "b"], 50).run_ids == []  # r0..r4 vs r5..r9
    assert select_top(TEN, ["a", "b"], 55).run_ids == ids(4, 5)  # ceil(5.5)=6: r0..r5 vs r4..r9
    assert select_top(TEN, ["a", "b"], 55, rounding="floor").run_ids == []  # floor: 5 each
    assert select_top(TEN, ["metrics.a", "b"], 100).n_selected == 10  # prefix tolerated


def test_top_k_keeps_ties_at_the_cut():
    runs = metric_runs({"a": [0.9, 0.8, 0.8, 0.7]})
    assert select_top(runs, ["a"], 50).run_ids == ids(0, 1, 2)  # cut = 2, r2 ties with r1
    assert select_top(runs, ["a"], 25).run_ids == ids(0)


def test_run_missing_a_by_metric_is_excluded_and_reported():
    # n(a) = 5 -> ceil(2.5) = 3: r4, r0, r1. n(b) = 4 (r4 lacks b) -> 2: r0, r1.
    runs = metric_runs({"a": [0.9, 0.8, 0.7, 0.6, 0.95], "b": [0.9, 0.8, 0.7, 0.6, NAN]})
    sel = select_top(runs, ["a", "b"], 50)
    assert sel.run_ids == ids(0, 1)
    assert sel.excluded == {"r4": ["b"]}
    report = analyse(runs, ["a", "b"], unseen=["a"], tops=(50,))
    assert report.excluded == {"r4": ["b"]}
    assert any("r4" in w and "b" in w for w in report.warnings)
    assert report.to_dict()["excluded"] == {"r4": ["b"]}


def test_only_finished_runs_are_ranked():
    status = ["FAILED", "FINISHED", "FINISHED", "RUNNING", "FINISHED"]
    runs = metric_runs({"a": [0.99, 0.9, 0.8, 0.7, 0.6]}, status=status)
    # FINISHED: r1, r2, r4 -> n = 3, top 50% -> ceil(1.5) = 2.
    assert select_top(runs, ["a"], 50).run_ids == ids(1, 2)


def test_bad_k_and_unknown_metric():
    with pytest.raises(MMTrackError, match="top-k"):
        select_top(TEN, ["a"], 0)
    with pytest.raises(MMTrackError, match=r"nope.*a, b"):
        select_top(TEN, ["a", "nope"], 50)
    with pytest.raises(MMTrackError, match="no selection metric"):
        select_within(TEN, [], 1.0)


# ----------------------------------------------------------------------------------------------- within


def test_within_eps_percentage_points():
    runs = metric_runs({"acc/a": [0.930, 0.925, 0.920, 0.910], "acc/b": [0.80, 0.85, 0.84, 0.86]})
    # eps=1: a >= 92 -> r0, r1, r2 (92.0 on the boundary); b >= 85 -> r1 (boundary), r3.
    sel = select_within(runs, ["acc/a", "acc/b"], 1.0)
    assert (sel.rule, sel.eps, sel.k, sel.run_ids) == ("within", 1.0, None, ids(1))
    # eps=2: a >= 91 -> all; b >= 84 -> r1, r2, r3.
    assert select_within(runs, ["acc/a", "acc/b"], 2.0).run_ids == ids(1, 2, 3)
    assert select_within(runs, ["acc/a"], 0.0).run_ids == ids(0)
    # 0.29 * 100 == 28.999999999999996 in floats: the tolerance keeps it within 1 pp of 30.
    assert select_within(metric_runs({"acc/a": [0.30, 0.29, 0.28]}), ["acc/a"], 1.0).run_ids == ids(0, 1)
    with pytest.raises(MMTrackError, match="eps"):
        select_within(runs, ["acc/a"], -1)


# ----------------------------------------------------------------------------------------------- pareto


def test_pareto_two_metrics_with_duplicate_and_tie():
    runs = metric_runs(
        {
            "a": [0.9, 0.8, 0.8, 0.5, 0.7, 0.9, 0.99],
            "b": [0.5, 0.8, 0.8, 0.9, 0.7, 0.4, NAN],
        }
    )
    # r1 and r2 are the same point: both kept. r4 is dominated by r1; r5 ties r0 on a but is worse on b.
    # r6 would dominate on a but lacks b: excluded.
    sel = select_pareto(runs, ["a", "b"])
    assert (sel.rule, sel.k, sel.eps) == ("pareto", None, None)
    assert sel.run_ids == ids(0, 1, 2, 3)
    assert sel.excluded == {"r6": ["b"]}


def test_pareto_three_metrics_and_single_metric():
    runs = metric_runs(
        {
            "a": [1.0, 0.0, 0.0, 0.5, 0.4, 1.0],
            "b": [0.0, 1.0, 0.0, 0.5, 0.4, 0.0],
            "c": [0.0, 0.0, 1.0, 0.5, 0.4, 0.0],
        }
    )
    assert select_pareto(runs, ["a", "b", "c"]).run_ids == ids(0, 1, 2, 3, 5)  # r4 dominated by r3
    assert select_pareto(runs, ["a"]).run_ids == ids(0, 5)  # one metric: every run tied at the best


def test_pareto_restores_optuna_verbosity():
    optuna.logging.set_verbosity(optuna.logging.INFO)
    select_pareto(TEN, ["a", "b"])
    assert optuna.logging.get_verbosity() == optuna.logging.INFO


# ----------------------------------------------------------------------------------------------- analyse


# POOL (toy_runs): r4 is FAILED and must be ignored everywhere; r1 lacks acc/v.
@pytest.fixture(scope="module")
def report():
    # top 75 (3 of 4): a -> r0 r1 r2, b -> r2 r1 r0. top 50 (2): a -> r0 r1, b -> r2 r1 -> r1.
    # within 5 pp: a >= 85 -> r0 r1, b >= 85 -> r1 r2 -> r1. pareto: r3 dominated -> r0 r1 r2.
    return analyse(POOL, ["acc/a", "acc/b"], within=[5.0], pareto=True, experiment="toy")


def test_analyse_default_unseen_and_selections(report):
    assert report.unseen == ["acc/u", "acc/v"]  # accuracies only: not acc/a, acc/b (by), train_loss nor seconds/train
    got = [(o.selection.rule, o.selection.run_ids) for o in report.selections]
    assert got == [("top", ids(0, 1, 2)), ("top", ids(1)), ("within", ids(1)), ("pareto", ids(0, 1, 2))]


def test_analyse_unseen_stats_before_and_after(report):
    # Percentage points, float noise rounded away (0.55 * 100 = 55.00000000000001 -> 55.0).
    assert report.before == {"acc/u": RangeStats(60.0, 90.0, 30.0, 4), "acc/v": RangeStats(40.0, 55.0, 15.0, 3)}
    top75, top50, within, pareto = (o.unseen for o in report.selections)
    assert top75 == {"acc/u": RangeStats(60.0, 75.0, 15.0, 3), "acc/v": RangeStats(50.0, 55.0, 5.0, 2)}
    # r1 alone lacks v: no range rather than a zero.
    assert top50 == within == {"acc/u": RangeStats(75.0, 75.0, 0.0, 1), "acc/v": RangeStats(None, None, None, 0)}
    assert pareto == top75


def test_analyse_reports_missing_unseen_metric(report):
    text = "\n".join(report.warnings)
    assert "unseen metric acc/v missing in 1 of 4 runs" in text
    assert "unseen metric acc/v missing in 1 of 1 runs selected by top 50%" in text
    assert "1 run(s) not FINISHED were ignored" in text


def test_analyse_unknown_unseen_metric_lists_existing():
    with pytest.raises(MMTrackError, match=r"unseen.*zzz.*acc/a, acc/b, acc/u, acc/v, seconds/train, train_loss"):
        analyse(POOL, ["acc/a"], unseen=["zzz"])


def test_json_layout(report):
    data = json.loads(render(report, "json"), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert set(data) == {
        "experiment",
        "by",
        "unseen",
        "before",
        "selections",
        "excluded",
        "warnings",
        "prediction_multiplicity",
    }
    assert data["prediction_multiplicity"] is None  # no predictions given
    assert (data["experiment"], data["by"], data["unseen"]) == ("toy", ["acc/a", "acc/b"], ["acc/u", "acc/v"])
    assert set(data["before"]["acc/u"]) == {"min", "max", "delta_max", "n"}
    assert data["before"]["acc/v"]["n"] == 3
    top75, top50, within, pareto = data["selections"]
    assert set(top75) == {"rule", "k", "n_selected", "run_ids", "unseen"}
    assert set(within) == {"rule", "eps", "n_selected", "run_ids", "unseen"}
    assert set(pareto) == {"rule", "n_selected", "run_ids", "unseen"}
    assert (top75["rule"], top75["k"], top75["n_selected"]) == ("top", 75.0, 3)
    assert top75["run_ids"] == ["r0", "r1", "r2"]
    assert (within["rule"], within["eps"]) == ("within", 5.0)
    assert set(top75["unseen"]["acc/u"]) == {"min", "max", "delta_max"}
    assert top50["unseen"]["acc/v"] == {"min": None, "max": None, "delta_max": None}
    assert top75["unseen"]["acc/u"] == {"min": 60.0, "max": 75.0, "delta_max": 15.0}
    assert data["before"]["acc/v"] == {"min": 40.0, "max": 55.0, "delta_max": 15.0, "n": 3}
    assert data["excluded"] == {}


def test_csv_reads_back_with_pandas(report):
    table = pd.read_csv(io.StringIO(render(report, "csv")))
    assert len(table) == 5 * 2  # (before + 4 selections) x (u, v)
    before_u = table[(table["selection"] == "before") & (table["metric"] == "acc/u")].iloc[0]
    assert (before_u["min"], before_u["max"], before_u["delta_max"], before_u["n"]) == (60.0, 90.0, 30.0, 4)
    top50_v = table[(table["selection"] == "top 50%") & (table["metric"] == "acc/v")].iloc[0]
    assert np.isnan(top50_v["min"]) and top50_v["n"] == 0 and top50_v["k"] == 50


def test_text_renderings(report):
    cell = "60.00–90.00 (Δ 30.00)"
    md = render(report, "markdown")
    assert "| metric | before (n=4) | top 75% (n=3) | top 50% (n=1) | within 5 pp (n=1) | pareto (n=3) |" in md
    assert cell in md and "| acc/v |" in md and "n/a" in md
    assert r"top 75\% (n=3)" in render(report, "latex") and r"\toprule" in render(report, "latex")
    assert "<td>60.00–90.00 (Δ 30.00)</td>" in render(report, "html")
    console = Console(record=True, width=250)
    console.print(rich_table(report))
    shown = console.export_text()
    assert "top 75% (n=3)" in shown and cell in shown
    with pytest.raises(MMTrackError, match="markdown"):
        render(report, "xlsx")


def test_report_carries_the_per_run_values(report):
    """The figure draws from the report alone: every FINISHED run's unseen values, in percentage points."""
    assert list(report.values.index) == ["r0", "r1", "r2", "r3"] and list(report.values.columns) == ["acc/u", "acc/v"]
    assert report.values.loc["r3", "acc/u"] == pytest.approx(90.0) and np.isnan(report.values.loc["r1", "acc/v"])
    (_, n0, before), (label, n1, top75) = report.groups()[:2]
    assert (n0, len(before), label, n1, list(top75.index)) == (4, 4, "top 75%", 3, ["r0", "r1", "r2"])
    assert top75["acc/u"].max() - top75["acc/u"].min() == pytest.approx(report.selections[0].unseen["acc/u"].delta_max)


def test_figure_has_one_panel_per_unseen_metric(report, tmp_path):
    fig = selection_figure(report)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["acc/u", "acc/v"]
    ticks = [t.get_text() for t in panels[0].get_xticklabels()]
    assert ticks == ["before\n(n=4)", "top 75%\n(n=3)", "top 50%\n(n=1)", "within 5 pp\n(n=1)", "pareto\n(n=3)"]
    # one dot per run with the metric: acc/v lacks r1, so 3 before, 2 in top 75%, none in top 50%
    dots = [len(c.get_offsets()) for c in panels[1].collections if isinstance(c, PathCollection)]
    assert dots == [3, 2, 2]  # ... and pareto keeps r0 r1 r2
    assert "Δ 30.00" in {t.get_text() for t in panels[0].texts}  # before: 60 .. 90
    paths = save_figure(fig, tmp_path / "fig" / "selection")
    assert [p.name for p in paths] == ["selection.png", "selection.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Selection on acc/a, acc/b" in paths[1].read_text()
    with pytest.raises(MMTrackError, match="no unseen metric"):
        selection_figure(analyse(POOL, ["acc/a"], unseen=[]))


def test_selection_log_names_files_and_metrics(report):
    files, metrics = selection_log(report)
    assert set(files) == {"selection.json", "selection.html", "selection.md"}
    assert json.loads(files["selection.json"])["by"] == ["acc/a", "acc/b"]
    assert metrics["delta_max/before/acc/u"] == 30.0 and metrics["delta_max/before/acc/v"] == 15.0
    assert {k: v for k, v in metrics.items() if k.startswith("n_selected/")} == {
        "n_selected/top75": 3,
        "n_selected/top50": 1,
        "n_selected/within5pp": 1,
        "n_selected/pareto": 3,
    }
    assert metrics["delta_max/top75/acc/u"] == 15.0 and metrics["delta_max/top50/acc/v"] is None


def test_non_accuracies_are_never_unseen_by_default_and_keep_their_unit():
    """`epoch_seconds` is not an accuracy: left out of the default unseen set, and on request reported in
    seconds (not x100 as if it were a percentage)."""
    runs = metric_runs(
        {
            "acc": [0.90, 0.80, 0.85],
            "acc/g": [0.5, 0.6, 0.7],
            "epoch_seconds": [167.7, 1853.0, 400.0],
            "mia/rule_based/accuracy": [0.5, 0.52, 0.51],
        }
    )
    report = analyse(runs, ["acc"], tops=[50])
    assert report.unseen == ["acc/g"]
    report = analyse(runs, ["acc"], unseen=["acc/g", "epoch_seconds"], tops=[50])
    assert report.before["epoch_seconds"] == RangeStats(167.7, 1853.0, 1685.3, 3)
    assert report.before["acc/g"] == RangeStats(50.0, 70.0, 20.0, 3)
    assert "167.70–1853.00 (Δ 1685.30)" in render(report, "markdown")
    console = Console(record=True, width=250)
    console.print(rich_table(report))
    assert "accuracies in percentage points" in console.export_text()


# --------------------------------------------------------------------------------------- prediction multiplicity


def test_prediction_multiplicity_before_and_after_selection():
    """r0..r9 predict 10 examples; r6..r9 flip examples of their own: selecting the top 50% on `a` (r0..r4)
    keeps only models that agree with the reference r0."""
    base = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    preds = {f"r{i}": base.copy() for i in range(10)}
    for i in range(6, 10):
        preds[f"r{i}"][i] = (base[i] + 1) % 3  # rI flips example I
    rep = analyse(TEN, ["a"], ["b"], tops=[50], predictions=preds, reference="r0")
    before, top50 = rep.multiplicity, rep.selections[0].multiplicity
    assert (before.n_models, before.n_examples, before.reference) == (10, 10, "r0")
    assert before.ambiguity == pytest.approx(0.4) and before.discrepancy == pytest.approx(0.1)
    assert before.contested == pytest.approx(0.4)
    assert rep.selections[0].selection.run_ids == ids(0, 1, 2, 3, 4)
    assert top50.n_models == 5 and top50.ambiguity == top50.discrepancy == top50.contested == 0.0
    data = rep.to_dict()
    assert data["prediction_multiplicity"]["ambiguity"] == pytest.approx(0.4)
    assert data["selections"][0]["prediction_multiplicity"]["contested"] == 0.0
    text = render(rep, "markdown")
    assert "| predictions: ambiguity | 40.00% | 0.00% |" in text
    long = pd.read_csv(io.StringIO(render(rep, "csv")))
    row = long[(long.metric == "predictions/contested") & (long.selection == "before")]
    assert row["min"].item() == pytest.approx(40.0) and row["n"].item() == 10
    # without predictions: nothing about them anywhere
    plain = analyse(TEN, ["a"], ["b"], tops=[50])
    assert plain.multiplicity is None and plain.to_dict()["prediction_multiplicity"] is None
    assert "predictions:" not in render(plain, "markdown")


def test_selection_multiplicity_against_a_reference_outside_the_set():
    preds = {f"r{i}": np.array([0, 0, 0, 0]) for i in range(10)}
    preds["r9"] = np.array([1, 1, 0, 0])  # the reference disagrees with everyone on 2 of 4 examples
    rep = analyse(TEN, ["a"], ["b"], tops=[50], predictions=preds, reference="r9")
    top50 = rep.selections[0].multiplicity  # r0..r4, r9 not among them
    assert top50.ambiguity == pytest.approx(0.5) and top50.discrepancy == pytest.approx(0.5)
    assert top50.contested == 0.0
