"""The work-queue contract (tests/unit/queue_contract.py: every test of it) against the Optuna queue on
PostgreSQL: the stack of conftest's `stack` fixture, started once per session (skipped outside CI when PostgreSQL
cannot start here, required under CI=true). Only the back-end fixtures differ from tests/unit/
test_queue_contract.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
pytest.register_assert_rewrite("queue_contract")  # before the import: its asserts show their values

from queue_contract import *  # noqa: E402, F403 - every test of the contract, collected here
from queue_contract import Backend  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def backend(stack, tmp_path) -> Backend:
    return Backend("optuna", tmp_path, stack["storage"])


@pytest.fixture
def optuna_storage(stack) -> str:
    return stack["storage"]
