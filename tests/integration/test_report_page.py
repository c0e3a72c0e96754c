"""`mmtrack report`: one self-contained HTML page whose numbers equal what `mmtrack sheet` and `mmtrack select`
print as JSON, on a small real study (trained runs with stored predictions), and a page for runs without
predictions."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import module_store, run_cli, scores_experiment, tiny_study, write_study

from mmtrack import tracking

STUDY = tiny_study(
    name="page",
    seeds=[0, 1, 2],
    axes={"lr": [0.1, 0.02]},
    interventions=["acc", "group:skew", "ood"],
    selection={"by": ["acc/ood/digits-warped"], "top": [50], "unseen": ["acc/group/skew/gs-minority"]},
)


class Page(HTMLParser):
    """The parts of the page the test reads: sections, data-* attributes of rows/cells, images."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.cells, self.sheets = [], 0, [], {}
        self._row: dict = {}
        self._table: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "img" and a.get("src", "").startswith("data:image/png;base64,"):
            self.images += 1
        if tag == "table":
            self._table = a.get("id") or a.get("class")
        if tag == "article" and "data-delta-max-all" in a:
            self.sheets[a["data-metric"]] = a["data-delta-max-all"]
        if tag == "tr":
            self._row = {k: v for k, v in a.items() if k.startswith("data-")}
        if tag == "td" and "data-value" in a:
            self.cells.append(
                {"table": self._table, **self._row, **{k: v for k, v in a.items() if k.startswith("data-")}}
            )


def value(text: str) -> float | None:
    return None if text == "" else float(text)


@pytest.fixture(scope="module")
def study_store(tmp_path_factory, _empty_store):
    """The study swept once into a store of its own (6 tiny runs, one thread); yields the tracking folder."""
    with module_store(tmp_path_factory, _empty_store, "page") as (d, _client), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMTRACK_THREADS", "1")
        path = write_study(d, **STUDY)
        from mmtrack.cli import app

        try:
            app(["sweep", str(path)])
        except SystemExit as exc:
            assert exc.code in (0, None)
        yield d


@pytest.mark.slow
def test_report_page_numbers_equal_sheet_and_select_json(study_store, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MMTRACK_TRACKING_DIR", str(study_store))
    res = run_cli(capsys, monkeypatch, "report", "--experiment", "page", "--out", str(tmp_path))
    assert res.code == 0, res.err
    html = (tmp_path / "report.html").read_text()
    assert "http://" not in html.split("<body>")[0] and "<script" not in html  # self-contained: nothing to fetch
    page = Page()
    page.feed(html)
    assert page.sections == ["design", "summary", "sheets", "selection", "multiplicity", "contested"]
    assert page.images == 2  # the selection figure and the contested examples (digits images load here)

    sheets = json.loads(run_cli(capsys, monkeypatch, "sheet", "--experiment", "page", "--format", "json").out)
    assert set(page.sheets) == {s["metric"] for s in sheets}
    for s in sheets:
        assert value(page.sheets[s["metric"]]) == pytest.approx(s["delta_max_all"])
    summary = json.loads(
        run_cli(capsys, monkeypatch, "sheet", "--experiment", "page", "--summary", "--format", "json").out
    )
    shown = {c["data-metric"]: c for c in page.cells if c["table"] == "summary"}
    assert len([c for c in page.cells if c["table"] == "summary"]) == 6 * len(summary)  # 6 numbers per row
    for row in summary:
        cell = next(c for c in page.cells if c["table"] == "summary" and c["data-metric"] == row["metric"])
        assert value(cell["data-value"]) == pytest.approx(row["delta_max_all"])
        assert row["metric"] in shown

    sel = json.loads(
        run_cli(
            capsys,
            monkeypatch,
            "select",
            "--experiment",
            "page",
            "--by",
            "acc/ood/digits-warped",
            "--top",
            "50",
            "--unseen",
            "acc/group/skew/gs-minority",
            "--format",
            "json",
        ).out
    )
    cells = {
        (c["data-metric"], c["data-selection"]): value(c["data-value"])
        for c in page.cells
        if c["table"] == "selection" and "data-selection" in c
    }
    metric = "acc/group/skew/gs-minority"
    assert cells[(metric, "before")] == pytest.approx(sel["before"][metric]["delta_max"])
    assert cells[(metric, "top50")] == pytest.approx(sel["selections"][0]["unseen"][metric]["delta_max"])

    overall = {c["data-set"]: c for c in page.cells if c["table"] == "multiplicity-overall"}
    pm = sel["prediction_multiplicity"]
    assert pm["n_models"] == 6 and pm["reference"]
    shown = [value(c["data-value"]) for c in page.cells if c["table"] == "multiplicity-overall"]
    assert shown == pytest.approx([pm["ambiguity"], pm["discrepancy"], pm["contested"]])
    assert set(overall) == {"overall"}
    configs = {c["data-set"] for c in page.cells if c["table"] == "multiplicity-config"}
    assert configs == {"default", "lr=0.02"}  # each configuration's three seeds alone
    groups = {c["data-set"] for c in page.cells if c["table"] == "multiplicity-group"}
    assert {"skew/gs-minority", "skew/majority", "color/gray"} <= groups
    contested = [c for c in page.cells if c["table"] == "contested"]
    assert contested and all(0 < value(c["data-value"]) < 1 for c in contested)  # divided votes only
    assert f"wrote {tmp_path / 'report.html'}" in res.out


@pytest.mark.slow
def test_report_logs_to_the_reports_experiment(study_store, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MMTRACK_TRACKING_DIR", str(study_store))
    res = run_cli(
        capsys, monkeypatch, "report", "--experiment", "page", "--out", str(tmp_path), "--log", "--no-predictions"
    )
    assert res.code == 0, res.err
    client = tracking.connect()
    exp_id = tracking.find_experiment(client, "page-reports")
    runs = [r for r in tracking.search_all_runs(client, exp_id) if r.data.tags.get(tracking.REPORT_TAG) == "report"]
    assert len(runs) == 1
    files = {f.path for f in client.list_artifacts(runs[0].info.run_id)}
    assert {"report.html", "report.json"} <= files
    assert "stored no predictions" not in res.err  # --no-predictions: not looked for, and said so
    assert "prediction multiplicity: not computed (--no-predictions)" in res.err


def test_report_without_predictions_says_so_in_one_line(capsys, monkeypatch, tracking_dir, tmp_path):
    """Runs logged by another tool (scores only): every score section is there, the prediction sections say why
    they are empty."""
    scores_experiment("scores", seeds=3, step=(0.004, -0.01))
    res = run_cli(
        capsys, monkeypatch, "report", "--experiment", "scores", "--out", str(tmp_path), "--by", "acc", "--top", "50"
    )
    assert res.code == 0, res.err
    html = (tmp_path / "report.html").read_text()
    page = Page()
    page.feed(html)
    assert page.sections == ["design", "summary", "sheets", "selection", "multiplicity", "contested"]
    assert set(page.sheets) == {"acc", "acc/ood/x"}
    assert html.count("stored no predictions") == 1
    assert "note: prediction multiplicity: these runs stored no predictions" in res.err
    assert [c for c in page.cells if c["table"] == "selection"]  # the selection section is computed


def test_report_bad_input_is_one_line(capsys, monkeypatch, tracking_dir, tmp_path):
    res = run_cli(capsys, monkeypatch, "report", "--experiment", "nope", "--out", str(tmp_path))
    assert res.code == 2 and res.err.strip().startswith("error: unknown experiment 'nope'")
    assert len(res.err.strip().splitlines()) == 1
    assert not Path(tmp_path / "report.html").exists()
