"""End to end on a fixture-sized UTKFace in its real on-disk format: sweep a study into an experiment named
`utkface`, then `mmtrack sheet` and `mmtrack select` on it, as a user would run them."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import write_study
from realdata_files import make_fairface, make_utkface

MMTRACK = [sys.executable, "-m", "mmtrack.cli"]

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path, monkeypatch):
    import os

    e = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MMTRACK_DATA")}
    e.update(
        MMTRACK_TRACKING_DIR=str(tmp_path / "tracking"), MMTRACK_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1"
    )
    return e


def run(args, env, cwd, check=True):
    proc = subprocess.run(MMTRACK + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_utkface_study_sheet_and_select(tmp_path, env):
    data = tmp_path / "data"
    make_utkface(data)
    make_fairface(data)
    path = write_study(
        tmp_path,
        name="utkface",
        dataset="utkface",
        fixed={"width": 0.0625, "image_size": 8},
        default={"lr": 0.1, "batch_size": 8, "augment": "none"},
        axes={"lr": [0.1, 0.05], "batch_size": [8], "augment": ["none"]},
        interventions=["acc", "group:race", "ood"],
    )
    out = run(["sweep", str(path), "--data-dir", str(data)], env, tmp_path)
    assert "4 finished" in out.stdout, out.stdout

    sheet = json.loads(
        run(["sheet", "--experiment", "utkface", "--metric", "acc", "--format", "json"], env, tmp_path).stdout
    )
    assert sheet["experiment"] == "utkface" and sheet["metric"] == "acc" and sheet["unit"] == "%"
    lr = next(t for t in sheet["tables"] if t["axis"] == "lr")
    assert lr["values"] == [0.1, 0.05] and lr["seeds"] == [0, 1]
    assert all(v is not None for row in lr["scores"] for v in row)
    flat = [v for t in sheet["tables"] for row in t["scores"] for v in row if v is not None]
    assert sheet["delta_max_all"] == pytest.approx(max(flat) - min(flat))

    csv = tmp_path / "ood.csv"
    run(
        ["sheet", "--experiment", "utkface", "--metric", "acc/ood/fairface", "--format", "csv", "--out", str(csv)],
        env,
        tmp_path,
    )
    assert len(pd.read_csv(csv)) > 0

    sel = json.loads(
        run(
            [
                "select",
                "--experiment",
                "utkface",
                "--by",
                "acc/ood/fairface",
                "--top",
                "50",
                "--unseen",
                "acc",
                "--format",
                "json",
            ],
            env,
            tmp_path,
        ).stdout
    )
    assert sel["before"]["acc"]["n"] == 4
    assert sel["selections"][0]["rule"] == "top" and 2 <= sel["selections"][0]["n_selected"] <= 4

    bad = run(["sheet", "--experiment", "utkface", "--metric", "acc/group/race/martian"], env, tmp_path, check=False)
    assert bad.returncode == 2 and "acc/group/race/asian" in bad.stderr
