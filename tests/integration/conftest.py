"""Shared fixtures: one thread for torch, the embedded dataset loaded once, an isolated MLflow store per test,
one tiny trained model per session, the tiny study, helpers to call the `mmtrack` command line in-process or as a
subprocess, and the PostgreSQL + MLflow server stack (started once per session, for the tests that need it)."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

torch.set_num_threads(1)

# The device the suite trains and evaluates on: the CPU, unless MMTRACK_TEST_DEVICE names another (e.g. cuda, on a
# machine with a GPU: benchmarks/gpu_check.sh runs the stacking contract, the evaluator and a sweep there). Tests
# marked `cuda` need it to be a CUDA device and are skipped otherwise.
TEST_DEVICE = os.environ.get("MMTRACK_TEST_DEVICE", "cpu")


def pytest_collection_modifyitems(config, items):
    if not TEST_DEVICE.startswith("cuda"):
        skip = pytest.mark.skip(reason="needs a GPU: MMTRACK_TEST_DEVICE=cuda")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def test_device() -> torch.device:
    """The device under test ($MMTRACK_TEST_DEVICE, default cpu)."""
    return torch.device(TEST_DEVICE)


REPO = Path(__file__).resolve().parents[2]
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# A tiny configuration: trains one epoch of digits-skewed in about a second on one CPU thread.
TINY = dict(width=0.0625, epochs=1, augment="none", batch_size=256)


def tiny_study(**changes) -> dict:
    """A tiny study of digits-skewed: TINY's recipe (SGD, ResNet-18) held fixed, lr 0.1 and 0.05 x seeds 0 and 1
    (4 runs of about a second each on one thread), clean accuracy only. `changes` replace whole keys; each call
    returns a fresh copy."""
    study = {
        "name": "tiny",
        "dataset": "digits-skewed",
        "design": "ofat",
        "epochs": TINY["epochs"],
        "seeds": [0, 1],
        "fixed": {
            "width": TINY["width"],
            "batch_size": TINY["batch_size"],
            "augment": TINY["augment"],
            "optimizer": "sgd",
            "arch": "resnet18",
        },
        "default": {"lr": 0.1},
        "axes": {"lr": [0.1, 0.05]},
        "interventions": ["acc"],
    }
    return copy.deepcopy({**study, **changes})


def write_study(folder: Path, **changes) -> Path:
    """`tiny_study(**changes)` written as folder/<its name>.yaml (keys in their order)."""
    study = tiny_study(**changes)
    path = Path(folder) / f"{study['name']}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def runs_by_hash(client, name: str) -> dict[str, list]:
    """Every run of experiment `name`, by configuration hash (the tag `mmtrack.config_hash`)."""
    from mmtrack import tracking

    exp = client.get_experiment_by_name(name)
    out: dict[str, list] = {}
    for r in client.search_runs([exp.experiment_id], max_results=1000):
        out.setdefault(r.data.tags[tracking.HASH_TAG], []).append(r)
    return out


@pytest.fixture(scope="session")
def digits():
    """`digits-skewed`, loaded once per session (load_dataset caches it in this process)."""
    from mmtrack.data import load_dataset

    return load_dataset("digits-skewed")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, _per_user):
    """No test talks to a real tracking server or a `mlflow run` parent run, and none uses a GPU unless
    MMTRACK_TEST_DEVICE asks for one (determinism, speed)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MMTRACK_DEVICE", TEST_DEVICE)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # the per-user store of an installed mmtrack (platformdirs): never the real one, whatever a test forgets
    monkeypatch.setenv("XDG_DATA_HOME", str(_per_user))
    yield
    import mlflow

    while mlflow.active_run() is not None:  # never leak a fluent run into the next test
        mlflow.end_run()


@pytest.fixture(scope="session")
def _per_user(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("xdg-data")


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory) -> Path:
    """An empty, migrated MLflow SQLite database, created once (migrations take seconds) and copied per test."""
    from mmtrack import tracking

    root = tmp_path_factory.mktemp("store-template")
    old = os.environ.get("MMTRACK_TRACKING_DIR")
    os.environ["MMTRACK_TRACKING_DIR"] = str(root)
    try:
        tracking.connect(tracking.default_uri())
    finally:
        if old is None:
            os.environ.pop("MMTRACK_TRACKING_DIR")
        else:
            os.environ["MMTRACK_TRACKING_DIR"] = old
    return root / "mlflow.db"


@pytest.fixture
def tracking_dir(tmp_path, monkeypatch, _empty_store) -> Path:
    """A fresh local tracking store under tmp_path (MMTRACK_TRACKING_DIR points at it)."""
    d = tmp_path / "tracking"
    d.mkdir()
    shutil.copy(_empty_store, d / "mlflow.db")
    monkeypatch.setenv("MMTRACK_TRACKING_DIR", str(d))
    return d


@pytest.fixture
def client(tracking_dir):
    from mmtrack import tracking

    return tracking.connect()


@pytest.fixture(scope="session")
def tiny_model(digits):
    """resnet18 at width 1/16 trained 2 epochs on digits-skewed (about 70% test accuracy), in eval mode."""
    from mmtrack.training.config import RunConfig
    from mmtrack.training.train import train_model

    cfg = RunConfig(**{**TINY, "epochs": 2})
    return train_model(cfg, digits, torch.device(TEST_DEVICE))


# ------------------------------------------------------------------------------------------------ the CLI


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(capsys, monkeypatch, *args: str) -> CliResult:
    """Run `mmtrack ARGS` in this process through the console entry point (mmtrack.cli:main), so the
    error handling (one line `error: ...`, exit code 2) is exercised and the dataset cache is reused."""
    from rich.console import Console

    from mmtrack import cli

    monkeypatch.setattr(sys, "argv", ["mmtrack", *map(str, args)])
    monkeypatch.setattr(cli, "console", Console(width=250))  # wide: tables and summaries stay on one line
    monkeypatch.setattr(cli, "err", Console(stderr=True, width=250))
    capsys.readouterr()
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def mmtrack_command() -> list[str]:
    """The installed console script `mmtrack` next to this interpreter (else the same entry point via -c)."""
    script = Path(sys.executable).parent / "mmtrack"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from mmtrack.cli import main; main()"]


def subprocess_env(tracking: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        MMTRACK_TRACKING_DIR=str(tracking),
        MMTRACK_DEVICE=TEST_DEVICE,
        OMP_NUM_THREADS="1",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        PYTHONWARNINGS="ignore",
        COLUMNS="250",
    )
    return env


def start_mmtrack(args: list[str], cwd: Path, tracking: Path, one_cpu: bool = False, **env_vars) -> subprocess.Popen:
    """`mmtrack ARGS` in the background; with `one_cpu` a sweep trains with one torch thread in all
    (MMTRACK_THREADS=1), so two sweeps running at once do not oversubscribe two cores; `env_vars` are set too."""
    env = {**subprocess_env(tracking), **env_vars}
    if one_cpu:
        env["MMTRACK_THREADS"] = "1"
    return subprocess.Popen(
        [*mmtrack_command(), *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextlib.contextmanager
def module_store(tmp_path_factory, empty_store: Path, name: str):
    """For module-scoped fixtures: a private copy of the empty store, tracking pointed at it while the
    fixture is alive; yields (folder, client)."""
    from mmtrack import tracking

    d = tmp_path_factory.mktemp(name)
    shutil.copy(empty_store, d / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMTRACK_TRACKING_DIR", str(d))
        mp.setenv("MMTRACK_DEVICE", TEST_DEVICE)
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield d, tracking.connect()


def scores_experiment(name: str, seeds: int = 2, step: tuple[float, float] = (0.01, -0.02)) -> None:
    """Runs of a toy experiment logged like another tool would: params lr x seed (lr 0.1, 0.05), metrics `acc` and
    `acc/ood/x` moving by `step` from run to run, no predictions, no study."""
    from mmtrack import tracking

    client = tracking.connect()
    exp_id = tracking.experiment_id(client, name, create=True)
    for i, (lr, seed) in enumerate((lr, s) for lr in ("0.1", "0.05") for s in range(seeds)):
        rid = client.create_run(exp_id, run_name=f"r{i}").info.run_id
        for key, value in (("lr", lr), ("seed", str(seed))):
            client.log_param(rid, key, value)
        for key, value in {"acc": 0.90 + step[0] * i, "acc/ood/x": 0.8 + step[1] * i}.items():
            client.log_metric(rid, key, value)
        client.set_terminated(rid, "FINISHED")


# ------------------------------------------------------------------------------------------------ the stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def stack():
    """The authenticated PostgreSQL + MLflow server stack (tracking/start-stack.sh on free ports), started once per
    session for every test that asks for it, stopped at the end. Outside CI it skips when PostgreSQL cannot be
    started here (start-stack.sh exits 3); under CI=true it must start."""
    root = Path(tempfile.mkdtemp(prefix="mmtrack-pg-"))
    root.chmod(0o755)  # as root, PostgreSQL runs as `postgres`, which must reach its data directory
    argv = [
        "bash",
        str(REPO / "tracking" / "start-stack.sh"),
        "--dir",
        str(root),
        "--pg-port",
        str(free_port()),
        "--port",
        str(free_port()),
        "--workers",
        "2",
    ]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable}
        )
        if proc.returncode != 0:
            why = f"tracking/start-stack.sh exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
            if proc.returncode == 3 and not CI:
                pytest.skip(f"PostgreSQL cannot be started on this machine ({why})")  # pytest keeps it: one try
            pytest.fail(why)
        env = {}
        for line in (root / "stack.env").read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                env[key] = value
        login = {k: env[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
        saved = {k: os.environ.get(k) for k in login}
        os.environ.update(login)  # this process's MLflow clients log in as the worker, like every worker
        try:
            yield {
                "root": root,
                "tracking_uri": env["MLFLOW_TRACKING_URI"],
                "storage": env["MMTRACK_STORAGE"],
                "login": login,
                "start": argv,  # running it again starts what is not running (a restart after a stop)
            }
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        subprocess.run(
            ["bash", str(REPO / "tracking" / "stop-stack.sh"), "--dir", str(root)], capture_output=True, timeout=120
        )
        shutil.rmtree(root, ignore_errors=True)
