"""`mmtrack select --register NAME`: the selection's model shipped to MLflow's Model Registry. The version is the
run the rule documents (the last rule's set, best mean of --by, lowest run id on ties), linked to that run's
logged model, tagged with the rule, experiment, --by and spread; a rerun with the same rule adds no version; MLflow
loads it by alias and it predicts what the run's model predicts. Errors are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY, module_store, run_cli, scores_experiment

from mmtrack import tracking
from mmtrack.interventions import parse
from mmtrack.jobs.train_run import run_configs
from mmtrack.training.config import RunConfig

EXPERIMENT = "ship"
GROUP = "acc/group/skew/gs-minority"


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory, _empty_store):
    """Three FINISHED runs (seeds 0, 1, 2 of TINY, trained together), with acc and the group accuracies."""
    with module_store(tmp_path_factory, _empty_store, "register") as (d, client):
        exp_id = tracking.experiment_id(client, EXPERIMENT, create=True)
        results = run_configs(
            [RunConfig(**{**TINY, "seed": s}) for s in (0, 1, 2)], client, exp_id, parse(["acc", "group"]), data=digits
        )
        assert all(not isinstance(r, Exception) for r in results), results
        yield d


@pytest.fixture
def store(trained, monkeypatch):
    monkeypatch.setenv("MMTRACK_TRACKING_DIR", str(trained))
    return tracking.connect()


def select(capsys, monkeypatch, *args: str):
    return run_cli(capsys, monkeypatch, "select", "--experiment", EXPERIMENT, "--format", "json", *args)


def versions(client, name: str) -> list:
    return sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))


def expected_champion(client, selected: list[str], by: list[str]) -> str:
    """The documented rule, by hand: best mean of the --by metrics, ties to the lowest run id."""
    means = {rid: np.mean([client.get_run(rid).data.metrics[m] for m in by]) for rid in selected}
    best = max(means.values())
    return min(rid for rid, m in means.items() if m >= best - 1e-9)


def test_register_ships_the_strictest_rules_best_run_once(capsys, monkeypatch, store):
    client = store
    by = ["acc", GROUP]
    res = select(capsys, monkeypatch, "--by", ",".join(by), "--top", "75,50", "--register", "digits")
    assert res.code == 0, res.err
    report = json.loads(res.out)  # stdout stays the report alone
    last = report["selections"][-1]
    assert (last["rule"], last["k"]) == ("top", 50)
    chosen = expected_champion(client, last["run_ids"], by)

    (version,) = versions(client, "digits")
    assert version.run_id == chosen
    run = client.get_run(chosen)
    (model_id,) = [o.model_id for o in run.outputs.model_outputs]
    assert version.source == f"models:/{model_id}" and client.get_logged_model(model_id).name == "model"
    assert client.get_model_version_by_alias("digits", "champion").version == version.version
    rule = f"top 50% on {','.join(by)}"
    tags = version.tags
    assert tags[tracking.SELECTION_RULE_TAG] == rule
    assert tags[tracking.SELECTION_EXPERIMENT_TAG] == EXPERIMENT
    assert tags[tracking.SELECTION_BY_TAG] == ",".join(by)
    assert json.loads(tags[tracking.SELECTION_SPREAD_TAG]) == {m: s["delta_max"] for m, s in last["unseen"].items()}
    assert tags[tracking.SELECTION_SIZE_TAG] == str(last["n_selected"])
    assert float(tags[tracking.SELECTION_SCORE_TAG]) == pytest.approx(
        np.mean([run.data.metrics[m] for m in by]), rel=1e-5
    )
    assert f"registered run {chosen} ({rule}" in res.err and "as digits version 1, alias @champion" in res.err
    assert "models:/digits@champion" in res.err

    # the same rule again: no second version, the alias set again (and a new alias points to the same version)
    again = select(capsys, monkeypatch, "--by", ",".join(by), "--top", "75,50", "--register", "digits")
    assert again.code == 0, again.err
    assert again.out == res.out
    assert "digits version 1 already holds run" in again.err and "no new version" in again.err
    other = select(capsys, monkeypatch, "--by", ",".join(by), "--top", "50", "--register", "digits", "--alias", "prod")
    assert other.code == 0, other.err
    assert len(versions(client, "digits")) == 1
    assert str(client.get_model_version_by_alias("digits", "prod").version) == "1"
    assert str(client.get_model_version_by_alias("digits", "champion").version) == "1"

    # another rule is another version, even of the same run
    loose = select(capsys, monkeypatch, "--by", ",".join(by), "--top", "100", "--register", "digits")
    assert loose.code == 0, loose.err
    assert [v.tags[tracking.SELECTION_RULE_TAG] for v in versions(client, "digits")] == [
        rule,
        f"top 100% on {','.join(by)}",
    ]
    assert str(client.get_model_version_by_alias("digits", "champion").version) == "2"


def test_the_registered_model_loads_with_mlflow_and_predicts_like_the_run(capsys, monkeypatch, store, digits):
    import mlflow.pyfunc
    import mlflow.pytorch

    client = store
    res = select(capsys, monkeypatch, "--by", "acc", "--top", "50", "--register", "loadable", "--no-predictions")
    assert res.code == 0, res.err
    version = client.get_model_version_by_alias("loadable", "champion")
    x = digits.test.images[:64].float().div(255)
    with torch.no_grad():
        mine = tracking.load_model(client, version.run_id).eval()(x)  # the run's own model (its safe weights)
        registered = mlflow.pytorch.load_model("models:/loadable@champion", map_location="cpu").eval()(x)
    torch.testing.assert_close(registered, mine)
    stored = tracking.load_predictions(client, [version.run_id])[version.run_id]["pred"].to_numpy()[:64]
    np.testing.assert_array_equal(registered.argmax(1).numpy(), stored)
    served = mlflow.pyfunc.load_model("models:/loadable@champion").predict(x.numpy())
    np.testing.assert_allclose(np.asarray(served), mine.numpy(), rtol=1e-5, atol=1e-5)


def test_register_errors_are_one_line(capsys, monkeypatch, tracking_dir):
    scores_experiment("toy")  # acc rises and acc/ood/x falls from run to run; no models

    def sel(*args):
        return run_cli(capsys, monkeypatch, "select", "--experiment", "toy", "--no-predictions", *args)

    empty = sel("--by", "acc,acc/ood/x", "--top", "25", "--register", "toy")
    assert empty.code == 2 and "top 25% on acc, acc/ood/x selected no run" in empty.err
    no_model = sel("--by", "acc", "--top", "50", "--register", "toy")
    assert no_model.code == 2 and "has no MLflow model 'model' to register" in no_model.err
    assert "top 50%" in no_model.out  # the selection itself was shown first
    lonely = sel("--by", "acc", "--alias", "prod")
    assert lonely.code == 2 and "give --register NAME too" in lonely.err and lonely.out == ""
    reserved = sel("--by", "acc", "--register", "toy", "--alias", "latest")
    assert reserved.code == 2 and "--alias 'latest' is not a valid name" in reserved.err and reserved.out == ""
    bad_name = sel("--by", "acc", "--register", "a/b")
    assert bad_name.code == 2 and "--register 'a/b' is not a valid name" in bad_name.err
    with monkeypatch.context() as m:
        m.setenv("MLFLOW_REGISTRY_URI", "nosuchscheme://nowhere")
        none = sel("--by", "acc", "--top", "50", "--register", "toy")
    assert none.code == 2 and "has no model registry" in none.err, none.err
    for r in (empty, no_model, lonely, reserved, bad_name, none):
        assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert tracking.connect().search_registered_models() == []


def test_register_ensemble_ships_the_selections_ensemble_once(capsys, monkeypatch, store, digits):
    import mlflow.pytorch

    from mmtrack.models.ensemble import Ensemble

    client = store
    args = ("--by", "acc", "--top", "100", "--register", "ens", "--register-ensemble", "--no-predictions")
    res = select(capsys, monkeypatch, *args)
    assert res.code == 0, res.err
    (version,) = versions(client, "ens")
    run = client.get_run(version.run_id)
    members = json.loads(run.data.tags[tracking.MEMBERS_TAG])
    assert len(members) == 3 and run.data.params["ensemble.rule"] == "mean_softmax"
    assert client.get_experiment(run.info.experiment_id).name == f"{EXPERIMENT}-ensembles-selected"
    assert version.tags[tracking.SELECTION_RULE_TAG] == "ensemble of top 100% on acc"
    assert float(version.tags[tracking.SELECTION_SCORE_TAG]) == pytest.approx(run.data.metrics["acc"], abs=1e-6)
    x = digits.test.images[:64].float().div(255)
    with torch.no_grad():
        registered = mlflow.pytorch.load_model("models:/ens@champion", map_location="cpu").eval()(x)
        by_hand = Ensemble([tracking.load_model(client, m).eval() for m in members]).eval()(x)
    torch.testing.assert_close(registered, by_hand, atol=1e-5, rtol=1e-5)
    again = select(capsys, monkeypatch, *args)
    assert again.code == 0 and "no new version" in again.err and len(versions(client, "ens")) == 1
    one = select(capsys, monkeypatch, "--by", "acc", "--top", "1", "--register", "ens", "--register-ensemble")
    assert one.code != 0 and "an ensemble needs 2" in one.err
