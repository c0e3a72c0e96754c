"""The one table of store URL schemes (`mmtrack.tracking.schemes`): every check, lock, driver and UI link reads it.
Torch- and MLflow-free."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mmtrack.errors import MMTrackError
from mmtrack.tracking.schemes import SCHEMES, driver_url, local_path, optuna_schemes, scheme_of

PACKAGE = Path(__file__).resolve().parents[2] / "mmtrack"


@pytest.mark.parametrize(
    "url, name",
    [
        ("sqlite:////tmp/mlflow.db", "sqlite"),
        ("postgresql://u:p@127.0.0.1:5433/mlflow", "postgresql"),
        ("postgres://127.0.0.1/db", "postgresql"),
        ("postgresql+psycopg2://127.0.0.1/db", "postgresql"),
        ("mysql://127.0.0.1/db", "mysql"),
        ("http://127.0.0.1:5000", "http"),
        ("https://mlflow.example", "http"),
        ("databricks", "databricks"),
        ("databricks://profile", "databricks"),
        ("file:./mlruns", "file"),
        ("./mlruns", "file"),
    ],
)
def test_every_url_a_user_may_give_has_one_scheme(url, name):
    assert scheme_of(url).name == name


def test_an_unknown_scheme_is_one_line_naming_the_known_ones():
    with pytest.raises(MMTrackError) as err:
        scheme_of("redis://127.0.0.1/0")
    assert "redis://" in err.value.message and "sqlite" in err.value.message and "\n" not in err.value.message


def test_drivers_and_local_paths_come_from_the_table():
    assert driver_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert driver_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert driver_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"  # a driver the user named
    assert driver_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert local_path("sqlite:////tmp/x.db") == "/tmp/x.db"
    assert local_path("postgresql://h/db") is None and local_path("http://h") is None


def test_only_the_servers_serve_the_ui_and_only_sql_databases_hold_the_queue():
    assert {s.name for s in SCHEMES if s.serves_ui} == {"http"}
    assert {s.name for s in optuna_schemes()} == {"sqlite", "postgresql"}
    assert all(s.lock in ("file", "advisory") for s in optuna_schemes())
    assert all(s.check in ("local", "server", "database", "none") for s in SCHEMES)


def test_no_module_tests_a_store_url_prefix_itself():
    """Outside the table, no code asks `url.startswith("sqlite..." / "postgres..." / "http...")`."""
    prefixes = ("sqlite", "postgres", "mysql", "http", "databricks", "file:")
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "schemes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "startswith" and node.args:
                arg = node.args[0]
                values = [arg] if isinstance(arg, ast.Constant) else getattr(arg, "elts", [])
                if any(isinstance(v, ast.Constant) and str(v.value).startswith(prefixes) for v in values):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not found, found
