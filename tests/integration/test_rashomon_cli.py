"""The ε-Rashomon set from the command line (issue 36, item 2): sheet, summary, select and report of the models
within ε of the best clean accuracy; the outputs without --rashomon are unchanged."""

from __future__ import annotations

import json

from conftest import run_cli, scores_experiment

import mmtrack


def test_the_commands_and_the_api_measure_the_set(capsys, monkeypatch, tracking_dir, tmp_path):
    scores_experiment("rs", seeds=3, step=(0.004, -0.01))  # acc 90.0, 90.4, ... 92.0: six models
    res = run_cli(
        capsys, monkeypatch, "sheet", "--experiment", "rs", "--summary", "--rashomon", "1.3", "--format", "json"
    )
    assert res.code == 0, res.err
    assert (
        "Rashomon set: 4 of 6 models within 1.3 pp of the best acc (92.00 pp); fell out: r0 (90.00), r1 (90.40)"
        in res.err
    )
    (acc, ood) = json.loads(res.out)
    assert acc["delta_max_all"] == 1.2 and ood["delta_max_all"] == 3.0  # among the four best only
    api = mmtrack.open_experiment("rs", rashomon=1.3)
    assert len(api.runs) == 4 and sorted(d[1] for d in api.rashomon.dropped) == ["r0", "r1"]
    assert json.loads(mmtrack.render(api.summary(), "json")) == json.loads(res.out)
    full = json.loads(run_cli(capsys, monkeypatch, "sheet", "--experiment", "rs", "--summary", "--format", "json").out)
    assert full[0]["delta_max_all"] == 2.0 and full[1]["delta_max_all"] == 5.0  # without --rashomon: every model
    sel = run_cli(
        capsys, monkeypatch, "select", "--experiment", "rs", "--by", "acc", "--top", "50", "--rashomon", "1.3"
    )
    assert sel.code == 0 and "4 of 6 models" in sel.err
    res = run_cli(capsys, monkeypatch, "report", "--experiment", "rs", "--out", tmp_path, "--rashomon", "1.3")
    assert res.code == 0, res.err
    page = (tmp_path / "report.html").read_text()
    assert 'id="rashomon"' in page and "4 of 6 models within 1.3 pp" in page and "data:image/png;base64" in page
    run_cli(capsys, monkeypatch, "report", "--experiment", "rs", "--out", tmp_path / "all")
    assert 'id="rashomon"' not in (tmp_path / "all" / "report.html").read_text()
