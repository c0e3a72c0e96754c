"""Study files without torch: `parse_study`'s errors (each names the file and the key), `load_study`'s file
errors, the ofat/grid expansion, the preset studies and the `StudyPlan` a sweep builds once."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import yaml

from mmtrack.errors import MMTrackError
from mmtrack.interventions.specs import EvalSettings, Intervention
from mmtrack.study import StudyPlan, load_study, parse_study

STUDIES = Path(__file__).resolve().parents[2] / "studies"

# A valid study: lr {0.1, 0.05} x seeds {0, 1}, every other axis at one value (the errors below name them).
VALID = {
    "name": "tiny-sweep",
    "dataset": "digits-skewed",
    "design": "ofat",
    "epochs": 1,
    "seeds": [0, 1],
    "fixed": {"width": 0.0625},
    "default": {"lr": 0.1, "batch_size": 256, "augment": "none", "optimizer": "sgd", "arch": "resnet18"},
    "axes": {"lr": [0.1, 0.05], "batch_size": [256], "augment": ["none"], "optimizer": ["sgd"], "arch": ["resnet18"]},
    "interventions": ["acc"],
}


def base(**changes) -> dict:
    return {**copy.deepcopy(VALID), **changes}


@pytest.mark.parametrize(
    "raw, message",
    [
        (base(epoch=3), r"study: unknown key\(s\) epoch; allowed: name, dataset, design, epochs"),
        (base(epochs="ten"), r"study: epochs must be an integer, got 'ten'"),
        (base(epochs=True), r"study: epochs must be an integer, got True"),
        (base(seeds="0,1"), r"study: seeds must be a list, got '0,1'"),
        (base(axes=["lr"]), r"study: axes must be a mapping"),
        (base(seeds=[0, 0]), r"study: seeds must be a non-empty list of distinct non-negative integers"),
        (base(seeds=[-1]), r"study: seeds must be a non-empty list of distinct non-negative integers"),
        (base(design="random"), r"study: design must be one of ofat, grid, seed-sources, got 'random'"),
        ({k: v for k, v in VALID.items() if k != "seeds"}, r"study: missing key\(s\) seeds"),
        (
            base(default={**VALID["default"], "lr": 0.2}),
            r"study: default lr=0.2 is not among axes.lr \[0.1, 0.05\]",
        ),
        (
            base(axes={**VALID["axes"], "dropout": [0.1]}),
            r"study: unknown axis 'dropout'; axes are: lr, batch_size, augment, optimizer, arch, width, epochs, ",
        ),
        (base(axes={**VALID["axes"], "lr": []}), r"study: axes.lr must be a non-empty list of values"),
        (base(axes={**VALID["axes"], "lr": [0.1, 0.1]}), r"study: axes.lr lists a value twice"),
        (base(axes={**VALID["axes"], "lr": [0.1, "fast"]}), r"study: axes.lr"),
        (base(axes={**VALID["axes"], "lr": [0.1, -1.0]}), r"study: axes.lr: lr must be a positive number"),
        (
            base(axes={**VALID["axes"], "arch": ["resnet18", "vgg"]}),
            r"study: axes.arch: unknown arch 'vgg'; choose one of: resnet18, resnet50, wide_resnet50_2",
        ),
        (
            base(default={k: v for k, v in VALID["default"].items() if k != "lr"}),
            r"study: default has no value for axis 'lr'",
        ),
        (base(default={**VALID["default"], "width": 0.5}), r"study: default sets width which are not axes"),
        (
            base(fixed={"lr": 0.1}),
            r"study: lr both fixed and varied; hold a parameter under `fixed:` or vary it under `axes:`, not both",
        ),
        (base(fixed={"dropout": 0.8}), r"study: fixed may set lr, batch_size, .*, got dropout"),
        (base(fixed={"epochs": 2}), r"study: fixed may set .*, got epochs"),  # a key of its own
        (base(fixed={"init_seed": 2}), r"study: fixed may set .*, got init_seed"),
        (base(fixed={"momentum": 1.5}), r"study: momentum must be a number in \[0, 1\), got 1.5"),
        (base(eval={"pgd_steps": 0}), r"study: eval setting pgd_steps must be a positive integer, got 0"),
        (
            base(eval={"input_noise_dist": "uniform"}),
            r"study: eval setting input_noise_dist must be one of laplace, "
            r"gaussian, got 'uniform'",
        ),
        (base(eval={"pgd_random_start": "yes"}), r"study: eval setting pgd_random_start must be true or false"),
        (base(dataset="mnist"), r"unknown dataset 'mnist'"),
        (base(interventions=["acc", "pgd_linf:-1"]), r"study: interventions: pgd_linf value must be a non-negative"),
        (base(eval={"pgd_stepz": 3}), r"study: unknown eval setting\(s\) pgd_stepz; allowed: "),
        (base(selection={"best": ["acc"]}), r"study: unknown selection key 'best'; allowed: by, unseen, top"),
        (base(selection={"top": [50, "all"]}), r"study: selection.top must be a non-empty list of percentages"),
        (base(selection={"by": []}), r"study: selection.by must be a non-empty list of metric names, got \[\]"),
        (["a", "list"], r"study: expected a mapping of keys"),
    ],
)
def test_study_validation_errors(raw, message):
    with pytest.raises(MMTrackError, match=message):
        parse_study(raw, "study")


def write_study(tmp_path: Path, **changes) -> Path:
    study = base(**changes)
    path = tmp_path / f"{study['name']}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_study_file_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MMTrackError, match=r"study file nope.yaml not found"):
        load_study("nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(MMTrackError, match=r"bad.yaml: not valid YAML"):
        load_study(bad)
    wrong = write_study(tmp_path, name="wrong", epochs="ten")
    with pytest.raises(MMTrackError, match=r"wrong.yaml: epochs must be an integer"):
        load_study(wrong)


def test_a_study_file_reads_back_as_the_study_it_holds(tmp_path):
    study = load_study(write_study(tmp_path, name="round-trip"))
    assert study == parse_study(base(name="round-trip"))
    assert study.name == "round-trip" and study.interventions == ["acc"] and study.eval_settings() == EvalSettings()
    unnamed = {k: v for k, v in VALID.items() if k != "name"}
    assert parse_study(unnamed, "some/dir/my-study.yaml").name == "my-study"  # the file's stem


@pytest.mark.parametrize(
    "name, n_configs, n_points", [("digits-skewed", 45, 9), ("utkface", 45, 9), ("cifar10-skewed", 35, 7)]
)
def test_preset_studies(name, n_configs, n_points):
    study = load_study(STUDIES / f"{name}.yaml")
    configs = study.configs()
    assert len(configs) == n_configs
    assert len({c.hash for c in configs}) == n_configs
    assert len({c.replace(seed=0).hash for c in configs}) == n_points
    assert configs[0].lr == 0.1 and configs[0].batch_size == 128 and configs[0].augment == "randaugment"


def test_ofat_and_grid_expansion():
    raw = base(
        seeds=[0, 1],
        axes={
            "lr": [0.1, 0.05],
            "batch_size": [256, 128],
            "augment": ["none", "randaugment"],
            "optimizer": ["sgd"],
            "arch": ["resnet18"],
        },
    )
    ofat = parse_study(raw).configs()
    assert len(ofat) == (1 + 3) * 2 == 8
    default = {"lr": 0.1, "batch_size": 256, "augment": "none"}
    assert [(c.lr, c.batch_size, c.augment, c.seed) for c in ofat[:2]] == [(0.1, 256, "none", 0), (0.1, 256, "none", 1)]
    for c in ofat:
        changed = [k for k, v in default.items() if getattr(c, k) != v]
        assert len(changed) <= 1
        assert (c.width, c.epochs, c.dataset) == (0.0625, 1, "digits-skewed")
    assert len({c.hash for c in ofat}) == 8
    grid = parse_study({**raw, "design": "grid"}).configs()
    assert len(grid) == 2 * 2 * 2 * 2 == 16
    assert len({c.hash for c in grid}) == 16
    assert {c.hash for c in ofat} <= {c.hash for c in grid}


def test_fixed_holds_any_training_parameter_that_is_not_an_axis():
    raw = base(
        axes={"lr": [0.1, 0.05]}, default={"lr": 0.1}, fixed={"width": 0.0625, "optimizer": "adam", "augment": "none"}
    )
    study = parse_study(raw)
    assert {(c.optimizer, c.augment, c.width) for c in study.configs()} == {("adam", "none", 0.0625)}
    assert [c.short_name(study.reference()) for c in study.configs()][:2] == ["default · s0", "default · s1"]


def test_a_study_plan_holds_what_every_claim_needs():
    study = parse_study(base(interventions=["acc", "pgd_linf:0.01,0.005"], eval={"pgd_steps": 3}))
    plan = StudyPlan.of(study)
    assert plan.configs == tuple(study.configs()) and len(plan.configs) == 4
    assert plan.interventions == (Intervention("acc"), Intervention("pgd_linf", 0.01), Intervention("pgd_linf", 0.005))
    assert plan.settings == EvalSettings(pgd_steps=3)
    assert plan.reference == study.configs()[0] == study.reference()
    assert (plan.name, plan.dataset) == ("tiny-sweep", "digits-skewed")
    assert StudyPlan.of(plan) is plan  # a plan is not prepared twice
    assert pickle.loads(pickle.dumps(plan)) == plan  # spawned workers receive it whole
