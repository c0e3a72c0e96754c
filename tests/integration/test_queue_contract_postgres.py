"""The work-queue contract suite of tests/unit/test_queue_contract.py, run against the Optuna queue on PostgreSQL
(the stack of test_postgres.py, started once per session: skipped outside CI when PostgreSQL cannot start here,
required under CI=true). The tests are the unit suite's own functions; only the back-end fixtures differ."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_postgres import stack  # noqa: F401 - the PostgreSQL stack, started once per session

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_queue_contract import (  # noqa: E402
    Backend,
    storage_of,
    test_a_dead_workers_claim_comes_back,
    test_a_failed_configuration_waits_for_the_next_round,
    test_a_handed_back_configuration_is_claimed_again,
    test_active_and_prepare,
    test_concurrent_workers_never_hold_one_configuration_twice,
    test_optuna_retries_an_expired_claim_at_most_max_retry_times,
)

__all__ = [
    "test_a_dead_workers_claim_comes_back",
    "test_a_failed_configuration_waits_for_the_next_round",
    "test_a_handed_back_configuration_is_claimed_again",
    "test_active_and_prepare",
    "test_concurrent_workers_never_hold_one_configuration_twice",
    "test_optuna_retries_an_expired_claim_at_most_max_retry_times",
]


@pytest.fixture
def backend(request, tmp_path) -> Backend:
    return Backend("optuna", tmp_path, storage_of("optuna-postgresql", request, tmp_path))


@pytest.fixture
def optuna_storage(request, tmp_path) -> str:
    return storage_of("optuna-postgresql", request, tmp_path)
