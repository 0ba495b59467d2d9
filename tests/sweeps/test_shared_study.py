"""Three sweep workers on one study, real processes: the same `python train.py -m hparams_search=lr`
started three times on one storage, one worker killed in the middle of a trial. The study ends with
exactly `n_trials` completed trials besides the killed one, which ran again once on another worker;
no folder is shared, no worker prints a traceback, and one worker writes the reports. On SQLite, a
journal file, and a PostgreSQL server (`scripts/postgres/local_server.sh`: skipped without one, or root
to start one)."""

import functools
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_sweeps import ENV, sweep_command

from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.sweeps.storage import open_storage

N_TRIALS = 6

SERVER = PROJECT_ROOT / "scripts" / "postgres" / "local_server.sh"
SERVER_URL = "postgresql+psycopg2://postgres@127.0.0.1:55432"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL (no database) of the throwaway server of `scripts/postgres/local_server.sh`: the one
    running (as `.ci/run` starts it), or one started here as root and stopped at the end; skipped
    otherwise."""
    running = subprocess.run([SERVER, "status"], check=False, capture_output=True).returncode == 0
    if not running:
        if os.geteuid() != 0:
            pytest.skip(f"no PostgreSQL server: run as root, or start one with sudo {SERVER} up")
        started = subprocess.run([SERVER, "up"], check=False, capture_output=True, text=True)
        if started.returncode != 0:
            pytest.skip(f"no PostgreSQL server: {SERVER} up failed: {started.stderr.strip()[-500:]}")
    yield SERVER_URL
    if not running:
        subprocess.run([SERVER, "down"], check=False, capture_output=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the test server, as an Optuna storage URL."""
    import psycopg2

    name = f"study_{uuid.uuid4().hex[:12]}"
    connection = psycopg2.connect(f"{postgres_server.replace('+psycopg2', '')}/optuna")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()
    return f"{postgres_server}/{name}"


storage_at = functools.cache(open_storage)  # one connection pool per storage while polling


def trials_of(url: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials ([] before a worker created it)."""
    try:
        return optuna.load_study(study_name="default-lr", storage=storage_at(url)).trials
    except KeyError:  # no such study yet
        return []


def kill_in_a_trial(workers: list[subprocess.Popen], url: str) -> subprocess.Popen:
    """Kill (SIGKILL) the first worker seen running a trial with its parameters drawn, once a trial
    has finished; return it."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        trials = trials_of(url)
        if any(trial.state == TrialState.COMPLETE for trial in trials):
            for trial in trials:
                worker = trial.system_attrs.get("worker", "")
                victim = next((w for w in workers if worker.endswith(f"/{w.pid}")), None)
                if trial.state == TrialState.RUNNING and trial.params and victim:
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    return victim
        assert all(worker.poll() is None for worker in workers), "a worker ended before the kill"
        time.sleep(0.2)
    raise AssertionError("no trial ran in time")


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "journal", "postgresql"])
def test_three_workers_share_a_study_and_survive_a_killed_one(tmp_path, model_cache, storage, request):
    url = {
        "sqlite": lambda: f"sqlite:///{tmp_path / 'study.db'}",
        "journal": lambda: f"journal:{tmp_path / 'study.log'}",
        "postgresql": lambda: request.getfixturevalue("postgres_url"),  # skipped without a server
    }[storage]()
    command = sweep_command(
        tmp_path,
        model_cache,
        "model.lr=tag(log, interval(1e-4, 1e-2))",  # searched (sweep_command fixes it otherwise)
        f"hydra.sweeper.n_trials={N_TRIALS}",
        f"hydra.sweeper.storage={url}",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=10",
    )
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [
        subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT)
        for log in logs
    ]
    try:
        killed = kill_in_a_trial(workers, url)
        survivors = [worker for worker in workers if worker is not killed]
        for worker in survivors:
            assert worker.wait(timeout=300) == 0
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    outputs = {worker.pid: log.read_text() for worker, log in zip(workers, logs)}
    assert not any("Traceback" in text for text in outputs.values()), outputs

    trials = trials_of(url)
    (lost,) = [trial for trial in trials if trial.state == TrialState.FAIL]
    assert lost.user_attrs["error"] == f"worker lost ({lost.system_attrs['worker']})"
    assert lost.system_attrs["worker"].endswith(f"/{killed.pid}")
    (retry,) = [trial for trial in trials if trial.system_attrs.get("failed_trial") == lost.number]
    assert retry.params == lost.params and not retry.system_attrs["worker"].endswith(f"/{killed.pid}")
    counted = [trial for trial in trials if trial.number != lost.number]
    assert len(counted) == N_TRIALS and all(trial.state == TrialState.COMPLETE for trial in counted)

    folders = [Path(trial.user_attrs["output_dir"]) for trial in counted]
    assert len(set(folders)) == N_TRIALS
    assert [folder.name.split("_")[0] for folder in folders] == [str(trial.number) for trial in counted]
    sweep_dir = tmp_path / "outputs" / "default" / "sweeps" / "default-lr"
    assert {folder.parent for folder in folders} == {sweep_dir}
    assert {path.name.split("_")[0] for path in sweep_dir.glob("[0-9]*_*")} <= {str(t.number) for t in trials}
    reports = [text.count("Sweep report: ") for text in outputs.values()]
    assert sorted(reports) == [0, 0, 1]
    assert f"Best trial #{max(counted, key=lambda t: t.value).number}" in (sweep_dir / "sweep.md").read_text()
    assert "6 finished runs" in (sweep_dir / "summary.md").read_text()
