"""Ensembles of seeds as first-class models: the combination rule by hand, an ensemble of one equals its member on
every metric, PGD attacks the ensemble itself, and `mmtrack ensemble` logs ensembles of a tiny study as runs that
the sheets (`--ensembles`) and the API read, with one error line for bad members."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli, tiny_study, write_study
from torch import nn

from mmtrack import tracking
from mmtrack.interventions import EvalSettings, Evaluator, parse
from mmtrack.models import Normalize
from mmtrack.models.ensemble import Ensemble, mean_softmax

CHEAP = EvalSettings(noise_draws=2, pgd_steps=3, pgd_max_examples=64, mia_examples=200)
SPECS = ["acc", "group", "ood", "output_noise:2", "input_noise:0.5", "pgd_linf:0.01", "mia"]


def _linear(logits_bias: list[float]) -> nn.Module:
    """A 'model' whose logits are `logits_bias` whatever the input (weights zero)."""
    lin = nn.Linear(3, len(logits_bias))
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.copy_(torch.tensor(logits_bias))
    return nn.Sequential(Normalize([0.5] * 3, [0.25] * 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), lin)


def test_mean_of_softmax_by_hand():
    # probabilities ~(0, 1), (0.731, 0.269), (0.731, 0.269): two of three vote class 0, the mean is 0.487 / 0.513
    members = [_linear([0.0, 10.0]), _linear([1.0, 0.0]), _linear([1.0, 0.0])]
    ens = Ensemble(members, stack=False).eval()
    x = torch.rand(4, 3, 2, 2)
    p0 = 1 / (1 + math.exp(10.0))
    p_other = math.exp(1) / (1 + math.exp(1))
    expected = np.array([(p0 + 2 * p_other) / 3, ((1 - p0) + 2 * (1 - p_other)) / 3])
    with torch.no_grad():
        out = ens(x)
        np.testing.assert_allclose(out.exp().numpy(), np.tile(expected, (4, 1)), rtol=1e-6)
        assert out.argmax(1).tolist() == [1, 1, 1, 1]  # not the majority vote
        np.testing.assert_allclose(mean_softmax(ens.member_logits(x)).numpy(), out.exp().numpy(), rtol=1e-6)
    assert not ens.stacked


def test_stacked_and_one_after_the_other_agree(trio, digits):
    x = digits.test.images[:64].float().div(255)
    stacked, plain = Ensemble(trio).eval(), Ensemble(trio, stack=False).eval()
    assert stacked.stacked and not plain.stacked
    with torch.no_grad():
        torch.testing.assert_close(stacked(x), plain(x), atol=1e-4, rtol=1e-4)
        assert (stacked(x).argmax(1) == plain(x).argmax(1)).all()


@pytest.fixture(scope="module")
def trio(digits):
    """Three tiny models of one configuration (seeds 0-2), trained together."""
    from mmtrack.training.config import RunConfig
    from mmtrack.training.train import train_models

    cfgs = [RunConfig(**{**TINY, "epochs": 2, "seed": s}) for s in range(3)]
    return train_models(cfgs, digits, torch.device("cpu"))


def test_an_ensemble_of_one_equals_its_member_on_every_metric(trio, digits):
    member = trio[0]
    single, ensemble = {}, {}
    for iv in parse(SPECS):
        single.update(Evaluator(member, digits, CHEAP).run(iv)[0])
        ensemble.update(Evaluator(Ensemble([member]), digits, CHEAP).run(iv)[0])
    assert set(single) == set(ensemble) and len(single) >= 11
    for name, value in single.items():
        assert ensemble[name] == pytest.approx(value, abs=1e-9), name


def test_pgd_attacks_the_ensemble_itself(trio, digits):
    """White-box PGD on the ensemble lowers its accuracy at least as much as PGD crafted on one member and
    transferred (the attack a per-member implementation would amount to)."""
    ens = Ensemble(trio).eval()
    assert ens.stacked
    ev = Evaluator(ens, digits, CHEAP)
    white = ev.run(parse(["pgd_linf:0.03"])[0])[0]["acc/pgd_linf/0.03"]
    test = digits.test
    from mmtrack.interventions.evaluator import _fixed_subset

    idx = _fixed_subset(len(test), CHEAP.pgd_max_examples, CHEAP.subset_seed)
    x, y = test.images[idx].float().div(255).numpy(), test.labels[idx].numpy()
    transfer = []
    for m in trio:
        member_ev = Evaluator(m, digits, CHEAP)
        x_adv = member_ev._pgd_attack(member_ev.art_classifier(), 0.03, x, y)
        with torch.no_grad():
            transfer.append(float((ens(torch.from_numpy(x_adv)).argmax(1).numpy() == y).mean()))
    clean = float((ev.test_logits[idx].argmax(1).numpy() == y).mean())
    assert white < clean  # the attack does something
    assert white <= np.mean(transfer), (white, transfer)


# ------------------------------------------------------------------------------------------------ the command

STUDY = tiny_study(
    name="ens",
    seeds=[0, 1, 2],
    interventions=["acc", "group", "ood", "pgd_linf:0.01"],
    eval={"pgd_steps": 2, "pgd_max_examples": 48},
)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("MMTRACK_THREADS", "1")


@pytest.mark.slow
def test_ensemble_command_logs_runs_the_sheets_read(capsys, monkeypatch, tracking_dir, tmp_path):
    from mmtrack import api

    path = write_study(tmp_path, **STUDY)
    assert run_cli(capsys, monkeypatch, "sweep", path).code == 0
    r = run_cli(capsys, monkeypatch, "ensemble", "--experiment", "ens")
    assert r.code == 0, r.err
    assert "2 ensemble(s) logged in ens-ensembles" in r.out
    client = tracking.connect()
    single = {x.info.run_id: x for x in client.search_runs([client.get_experiment_by_name("ens").experiment_id])}
    ens_exp = client.get_experiment_by_name("ens-ensembles")
    runs = client.search_runs([ens_exp.experiment_id])
    assert len(runs) == 2 and {x.info.status for x in runs} == {"FINISHED"}
    for run in runs:
        members = json.loads(run.data.tags["mmtrack.ensemble.members"])
        assert len(members) == 3 and set(members) <= set(single)
        assert {single[m].data.params["lr"] for m in members} == {run.data.params["lr"]}  # one configuration
        assert run.data.tags["mmtrack.ensemble.seeds"] == "0,1,2" and run.data.tags["mmtrack.kind"] == "ensemble"
        assert (run.data.params["ensemble.size"], run.data.params["ensemble.rule"]) == ("3", "mean_softmax")
        accs = {k for k in run.data.metrics if k.startswith("acc")}
        assert accs == {k for k in single[members[0]].data.metrics if k.startswith("acc")}  # the same metrics
        assert run.data.metrics["ensemble.inference_cost"] == 3
        assert tracking.stored_populations(client, run.info.run_id) == ["group", "ood/digits-warped", "test"]
    # the ensemble's stored predictions are the mean of its members' softmax, recomputed from theirs
    run = runs[0]
    members = json.loads(run.data.tags["mmtrack.ensemble.members"])
    probs = [tracking.load_predictions(client, [m])[m] for m in members]
    mine = tracking.load_predictions(client, [run.info.run_id])[run.info.run_id]
    cols = [f"prob_{c}" for c in range(10)]
    mean = np.mean([p[cols].to_numpy(np.float32) for p in probs], axis=0)
    np.testing.assert_allclose(mine[cols].to_numpy(np.float32), mean, atol=2e-3)  # float16 files
    again = run_cli(capsys, monkeypatch, "ensemble", "--experiment", "ens")
    assert again.code == 0 and "2 ensemble(s) already logged, skipped" in again.out
    r = run_cli(capsys, monkeypatch, "ensemble", "--experiment", "ens", "--size", "2", "--draws", "2")
    assert r.code == 0 and "4 ensemble(s) logged in ens-ensembles-k2" in r.out, r.err  # 2 configs x 2 draws
    exp = api.open_experiment("ens")
    assert len(exp.ensembles()) == 2 and set(exp.ensembles()["params.ensemble.size"]) == {"3"}
    assert len(exp.ensembles(size=2)) == 4 and set(exp.ensembles(size=2)["params.seed"]) == {"0", "1"}
    for size, n in ((None, 2), (2, 4)):
        args = ["--ensemble-size", str(size)] if size else []
        r = run_cli(capsys, monkeypatch, "sheet", "--experiment", "ens", "--metric", "acc", "--ensembles", *args)
        assert r.code == 0, r.err
        after = r.out[r.out.index("Single models vs ensembles") :]
        row = next(line for line in after.splitlines() if line.startswith("│ acc "))
        cells = [c.strip() for c in row.strip("│").split("│")]
        assert cells[2] == "6" and cells[5] == str(n), r.out  # 6 single models beside n ensembles
        assert float(cells[4]) <= float(cells[1]) + 1e-9 or n == 4  # all-seed ensembles of 2 configs: a tight pair
    r = run_cli(capsys, monkeypatch, "report", "--experiment", "ens", "--out", tmp_path / "report")
    assert r.code == 0, r.err
    page = (tmp_path / "report" / "report.html").read_text()
    assert '<section id="ensembles"><h2>Does ensembling help?</h2>' in page and 'href="#ensembles"' in page
    assert "acc: " in page and " pp over 6 single models (" in page and " pp over 2 ensembles" in page
    assert "3× the inference cost of one model" in page
    assert "<th>contested: ensembles</th>" in page  # per group, single models beside ensembles
    r = run_cli(capsys, monkeypatch, "ensemble", "--experiment", "ens", "--of", "selection", "--by", "acc")
    assert r.code == 0 and "top 50% on acc" in r.out and "ens-ensembles-selected" in r.out, r.err
    chosen = sorted(single)[:2]
    r = run_cli(capsys, monkeypatch, "ensemble", "--experiment", "ens", "--runs", ",".join(chosen))
    assert r.code == 0 and "1 ensemble(s) logged in ens-ensembles-selected" in r.out, r.err
    picked = client.search_runs(
        [client.get_experiment_by_name("ens-ensembles-selected").experiment_id], "params.`ensemble.of` = 'runs'"
    )
    assert len(picked) == 1 and json.loads(picked[0].data.tags["mmtrack.ensemble.members"]) == chosen
    r = run_cli(capsys, monkeypatch, "ensemble", "--experiment", "ens", "--of", "configs")
    assert r.code == 0 and "3 ensemble(s) logged in ens-ensembles-configs" in r.out, r.err  # one per seed
    by_seed = client.search_runs([client.get_experiment_by_name("ens-ensembles-configs").experiment_id])
    assert sorted(x.data.params["seed"] for x in by_seed) == ["0", "1", "2"]
    assert all("lr" not in x.data.params and len(json.loads(x.data.tags["mmtrack.ensemble.members"])) == 2
               for x in by_seed)  # fmt: skip


def test_bad_members_get_one_error_line(capsys, monkeypatch, tracking_dir):
    client = tracking.connect()
    exp_id = tracking.experiment_id(client, "bad", create=True)
    ids = []
    for dataset in ("digits-skewed", "utkface"):
        rid = client.create_run(exp_id).info.run_id
        client.log_param(rid, "dataset", dataset)
        client.log_param(rid, "seed", str(len(ids)))
        client.log_metric(rid, "acc", 0.5)
        client.set_terminated(rid, "FINISHED")
        ids.append(rid)
    r = run_cli(capsys, monkeypatch, "ensemble", "--experiment", "bad", "--runs", ",".join(ids))
    assert r.code == 2 and r.err.count("\n") == 1
    assert "ensemble members must share one dataset and image size, got digits-skewed, utkface" in r.err
    r = run_cli(capsys, monkeypatch, "ensemble", "--experiment", "bad", "--runs", f"{ids[0]},nope")
    assert r.code == 2 and "nope" in r.err and r.err.count("\n") == 1
    r = run_cli(capsys, monkeypatch, "ensemble", "--experiment", "bad", "--runs", f"{ids[0]},{ids[0]}")
    assert r.code == 2 and "no safe weights" in r.err  # pickle-only (here: no model at all) members are refused
    r = run_cli(capsys, monkeypatch, "ensemble", "--experiment", "nope")
    assert r.code == 2 and "unknown experiment 'nope'" in r.err
    r = run_cli(capsys, monkeypatch, "sheet", "--experiment", "bad", "--ensembles")
    assert r.code == 2 and "has no ensembles 'bad-ensembles' yet" in r.err
