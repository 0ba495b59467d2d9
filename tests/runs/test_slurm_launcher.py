"""`launcher=slurm`'s launch path end to end, with submitit's local executor: real job processes
started by submitit, one run folder each, every job registered as queued and then finished."""

import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.settings.resolvers import CONFIG_DIR, PROJECT_ROOT


def test_slurm_launcher_resources_follow_the_trainer():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                "launcher=slurm",
                "trainer=ddp",
                "trainer.devices=4",
                "trainer.num_nodes=2",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.account=lab",
            ],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.embedding_trainer_submitit.QueuedSlurmLauncher"
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)
    assert (launcher.partition, launcher.account) == ("gpu", "lab")
    assert launcher.additional_parameters.requeue is True


@pytest.mark.slow
def test_submitit_local_multirun_registers_queued_jobs_that_finish(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    command = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        "-m",
        "launcher=submitit_local",
        "model=tiny",
        "debug=fdr",
        "logger=none",
        "evaluation.show_progress_bar=false",
        "modifier=matryoshka,none",
        f"paths.log_dir={tmp_path}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "default" / "multiruns").iterdir()
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 2 and "launcher=" not in runs[0].name
    assert runs[0].name.startswith("0_") and runs[0].name.endswith("modifier=matryoshka")
    assert runs[1].name.startswith("1_") and runs[1].name.endswith("modifier=none")
    job_logs = list((sweep / ".submitit").glob("*/*_log.out"))
    assert len(job_logs) == 2  # each run was its own submitit job
    rows = {row["output_dir"]: row for row in RunRegistry(tmp_path / "runs.db").list()}
    assert sorted(rows) == [str(run) for run in runs]
    for run in runs:
        assert json.loads((run / "results.json").read_text())["finetuned"]
        row = rows[str(run)]
        assert row["status"] == "success" and row["metrics"]["finetuned"]
        assert str(run) in row["config"]  # the job's resolved config replaced the one queued
        assert (run / ".run_id").read_text().strip() == row["run_id"]
        assert f"Queued run {row['run_id']}: {run}" in result.stdout + result.stderr


@pytest.mark.slow
def test_slurm_launcher_refuses_devices_auto_before_submitting(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    command = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        "-m",
        "launcher=slurm",
        "model=tiny",
        f"paths.log_dir={tmp_path}",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode != 0
    # trainer.devices=auto is no GPU count: refused with what to use instead, before anything is submitted
    assert "launcher=slurm reserves trainer.devices" in result.stderr and "trainer=gpu" in result.stderr
    assert not (tmp_path / "runs.db").exists()
