"""A study survives its tracking server going away (issue 22, item 1), against the real stack (conftest's `stack`:
PostgreSQL + `mlflow server` with basic auth, started once per session; skipped outside CI where PostgreSQL
cannot start, required under CI=true; those tests are marked slow): the server is stopped while a worker trains and started again, and the
run ends complete, its training metrics sent late but in order; a server away longer than `--server-wait` stops
the worker with one line, its configuration handed back, and a rerun finishes it. Also the waiting itself
(`tracking.resilience`) and the buffering of training metrics, on a fake clock and a fake client."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import mmtrack_command, tiny_study, write_study

from mmtrack import tracking
from mmtrack.tracking import resilience

REFUSED = ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded (Connection refused)")


class FakeTime:
    """A clock that moves only when slept on."""

    def __init__(self):
        self.now, self.slept = 0.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(resilience, "time", fake)
    monkeypatch.setattr(resilience, "_WAIT", {})
    return fake


def flaky(failures: int, error: Exception = REFUSED):
    calls = []

    def fn(x):
        calls.append(x)
        if len(calls) <= failures:
            raise error
        return x * 2

    return fn, calls


def test_a_call_waits_out_an_unreachable_server_with_backoff(clock):
    resilience.set_server_wait(60)
    fn, calls = flaky(5)
    assert resilience.patiently("metrics", fn, 21) == 42
    assert len(calls) == 6 and clock.slept == [1, 2, 4, 8, 15]


def test_beyond_the_server_wait_it_stops_with_one_line(clock):
    resilience.set_server_wait(20)
    fn, calls = flaky(100)
    with pytest.raises(resilience.TrackingUnavailable) as err:
        resilience.patiently("the model", fn, 1)
    assert sum(clock.slept) <= 20 and len(calls) == 5  # 1 + 2 + 4 + 8 = 15 s waited; 16 more would pass 20
    message = err.value.message
    assert "--server-wait 20 s" in message and "the model" in message and "\n" not in message


CUT = ConnectionError(
    "Max retries exceeded (Caused by ProtocolError('Connection aborted.', ConnectionResetError(104)))"
)
BUSY = ConnectionError("Max retries exceeded (Caused by ResponseError('too many 503 error responses'))")


@pytest.mark.parametrize(
    ("error", "answers", "outage"),
    [(CUT, True, False), (CUT, False, True), (BUSY, True, True), (REFUSED, False, True)],
    ids=["cut-by-a-healthy-server", "cut-and-no-health", "503-with-health", "refused"],
)
def test_a_connection_a_healthy_server_cuts_fails_soon_an_outage_is_waited_for(
    clock, monkeypatch, error, answers, outage
):
    """A full artifact disk makes the server reset the upload while /health answers: that request fails after
    REQUEST_RETRIES more tries, not after the server wait; a server that is down or serves 503s (its database
    restarting) is an outage, waited for."""
    monkeypatch.setattr(resilience, "_server_answers", lambda: answers)
    resilience.set_server_wait(60)
    fn, calls = flaky(100, error)
    with pytest.raises(resilience.TrackingUnavailable if outage else ConnectionError):
        resilience.patiently("weights/", fn, 1)
    if outage:
        assert sum(clock.slept) > 30 and len(calls) > resilience.REQUEST_RETRIES + 1
    else:
        assert len(calls) == resilience.REQUEST_RETRIES + 1 and sum(clock.slept) <= 2


def test_a_refused_request_is_not_retried(clock):
    fn, calls = flaky(1, PermissionError("RESOURCE_DOES_NOT_EXIST: run not found"))
    with pytest.raises(PermissionError):
        resilience.patiently("tags", fn, 1)
    assert len(calls) == 1 and clock.slept == []


def test_training_metrics_are_kept_while_the_server_is_away_and_sent_in_order(clock):
    class Client:
        down = True
        sent: list = []

        def log_batch(self, run_id, metrics=(), params=(), tags=()):
            if self.down:
                raise REFUSED
            self.sent.extend((m.key, m.step) for m in metrics)

    client = Client()
    logger = tracking.RunLogger(client, "run-1")
    for epoch in range(3):  # training goes on: nothing raises, nothing waits
        logger.log_metrics({"train_loss": 1.0 / (epoch + 1)}, step=epoch)
    assert clock.slept == [] and [m.step for m in logger.pending] == [0, 1, 2]
    client.down = False
    logger.log_metrics({"acc": 0.9})  # the next call sends what was kept first
    assert client.sent == [("train_loss", 0), ("train_loss", 1), ("train_loss", 2), ("acc", 0)]
    assert logger.pending == []


# ------------------------------------------------------------------------------------- against the real stack


def outage_study(**changes) -> dict:
    """The tiny study with one configuration and one seed, scored on `acc` and the groups; tests set the epochs."""
    return tiny_study(**{"seeds": [0], "axes": {"lr": [0.1]}, "interventions": ["acc", "group"], **changes})


SERVER_DOWN_S = int(os.environ.get("MMTRACK_TEST_SERVER_DOWN", "15"))  # seconds the server is down (issue: 60)


def stop_server(stack) -> None:
    """Stop the stack's `mlflow server` (SIGTERM, SIGKILL after 20 s) and remove its pid file, so that
    `start_server` starts it again; uvicorn finishes its requests in flight first, which takes a while on a busy
    machine."""
    pidfile = Path(stack["root"]) / "mlflow-server.pid"
    pid = int(pidfile.read_text())

    def signal_group(sig: int) -> bool:
        try:
            os.killpg(pid, sig)  # started with setsid: the pid is the process group
        except ProcessLookupError:
            return False
        return True

    signal_group(signal.SIGTERM)
    deadline = time.monotonic() + 20
    while signal_group(0) and time.monotonic() < deadline:
        time.sleep(0.2)
    if signal_group(signal.SIGKILL):
        deadline = time.monotonic() + 10
        while signal_group(0) and time.monotonic() < deadline:  # (a zombie nobody reaps stays listed)
            time.sleep(0.1)
    pidfile.unlink()


def start_server(stack) -> None:
    out = subprocess.run(
        stack["start"], capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable}
    )
    assert out.returncode == 0, out.stderr[-2000:]


def start_sweep(stack, tmp_path: Path, name: str, epochs: int, *args: str) -> subprocess.Popen:
    path = write_study(tmp_path, **outage_study(name=name, epochs=epochs))
    env = {**os.environ, **stack["login"], "MMTRACK_THREADS": "1", "MMTRACK_DEVICE": "cpu"}
    env.update(MMTRACK_SPOOL=str(tmp_path / "spool"))
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [*mmtrack_command(), "sweep", str(path), "--tracking-uri", stack["tracking_uri"], *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def runs_of(client, name: str) -> list:
    exp = client.get_experiment_by_name(name)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def wait_for_epochs(client, name: str, n: int, proc, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in runs_of(client, name):
            if len(client.get_metric_history(run.info.run_id, "train_loss")) >= n:
                return
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before training: {proc.communicate()}")
        time.sleep(1.0)  # each poll is requests the basic-auth server checks: not too often
    pytest.fail("training did not start in time")


@pytest.mark.slow
def test_a_tracking_server_restart_mid_training_loses_nothing(stack, tmp_path):
    client = tracking.connect(stack["tracking_uri"])
    name, epochs = f"outage-{uuid.uuid4().hex[:8]}", 60
    proc = start_sweep(stack, tmp_path, name, epochs, "--server-wait", "300")
    try:
        wait_for_epochs(client, name, 2, proc)
        stop_server(stack)
        down = time.time() * 1000
        time.sleep(SERVER_DOWN_S)  # training goes on meanwhile; its metrics are kept
        start_server(stack)
        up = time.time() * 1000
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
        start_server(stack)  # leave the shared stack running for the other tests (it starts what is not running)
    assert proc.returncode == 0, out + err
    (run,) = runs_of(client, name)
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == list(range(epochs))  # every epoch once: none lost, none twice
    in_outage = [m for m in history if down < m.timestamp < up]
    assert in_outage, "no epoch was trained while the server was down (make the study longer)"
    assert [m.step for m in sorted(history, key=lambda m: m.timestamp)] == list(range(epochs))  # in order
    sizes = {f.path: f.file_size for f in client.list_artifacts(run.info.run_id, "predictions")}
    assert sizes.get("predictions/test.parquet", 0) > 0 and sizes.get("predictions/group.parquet", 0) > 0
    assert "acc" in client.get_run(run.info.run_id).data.metrics


@pytest.mark.slow
def test_a_server_away_longer_than_the_server_wait_stops_the_worker_and_a_rerun_finishes(
    stack,
    tmp_path,
):
    client = tracking.connect(stack["tracking_uri"])
    name, epochs = f"gone-{uuid.uuid4().hex[:8]}", 30
    proc = start_sweep(stack, tmp_path, name, epochs, "--server-wait", "5")
    try:
        wait_for_epochs(client, name, 1, proc)
        stop_server(stack)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        start_server(stack)
    assert proc.returncode != 0
    lines = [" ".join(line.split()) for line in err.split("error:")[1:]]  # one error, wrapped by rich
    assert len(lines) == 1 and "unreachable" in lines[0] and "went back to the queue" in lines[0], err
    (kept,) = list((tmp_path / "spool").iterdir())  # training went on; the model waits here to be logged
    assert "".join(f"trained weights kept in {kept}".split()) in "".join(err.split()), err
    spooled = json.loads((kept / "spool.json").read_text())
    rerun = start_sweep(stack, tmp_path, name, epochs)
    out, err = rerun.communicate(timeout=400)
    assert rerun.returncode == 0, out + err
    runs = runs_of(client, name)
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]  # the cut-short run is marked FAILED
    (done,) = [r for r in runs if r.info.status == "FINISHED"]
    assert done.data.tags[tracking.SPOOLED_TAG] == str(kept)  # logged from the spool, not trained again
    history = sorted(client.get_metric_history(done.info.run_id, "train_loss"), key=lambda m: m.step)
    assert [m.step for m in history] == list(range(epochs))
    assert [m.value for m in history] == [e["train_loss"] for e in spooled["epochs"]]  # as they were measured
    assert "acc" in done.data.metrics and not kept.exists()  # evaluated, logged, then dropped from the spool


# ------------------------------------------------------------------ PostgreSQL restarts (issue 22, item 2)


PG_DOWN_S = int(os.environ.get("MMTRACK_TEST_PG_DOWN", "15"))  # seconds PostgreSQL is down mid-study (issue: 30)


def stop_postgres(stack) -> float:
    """Stop the stack's PostgreSQL (both MLflow's database and the Optuna queue's); returns when it stopped."""
    pg_ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) or [Path("pg_ctl")]
    argv = [str(pg_ctl[-1]), "-D", str(Path(stack["root"]) / "pgdata"), "-m", "fast", "-w", "stop"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return time.monotonic()


def start_postgres(stack) -> float:
    """Start the stack's PostgreSQL again, as start-stack.sh does but without its other steps (which take
    seconds of their own); returns when it accepts connections."""
    import urllib.parse

    pg_ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) or [Path("pg_ctl")]
    port = urllib.parse.urlsplit(stack["storage"]).port
    options = f"-c listen_addresses='127.0.0.1' -p {port} -c unix_socket_directories='' -c max_connections=200"
    root = Path(stack["root"])
    argv = [str(pg_ctl[-1]), "-D", str(root / "pgdata"), "-l", str(root / "postgres.log"), "-w", "-o", options]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run([*argv, "start"], check=True, capture_output=True, timeout=60)
    return time.monotonic()


def restart_postgres_after(stack, seconds: float) -> None:
    stop_postgres(stack)
    time.sleep(seconds)
    start_server(stack)  # start-stack.sh starts what is not running: here PostgreSQL


def parsed_study(name: str, **changes):
    from mmtrack.study import parse_study

    return parse_study(outage_study(name=name, epochs=1, axes={"lr": [0.1, 0.05]}, **changes))


@pytest.mark.slow
def test_after_a_postgres_restart_claims_wait_and_live_ones_do_not_expire(stack, monkeypatch):
    """A claim asked for while PostgreSQL is down waits for it; a claim whose worker could not beat while it was
    down is not expired in the first `grace` seconds after the restart (a fresh worker that saw no outage knows
    from PostgreSQL's start time), and a claim that stays silent longer still expires."""
    import threading

    from optuna.trial import TrialState

    from mmtrack.execution import OptunaQueue

    monkeypatch.setattr(resilience, "_WAIT", {"seconds": 120.0})
    monkeypatch.setattr(resilience, "BACKOFF_MAX", 1.0)  # the waiting claim is answered within 1 s of the restart
    study, grace = parsed_study(f"pg-restart-{uuid.uuid4().hex[:8]}"), 15
    first, second = OptunaQueue(study, stack["storage"], 1, grace), OptunaQueue(study, stack["storage"], 1, grace)
    fresh = None
    try:
        first.prepare(set())
        (a,) = first.claim_group("w1", 1)  # its heartbeat is recorded now, and never again: no thread beats it
        beat = time.monotonic()
        stop_postgres(stack)
        got: list = []
        waiting = threading.Thread(target=lambda: got.extend(second.claim_group("w2", 1)))
        waiting.start()
        time.sleep(grace + 1)  # a's last heartbeat is now older than the grace period
        up = start_postgres(stack)
        waiting.join(timeout=120)
        (b,) = got  # the claim asked for during the outage, answered after it
        assert b.index != a.index
        fresh = OptunaQueue(study, stack["storage"], 1, grace)  # saw no outage itself
        assert fresh.claim_group("w3", 1) == []  # nothing WAITING, and a not expired: its worker may be alive
        assert time.monotonic() - beat > grace and time.monotonic() - up < grace  # (what the claim above tested)
        assert fresh.optuna_study.trials[a.number].state == TrialState.RUNNING
        time.sleep(max(0.0, up + grace + 1 - time.monotonic()))  # PostgreSQL has been up longer than the grace
        retried = fresh.claim_group("w3", 1)  # period, and a is silent still
        assert fresh.optuna_study.get_trials(deepcopy=False)[a.number].state == TrialState.FAIL  # expired at last
        assert retried and retried[0].index in (a.index, b.index)  # its copy (or b's, as silent) handed out again
    finally:
        if not (Path(stack["root"]) / "pgdata" / "postmaster.pid").exists():
            start_server(stack)
        for q in (first, second, fresh):
            if q is not None:
                q.close()


def start_workers(stack, tmp_path: Path, name: str, epochs: int, n: int) -> list[subprocess.Popen]:
    path = write_study(tmp_path, **outage_study(name=name, epochs=epochs, axes={"lr": [0.1, 0.05]}))
    env = {**os.environ, **stack["login"], "MMTRACK_THREADS": "1", "MMTRACK_DEVICE": "cpu"}
    env.pop("MLFLOW_TRACKING_URI", None)
    argv = [*mmtrack_command(), "worker", str(path), "--storage", stack["storage"]]
    argv += ["--tracking-uri", stack["tracking_uri"], "--threads", "1", "--heartbeat", "1", "--grace", "6"]
    argv += ["--server-wait", "300"]
    return [
        subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(n)
    ]


@pytest.mark.slow
def test_a_postgres_restart_mid_study_loses_nothing_and_trains_nothing_twice(stack, tmp_path):
    client = tracking.connect(stack["tracking_uri"])
    name, epochs = f"pg-down-{uuid.uuid4().hex[:8]}", 40
    workers = start_workers(stack, tmp_path, name, epochs, 2)
    try:
        deadline = time.monotonic() + 240
        while sum(len(client.get_metric_history(r.info.run_id, "train_loss")) > 1 for r in runs_of(client, name)) < 2:
            assert time.monotonic() < deadline, "both workers did not start training in time"
            assert all(w.poll() is None for w in workers), [w.communicate() for w in workers]
            time.sleep(1.0)
        restart_postgres_after(stack, PG_DOWN_S)  # longer than --grace 6: every heartbeat is stale when it is back
        outputs = [w.communicate(timeout=400) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        if not (Path(stack["root"]) / "pgdata" / "postmaster.pid").exists():
            start_server(stack)
    assert [w.returncode for w in workers] == [0, 0], outputs
    runs = runs_of(client, name)
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]  # one run per configuration, no retry
    assert len({r.data.tags[tracking.HASH_TAG] for r in runs}) == 2
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert sorted(m.step for m in history) == list(range(epochs))
        artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "predictions")}
        assert {"predictions/test.parquet", "predictions/group.parquet"} <= artifacts
    env = {**os.environ, **stack["login"]}
    check = subprocess.run(
        [*mmtrack_command(), "sweep", str(tmp_path / f"{name}.yaml"), "--dry-run", "--storage", stack["storage"]]
        + ["--tracking-uri", stack["tracking_uri"]],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "MLflow and the queue agree: 2 configuration(s) finished, each exactly once" in " ".join(
        check.stdout.split()
    )


# ------------------------------------------------------------------ the spool (issue 22, item 1: weights kept)


def test_a_spooled_model_comes_back_as_it_was_trained_and_only_for_its_own_data(
    digits, tiny_model, tmp_path, monkeypatch
):
    import torch

    from mmtrack.jobs import spool
    from mmtrack.training.config import RunConfig
    from mmtrack.training.train import EpochStats

    monkeypatch.setenv("MMTRACK_SPOOL", str(tmp_path / "spool"))
    cfg = RunConfig(width=0.0625, epochs=2, augment="none", batch_size=256)
    epochs = [EpochStats(0, 2.1, 0.3, 1.5), EpochStats(1, 1.2, 0.6, 1.4)]
    path = spool.keep(cfg, digits, tiny_model, epochs, {"seconds/train": 2.9})
    assert path == tmp_path / "spool" / cfg.hash and not path.with_name(path.name + ".tmp").exists()
    back = spool.take(cfg, digits)
    assert back is not None and back.epochs == epochs and back.seconds == {"seconds/train": 2.9}
    x = digits.test.images[:16].float().div(255)
    with torch.no_grad():
        assert torch.equal(back.model.eval()(x), tiny_model(x))
    assert spool.take(RunConfig(width=0.0625, epochs=2, augment="none", batch_size=256, seed=1), digits) is None
    other = dataclasses.replace(digits, fingerprint="something-else")
    assert spool.take(cfg, other) is None and not path.exists()  # other data: ignored and removed


def test_seeds_trained_together_are_all_kept_when_the_server_is_gone_and_logged_by_the_rerun(
    capsys, monkeypatch, tmp_path, tracking_dir, client
):
    """The first seed's upload finds the server gone (past --server-wait): every seed of the stack is kept
    without waiting again; the rerun logs each from the spool into its own run, training nothing."""
    from conftest import run_cli
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MMTRACK_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("MMTRACK_THREADS", "1")
    path = write_study(tmp_path, **outage_study(name="kept", epochs=2, seeds=[0, 1]))
    upload, calls = MlflowClient.log_artifact, []

    def gone(self, run_id, local_path, artifact_path=None):
        calls.append(local_path)
        raise resilience.TrackingUnavailable("tracking server unreachable for 5 s (--server-wait 5 s)")

    monkeypatch.setattr(MlflowClient, "log_artifact", gone)
    res = run_cli(capsys, monkeypatch, "sweep", path)
    uploads = [c for c in calls if not c.endswith("error.txt")]  # (recording the errors failed too)
    assert res.code == 1 and len(uploads) == 1  # the second seed did not wait for the server once more
    kept = sorted((tmp_path / "spool").iterdir())
    assert len(kept) == 2 and "the trained weights are kept in" in res.err
    curves = {p.name: json.loads((p / "spool.json").read_text())["epochs"] for p in kept}
    monkeypatch.setattr(MlflowClient, "log_artifact", upload)
    res = run_cli(capsys, monkeypatch, "sweep", path)
    assert res.code == 0, res.out + res.err
    runs = client.search_runs([client.get_experiment_by_name("kept").experiment_id], "attributes.status = 'FINISHED'")
    assert len(runs) == 2 and not list((tmp_path / "spool").iterdir())
    for run in runs:
        key = run.data.tags[tracking.HASH_TAG]
        assert run.data.tags[tracking.SPOOLED_TAG] == str(tmp_path / "spool" / key)
        history = sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)
        assert [m.value for m in history] == [e["train_loss"] for e in curves[key]]
        assert "acc" in run.data.metrics
