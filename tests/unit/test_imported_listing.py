"""How `mmtrack import` reads a listing (folder or CSV) and checks that its params make one design: torch-free."""

from __future__ import annotations

import pandas as pd
import pytest

from mmtrack.errors import MMTrackError
from mmtrack.study.imported import ModelFile, check_models, list_models


def test_a_folder_gives_hive_style_params(tmp_path):
    (tmp_path / "lr=0.05" / "batch_size=64").mkdir(parents=True)
    (tmp_path / "lr=0.05" / "batch_size=64" / "seed=1.pt").write_bytes(b"x")
    (tmp_path / "lr=0.1,seed=0.safetensors").write_bytes(b"y")
    (tmp_path / "notes.txt").write_text("not weights")
    models = {m.label: m for m in list_models(tmp_path)}
    assert set(models) == {"lr=0.05/batch_size=64/seed=1.pt", "lr=0.1,seed=0.safetensors"}
    assert models["lr=0.05/batch_size=64/seed=1.pt"].params == {"lr": "0.05", "batch_size": "64", "seed": "1"}
    assert models["lr=0.1,seed=0.safetensors"].params == {"lr": "0.1", "seed": "0"}
    assert len({m.sha256 for m in models.values()}) == 2


def test_a_csv_lists_paths_and_params(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "m.pth").write_bytes(b"x")
    (tmp_path / "list.csv").write_text("path,lr,seed,arch\nw/m.pth,0.1,3,resnet18\n")
    (m,) = list_models(tmp_path / "list.csv")
    assert m.path == tmp_path / "w" / "m.pth" and m.params == {"lr": "0.1", "seed": "3", "arch": "resnet18"}


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("lr,seed\n0.1,0\n", "'path' column"),
        ("path,seed\nnope.pt,0\n", "does not exist"),
        ("path,seed\nm.txt,0\n", "is not a weights file"),
        ("path,seed\nm.pt,0,9\n", "one value per column"),
    ],
)
def test_bad_csvs_say_what_is_wrong(tmp_path, csv_text, message):
    (tmp_path / "m.pt").write_bytes(b"x")
    (tmp_path / "m.txt").write_bytes(b"x")
    (tmp_path / "list.csv").write_text(csv_text)
    with pytest.raises(MMTrackError, match=message):
        list_models(tmp_path / "list.csv")


def _m(label, **params):
    return ModelFile(path=None, label=label, params={k: str(v) for k, v in params.items()}, sha256=label)


def test_one_factor_at_a_time_models_pass_and_others_name_the_model():
    ok = [_m("a", lr=0.1, bs=64, seed=0), _m("b", lr=0.1, bs=64, seed=1), _m("c", lr=0.2, bs=64, seed=0)]
    check_models(ok, "seed")
    with pytest.raises(MMTrackError, match=r"model d .* in 2 params \(lr, bs\)"):
        check_models([*ok, _m("d", lr=0.2, bs=32, seed=0), _m("e", lr=0.1, bs=64, seed=2)], "seed")
    with pytest.raises(MMTrackError, match="every model of an experiment names the same params"):
        check_models([*ok, _m("f", lr=0.1, seed=3)], "seed")
    with pytest.raises(MMTrackError, match="dataset.* is set by mmtrack import"):
        check_models([_m("g", dataset="x", seed=0)], "seed")


def test_models_join_the_experiment_runs_design():
    existing = pd.DataFrame(
        {"run_id": ["r1"], "status": ["FINISHED"], "params.lr": ["0.1"], "params.seed": ["0"], "params.eval.x": ["1"]}
    )
    check_models([_m("a", lr=0.1, seed=1)], "seed", existing)
    with pytest.raises(MMTrackError, match="have the same params"):
        check_models([_m("a", lr=0.1, seed=0)], "seed", existing)
    with pytest.raises(MMTrackError, match="one design per experiment"):
        check_models([_m("a", lr=0.1, bs=3, seed=1)], "seed", existing)
