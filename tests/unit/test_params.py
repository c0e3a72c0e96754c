"""Every training choice declared once (`training.config.PARAMS`): RunConfig, validation, the study schema, the CLI
options, MLproject's -P, MLflow params, run names and the hash follow that one table. Torch-free."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from mmtrack.errors import MMTrackError
from mmtrack.study import load_study, parse_study
from mmtrack.training.config import AXES, PARAM, PARAMS, RECIPE, SEED_SOURCES, RunConfig, coerce

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(width=0.0625, epochs=1, augment="none", batch_size=256)


def study(**changes) -> dict:
    return {
        "name": "params",
        "dataset": "digits-skewed",
        "epochs": 1,
        "seeds": [0, 1],
        "fixed": {"width": 0.0625},
        "default": {"lr": 0.1},
        "axes": {"lr": [0.1, 0.05]},
        **changes,
    }


def test_every_field_of_run_config_is_a_declared_param_with_its_default():
    fields = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    assert list(fields) == [p.name for p in PARAMS]
    assert fields == {p.name: p.default for p in PARAMS}
    assert RunConfig().recipe() == RECIPE  # the default recipe, as runs logged it before params were declared


def test_the_default_hash_and_params_are_those_of_runs_logged_before():
    assert RunConfig().hash == "fa87f2a18d456e49"  # pinned: sweeps resume by it
    assert RunConfig(**TINY).hash == "47a239bbe101041f"
    assert RunConfig(weight_decay=0.002).hash == RunConfig().hash
    assert RunConfig(warmup_epochs=1).hash == RunConfig().hash  # numbers normalised
    assert "init_seed" not in RunConfig().params() and "source" not in RunConfig().params()


@pytest.mark.parametrize(
    "name, value",
    [
        ("momentum", 0.8),
        ("weight_decay", 5e-4),
        ("nesterov", True),
        ("lr_schedule", "linear"),
        ("warmup_epochs", 0.0),
        ("label_smoothing", 0.1),
        ("zero_init_residual", True),
        ("adam_betas", "0.8,0.99"),
        ("augment_group", 1),
        ("init_seed", 3),
        ("order_seed", 3),
        ("augment_seed", 3),
        ("data_seed", 3),
        ("numerics_seed", 3),
    ],
)
def test_each_choice_moves_the_hash_is_logged_and_named(name, value):
    cfg = RunConfig(**TINY, **{name: value})
    assert cfg.hash != RunConfig(**TINY).hash
    assert cfg.params()[name] == value
    assert (
        cfg.stack_key == RunConfig(**TINY).stack_key
        if name.endswith("_seed")
        else cfg.stack_key != RunConfig(**TINY).stack_key
    )
    short = cfg.short_name(RunConfig(**TINY))
    assert short.endswith(" · s0") and len(short) <= 22, short  # the runs table cuts names at about 22 characters
    assert PARAM[name].short in short


def test_run_names_of_the_embedded_study_keep_their_seed_visible():
    st = load_study(ROOT / "studies" / "digits-skewed.yaml")
    names = [c.short_name(st.reference()) for c in st.configs()]
    assert len(set(names)) == len(names)
    assert all(len(n) <= 22 and n.endswith(f" · s{c.seed}") for n, c in zip(names, st.configs()))
    assert "aug=ta · s3" in names and "arch=wrn50 · s1" in names and "lr=0.05 · s2" in names


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"momentum": 1.0}, r"momentum must be a number in \[0, 1\), got 1.0"),
        ({"weight_decay": -1e-4}, r"weight_decay must be a number >= 0"),
        ({"nesterov": "yes"}, r"nesterov must be true or false, got 'yes'"),
        ({"lr_schedule": "step"}, r"unknown lr_schedule 'step'; choose one of: cosine, linear, constant"),
        ({"adam_betas": "0.9"}, r"adam_betas must be 'b1,b2' with each in \[0, 1\), got '0.9'"),
        ({"augment_group": 0}, r"augment_group must be a positive integer"),
        ({"init_seed": -1}, r"init_seed must be a non-negative integer"),
        (
            {"arch": "mobilenet_v3_small", "width": 0.5},
            r"width applies to mmtrack's ResNets .* mobilenet_v3_small has none",
        ),
    ],
)
def test_a_bad_choice_is_one_line_naming_it_and_what_is_allowed(changes, message):
    with pytest.raises(MMTrackError, match=message):
        RunConfig(**{**TINY, **changes})


def test_text_values_are_typed_as_declared():
    assert coerce("epochs", "20.0") == 20 and coerce("batch_size", "128") == 128
    assert coerce("nesterov", "False") is False and coerce("zero_init_residual", "true") is True
    assert coerce("init_seed", "") is None and coerce("image_size", "default") is None
    with pytest.raises(MMTrackError, match=r"momentum must be a number in \[0, 1\), got 'fast'"):
        coerce("momentum", "fast")
    with pytest.raises(MMTrackError, match="unknown training parameter 'momentumm'"):
        coerce("momentumm", "0.9")


def test_any_choice_is_an_axis_or_fixed_in_a_study():
    st = parse_study(
        study(
            fixed={"width": 0.0625, "nesterov": True, "lr_schedule": "linear"},
            default={"weight_decay": 0.002, "epochs": 1},
            axes={"weight_decay": [0.002, 0.0005], "epochs": [1, 2]},
        )
    )
    cfgs = st.configs()
    assert {(c.weight_decay, c.epochs) for c in cfgs} == {(0.002, 1), (0.0005, 1), (0.002, 2)}
    assert all(c.nesterov and c.lr_schedule == "linear" for c in cfgs)
    assert "weight_decay" in AXES and "label_smoothing" in AXES and "seed" not in AXES


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"axes": {"seed": [0, 1]}, "default": {"seed": 0}}, r"seed cannot be an axis: the seeds are the rows"),
        ({"axes": {"init_seed": [0, 1]}, "default": {"init_seed": 0}}, r"init_seed cannot be an axis.*seed-sources"),
        (
            {"axes": {"momentun": [0.9]}, "default": {"momentun": 0.9}},
            r"unknown axis 'momentun'; axes are: lr, .*momentum",
        ),
        ({"fixed": {"lr": 0.1}}, r"lr both fixed and varied; hold a parameter under `fixed:` or vary it"),
        ({"fixed": {"width": 0.5}, "default": {"arch": "vgg11_bn"}, "axes": {"arch": ["vgg11_bn"]}}, r"width applies"),
        ({"default": {"arch": "foo"}, "axes": {"arch": ["foo"]}}, r"unknown arch 'foo'"),
        ({"design": "seed-sources", "sources": ["init", "bits"]}, r"sources must list distinct sources of randomness"),
        ({"sources": ["init"]}, r"sources apply to design: seed-sources only"),
    ],
)
def test_a_bad_study_is_one_line(changes, message):
    with pytest.raises(MMTrackError, match=message):
        parse_study(study(**changes))


def test_a_study_file_that_writes_a_parameter_twice_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump(study(), sort_keys=False) + "axes:\n  lr: [0.01]\n")
    with pytest.raises(MMTrackError, match=r"'axes' is written twice in one mapping"):
        load_study(path)


def test_seed_sources_vary_one_source_at_a_time_holding_the_others():
    st = parse_study(study(design="seed-sources", axes={}, default={}, seeds=[4, 7], sources=["init", "data"]))
    cfgs = st.configs()
    assert [(c.seed, c.init_seed, c.data_seed) for c in cfgs] == [
        (4, 4, None),
        (4, 7, None),
        (4, None, 4),
        (4, None, 7),
    ]
    assert len({c.stack_key for c in cfgs}) == 1  # one stack: they differ in their seeds only
    assert cfgs[1].params()["source"] == "init" and cfgs[1].params()["source_seed"] == 7
    assert st.to_dict()["seed_param"] == "source_seed" and st.to_dict()["sources"] == ["init", "data"]
    full = parse_study(study(design="seed-sources", axes={}, default={}))
    assert full.sources == list(SEED_SOURCES) and len(full.configs()) == 2 * len(SEED_SOURCES)
    around = parse_study(study(design="seed-sources", sources=["order"]))  # each OFAT configuration, lr 0.1 and 0.05
    assert [(c.lr, c.order_seed) for c in around.configs()] == [(0.1, 0), (0.1, 1), (0.05, 0), (0.05, 1)]


def test_a_seed_sources_design_has_a_table_per_configuration():
    from mmtrack.analysis import Design

    st = parse_study(study(design="seed-sources", sources=["init", "data"]))
    design = Design.from_study(st.to_dict())
    assert list(design.axes) == ["source", "source · lr=0.05"]
    assert all(values == ["init", "data"] for values in design.axes.values())
    assert design.tables["source · lr=0.05"] == {"column": "source", "where": {"lr": 0.05}}
    assert design.seed_param == "source_seed" and design.seeds == [0, 1] and design.default["seed"] == 0


def test_mlproject_has_every_param_with_its_default():
    main = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]["main"]
    for p in PARAMS:
        declared = main["parameters"][p.name]["default"]
        if p.optional:
            assert declared == "", p.name
        else:
            assert coerce(p.name, str(declared)) == p.default, p.name
        assert f"--{p.name.replace('_', '-')} {{{p.name}}}" in main["command"]


def test_the_train_command_has_an_option_per_param():
    from typer.testing import CliRunner

    from mmtrack.cli import app

    out = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    for p in PARAMS:
        assert f"--{p.name.replace('_', '-')}" in out, p.name


def test_every_architectures_run_name_keeps_its_seed_visible():
    from mmtrack.models.catalog import TORCHVISION

    for arch in TORCHVISION:
        name = RunConfig(arch=arch, seed=4).short_name()
        assert len(name) <= 22 and name.endswith(" · s4"), name
    assert RunConfig(arch="shufflenet_v2_x0_5").short_name() == "arch=shfv2_x0_5 · s0"
