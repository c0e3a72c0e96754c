"""Workers coordinated through Optuna on PostgreSQL, logging to an MLflow server on PostgreSQL.

The integration tests start the real, authenticated stack (tracking/start-stack.sh on free ports: MLflow's
basic-auth app, PostgreSQL with scram passwords), check that it refuses anonymous and read-only writes, run 3 `mmtrack worker`
processes on a 6-configuration study, SIGKILLs one while it trains, and checks that the others retry its
configuration once its claim expires: exactly one FINISHED run per configuration, and the sheet reads back
from the server. Outside CI it skips when PostgreSQL cannot be started here; under CI=true it must run.
The other tests need no PostgreSQL: the queue on a SQLite storage, and the unreachable-server errors.
The stack (conftest's `stack` fixture) is started once per session and shared with test_outages.py and
test_queue_contract_postgres.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, free_port, tiny_study, write_study

from mmtrack.errors import MMTrackError
from mmtrack.execution import Event, OptunaQueue, check_storage, optuna_queue, runner
from mmtrack.execution.launch import run_worker, sweep_with_storage
from mmtrack.study import StudyPlan, parse_study

pytestmark = pytest.mark.slow

# 3 learning rates x 2 seeds = 6 configurations (batch size 128), each a few seconds on one CPU thread.
PG_STUDY = tiny_study(
    name="pg-tiny",
    fixed={"width": 0.0625},
    default={"lr": 0.1, "augment": "none"},
    axes={"lr": [0.1, 0.05, 0.01], "augment": ["none"]},
    interventions=["acc", "group"],
)
HEARTBEAT, GRACE = 1, 6  # seconds: a killed worker's claim expires ~6 s after its last heartbeat


def worker_argv(*args: str) -> list[str]:
    """`mmtrack worker ...`, run as a module of this interpreter."""
    return [sys.executable, "-m", "mmtrack.cli", "worker", *args]


def _status(url: str, user: str | None = None, password: str | None = None, body: dict | None = None) -> int:
    import base64
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        url, data=None if body is None else json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    if user:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_stack_asks_who_you_are(stack):
    """MLflow's API refuses anonymous and wrong logins; the worker's login works; an analyst added with
    tracking/add-user.sh reads but cannot write into the workers' experiments; stack.env is private."""
    uri, login, root = stack["tracking_uri"], stack["login"], stack["root"]
    search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=5"
    assert _status(search) == 401
    assert _status(search, "worker", "not-the-password") == 401
    worker = (login["MLFLOW_TRACKING_USERNAME"], login["MLFLOW_TRACKING_PASSWORD"])
    assert _status(search, *worker) == 200
    assert _status(f"{uri}/api/2.0/mlflow/experiments/create", *worker, body={"name": "auth-check"}) == 200
    proc = subprocess.run(
        ["bash", str(REPO / "tracking" / "add-user.sh"), "--dir", str(root), "alice"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stderr
    name, password = proc.stdout.split()
    assert name == "alice" and len(password) >= 12
    assert _status(search, "alice", password) == 200
    from mlflow.tracking import MlflowClient

    exp_id = MlflowClient(uri).get_experiment_by_name("auth-check").experiment_id
    assert _status(f"{uri}/api/2.0/mlflow/runs/create", "alice", password, body={"experiment_id": exp_id}) == 403
    assert (root / "stack.env").stat().st_mode & 0o077 == 0 and (root / "auth.ini").stat().st_mode & 0o077 == 0
    # mmtrack commands without a login stop with one line naming the variables
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    out = subprocess.run(
        [sys.executable, "-m", "mmtrack.cli", "sheet", "--experiment", "auth-check", "--tracking-uri", uri],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2
    assert "requires a login (no login given); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in out.stderr


def test_workers_share_a_study_and_retry_a_killed_one(stack):
    from mlflow.tracking import MlflowClient

    root, uri, storage = stack["root"], stack["tracking_uri"], stack["storage"]
    study_file = write_study(root, **PG_STUDY)
    study = parse_study(PG_STUDY)
    configs = {c.hash: c for c in study.configs()}
    env = {
        **os.environ,
        **stack["login"],
        "MLFLOW_TRACKING_URI": uri,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "MMTRACK_TRACKING_DIR": str(root / "local"),
        "COLUMNS": "200",
    }
    argv = worker_argv(
        str(study_file), "--storage", storage, "--threads", "1", "--heartbeat", str(HEARTBEAT), "--grace", str(GRACE)
    )
    logs = [root / f"worker{i}.log" for i in range(3)]
    procs = [subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=REPO) for log in logs]
    client = MlflowClient(uri)
    try:
        # SIGKILL the first worker seen training a configuration that is a RUNNING MLflow run.
        victim, killed, deadline = None, None, time.time() + 240
        while killed is None and time.time() < deadline:
            exp = client.get_experiment_by_name(study.name)
            for p, log in zip(procs, logs):
                started = [ln.split()[-1] for ln in log.read_text().splitlines() if ln.strip().startswith("training")]
                if exp is None or not started or p.poll() is not None:
                    continue
                running = client.search_runs(
                    [exp.experiment_id],
                    f"attributes.status = 'RUNNING' and tags.`mmtrack.config_name` = '{started[-1]}'",
                )
                if running:
                    p.send_signal(signal.SIGKILL)
                    victim, killed = p, running[0]
                    break
            time.sleep(0.2)
        assert killed is not None, "no worker was seen training: " + logs[0].read_text()[-2000:]
        victim.wait(10)
        for p, log in zip(procs, logs):
            if p is not victim:
                assert p.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    exp_id = client.get_experiment_by_name(study.name).experiment_id
    runs = client.search_runs([exp_id], max_results=1000)
    finished: dict[str, list[str]] = {}
    for r in runs:
        if r.info.status == "FINISHED":
            finished.setdefault(r.data.tags["mmtrack.config_hash"], []).append(r.info.run_id)
    assert {h: len(ids) for h, ids in finished.items()} == {h: 1 for h in configs}
    # The killed worker's run was closed as FAILED by the worker that retried its configuration.
    killed_hash = killed.data.tags["mmtrack.config_hash"]
    dead = client.get_run(killed.info.run_id)
    assert dead.info.status == "FAILED" and "worker died" in dead.data.tags["mmtrack.error"]
    assert sorted(r.info.status for r in runs if r.data.tags["mmtrack.config_hash"] == killed_hash) == [
        "FAILED",
        "FINISHED",
    ]
    # The seeds trained with it (one stack, tag mmtrack.stack) that had not FINISHED were retried too; those that
    # had are kept. Nothing else was trained twice.
    stack = killed.data.tags.get("mmtrack.stack")
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert all(r.data.tags.get("mmtrack.stack") == stack for r in failed) if stack else len(failed) == 1
    assert len(runs) == len(configs) + len(failed)

    # In the queue: the killed claim expired (FAIL) and a retry of the same configuration COMPLETEd.
    import optuna

    name = optuna_queue.queue_name(StudyPlan.of(study))
    q = optuna.load_study(study_name=name, storage=optuna_queue.driver_url(storage))
    index = list(configs).index(killed_hash)
    mine = [t for t in q.trials if t.params.get("config") == index]
    assert [t.state.name for t in mine] == ["FAIL", "COMPLETE"]
    assert mine[1].system_attrs["failed_trial"] == mine[0].number
    assert mine[0].user_attrs["worker"].endswith(f":{victim.pid}")
    assert sum(t.state.name == "COMPLETE" for t in q.trials) == len(configs)

    # The sheet reads the runs back from the server.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmtrack.cli",
            "sheet",
            "--experiment",
            study.name,
            "--metric",
            "acc",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    sheet = json.loads(out.stdout)
    lr = next(t for t in sheet["tables"] if t["axis"] == "lr")
    assert {rid for row in lr["run_ids"] for rid in row} == {ids[0] for ids in finished.values()}
    assert all(0 <= s <= 100 for row in lr["scores"] for s in row)
    assert sheet["disagreement_all"] is not None  # predictions went through the server's artifact proxy

    # `mmtrack sweep --storage` on the finished study: a new round with nothing to train, all skipped.
    summary = sweep_with_storage(study, storage, 2, uri)
    assert len(summary.skipped) == len(configs) and not summary.finished and not summary.failed


# ------------------------------------------------------------------------------------------------ no PostgreSQL

SMALL = {**PG_STUDY, "name": "queue-small"}


def fake_execute(calls: list[str]):
    def execute_group(study, cfgs, client, exp_id, emit, since_ms=0, data_dir=None, device=None):
        for cfg in cfgs:
            calls.append(cfg.hash)
            emit(Event("start", cfg.run_name, cfg.hash))
            emit(Event("finished", cfg.run_name, cfg.hash, f"run-{cfg.hash}", seconds=0.01))

    return execute_group


def test_queue_hands_each_configuration_out_once_and_retries_an_expired_claim(tmp_path, monkeypatch):
    study = parse_study(SMALL)
    hashes = [c.hash for c in study.configs()]
    storage, uri = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    calls: list[str] = []
    monkeypatch.setattr(runner, "execute_group", fake_execute(calls))

    q = OptunaQueue(study, storage, heartbeat=1, grace=2)
    assert q.prepare(finished={hashes[5]}) == 1  # round 1: configuration 5 is FINISHED in MLflow already
    dead = q.claim("gone:1")  # a worker that claims configuration 0 and dies without a heartbeat thread
    assert (dead.index, dead.round) == (0, 1)
    assert q.prepare(finished=set()) == 1  # a round in progress is joined, not reseeded

    start = time.time()
    summary = run_worker(study, storage, uri, threads=1, heartbeat=1, grace=2, poll=0.2)
    assert time.time() - start >= 2  # it waited for the dead claim to expire
    assert calls == hashes[1:5] + hashes[:1]  # in queue order, the expired claim retried last, 5 never
    assert sorted(ev.hash for ev in summary.finished) == sorted(hashes[:5])
    states = [(t.params["config"], t.state.name) for t in q.optuna_study.trials]
    assert states == [(0, "FAIL"), (1, "COMPLETE"), (2, "COMPLETE"), (3, "COMPLETE"), (4, "COMPLETE"), (0, "COMPLETE")]
    assert [ev.kind for ev in q.outcomes(1)] == ["finished"] * 5

    # Round over: the next worker starts round 2 with what MLflow does not have FINISHED (here: nothing
    # is, since execute was faked), and a worker that may not start rounds finds nothing to do.
    calls.clear()
    assert run_worker(study, storage, uri, threads=1, new_round=False).outcomes == {}
    run_worker(study, storage, uri, threads=1)
    assert sorted(calls) == sorted(hashes) and q.current_round() == 2
    q.close()


def test_unreachable_storage_and_tracking_server_name_the_url(tmp_path):
    study = parse_study(SMALL)
    port = free_port()  # nothing listens there
    url = f"postgresql://mmtrack:s3cret@127.0.0.1:{port}/mmtrack_optuna"
    with pytest.raises(MMTrackError) as info:
        run_worker(study, url, f"sqlite:///{tmp_path}/mlflow.db")
    message = info.value.message
    assert message.startswith(
        f"Optuna storage postgresql://mmtrack:***@127.0.0.1:{port}/mmtrack_optuna is unreachable ("
    )
    assert "s3cret" not in message and "\n" not in message

    with pytest.raises(MMTrackError) as info:
        run_worker(study, f"sqlite:///{tmp_path}/optuna.db", f"http://127.0.0.1:{port}")
    assert info.value.message.startswith(f"tracking server http://127.0.0.1:{port} is unreachable")

    with pytest.raises(
        MMTrackError, match=r"--storage must be sqlite:///\.\.\. or postgresql://\.\.\. .*got mysql://u:\*\*\*@h/db"
    ):
        check_storage("mysql://u:p@h/db")

    # The command prints that one line (no traceback) and exits 2.
    study_file = write_study(tmp_path, **SMALL)
    out = subprocess.run(
        worker_argv(str(study_file), "--storage", url, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: Optuna storage postgresql://mmtrack:***@127.0.0.1:{port}")
