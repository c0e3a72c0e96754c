"""Multiplicity sheets on hand-made runs tables (mlflow.search_runs format), every number checked by hand."""

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from scipy.stats import studentized_range
from toy_runs import ACC, RUN_ID, STUDY, make_runs, row, sheet_of

from mmtrack.analysis.sheet import (
    Design,
    assign_cells,
    build_sheet,
    choose_design,
    infer_design,
    noise_floor,
    sheet_metrics,
    sheet_stats,
    summary,
)
from mmtrack.errors import MMTrackError
from mmtrack.report import render, rich_summary, rich_tables, save_figure, sheet_figure, sheet_log

# Hand-computed from toy_runs.ACC (percentage points).
LR_SCORES = [[93.00, 92.00, 91.00], [92.50, 92.80, 92.20], [93.10, 91.50, 92.60]]
LR_DPS = [2.00, 0.60, 1.60]
LR_DPV = [0.60, 1.30, 1.60]
BS_SCORES = [[93.00, 93.50], [92.50, 91.80], [93.10, 92.40]]
BS_DPS = [0.50, 0.70, 0.70]
BS_DPV = [0.60, 1.70]
DELTA_ALL = 93.50 - 91.00


def test_every_number_of_the_sheet():
    s = sheet_of()
    assert [t.axis for t in s.tables] == ["lr", "batch_size"]
    lr, bs = s.tables
    assert lr.values == [0.1, 0.05, 0.01] and lr.seeds == [0, 1, 2]
    assert bs.values == [128, 256]
    np.testing.assert_allclose(lr.scores, LR_SCORES)
    np.testing.assert_allclose(lr.delta_max_per_seed, LR_DPS)
    np.testing.assert_allclose(lr.delta_max_per_value, LR_DPV)
    np.testing.assert_allclose(bs.scores, BS_SCORES)
    np.testing.assert_allclose(bs.delta_max_per_seed, BS_DPS)
    np.testing.assert_allclose(bs.delta_max_per_value, BS_DPV)
    assert s.delta_max_all == pytest.approx(DELTA_ALL)
    assert s.n_models == 12  # the default configuration counted once
    assert lr.run_ids[1] == ["r-0.1-128-1", "r-0.05-128-1", "r-0.01-128-1"]
    assert bs.run_ids[2] == ["r-0.1-128-2", "r-0.1-256-2"]
    assert s.missing == [] and s.warnings == []
    assert s.default == {"lr": 0.1, "batch_size": 128}


def test_design_from_study_puts_default_first_and_normalises():
    d = Design.from_study({"default": {"lr": "0.05"}, "axes": {"lr": ["0.1", "0.050", "0.01"]}})
    assert d.axes == {"lr": [0.05, 0.1, 0.01]} and d.default == {"lr": 0.05} and d.seeds is None
    with pytest.raises(MMTrackError, match="not among the axis values"):
        Design.from_study({"default": {"lr": 0.2}, "axes": {"lr": [0.1]}})


def test_infer_design_axes_defaults_and_ordering():
    d = infer_design(make_runs())
    assert list(d.axes) == ["lr", "batch_size"]  # epochs/momentum constant, seed excluded
    assert d.default == {"lr": 0.1, "batch_size": 128}  # most frequent: 6 and 9 of the 12 FINISHED runs
    assert d.axes["lr"] == [0.1, 0.01, 0.05]  # default first, then numeric order
    assert d.axes["batch_size"] == [128, 256]
    assert d.seeds == [0, 1, 2]
    # defaults override; the sheet then reads lr=0.05 as the default column
    d2 = infer_design(make_runs(), defaults={"lr": "0.05"})
    assert d2.axes["lr"] == [0.05, 0.01, 0.1] and d2.default["lr"] == 0.05
    with pytest.raises(MMTrackError, match="matches no FINISHED run"):
        infer_design(make_runs(), defaults={"lr": "0.3"})
    with pytest.raises(MMTrackError, match="not an axis"):
        infer_design(make_runs(), defaults={"arch": "resnet18"})


def test_infer_design_ties_numeric_sort_and_ignore():
    rows = [
        row(f"x{i}", "0.1", bs, seed, 0.9)
        for i, (bs, seed) in enumerate(
            [("1024", "10"), ("1024", "2"), ("64", "10"), ("64", "2"), ("128", "2"), ("128", "10")]
        )
    ]
    rows.append(row("y", "0.1", "64", "2", 0.9, **{"params.epochs": "20"}))
    d = infer_design(pd.DataFrame(rows))
    assert list(d.axes) == ["batch_size"]  # epochs varies but is ignored by default
    assert d.axes["batch_size"] == [64, 128, 1024]  # 64 most frequent (3), then numeric (not string) order
    assert d.seeds == [2, 10]
    rows[-1]["params.batch_size"] = "128"  # now 64/128/1024 -> 2/3/2: 128 wins
    rows.append(row("z", "0.1", "1024", "2", 0.9))  # 2/3/3: tie between 128 and 1024 -> first sorted
    assert infer_design(pd.DataFrame(rows)).default["batch_size"] == 128
    assert "epochs" in infer_design(pd.DataFrame(rows), ignore=()).axes


def test_missing_cells_are_nan_and_reported_not_zero():
    extra = [
        row("running", "0.1", "256", "1", 0.5, status="RUNNING", end=50),
        row("nometric", "0.01", "128", "2", np.nan, end=60),
    ]
    runs = make_runs(extra, drop={"r-0.1-256-1", "r-0.01-128-2"})
    s = sheet_of(runs)
    lr, bs = s.tables
    assert math.isnan(bs.scores[1, 1]) and bs.run_ids[1][1] is None
    assert math.isnan(lr.scores[2, 2]) and lr.run_ids[2][2] is None
    np.testing.assert_allclose(bs.delta_max_per_seed, [0.50, np.nan, 0.70])  # one value left in seed 1's row
    np.testing.assert_allclose(bs.delta_max_per_value, [0.60, 93.50 - 92.40])
    np.testing.assert_allclose(lr.delta_max_per_seed, [2.00, 0.60, 93.10 - 91.50])
    np.testing.assert_allclose(lr.delta_max_per_value, [0.60, 1.30, 92.20 - 91.00])
    assert s.delta_max_all == pytest.approx(93.50 - 91.00)
    assert s.n_models == 10
    assert len(s.missing) == 2
    assert any(
        "no FINISHED run" in m and "batch_size=256" in m and "seed=1" in m and "RUNNING running" in m for m in s.missing
    )
    assert any("nometric" in m and "no metric 'acc'" in m for m in s.missing)
    d = s.to_dict()
    assert d["tables"][1]["scores"][1] == [92.5, None]
    assert d["tables"][1]["delta_max_per_seed"][1] is None


def test_duplicate_cell_uses_latest_and_warns_with_both_ids():
    extra = [row("redo-new", "0.1", "128", "0", 0.9400, end=500), row("redo-old", "0.1", "128", "0", 0.9000, end=-5)]
    s = sheet_of(make_runs(extra))
    lr, bs = s.tables
    assert lr.scores[0, 0] == pytest.approx(94.0) and lr.run_ids[0][0] == "redo-new"
    assert bs.scores[0, 0] == pytest.approx(94.0)
    assert lr.delta_max_per_seed[0] == pytest.approx(94.0 - 91.0)
    assert lr.delta_max_per_value[0] == pytest.approx(94.0 - 92.5)
    assert s.delta_max_all == pytest.approx(94.0 - 91.0)
    assert len(s.warnings) == 1  # the same cell sits in both tables: one warning
    w = s.warnings[0]
    assert "redo-new" in w and "redo-old" in w and "r-0.1-128-0" in w and "3 FINISHED runs" in w


def test_unknown_metric_lists_the_metrics_that_exist():
    with pytest.raises(MMTrackError, match=r"unknown metric 'acc/ood/x'.*acc, acc/group/g, train_loss"):
        build_sheet(make_runs(), "acc/ood/x", Design.from_study(STUDY))


def test_noise_floor_matches_scipy_and_marks_within_noise():
    q3 = studentized_range.ppf(0.95, 3, np.inf)
    assert noise_floor(np.array([93.0, 92.0, 91.0]), 5000) == pytest.approx(q3 * math.sqrt(0.92 * 0.08 / 5000) * 100)
    assert noise_floor(np.array([93.0, 92.0, 91.0]), 5000) == pytest.approx(1.2717, abs=1e-4)  # by hand
    assert noise_floor(np.array([93.0, np.nan]), 5000) is None and noise_floor(np.array([93.0, 92.0]), None) is None
    s = sheet_of()
    lr, bs = s.tables
    floor0 = q3 * math.sqrt(0.92 * 0.08 / 5000) * 100  # row seed 0: 93, 92, 91 -> Δmax 2.00 > 1.27
    floor1 = q3 * math.sqrt(0.925 * 0.075 / 5000) * 100  # row seed 1: mean 92.5 -> Δmax 0.60 < 1.23
    assert lr.noise_floor_per_seed[0] == pytest.approx(floor0)
    assert lr.noise_floor_per_seed[1] == pytest.approx(floor1)
    assert lr.within_noise_per_seed[:2] == [False, True]
    p = (93.50 + 91.80 + 92.40) / 300  # column batch_size=256
    assert bs.noise_floor_per_value[1] == pytest.approx(q3 * math.sqrt(p * (1 - p) / 5000) * 100)
    p_all = np.mean(list(ACC.values()))
    assert s.noise_floor_all == pytest.approx(
        studentized_range.ppf(0.95, 12, np.inf) * math.sqrt(p_all * (1 - p_all) / 5000) * 100
    )
    assert s.within_noise_all is False and s.eval_n == 5000
    # The group metric is measured on 500 examples: wider floor. Without the tag the floor is unknown.
    g = build_sheet(make_runs(), "acc/group/g", Design.from_study(STUDY))
    assert g.tables[0].noise_floor_per_seed[0] > 3 * lr.noise_floor_per_seed[0]
    runs = make_runs().drop(columns="tags.mmtrack.eval_n")
    s2 = sheet_of(runs)
    assert s2.noise_floor_all is None and s2.tables[0].within_noise_per_seed == [None, None, None]
    assert s2.to_dict()["noise_floor_all"] is None


def test_disagreement_on_hand_made_predictions():
    base = np.array([0, 1, 2, 3, 4])
    preds = {rid: base.copy() for rid in RUN_ID.values()}
    preds["r-0.05-128-0"] = np.array([0, 1, 2, 3, 0])  # differs at example 4
    preds["r-0.01-128-0"] = np.array([1, 1, 2, 3, 4])  # differs at example 0
    s = sheet_of(predictions=preds)
    lr, bs = s.tables
    assert lr.disagreement_per_seed == pytest.approx([0.4, 0.0, 0.0])
    assert lr.disagreement_per_value == pytest.approx([0.0, 0.2, 0.2])
    assert bs.disagreement_per_seed == pytest.approx([0.0, 0.0, 0.0])
    assert s.disagreement_all == pytest.approx(0.4)
    # Only one run of a row with predictions -> None; runs without predictions are reported.
    s2 = sheet_of(predictions={"r-0.1-128-0": base, "r-0.05-128-0": base})
    assert s2.tables[0].disagreement_per_seed == [0.0, None, None]
    assert s2.tables[0].disagreement_per_value == [None, None, None]
    assert sum("no predictions" in w for w in s2.warnings) == 10
    assert sheet_of().tables[0].disagreement_per_seed == [None, None, None]
    with pytest.raises(MMTrackError, match="different lengths"):
        sheet_of(predictions={**preds, "r-0.1-128-0": np.zeros(7, dtype=int)})


def test_json_layout_is_strict_and_exact():
    runs = make_runs(drop={"r-0.1-256-1"})
    d = json.loads(render(sheet_of(runs), "json"))
    for key in ("experiment", "metric", "unit", "default", "seed_param", "tables", "delta_max_all"):
        assert key in d
    assert (d["experiment"], d["metric"], d["unit"], d["seed_param"]) == ("toy", "acc", "%", "seed")
    assert d["default"] == {"lr": 0.1, "batch_size": 128}
    t = d["tables"][0]
    assert {"axis", "values", "seeds", "scores", "delta_max_per_seed", "delta_max_per_value", "run_ids"} <= set(t)
    assert t["axis"] == "lr" and t["values"] == [0.1, 0.05, 0.01] and t["seeds"] == [0, 1, 2]
    np.testing.assert_allclose(t["scores"], LR_SCORES)
    np.testing.assert_allclose(t["delta_max_per_seed"], LR_DPS)
    np.testing.assert_allclose(t["delta_max_per_value"], LR_DPV)
    assert t["run_ids"][0] == ["r-0.1-128-0", "r-0.05-128-0", "r-0.01-128-0"]
    b = d["tables"][1]
    assert b["scores"][1] == [92.5, None] and b["run_ids"][1] == ["r-0.1-128-1", None]
    assert b["delta_max_per_seed"][1] is None
    assert d["delta_max_all"] == pytest.approx(DELTA_ALL)
    assert len(d["missing"]) == 1 and d["warnings"] == []
    assert "NaN" not in render(sheet_of(runs), "json")


def test_csv_reads_back_with_pandas():
    df = pd.read_csv(io.StringIO(render(sheet_of(), "csv")))
    assert list(df.columns) == [
        "kind",
        "axis",
        "seed",
        "value",
        "score",
        "run_id",
        "noise_floor",
        "within_noise",
        "disagreement",
    ]
    cells = df[df.kind == "score"]
    assert len(cells) == 9 + 6
    lr = cells[cells.axis == "lr"].pivot(index="seed", columns="value", values="score")
    np.testing.assert_allclose(lr.loc[[0, 1, 2], [0.1, 0.05, 0.01]].to_numpy(), LR_SCORES)
    dps = df[(df.kind == "delta_max_per_seed") & (df.axis == "batch_size")]
    np.testing.assert_allclose(dps.score, BS_DPS)
    dpv = df[(df.kind == "delta_max_per_value") & (df.axis == "lr")]
    np.testing.assert_allclose(dpv.score, LR_DPV)
    assert df[df.kind == "delta_max_all"].score.item() == pytest.approx(DELTA_ALL)
    assert set(cells.run_id) == set(RUN_ID.values())


def test_markdown_latex_html_contain_the_numbers():
    s = sheet_of(make_runs(drop={"r-0.1-256-1"}))
    numbers = ["93.00", "92.80", "91.00", "2.00", "1.30", "1.60", "0.50", "2.50"]
    for fmt in ("markdown", "latex", "html"):
        text = render(s, fmt)
        for n in numbers:
            assert n in text, (fmt, n)
        assert "lr=0.1" in text and "batch" in text
    md = render(s, "markdown")
    assert "| seed \\ lr | 0.1 | 0.05 | 0.01 | Δmax |" in md
    assert "| 1 | 92.50 | — | — |" in md  # missing cell shown as a dash, never 0
    assert "0.60~" in md  # within the noise floor
    assert "Δmax^all** = 2.50" in md
    tex = render(s, "latex")
    assert r"\begin{tabular}" in tex and "batch\\_size" in tex and r"$\Delta_{\max}$" in tex
    html = render(s, "html", ui_url="http://mlflow:5000/", experiment_id="7")
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    assert 'href="http://mlflow:5000/#/experiments/7/runs/r-0.05-128-1?workflowType=machine_learning"' in html
    assert "Δmax^all = 2.50" in html and "metric: acc" in html
    assert html.count("background:#") == 14 + 10  # scores and Δmax cells coloured (not the missing ones)
    assert "href=" not in render(s, "html")
    with pytest.raises(MMTrackError, match="unknown format"):
        render(s, "xlsx")


def test_rich_tables_show_dashes_marks_and_footer():
    s = sheet_of(make_runs(drop={"r-0.1-256-1"}))
    console = Console(record=True, width=220, color_system="truecolor")
    console.print(rich_tables(s))
    text = console.export_text()
    assert "—" in text and "0.60~" in text and "93.00" in text
    assert "Δmax^all = 2.50" in text and "default: lr=0.1, batch_size=128" in text and "metric: acc" in text
    assert "batch_size=256, seed=1" in text  # the missing cell is listed


def test_figure_has_one_axes_per_table_with_the_sheet_labels(tmp_path):
    s = sheet_of(make_runs(drop={"r-0.1-256-1"}))
    fig = sheet_figure(s)
    tables = [ax for ax in fig.axes if ax.get_title()]  # the two colour bars have no title
    assert [ax.get_title().split("\n")[0] for ax in tables] == ["lr", "batch_size"]
    assert all(ax.get_title().split("\n")[1].startswith("η²") for ax in tables)  # each table's axis effect
    lr, bs = tables
    assert [t.get_text() for t in lr.get_xticklabels()] == ["0.1", "0.05", "0.01", "Δmax"]
    assert [t.get_text() for t in bs.get_yticklabels()] == ["0", "1", "2", "Δmax"]
    texts = {t.get_text() for t in bs.texts}
    assert {"93.50", "—", "0.60~"} <= texts  # a score, the missing cell, a Δmax within its noise floor
    assert "acc (%)" in {ax.get_ylabel() for ax in fig.axes}  # the score colour bar names the metric
    paths = save_figure(fig, tmp_path / "out" / "sheet-acc")
    assert [p.name for p in paths] == ["sheet-acc.png", "sheet-acc.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = paths[1].read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "Multiplicity sheet: acc" in svg
    with pytest.raises(MMTrackError, match="no tables"):
        sheet_figure(build_sheet(make_runs(), "acc", Design(axes={}, default={}), "toy"))


def test_summary_top_axis_is_the_largest_significant_effect():
    runs = make_runs()
    shifted = pd.to_numeric(runs["params.lr"]) == 0.01
    runs.loc[shifted, "metrics.acc"] += 0.05  # lr 0.01 costs every seed 5 points
    cells = assign_cells(runs, Design.from_study(STUDY))
    sheet = sheet_stats(cells, "acc")
    lr = next(t for t in sheet.tables if t.axis == "lr")
    assert lr.axis_effect.significant and lr.axis_effect.eta_squared > 0.9
    row = summary([sheet]).iloc[0]
    assert row.top_axis == "lr" and row.top_axis_eta_squared == pytest.approx(lr.axis_effect.eta_squared)
    assert row.top_axis_p_value == pytest.approx(lr.axis_effect.p_value) and row.top_axis_p_value < 0.05
    assert row.top_axis_delta_max == pytest.approx(lr.top_delta_max())
    table = json.loads(render(sheet, "json"))["tables"][0]
    assert table["axis"] == "lr" and table["axis_effect"] == lr.axis_effect.to_dict()
    assert "Axis effect: η² " in render(sheet, "markdown") and r"$\eta^2$" in render(sheet, "latex")
    assert 'class="effect significant"' in render(sheet, "html")
    csv = pd.read_csv(io.StringIO(render(sheet, "csv")))
    assert csv[(csv.kind == "p_value") & (csv.axis == "lr")].score.item() == pytest.approx(lr.axis_effect.p_value)


def test_summary_and_sheet_metrics():
    runs = make_runs()
    runs["metrics.acc/ood/x"] = np.nan  # logged nowhere -> NaN spread, not an error
    runs["metrics.mia/loss/auc"] = 0.5
    assert sheet_metrics(runs) == ["acc", "acc/group/g", "acc/ood/x"]
    cells = assign_cells(runs, Design.from_study(STUDY))
    sheets = [sheet_stats(cells, m) for m in ["acc", "acc/group/g", "acc/ood/x"]]
    df = summary(sheets)
    assert list(df.columns) == [
        "metric",
        "delta_max_all",
        "ratio_to_acc",
        "top_axis",
        "top_axis_eta_squared",
        "top_axis_p_value",
        "top_axis_delta_max",
        "noise_floor_all",
    ]
    acc, grp, ood = df.to_dict(orient="records")
    assert acc["delta_max_all"] == pytest.approx(2.50) and acc["ratio_to_acc"] == pytest.approx(1.0)
    # lr holds the largest Δmax (2.00) but explains only η² 0.38 of its table at p 0.24: seed noise, not the axis
    assert acc["top_axis"] == "seed" and acc["top_axis_delta_max"] == pytest.approx(1.70)  # bs=256 column
    assert math.isnan(acc["top_axis_eta_squared"])
    assert grp["delta_max_all"] == pytest.approx(5.00) and grp["ratio_to_acc"] == pytest.approx(2.0)
    assert math.isnan(ood["delta_max_all"]) and pd.isna(ood["top_axis"])
    assert math.isnan(summary(sheets[1:]).ratio_to_acc.iloc[0])  # no acc sheet, no cells to compute it from
    no_acc = summary(sheets[1:2], cells)  # acc computed from the cells
    assert no_acc.ratio_to_acc.item() == pytest.approx(2.0)
    cells_without_acc = assign_cells(runs.drop(columns="metrics.acc"), Design.from_study(STUDY))
    assert math.isnan(summary([sheet_stats(cells_without_acc, "acc/group/g")], cells_without_acc).ratio_to_acc.item())
    assert pd.read_csv(io.StringIO(render(df, "csv"))).delta_max_all.iloc[1] == pytest.approx(5.0)
    assert json.loads(render(df, "json"))[2]["delta_max_all"] is None
    assert "| acc/group/g | 5.00 | 2.0× | seed | — | — | 3.40 |" in render(df, "markdown")
    assert "acc/group/g" in render(df, "latex") and "5.00" in render(df, "html")
    console = Console(record=True, width=160)
    console.print(rich_summary(df))
    assert "acc/group/g" in console.export_text()


def test_cells_are_assigned_once_for_every_metric():
    """The cell assignment does not depend on the metric: one `assign_cells`, then per metric `sheet_stats`,
    gives the same sheets as `build_sheet` per metric; a run lacking one metric still fills its cell for others."""
    runs = make_runs([row("redo-new", "0.1", "128", "0", 0.9400, end=500)])
    runs.loc[runs.run_id == "r-0.05-128-1", "metrics.acc/group/g"] = np.nan
    cells = assign_cells(runs, Design.from_study(STUDY), "toy")
    assert cells.rows["lr"].shape == (3, 3) and cells.rows["batch_size"].shape == (3, 2)
    ids = cells.run_ids()
    assert "redo-new" in ids and "r-0.1-128-0" not in ids and "failed" not in ids and len(ids) == 12
    for metric in ("acc", "acc/group/g"):
        a, b = sheet_stats(cells, metric), build_sheet(runs, metric, Design.from_study(STUDY), "toy")
        assert render(a, "json") == render(b, "json")
    g = sheet_stats(cells, "acc/group/g")
    assert g.tables[0].run_ids[1][1] is None and g.n_models == 11
    assert any("r-0.05-128-1" in m and "no metric 'acc/group/g'" in m for m in g.missing)
    assert sheet_stats(cells, "acc").tables[0].run_ids[1][1] == "r-0.05-128-1"


def test_design_from_study_holds_fixed_params_and_choose_design():
    runs = make_runs()
    study = {**STUDY, "fixed": {"momentum": 0.9, "lr": 0.5}}  # the study's default wins over fixed
    d = Design.from_study(study)
    assert d.default == {"momentum": 0.9, "lr": 0.1, "batch_size": 128} and d.keys == ["lr", "batch_size", "momentum"]
    assert build_sheet(runs, "acc", d).n_models == 12  # every run has momentum 0.9
    runs_other = make_runs([row("m", "0.1", "128", "0", 0.99, end=900, **{"params.momentum": "0.5"})])
    assert build_sheet(runs_other, "acc", d).tables[0].scores[0, 0] == pytest.approx(93.0)  # momentum 0.5: not a cell
    assert choose_design(runs, study) == d
    assert choose_design(runs, study, defaults={"lr": "0.05"}).default["lr"] == 0.05  # overrides: inferred
    assert choose_design(runs, None) == infer_design(runs)


def test_sheet_log_names_files_and_metrics():
    s, g = (sheet_of(), build_sheet(make_runs(), "acc/group/g", Design.from_study(STUDY), "toy"))
    files, metrics = sheet_log([s, g], ui_url="http://mlflow:5000", experiment_id="7")
    assert set(files) == {"report.html", "sheet-acc.json", "sheet-acc_group_g.json"}
    assert json.loads(files["sheet-acc_group_g.json"])["metric"] == "acc/group/g"
    assert files["report.html"].count("<section") == 2 and "/#/experiments/7/runs/" in files["report.html"]
    assert metrics["delta_max_all/acc"] == pytest.approx(DELTA_ALL)
    assert metrics["delta_max_all/acc/group/g"] == pytest.approx(2 * DELTA_ALL)
    assert metrics["noise_floor_all/acc"] == s.noise_floor_all and metrics["disagreement_all/acc"] is None


def test_only_accuracies_are_scaled_to_percentage_points():
    """The metric namespace decides: `acc`, `acc/...` in pp with a noise floor; any other metric (a timing,
    a loss) in its own unit, unscaled, with no binomial noise floor."""
    runs = make_runs()
    runs["metrics.epoch_seconds"] = runs["metrics.acc"] * 1000  # e.g. 930 s: must stay 930, not 93,000
    runs["tags.mmtrack.eval_n"] = '{"acc": 5000, "epoch_seconds": 5000}'
    design = Design.from_study(STUDY)
    acc, secs = (build_sheet(runs, m, design, "toy") for m in ("acc", "epoch_seconds"))
    assert acc.unit == "%" and secs.unit == "own unit"
    np.testing.assert_allclose(secs.tables[0].scores, np.asarray(LR_SCORES) * 10)
    assert secs.delta_max_all == pytest.approx(DELTA_ALL * 10)
    assert acc.noise_floor_all is not None and secs.noise_floor_all is None
    assert sheet_metrics(runs)[0] == "acc" and "epoch_seconds" not in sheet_metrics(runs)
