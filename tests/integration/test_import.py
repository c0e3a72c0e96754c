"""`mmtrack import`: models trained by a plain PyTorch loop (torchvision's network, not mmtrack's training) are
logged as runs whose clean accuracy and predictions are the models' own, exactly; evaluate, sheet and select
then work on them; every bad listing fails with one line and logs nothing."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import torchvision
from conftest import run_cli
from safetensors.torch import save_file

ARCH = "shufflenet_v2_x0_5"
MEAN, STD = 0.5, 0.25
MODELS = [(0.05, 0, "a.pt"), (0.05, 1, "b.pth"), (0.01, 0, "c.safetensors")]


def _prep(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255 - MEAN) / STD


def _plain_train(digits, lr: float, seed: int) -> torch.nn.Module:
    """Somebody else's training script: 40 SGD steps on the digits-skewed arrays, their own normalisation."""
    torch.manual_seed(seed)
    net = torchvision.models.shufflenet_v2_x0_5(num_classes=10)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    for b in torch.randperm(len(digits.train.images))[: 40 * 64].split(64):
        loss = torch.nn.functional.cross_entropy(net(_prep(digits.train.images[b])), digits.train.labels[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def plain(digits, tmp_path_factory):
    """Three models saved the three ways (state dict, nested checkpoint, safetensors), a CSV listing them, and
    each one's test predictions computed by the plain script (NCHW, batches of 1024 as mmtrack evaluates)."""
    folder = tmp_path_factory.mktemp("plain")
    preds = {}
    for lr, seed, name in MODELS:
        net = _plain_train(digits, lr, seed)
        if name.endswith(".pt"):
            torch.save(net.state_dict(), folder / name)
        elif name.endswith(".pth"):
            torch.save({"epoch": 1, "state_dict": net.state_dict()}, folder / name)
        else:
            save_file(net.state_dict(), str(folder / name))
        with torch.no_grad():
            preds[name] = torch.cat([net(_prep(c)).argmax(1) for c in digits.test.images.split(1024)])
    with open(folder / "models.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "lr", "seed"])
        w.writerows([name, lr, seed] for lr, seed, name in MODELS)
    return folder, preds


def _import(capsys, monkeypatch, source, experiment="ext", *extra):
    return run_cli(
        capsys, monkeypatch, "import", source, "--experiment", experiment, "--dataset", "digits-skewed",
        "--arch", ARCH, "--mean", str(MEAN), "--std", str(STD), *extra,
    )  # fmt: skip


def _runs(client, experiment):
    from mmtrack import tracking

    exp_id = tracking.find_experiment(client, experiment)
    return [] if exp_id is None else tracking.search_all_runs(client, exp_id, "")


def test_imported_models_score_exactly_as_trained(capsys, monkeypatch, client, digits, plain):
    from mmtrack import tracking

    monkeypatch.setenv("MMTRACK_MEMORY_FORMAT", "contiguous")  # the plain script's layout: the same kernels
    folder, preds = plain
    res = _import(capsys, monkeypatch, folder / "models.csv")
    assert res.code == 0, res.err
    runs = {r.info.run_name: r for r in _runs(client, "ext")}
    assert sorted(runs) == ["a", "b", "c"] and {r.info.status for r in runs.values()} == {"FINISHED"}
    for lr, seed, name in MODELS:
        run = runs[name.split(".")[0]]
        assert run.data.params["lr"] == str(lr) and run.data.params["seed"] == str(seed)
        assert run.data.params["arch"] == ARCH and run.data.tags["mmtrack.kind"] == "imported"
        acc = (preds[name] == digits.test.labels).float().mean().item()
        assert run.data.metrics["acc"] == acc  # the model's own accuracy, exactly
        stored = tracking.load_predictions(client, [run.info.run_id])[run.info.run_id]
        assert (stored["pred"].to_numpy() == preds[name].numpy()).all()
    accs = {r.data.metrics["acc"] for r in runs.values()}
    assert len(accs) == 3  # three different models

    # a rerun adds nothing
    again = _import(capsys, monkeypatch, folder / "models.csv")
    assert again.code == 0 and "0 model(s) imported, 3 already there" in again.out
    assert len(_runs(client, "ext")) == 3

    # the safe weights reload to the same model: evaluate adds interventions, the sheet has the lr axis
    ev = run_cli(capsys, monkeypatch, "evaluate", "--experiment", "ext", "-i", "group:skew")
    assert ev.code == 0, ev.err
    sheet = run_cli(capsys, monkeypatch, "sheet", "--experiment", "ext", "--metric", "acc/group/skew/majority")
    assert sheet.code == 0, sheet.err
    assert "default: lr=0.05" in sheet.out and "over 3 models" in sheet.out
    sel = run_cli(
        capsys, monkeypatch, "select", "--experiment", "ext", "--by", "acc", "--top", "50", "--format", "json"
    )
    assert sel.code == 0, sel.err
    best = max(runs.values(), key=lambda r: r.data.metrics["acc"]).info.run_id
    assert best in json.loads(sel.out)["selections"][-1]["run_ids"]


def test_a_folder_lists_params_in_its_paths(capsys, monkeypatch, client, plain, tmp_path):
    folder, _ = plain
    (tmp_path / "lr=0.05").mkdir()
    (tmp_path / "lr=0.05" / "seed=0.pt").write_bytes((folder / "a.pt").read_bytes())
    (tmp_path / "lr=0.01,seed=0.safetensors").write_bytes((folder / "c.safetensors").read_bytes())
    res = _import(capsys, monkeypatch, tmp_path, "hive")
    assert res.code == 0, res.err
    params = sorted((r.data.params["lr"], r.data.params["seed"]) for r in _runs(client, "hive"))
    assert params == [("0.01", "0"), ("0.05", "0")]


def _csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(rows[0]))
        w.writerows([list(r.values()) for r in rows])
    return path


@pytest.mark.parametrize(
    "rows, extra, message",
    [
        ([{"path": "a.pt", "lr": 0.1, "seed": 0}], ("--arch", "mobilenet_v2"), "do not fit mobilenet_v2"),
        ([{"path": "missing.pt", "lr": 0.1, "seed": 0}], (), "does not exist"),
        ([{"path": "a.pt", "lr": 0.1, "seed": 0}, {"path": "a.pt", "lr": 0.2, "seed": 0}], (), "same file"),
        (
            [{"path": "a.pt", "lr": 0.1, "seed": 0}, {"path": "b.pth", "lr": 0.1, "seed": 0}],
            (),
            "have the same params",
        ),
        ([{"path": "a.pt", "lr": 0.1}], (), "no 'seed' param"),
        (
            [
                {"path": "a.pt", "lr": 0.1, "bs": 64, "seed": 0},
                {"path": "b.pth", "lr": 0.1, "bs": 64, "seed": 1},
                {"path": "c.safetensors", "lr": 0.2, "bs": 32, "seed": 0},
            ],
            (),
            "in 2 params (lr, bs)",
        ),
        ([{"path": "full.pt", "lr": 0.1, "seed": 0}], (), "save model.state_dict()"),
    ],
    ids=["keys-do-not-fit", "missing-file", "same-file-twice", "same-params", "no-seed", "two-axes", "full-pickle"],
)
def test_bad_listings_fail_with_one_line_and_log_nothing(capsys, monkeypatch, client, plain, rows, extra, message):
    folder, _ = plain
    if any(r["path"] == "full.pt" for r in rows):
        torch.save(torchvision.models.shufflenet_v2_x0_5(num_classes=10), folder / "full.pt")
    res = _import(capsys, monkeypatch, _csv(folder / "bad.csv", rows), "bad", *extra)
    assert res.code != 0
    lines = [ln for ln in res.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.err
    assert _runs(client, "bad") == []


def test_a_study_experiment_takes_no_imports(capsys, monkeypatch, client, plain):
    from mmtrack import tracking

    folder, _ = plain
    tracking.experiment_id(client, "swept", create=True, tags={tracking.STUDY_TAG: '{"axes": {"lr": [0.1]}}'})
    res = _import(capsys, monkeypatch, folder / "models.csv", "swept")
    assert res.code != 0 and "holds the runs of a study" in res.err


def test_imported_models_ensemble_selectively_and_the_report_says_which_to_ship(
    capsys, monkeypatch, client, plain, tmp_path
):
    folder, _ = plain
    assert _import(capsys, monkeypatch, folder / "models.csv", "ship").code == 0
    for extra in ((), ("--selective", "0.5")):  # two members: they answer where both agree (p = 0.5)
        r = run_cli(capsys, monkeypatch, "ensemble", "--experiment", "ship", "-i", "acc;group", *extra)
        assert r.code == 0, r.err
    (run,) = _runs(client, "ship-ensembles-selective0.5")
    m = run.data.metrics
    assert run.data.params["ensemble.rule"] == "selective_vote" and run.data.params["ensemble.alpha"] == "0.5"
    assert m["acc"] == pytest.approx((1 - m["abstain"]) * m["answered_acc"], abs=1e-6)
    assert "abstain/group/skew/majority" in m and "answered_acc/group/skew/majority" in m
    r = run_cli(capsys, monkeypatch, "report", "--experiment", "ship", "--selective", "0.5", "--out", tmp_path)
    assert r.code == 0, r.err
    page = (tmp_path / "report.html").read_text()
    assert '<section id="ship"><h2>Which model do I ship?</h2>' in page and 'href="#ship"' in page
    for kind in ("single models", "ensembles", "selective ensembles (α=0.5)"):
        assert f"<li>{kind}: " in page
    assert "<td>skew=gs-minority</td>" in page
    plain_page = run_cli(capsys, monkeypatch, "report", "--experiment", "ship", "--out", tmp_path / "p")
    assert plain_page.code == 0 and 'id="ship"' not in (tmp_path / "p" / "report.html").read_text()
    missing = run_cli(capsys, monkeypatch, "report", "--experiment", "ship", "--selective", "0.1", "--out", tmp_path)
    assert missing.code != 0 and "mmtrack ensemble --experiment ship --selective 0.1" in missing.err
