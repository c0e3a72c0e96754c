"""Intervention specs and evaluation settings without torch: parsing (comma lists expand, numbers are written as
users write them, duplicates drop) and its errors, and EvalSettings' validation and params."""

from __future__ import annotations

import pytest

from mmtrack.errors import MMTrackError
from mmtrack.interventions.specs import DEFAULT_SPECS, KIND_REGISTRY, KINDS, EvalSettings, Intervention, parse


def test_parse_expands_lists_and_formats_numbers():
    ivs = parse(["acc", "pgd_linf:0.005, 0.01", "output_noise:5", "acc", "mia:black_box", "group:skew/gs-minority"])
    assert ivs == [
        Intervention("acc"),
        Intervention("pgd_linf", 0.005),
        Intervention("pgd_linf", 0.01),
        Intervention("output_noise", 5.0),
        Intervention("mia", "black_box"),
        Intervention("group", "skew/gs-minority"),
    ]
    assert [str(iv) for iv in ivs] == [
        "acc",
        "pgd_linf:0.005",
        "pgd_linf:0.01",
        "output_noise:5",
        "mia:black_box",
        "group:skew/gs-minority",
    ]
    assert str(parse(["pgd_linf:1e-4"])[0]) == "pgd_linf:0.0001"  # never 1e-04 in a metric name
    assert len(parse(DEFAULT_SPECS)) == 1 + 1 + 1 + 5 + 2 + 5 + 1


def test_parse_without_arguments_and_with_spaces():
    assert parse([" ood ", "group", "mia", "pgd_linf:0"]) == [
        Intervention("ood"),
        Intervention("group"),
        Intervention("mia"),
        Intervention("pgd_linf", 0.0),  # δ = 0: the clean accuracy on PGD's subset
    ]
    assert parse(["group:color", "ood:digits-warped", "mia:rule_based"]) == [
        Intervention("group", "color"),
        Intervention("ood", "digits-warped"),
        Intervention("mia", "rule_based"),
    ]
    assert parse(["output_noise:1,1.0,2", "output_noise:2"]) == [  # the same value once, in first-seen order
        Intervention("output_noise", 1.0),
        Intervention("output_noise", 2.0),
    ]
    assert parse([]) == []


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            "robustness",
            r"unknown intervention 'robustness'; choose one of: acc, group, ood, output_noise, "
            r"input_noise, pgd_linf, mia",
        ),
        ("pgd_linf:-0.01", r"pgd_linf value must be a non-negative number, got -0.01"),
        ("output_noise:-1", r"output_noise value must be a non-negative number, got -1"),
        ("input_noise:-0.5", r"input_noise value must be a non-negative number"),
        ("output_noise:inf", r"output_noise value must be a non-negative number"),
        ("pgd_linf:nan", r"pgd_linf value must be a non-negative number"),
        ("pgd_linf:2", r"pgd_linf budget δ is in \[0, 1\] pixel space, got 2"),
        ("pgd_linf", r"intervention pgd_linf needs a value, e.g. pgd_linf:0.005"),
        ("output_noise:", r"intervention output_noise needs a value, e.g. output_noise:0.005"),
        ("output_noise:big", r"output_noise value 'big' is not a number"),
        ("mia:shadow", r"unknown MIA attack 'shadow'; choose one of: rule_based, black_box"),
    ],
)
def test_parse_errors(spec, message):
    with pytest.raises(MMTrackError, match=message):
        parse(["acc", spec])


def test_the_registry_names_every_kind_once():
    assert KINDS == tuple(KIND_REGISTRY) == ("acc", "group", "ood", "output_noise", "input_noise", "pgd_linf", "mia")
    for kind in KIND_REGISTRY.values():
        module, _, function = kind.compute.partition(":")
        assert module and function and kind.args in ("none", "names", "numbers", "choices"), kind


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"input_noise_dist": "uniform"}, r"eval setting input_noise_dist must be one of laplace, gaussian"),
        ({"noise_draws": 0}, r"eval setting noise_draws must be a positive integer, got 0"),
        ({"pgd_steps": 2.0}, r"eval setting pgd_steps must be a positive integer, got 2.0"),
        ({"batch_size": True}, r"eval setting batch_size must be a positive integer, got True"),
        ({"mia_examples": -5}, r"eval setting mia_examples must be a positive integer"),
        ({"noise_seed": -1}, r"eval setting noise_seed must be a non-negative integer, got -1"),
        ({"subset_seed": "0"}, r"eval setting subset_seed must be a non-negative integer, got '0'"),
        ({"pgd_step_ratio": 0}, r"eval setting pgd_step_ratio must be a positive number, got 0"),
        ({"pgd_step_ratio": float("inf")}, r"eval setting pgd_step_ratio must be a positive number"),
        ({"pgd_random_start": "yes"}, r"eval setting pgd_random_start must be true or false, got 'yes'"),
        ({"intervention_predictions": 1}, r"eval setting intervention_predictions must be true or false, got 1"),
        ({"mia_attack_model": "xgb"}, r"eval setting mia_attack_model must be one of rf, gb, nn, lr, dt, knn, svm"),
    ],
)
def test_bad_eval_settings_fail_where_they_are_written(changes, message):
    with pytest.raises(MMTrackError, match=message):
        EvalSettings(**changes)


def test_eval_settings_params():
    settings = EvalSettings(noise_seed=0, pgd_step_ratio=1, input_noise_dist="gaussian", mia_attack_model="lr")
    params = settings.params()
    assert params["eval.pgd_step_ratio"] == 1 and params["eval.input_noise_dist"] == "gaussian"
    assert params["eval.mia_attack_model"] == "lr" and params["eval.pgd_steps"] == 10
    assert EvalSettings().params() == {
        "eval.noise_draws": 5,
        "eval.noise_seed": 0,
        "eval.input_noise_dist": "laplace",
        "eval.pgd_steps": 10,
        "eval.pgd_step_ratio": 2.5,
        "eval.pgd_random_start": False,
        "eval.pgd_max_examples": 500,
        "eval.mia_examples": 1000,
        "eval.mia_attack_model": "rf",
        "eval.subset_seed": 0,
        "eval.batch_size": 1024,
        "eval.intervention_predictions": False,
    }
