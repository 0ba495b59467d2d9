"""Against a real SLURM cluster (`scripts/slurm/local_cluster.sh up`): `launcher=slurm` multi-runs as
job arrays, DDP ranks from SLURM's task variables, preemption and time limits through SLURM's own
signals and `scontrol requeue`, and `scripts/slurm/train.sbatch` submitted with sbatch.

Marked `slurm`; skipped when `sinfo` does not answer. Jobs run as the user running pytest, on the
cluster's default partition, with one CPU per task."""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import FAST, NEEDS_SLURM_CLUSTER, PREEMPTION_JOB, wait_for_registry_row
from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.settings.resolvers import PROJECT_ROOT

pytestmark = NEEDS_SLURM_CLUSTER

RESOURCES = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]
SHORT_JOB = [*PREEMPTION_JOB, "seed=7"]


# Set when pytest itself runs inside a SLURM job or under a launcher; a job must not inherit them.
INHERITED = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")


def _environment() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    for name in [name for name in env if name.startswith("SLURM_") or name in INHERITED]:
        env.pop(name)
    return env


def _submit_multirun(tmp_path: Path, *overrides: str) -> subprocess.Popen:
    """`python train.py -m launcher=slurm ...` (the process waits for its jobs); output in driver.log."""
    command = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        "-m",
        "launcher=slurm",
        *RESOURCES,
        f"hydra.launcher.name=et-{tmp_path.name}",
        f"paths.log_dir={tmp_path}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        *overrides,
    ]
    with (tmp_path / "driver.log").open("w") as log:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=_environment(), stdout=log, stderr=subprocess.STDOUT
        )
    process.log = tmp_path / "driver.log"
    return process


def _finish(process: subprocess.Popen, timeout: float = 600) -> str:
    process.wait(timeout=timeout)
    output = process.log.read_text()
    assert process.returncode == 0, output[-4000:]
    return output


def _run_folders(tmp_path: Path) -> list[Path]:
    (sweep,) = (tmp_path / "default" / "multiruns").iterdir()
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


def _rows(tmp_path: Path) -> list[dict]:
    path = tmp_path / "runs.db"
    return RunRegistry(path).list() if path.exists() else []


def _job_state(job_id: str) -> dict[str, str]:
    """`scontrol show job` fields (JobState, Restarts, ...) of `job_id`."""
    result = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30, check=True
    )
    return dict(field.split("=", 1) for field in result.stdout.split() if "=" in field)


def _job_id(name: str, deadline_s: float = 120) -> str:
    """The id of the one queued or running job named `name`."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = subprocess.run(
            ["squeue", "--noheader", f"--name={name}", "--format=%i"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        if result.stdout.strip():
            return result.stdout.split()[0]
        time.sleep(0.5)
    pytest.fail(f"no job named {name} appeared in squeue")


def _wait_for_step(process: subprocess.Popen, tmp_path: Path, step: int, after: float = 0.0) -> dict:
    """Block until the one run's registry row is running at `step` or later, updated after `after`."""
    return wait_for_registry_row(
        process,
        tmp_path / "runs.db",
        lambda row: row["status"] == "running" and row["step"] >= step and row["updated_at"] > after,
        f"progress to step {step}",
        400,
    )


def _wait_for_line(log_file: Path, pattern: str) -> re.Match:
    """Block until a line of `log_file` matches `pattern`; the match."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(pattern, log_file.read_text())
        if match:
            return match
        time.sleep(0.5)
    pytest.fail(f"no line matching {pattern!r} in {log_file} within 60 s")


def _finetuned(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())["finetuned"]


def _assert_same_metrics(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for dim, values in expected.items():
        assert got[dim] == pytest.approx(values, rel=1e-5, abs=1e-6), dim


def _reference_run(tmp_path: Path, *overrides: str) -> dict:
    """The same job launched locally (`python train.py`, its DDP ranks started by Lightning),
    uninterrupted, outside SLURM; its fine-tuned metrics."""
    folder = tmp_path / "reference"
    command = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        *overrides,
        f"hydra.run.dir={folder}",
        f"paths.log_dir={folder / 'outputs'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=_environment(), capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return _finetuned(folder)


def test_a_multirun_becomes_a_job_array_with_one_folder_and_registry_row_per_job(tmp_path):
    driver = _submit_multirun(tmp_path, "trainer=cpu", *FAST, "registry.progress_every_n_steps=1", "seed=1,2")
    seen: dict[str, list[str]] = {}

    def watch_statuses() -> None:
        while driver.poll() is None:
            for row in _rows(tmp_path):
                statuses = seen.setdefault(row["run_id"], [])
                if not statuses or statuses[-1] != row["status"]:
                    statuses.append(row["status"])
            time.sleep(0.1)

    watcher = threading.Thread(target=watch_statuses)
    watcher.start()
    output = _finish(driver)
    watcher.join()
    runs = _run_folders(tmp_path)
    assert [run.name.split("_")[0] for run in runs] == ["0", "1"] and "seed=1" in runs[0].name
    rows = {row["output_dir"]: row for row in _rows(tmp_path)}
    assert sorted(rows) == [str(run) for run in runs]
    for run in runs:
        row = rows[str(run)]
        assert row["status"] == "success" and _finetuned(run)
        assert seen[row["run_id"]][0] == "queued" and seen[row["run_id"]][-2:] in (
            ["running", "success"],
            ["success"],
        )
        assert "running" in seen[row["run_id"]]
        assert f"Queued run {row['run_id']}: {run}" in output
    # One sbatch --array for the two runs; each task's log in <sweep>/.submitit/<array job>_<task>/.
    (script,) = (runs[0].parent / ".submitit").glob("*/*_submission.sh")
    assert "#SBATCH --array=0-1" in script.read_text()
    assert "srun --unbuffered" in script.read_text() and "--kill-on-bad-exit=1" in script.read_text()
    array_job = script.parent.name
    for task in (0, 1):
        log = runs[0].parent / ".submitit" / f"{array_job}_{task}" / f"{array_job}_{task}_0_log.out"
        assert f"job_id={array_job}_{task}" in log.read_text()
        assert str(runs[task]) in log.read_text()


def test_ddp_ranks_come_from_slurm_tasks_and_match_the_same_run_launched_locally(tmp_path):
    job = [
        "trainer=ddp_sim",
        "model=tiny",
        "logger=none",
        "evaluation.show_progress_bar=false",
        "dataset_type=score",
        "loss=cosent",
        "data.max_samples=64",
        "data.batch_size=8",
        "data.max_eval_samples=60",
        "callbacks.progress_bar.refresh_rate=0",
        "seed=3",
    ]
    output = _finish(_submit_multirun(tmp_path, *job))
    (run,) = _run_folders(tmp_path)
    (row,) = _rows(tmp_path)
    assert (
        row["status"] == "success"
        and row["output_dir"] == str(run)
        and f"Queued run {row['run_id']}" in output
    )
    (job_folder,) = [p for p in (run.parent / ".submitit").iterdir() if "_" not in p.name]
    # Lightning logs through the job's Hydra logging (stdout), so each task's line is in its .out log.
    logs = {rank: (job_folder / f"{job_folder.name}_{rank}_log.out").read_text() for rank in (0, 1)}
    for rank, log in logs.items():  # two srun tasks: SLURM_PROCID is the global rank
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in log
    assert (run / "results.json").exists() and not list(run.parent.glob("*/.claim"))
    _assert_same_metrics(_finetuned(run), _reference_run(tmp_path, *job))


def test_scancel_signal_checkpoints_and_the_requeued_job_resumes_to_the_uninterrupted_result(tmp_path):
    reference = _reference_run(tmp_path, *SHORT_JOB, "trainer=cpu")
    driver = _submit_multirun(tmp_path, "trainer=cpu", *SHORT_JOB)
    job_id = _job_id(f"et-{tmp_path.name}")
    _wait_for_step(driver, tmp_path, 2)
    subprocess.run(["scancel", "--signal=USR1", job_id], check=True, timeout=30)
    _finish(driver)
    (run,) = _run_folders(tmp_path)
    log = next((run.parent / ".submitit").glob("*/*_0_log.out")).read_text()
    assert "Stopped on SIGUSR1 at step" in log and f"requeueing SLURM job {job_id}" in log
    assert f"Requeued SLURM job {job_id}" in log
    assert f"Resuming the unfinished run in {run}" in log  # the same job id, its folder pinned at submission
    assert int(_job_state(job_id)["Restarts"]) >= 1
    (row,) = _rows(tmp_path)
    assert row["status"] == "success" and row["step"] == 12
    _assert_same_metrics(_finetuned(run), reference)


def test_a_job_reaching_its_time_limit_is_requeued_and_resumes_and_a_cancelled_one_stays_cancelled(tmp_path):
    # A long limit at submission, shortened once training runs: SLURM then sends submitit's SIGUSR2
    # (signal_delay_s before the new limit) at its next time-limit check, within 30 s. The job is
    # far too long to finish first (1,000 epochs of 1,000 steps); once the requeued job has resumed
    # and trained on, the test cancels it (the scancel test above runs a resumed job to its end).
    endless_job = [
        *SHORT_JOB,
        "data.max_samples=4000",
        "data.batch_size=4",
        "trainer.max_epochs=1000",
        "registry.progress_every_n_steps=5",
    ]
    driver = _submit_multirun(
        tmp_path,
        "trainer=cpu",
        *endless_job,
        "hydra.launcher.timeout_min=30",
        "hydra.launcher.signal_delay_s=100",
    )
    job_id = _job_id(f"et-{tmp_path.name}")
    try:
        _wait_for_step(driver, tmp_path, 2)
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=2"], check=True, timeout=30)
        deadline = time.monotonic() + 120
        while int(_job_state(job_id)["Restarts"]) == 0:
            assert time.monotonic() < deadline, (
                "SLURM did not signal and requeue the job before its time limit"
            )
            time.sleep(0.5)
        # The requeued job gets the long limit back, so it is not signalled again.
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=30"], check=True, timeout=30)
        (run,) = _run_folders(tmp_path)
        log_file = next((run.parent / ".submitit").glob("*/*_0_log.out"))
        stopped = _wait_for_line(
            log_file, r"Stopped on SIGUSR2 at step (\d+): saved .*; requeueing SLURM job " + job_id
        )
        _wait_for_step(driver, tmp_path, int(stopped.group(1)) + 10, after=time.time())
        assert f"Resuming the unfinished run in {run}" in log_file.read_text()
        # A plain scancel (SIGTERM) checkpoints but must not requeue: a cancelled job stays cancelled.
        subprocess.run(["scancel", job_id], check=True, timeout=30)
        _wait_for_line(log_file, r"Stopped on SIGTERM at step \d+: saved .*; not requeued")
        deadline = time.monotonic() + 120
        while (state := _job_state(job_id))["JobState"] in ("RUNNING", "COMPLETING"):
            assert time.monotonic() < deadline, f"job {job_id} still {state['JobState']}"
            time.sleep(0.5)
        assert state["JobState"] == "CANCELLED" and state["Restarts"] == "1"
        time.sleep(3)  # a requeue would show here
        assert _job_state(job_id)["JobState"] == "CANCELLED"
    finally:
        subprocess.run(["scancel", job_id], check=False, timeout=30)
        driver.kill()
        driver.wait(timeout=60)


def test_train_sbatch_runs_ddp_over_srun_tasks_in_a_folder_pinned_by_the_job_id(tmp_path):
    command = [
        "sbatch",
        "--parsable",
        "--gpus-per-node=0",
        "--ntasks-per-node=2",
        "--cpus-per-task=1",
        "--mem=4G",
        f"--job-name=et-{tmp_path.name}",
        "scripts/slurm/train.sbatch",
        *FAST,
        f"paths.log_dir={tmp_path}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    # Submitted from the repository root, as the README shows; PYTHON and TRAINER as its header says.
    env = {**_environment(), "PYTHON": sys.executable, "TRAINER": "ddp_sim"}
    job_id = (
        subprocess.run(
            command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True, timeout=60
        )
        .stdout.strip()
        .split(";")[0]
    )
    job_log = PROJECT_ROOT / "outputs" / f"slurm-{job_id}.out"
    try:
        deadline = time.monotonic() + 400
        while (state := _job_state(job_id)["JobState"]) in (
            "PENDING",
            "CONFIGURING",
            "RUNNING",
            "COMPLETING",
        ):
            assert time.monotonic() < deadline, f"job {job_id} still {state}"
            time.sleep(1)
        log = job_log.read_text()
        assert state == "COMPLETED", log[-4000:]
    finally:
        job_log.unlink(missing_ok=True)
    run = tmp_path / "default" / "slurm" / job_id
    assert _finetuned(run) and f"job {job_id} on" in log
    (row,) = _rows(tmp_path)
    assert row["status"] == "success" and row["output_dir"] == str(run)
    assert not (tmp_path / "default" / "runs").exists()  # no second, timestamped folder from rank 1
