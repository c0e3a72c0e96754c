"""One training configuration without torch: validation (a bad value fails where it is written, naming what is
allowed), the stable hash sweeps resume by, the stack key, the seed sources, run names and params. Each recipe
choice and seed source as a param of its own (hash, name, study, CLI, MLproject): test_params.py."""

from __future__ import annotations

import pytest

from mmtrack.errors import MMTrackError
from mmtrack.training.config import ARCHS, RECIPE, SEED_SOURCES, SOURCE_PARAMS, TRAIN_PARAMS, RunConfig, coerce

# The integration suite's tiny configuration (tests/integration/conftest.py TINY).
TINY = dict(width=0.0625, epochs=1, augment="none", batch_size=256)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"arch": "foo"}, r"unknown arch 'foo'; choose one of: resnet18, resnet50, wide_resnet50_2"),
        ({"dataset": "foo"}, r"unknown dataset 'foo'; choose one of: .*digits-skewed"),
        ({"augment": "mixup"}, r"unknown augment 'mixup'; choose one of: randaugment, trivialaugment, none"),
        ({"optimizer": "rmsprop"}, r"unknown optimizer 'rmsprop'; choose one of: sgd, adam"),
        ({"lr": 0}, r"lr must be a positive number, got 0"),
        ({"lr": -0.1}, r"lr must be a positive number"),
        ({"lr": float("nan")}, r"lr must be a positive number"),
        ({"lr": float("inf")}, r"lr must be a positive number, got inf"),
        ({"lr": "0.1"}, r"lr must be a positive number, got '0.1'"),
        ({"lr": True}, r"lr must be a positive number, got True"),
        ({"width": 0.0}, r"width must be a positive number"),
        ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
        ({"batch_size": -8}, r"batch_size must be a positive integer"),
        ({"batch_size": 12.5}, r"batch_size must be a positive integer"),
        ({"batch_size": True}, r"batch_size must be a positive integer, got True"),
        ({"epochs": 0}, r"epochs must be a positive integer, got 0"),
        ({"seed": -1}, r"seed must be a non-negative integer"),
        ({"seed": 1.0}, r"seed must be a non-negative integer, got 1.0"),
        ({"seed": False}, r"seed must be a non-negative integer, got False"),
        ({"image_size": 4}, r"image_size must be an integer >= 8"),
        ({"image_size": 32.0}, r"image_size must be an integer >= 8, got 32.0"),
        # the recipe's choices and the seed sources (more in test_params.py)
        ({"warmup_epochs": -1.0}, r"warmup_epochs must be a number >= 0"),
        ({"label_smoothing": 1}, r"label_smoothing must be a number in \[0, 1\)"),
        ({"zero_init_residual": 1}, r"zero_init_residual must be true or false, got 1"),
        ({"adam_betas": "0.9,1.0"}, r"adam_betas must be 'b1,b2' with each in \[0, 1\)"),
        ({"adam_betas": "a,b"}, r"adam_betas must be 'b1,b2'"),
        ({"data_seed": "1"}, r"data_seed must be a non-negative integer, got '1'"),
    ],
)
def test_a_bad_config_fails_where_it_is_written(changes, message):
    with pytest.raises(MMTrackError, match=message):
        RunConfig(**{**TINY, **changes})
    with pytest.raises(MMTrackError, match=message):
        RunConfig(**TINY).replace(**changes)


def test_every_allowed_value_is_accepted():
    for arch in ARCHS:
        assert RunConfig(arch=arch).arch == arch
    for changes in (
        {"augment": "trivialaugment"},
        {"optimizer": "adam"},
        {"image_size": 8},
        {"momentum": 0.0, "nesterov": True, "lr_schedule": "linear", "label_smoothing": 0.1},
        {"warmup_epochs": 0.0, "adam_betas": "0,0.5", "augment_group": 1, "zero_init_residual": True},
        {source: 0 for source in SOURCE_PARAMS},
    ):
        assert RunConfig(**changes).replace(**changes) == RunConfig(**changes)
    assert RunConfig(dataset="utkface").dataset == "utkface"  # a registered dataset: no files are read
    assert RunConfig(arch="vgg16").params()["width"] == "n/a"  # any torchvision builder; only the ResNets scale
    assert RunConfig(arch="resnet50").params()["width"] == 0.125


def test_config_hash_name_and_params():
    cfg = RunConfig(**TINY)
    assert cfg.hash == RunConfig(**TINY).hash  # stable
    assert cfg.hash != cfg.replace(seed=1).hash  # the hash includes the seed
    assert cfg.hash != cfg.replace(lr=0.05).hash
    assert RunConfig(width=1).hash == RunConfig(width=1.0).hash  # numbers are normalised
    assert RunConfig(lr=1).hash == RunConfig(lr=1.0).hash
    assert RunConfig(momentum=0).hash == RunConfig(momentum=0.0).hash
    # pinned: a change would orphan every logged run (sweeps resume by this hash); the recipe is part of it
    assert RunConfig().hash == "fa87f2a18d456e49"
    assert cfg.run_name == "resnet18-w0.0625-lr0.1-bs256-none-sgd-e1-s0"
    assert RunConfig(width=1.0, arch="resnet50", seed=3).run_name == "resnet50-lr0.1-bs128-randaugment-sgd-e20-s3"
    # a recipe choice or a seed source off its default is in the full name too
    assert RunConfig(momentum=0.8).run_name == "resnet18-w0.125-lr0.1-bs128-randaugment-sgd-e20-mom0.8-s0"
    assert RunConfig(nesterov=True, init_seed=3).run_name.endswith("-e20-nesterov-init3-s0")
    # short run names lead with what differs from the reference, in short forms, then the seed
    assert RunConfig().short_name() == "default · s0"
    assert RunConfig(lr=0.05, seed=1).short_name() == "lr=0.05 · s1"
    assert RunConfig(arch="resnet50", optimizer="adam", seed=2).short_name() == "arch=r50 opt=adam · s2"
    assert RunConfig(augment="trivialaugment", seed=3).short_name() == "aug=ta · s3"
    assert RunConfig(nesterov=True, init_seed=4).short_name() == "nesterov init=4 · s0"
    assert RunConfig(dataset="utkface", seed=4).short_name() == "default · s4"  # the dataset is the experiment
    assert RunConfig(lr=0.05).short_name(reference=RunConfig(lr=0.05, seed=3)) == "default · s0"
    params = cfg.params()
    assert params["lr"] == 0.1 and params["batch_size"] == 256 and params["image_size"] == "default"
    for key, value in RECIPE.items():
        assert params[key] == value
    assert RunConfig(image_size=16).params()["image_size"] == 16
    # a seed source is logged only when set (an unset one follows `seed`)
    assert not set(SOURCE_PARAMS) & set(cfg.params())
    assert RunConfig(data_seed=2).params()["data_seed"] == 2


# one value off the default for every training param that is not a recipe choice (those: test_params.py)
OTHER = {
    "dataset": "utkface",
    "arch": "resnet50",
    "width": 0.25,
    "lr": 0.05,
    "batch_size": 64,
    "augment": "none",
    "optimizer": "adam",
    "epochs": 2,
    "seed": 1,
    "image_size": 16,
}


def test_every_training_param_moves_the_hash():
    assert set(OTHER) == set(TRAIN_PARAMS)
    cfg = RunConfig()
    hashes = {name: cfg.replace(**{name: value}).hash for name, value in OTHER.items()}
    assert len(set(hashes.values()) | {cfg.hash}) == len(OTHER) + 1
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes.values())
    # a seed source set to the seed's own value is still another configuration (it no longer follows `seed`)
    assert cfg.replace(init_seed=cfg.seed).hash != cfg.hash


def test_the_stack_key_is_everything_but_the_seeds():
    cfg = RunConfig()
    seeds = [cfg.replace(seed=s) for s in range(3)] + [cfg.replace(**{source: 5}) for source in SOURCE_PARAMS]
    assert {c.stack_key for c in seeds} == {cfg.stack_key} and len({c.hash for c in seeds}) == len(seeds)
    assert cfg.stack_key == cfg.replace(seed=0).hash != cfg.replace(seed=1).hash
    for name, value in OTHER.items():
        if name != "seed":
            assert cfg.replace(**{name: value}).stack_key != cfg.stack_key, name


def test_each_source_of_randomness_has_its_seed():
    cfg = RunConfig(seed=7)
    assert {s: cfg.source_seed(s) for s in SEED_SOURCES} == {
        "init": 7,
        "order": 7,
        "augment": 7,
        "data": None,  # the whole training split
        "numerics": None,  # no perturbation
    }
    own = cfg.replace(init_seed=1, order_seed=2, augment_seed=3, data_seed=4, numerics_seed=5)
    assert [own.source_seed(s) for s in SEED_SOURCES] == [1, 2, 3, 4, 5]


def test_text_that_is_no_integer_is_left_for_run_config_to_name():
    """`mlflow run -P epochs=20` may hand over 20.0 (an integer); 12.5 stays 12.5, so that RunConfig's error names
    the param and the value."""
    assert coerce("epochs", "20.0") == 20 and type(coerce("epochs", "20.0")) is int
    assert coerce("batch_size", "12.5") == 12.5
    with pytest.raises(MMTrackError, match=r"batch_size must be a positive integer, got 12.5"):
        RunConfig(batch_size=coerce("batch_size", "12.5"))
    with pytest.raises(MMTrackError, match=r"nesterov must be true or false, got 'maybe'"):
        coerce("nesterov", "maybe")
