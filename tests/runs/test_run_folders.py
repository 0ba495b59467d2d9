"""Runs never share or overwrite a folder: real processes started together, a named folder in use,
a finished run's folder (refused, or moved aside with overwrite=true), stale and foreign claims; a
configuration refused at its start leaves no folder, and never touches one that was there before."""

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conftest import FAST, files_of
from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.runs.run_folder import (
    CLAIM_FILE,
    RunFolderError,
    claim_run_folder,
    note_multirun_start,
)
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError

CLI = [sys.executable, str(PROJECT_ROOT / "train.py"), *FAST]


def _start(log_dir: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.Popen(
        [*CLI, f"paths.log_dir={log_dir}", *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
    )


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


@pytest.mark.slow
def test_two_runs_started_together_get_their_own_folders(tmp_path):
    first, second = _start(tmp_path, "seed=1"), _start(tmp_path, "seed=2")
    (code_1, out_1), (code_2, out_2) = _finish(first), _finish(second)
    assert code_1 == 0 and code_2 == 0, out_1[-2000:] + out_2[-2000:]
    folders = sorted((tmp_path / "default" / "runs").iterdir())
    assert len(folders) == 2
    assert all(
        (folder / "results.json").is_file() and not (folder / CLAIM_FILE).exists() for folder in folders
    )
    runs = RunRegistry(tmp_path / "runs.db").list()
    assert sorted(run["status"] for run in runs) == ["success", "success"]
    assert sorted(run["output_dir"] for run in runs) == [str(folder) for folder in folders]
    seeds = sorted((folder / ".hydra" / "overrides.yaml").read_text().count("seed=1") for folder in folders)
    assert seeds == [0, 1]  # each folder holds its own run's config


@pytest.mark.slow
def test_a_named_folder_takes_one_run_at_a_time(tmp_path):
    folder = tmp_path / "shared_folder"
    first, second = _start(tmp_path, f"hydra.run.dir={folder}"), _start(tmp_path, f"hydra.run.dir={folder}")
    results = [_finish(first), _finish(second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], [out[-2000:] for _, out in results]
    refused = next(out for code, out in results if code == 2)
    assert "RunFolderError" in refused and "Traceback" not in refused
    assert "is in use by" in refused or "which finished" in refused
    runs = RunRegistry(tmp_path / "runs.db").list()
    assert [run["status"] for run in runs] == ["success"] and runs[0]["output_dir"] == str(folder)
    assert not (folder / CLAIM_FILE).exists()


@pytest.fixture
def finished_run(make_cfg, tmp_path):
    """A folder holding a finished run, and that run's registry id."""
    folder = tmp_path / "run"
    _, objects = train(make_cfg(*FAST, output_dir=folder))
    return folder, objects["run_id"]


@pytest.mark.slow
def test_a_finished_run_is_refused_and_left_as_it_was(make_cfg, finished_run):
    folder, run_id = finished_run
    before = files_of(folder)
    with pytest.raises(RunFolderError) as caught:
        train(make_cfg(*FAST, "seed=3", output_dir=folder))
    message = str(caught.value)
    assert run_id in message and "overwrite=true" in message and "ckpt_path=" in message
    assert files_of(folder) == before


@pytest.mark.slow
def test_overwrite_moves_the_finished_run_aside(make_cfg, finished_run, tmp_path):
    folder, run_id = finished_run
    before = files_of(folder)
    _, objects = train(make_cfg(*FAST, "seed=3", "overwrite=true", output_dir=folder))
    previous = [path for path in folder.parent.iterdir() if path.name.startswith("run.previous-")]
    assert len(previous) == 1 and files_of(previous[0]) == before
    assert (folder / "results.json").is_file() and (folder / ".run_id").read_text().strip() == objects[
        "run_id"
    ]
    registry = RunRegistry(tmp_path / "outputs" / "runs.db")
    assert registry.get(run_id)["output_dir"] == str(previous[0])
    assert registry.get(run_id)["model_path"] == str(previous[0] / "model")
    assert registry.get(objects["run_id"])["output_dir"] == str(folder)


def _claim_file(folder: Path, **claimant) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fields = {
        "pid": 1,
        "host": socket.gethostname(),
        "process_started": 0.0,
        "slurm_job_id": None,
        "run_id": "default-other",
        "claimed_at": "2026-01-01 00:00:00",
        **claimant,
    }
    (folder / CLAIM_FILE).write_text(json.dumps(fields))
    return folder / CLAIM_FILE


def test_a_claim_of_a_live_process_is_refused(tmp_path):
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as sleeper:
        try:
            _claim_file(
                tmp_path / "run", pid=sleeper.pid, process_started=psutil.Process(sleeper.pid).create_time()
            )
            with pytest.raises(RunFolderError) as caught:
                claim_run_folder(tmp_path / "run")
        finally:
            sleeper.kill()
    assert f"is in use by run default-other (process {sleeper.pid}" in str(caught.value)


def test_a_claim_from_another_host_is_refused_with_how_to_clear_it(tmp_path):
    claim = _claim_file(tmp_path / "run", host="gpu-node-7")
    with pytest.raises(RunFolderError) as caught:
        claim_run_folder(tmp_path / "run")
    assert "gpu-node-7" in str(caught.value) and f"delete {claim}" in str(caught.value)


@pytest.mark.slow
def test_a_stale_claim_is_taken_over(make_cfg, tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    claim = _claim_file(tmp_path / "run", pid=int(dead.stdout), process_started=1.0)
    metrics, _ = train(make_cfg(*FAST, output_dir=tmp_path / "run"))
    assert "val/score" in metrics and not claim.exists()


def test_a_requeued_slurm_job_takes_over_its_own_claim(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    _claim_file(tmp_path / "run", host="gpu-node-7", slurm_job_id="4242")
    claim = claim_run_folder(tmp_path / "run")
    assert json.loads(claim.path.read_text())["pid"] == os.getpid()
    claim.release()
    assert not claim.path.exists()


def test_the_run_folder_cannot_be_a_file(make_cfg, tmp_path):
    path = tmp_path / "a_file"
    path.write_text("kept")
    with pytest.raises(RunFolderError, match="is a file"):
        train(make_cfg(*FAST, output_dir=path))
    assert path.read_text() == "kept"


def test_a_claim_never_shows_half_written(tmp_path, monkeypatch):
    # Another process reading the claim file while it is written would find no claimant and take the
    # folder over as stale: the claim must appear only once its content is complete.
    from embedding_trainer.runs import run_folder

    seen_while_writing = []
    dumps = run_folder.json.dumps

    def spying_dumps(value):
        claim = tmp_path / "run" / CLAIM_FILE
        seen_while_writing.append(claim.exists() and run_folder._read_claim(claim) is None)
        return dumps(value)

    monkeypatch.setattr(run_folder.json, "dumps", spying_dumps)
    claim = claim_run_folder(tmp_path / "run", run_id="default-mine")
    try:
        assert seen_while_writing == [False]
        assert run_folder._read_claim(tmp_path / "run" / CLAIM_FILE).run_id == "default-mine"
        assert sorted(path.name for path in (tmp_path / "run").iterdir()) == [
            CLAIM_FILE
        ]  # nothing staged left
    finally:
        claim.release()


@pytest.mark.slow
def test_a_refused_configuration_leaves_no_folder(tmp_path):
    outputs = tmp_path / "outputs"
    code, output = _finish(_start(outputs, "loss=cosent"))  # cosent needs score data, the default is pairs
    assert code == 2, output[-2000:]
    assert "ConfigError: loss CoSENTLoss cannot train on dataset_type=pair" in output
    assert "Traceback" not in output and "Logging error" not in output
    assert [path.name for path in outputs.iterdir()] == ["runs.db"]  # no run folder, no empty parents
    (row,) = RunRegistry(outputs / "runs.db").list()
    assert row["status"] == "failed" and row["error_type"] == "ConfigError" and row["output_dir"] is None


def _start_files(folder: Path, run_id: str) -> logging.FileHandler:
    """What Hydra and the run write at a start: `.hydra/`, the run id, and the log, left open."""
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (folder / ".run_id").write_text(run_id + "\n")
    handler = logging.FileHandler(folder / "train.log")
    logging.getLogger().addHandler(handler)
    logging.getLogger(__name__).warning("refused")
    return handler


def test_a_refused_start_removes_what_it_wrote_and_the_folders_it_created(tmp_path):
    folder = tmp_path / "outputs" / "default" / "runs" / "2026-01-01_00-00-00_abcdef"
    claim = claim_run_folder(folder, run_id="2026-01-01_00-00-00_abcdef")
    handler = _start_files(folder, "2026-01-01_00-00-00_abcdef")
    assert claim.discard_start()
    assert not (tmp_path / "outputs").exists()
    assert handler not in logging.getLogger().handlers and handler.stream is None  # closed, detached


def test_a_refused_start_keeps_a_folder_with_anything_else(tmp_path):
    folder = tmp_path / "run"
    claim = claim_run_folder(folder, run_id="mine")
    handler = _start_files(folder, "an-earlier-run")  # a run id that is not this run's
    try:
        assert not claim.discard_start()
        assert sorted(path.name for path in folder.iterdir()) == [".hydra", ".run_id", "train.log"]
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def test_a_refused_start_in_an_existing_folder_leaves_it_as_it_was(make_cfg, tmp_path):
    folder = tmp_path / "run"  # an unfinished run's folder: a resumed run starts in it
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (folder / ".run_id").write_text("2026-01-01_00-00-00_abcdef\n")
    before = files_of(folder)
    with pytest.raises(ConfigError, match="CoSENTLoss cannot train"):
        train(make_cfg(*FAST, "loss=cosent", output_dir=folder))
    assert files_of(folder) == before
    row = RunRegistry(tmp_path / "outputs" / "runs.db").get("2026-01-01_00-00-00_abcdef")  # its stored id
    assert row["status"] == "failed" and row["output_dir"] == str(folder)


def test_a_multirun_member_folder_there_before_it_started_is_kept(tmp_path):
    sweep = tmp_path / "sweeps" / "study"
    (sweep / "0_lr=0.1").mkdir(parents=True)  # an earlier start of this trial
    note_multirun_start(sweep)
    earlier, new = sweep / "0_lr=0.1", sweep / "1_lr=0.2"
    new.mkdir()  # as Hydra does before the job runs
    for folder, removed in ((earlier, False), (new, True)):
        claim = claim_run_folder(folder, run_id=folder.name)
        (folder / ".hydra").mkdir()
        assert claim.discard_start() is removed and folder.exists() is not removed
