"""The work-queue contract (tests/unit/queue_contract.py: every test of it) against the file-lock queue and the
Optuna queue on SQLite: no torch, MLflow or server needed. tests/integration/test_queue_contract_postgres.py runs
the same tests against the Optuna queue on PostgreSQL."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("queue_contract")  # before the import: its asserts show their values

from queue_contract import *  # noqa: E402, F403 - every test of the contract, collected here
from queue_contract import Backend  # noqa: E402


# Optuna opens a SQLite database per worker: seconds per test, so that back end is in `make test`, not `make test-fast`
@pytest.fixture(params=["file", pytest.param("optuna-sqlite", marks=pytest.mark.slow)])
def backend(request, tmp_path) -> Backend:
    if request.param == "file":
        return Backend("file", tmp_path)
    return Backend("optuna", tmp_path, f"sqlite:///{tmp_path}/optuna.db")


@pytest.fixture(params=[pytest.param("optuna-sqlite", marks=pytest.mark.slow)])
def optuna_storage(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/optuna.db"
