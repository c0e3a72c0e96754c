"""Every source of randomness apart (issue 34): `seed` drives them all; init_seed, order_seed, augment_seed, data_seed
and numerics_seed each move one alone; models of different sources stack exactly; a seed-sources study's sheet is
one table, columns = sources."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import TINY, run_cli

from mmtrack.data import Split
from mmtrack.training.config import RunConfig
from mmtrack.training.train import StackTrainer, train_model, train_models

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def small(digits):
    """digits-skewed with 64 training images: two steps of batch 32 per epoch."""
    return dataclasses.replace(digits, train=Split(digits.train.images[:64], digits.train.labels[:64]))


def trainer(data, **changes) -> StackTrainer:
    return StackTrainer([RunConfig(**{**TINY, "batch_size": 32, "augment": "randaugment", **changes})], data, CPU)


def weights(t: StackTrainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in t.plain[0].state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def order(t: StackTrainer) -> list[torch.Tensor]:
    return [idx for (idx,) in t.batches()]


def test_each_seed_source_moves_only_its_own_randomness(small):
    base, seed1 = trainer(small), trainer(small, seed=1)
    init1, order1, aug1 = trainer(small, init_seed=1), trainer(small, order_seed=1), trainer(small, augment_seed=1)
    # initialisation: init_seed=1 draws seed 1's initial weights; the other sources keep seed 0's
    assert same(weights(init1), weights(seed1)) and not same(weights(init1), weights(base))
    assert same(weights(order1), weights(base)) and same(weights(aug1), weights(base))
    # batch order: order_seed=1 is seed 1's order; init_seed and augment_seed keep seed 0's
    assert all(torch.equal(a, b) for a, b in zip(order(order1), order(seed1)))
    assert all(torch.equal(a, b) for a, b in zip(order(init1), order(base)))
    assert not all(torch.equal(a, b) for a, b in zip(order(order1), order(base)))
    # augmentation: augment_seed starts a stream of its own; the others continue seed 0's
    assert torch.equal(init1.streams[0], trainer(small, init_seed=1).streams[0])
    assert torch.equal(order1.streams[0], base.streams[0]) and not torch.equal(aug1.streams[0], base.streams[0])


def test_data_seed_trains_on_a_bootstrap_resample_and_evaluates_on_the_same_sets(small):
    base, resampled = trainer(small), trainer(small, data_seed=3)
    assert base.samples == [None]
    sample = resampled.samples[0]
    assert len(sample) == len(small.train) and len(set(sample.tolist())) < len(small.train)  # with replacement
    assert torch.equal(sample, trainer(small, data_seed=3).samples[0])
    assert not torch.equal(sample, trainer(small, data_seed=4).samples[0])
    used = torch.cat(order(resampled))
    assert set(used.tolist()) <= set(sample.tolist())  # every batch indexes the resample
    assert same(weights(resampled), weights(base))  # initialisation untouched


def test_numerics_seed_moves_one_initial_weight_by_one_ulp(small):
    base, moved = weights(trainer(small)), weights(trainer(small, numerics_seed=5))
    diffs = [(k, (moved[k] != base[k]).nonzero()) for k in base if moved[k].is_floating_point()]
    changed = [(k, idx) for k, idx in diffs if len(idx)]
    assert len(changed) == 1 and len(changed[0][1]) == 1  # one element of one tensor
    key, (index,) = changed[0]
    old, new = base[key][tuple(index)], moved[key][tuple(index)]
    assert new > old and torch.nextafter(old, torch.tensor(float("inf"))) == new
    assert not same(weights(trainer(small, numerics_seed=6)), moved)  # another seed, another weight


def test_models_of_different_sources_train_together_as_each_alone(small):
    cfgs = [
        RunConfig(**{**TINY, "batch_size": 32, "augment": "randaugment", **changes})
        for changes in (
            {"init_seed": 1},
            {"order_seed": 1},
            {"augment_seed": 1},
            {"data_seed": 1},
            {"numerics_seed": 1},
        )
    ]
    together = train_models(cfgs, small, CPU)
    for cfg, model in zip(cfgs, together):
        alone = train_model(cfg, small, CPU).state_dict()
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value.float(), alone[key].float(), rtol=1e-4, atol=1e-5, msg=key)


def test_a_seed_sources_study_sheets_its_sources(capsys, monkeypatch, tracking_dir, tmp_path):
    import yaml

    monkeypatch.setenv("MMTRACK_THREADS", "1")
    study = {
        "name": "tiny-sources",
        "dataset": "digits-skewed",
        "design": "seed-sources",
        "sources": ["init", "numerics"],
        "epochs": 1,
        "seeds": [0, 1],
        "fixed": {k: v for k, v in TINY.items() if k != "epochs"},
        "default": {},
        "axes": {},
        "interventions": ["acc"],
    }
    path = tmp_path / "tiny-sources.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 0, res.err
    assert "4 finished" in res.out
    res = run_cli(capsys, monkeypatch, "sheet", "--experiment", "tiny-sources", "--metric", "acc", "--format", "json")
    assert res.code == 0, res.err
    (sheet,) = json.loads(res.out) if isinstance(json.loads(res.out), list) else [json.loads(res.out)]
    (table,) = sheet["tables"]
    assert table["axis"] == "source" and table["values"] == ["init", "numerics"] and table["seeds"] == [0, 1]
    assert all(score is not None for row in table["scores"] for score in row)
    res = run_cli(capsys, monkeypatch, "sheet", "--experiment", "tiny-sources", "--summary", "--format", "json")
    (row,) = json.loads(res.out)
    assert row["top_axis"] in ("source: init", "source: numerics") and row["top_axis_p_value"] is not None
