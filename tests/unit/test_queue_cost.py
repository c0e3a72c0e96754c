"""The order work is handed out in: `relative_cost` prices a configuration (architecture x width² x epochs) and
`by_cost` puts the most expensive first, keeping the study's order among equals, so parallel workers end
together."""

from __future__ import annotations

import pytest

from mmtrack.execution.queue import ARCH_COST, by_cost, relative_cost
from mmtrack.training.config import ARCHS, RunConfig


def test_every_architecture_a_config_accepts_has_a_price():
    assert set(ARCH_COST) == set(ARCHS)
    assert ARCH_COST["resnet18"] < ARCH_COST["resnet50"] < ARCH_COST["wide_resnet50_2"]


def test_the_cost_is_arch_times_width_squared_times_epochs():
    one = RunConfig(arch="resnet18", width=1.0, epochs=1)
    assert relative_cost(one) == 1.0
    assert relative_cost(one.replace(arch="resnet50")) == 2.0
    assert relative_cost(one.replace(arch="wide_resnet50_2")) == 3.0
    assert relative_cost(one.replace(width=0.5)) == 0.25  # channels x channels
    assert relative_cost(one.replace(epochs=20)) == 20.0
    assert relative_cost(RunConfig(arch="resnet50", width=0.125, epochs=20)) == pytest.approx(2.0 * 0.125**2 * 20)
    # what does not change the work does not change the price
    for changes in ({"lr": 0.01}, {"seed": 4}, {"optimizer": "adam"}, {"augment": "none"}, {"batch_size": 32}):
        assert relative_cost(one.replace(**changes)) == 1.0, changes


def test_by_cost_puts_the_most_expensive_first_and_keeps_the_order_of_equals():
    small = RunConfig(width=0.0625, epochs=1)
    configs = [
        small,  # 0: cheapest
        small.replace(arch="wide_resnet50_2"),  # 1: 3x
        small.replace(seed=1),  # 2: as cheap as 0
        small.replace(epochs=2),  # 3: 2x
        small.replace(arch="resnet50"),  # 4: 2x, after 3 in the study
        small.replace(width=0.125),  # 5: 4x
    ]
    order = by_cost(configs)
    assert [i for i, _ in order] == [5, 1, 3, 4, 0, 2]
    assert all(configs[i] is cfg for i, cfg in order)  # each index names its own configuration
    assert by_cost([]) == []
    same = [small.replace(seed=s) for s in range(5)]
    assert [i for i, _ in by_cost(same)] == [0, 1, 2, 3, 4]  # equals keep the study's order (default first)
