"""Preemption end to end: a real training process gets SIGUSR1 halfway, saves a full checkpoint and
exits; the same command started again resumes and ends exactly where an uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from hydra.utils import instantiate

from embedding_trainer.resolvers import PROJECT_ROOT
from embedding_trainer.runs.registry import RunRegistry

# 8 batches per epoch, 2 epochs; dropout on; the default (generator-driven) shuffled batch sampler.
JOB = [
    "model=tiny", "dataset_type=score", "loss=cosent", "logger=none", "evaluation.show_progress_bar=false",
    "data.max_samples=64", "data.batch_size=8", "data.max_eval_samples=100", "trainer.max_epochs=2",
    "callbacks.progress_bar.refresh_rate=0", "registry.progress_every_n_steps=1",
]


def _start(tmp_path, run_dir) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("SLURM_JOB_ID", None)
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), *JOB, f"hydra.run.dir={run_dir}",
               f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}"]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_step(process: subprocess.Popen, registry_path, run_dir, step: int) -> None:
    """Block until the run's registry row reports at least `step` optimizer steps."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended before step {step}:\n{process.stdout.read()[-3000:]}"
        if registry_path.exists():
            rows = [r for r in RunRegistry(registry_path).list() if r["output_dir"] == str(run_dir)]
            if rows and rows[0]["step"] >= step:
                return
        time.sleep(0.05)
    pytest.fail(f"no progress to step {step} within 300 s")


def _finetuned(run_dir) -> dict:
    return json.loads((run_dir / "results.json").read_text())["finetuned"]


def test_preempted_run_resumes_with_the_same_command_and_ends_like_an_uninterrupted_one(tmp_path, make_cfg):
    # Build the tiny model into the shared cache first, so every run loads the same files alike.
    instantiate(make_cfg(*JOB, f"paths.cache_dir={tmp_path / 'cache'}").model.encoder)
    reference_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    reference = _start(tmp_path, reference_dir)
    interrupted = _start(tmp_path, run_dir)
    _wait_for_step(interrupted, tmp_path / "runs.db", run_dir, 3)
    interrupted.send_signal(signal.SIGUSR1)
    output = interrupted.communicate(timeout=300)[0]
    assert interrupted.returncode == 128 + signal.SIGUSR1, output[-3000:]
    assert "Stopped on SIGUSR1 at step" in output and "run the same command again" in output
    assert "Traceback" not in output
    checkpoint = torch.load(run_dir / "checkpoints" / "preempted.ckpt", map_location="cpu", weights_only=False)
    stopped_at = checkpoint["global_step"]
    assert 3 <= stopped_at < 16
    assert not (run_dir / "results.json").exists()
    (row,) = [r for r in RunRegistry(tmp_path / "runs.db").list() if r["output_dir"] == str(run_dir)]
    assert row["status"] == "failed" and row["error_type"] == "RunPreempted"

    resumed = _start(tmp_path, run_dir)
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert f"Resuming the unfinished run in {run_dir} from {run_dir / 'checkpoints' / 'preempted.ckpt'}" in output
    assert "before training (baseline)" not in output
    assert reference.wait(timeout=300) == 0, reference.stdout.read()[-3000:]

    expected, got = _finetuned(reference_dir), _finetuned(run_dir)
    assert got.keys() == expected.keys()
    for dim in expected:
        assert got[dim] == pytest.approx(expected[dim], rel=1e-5, abs=1e-6), dim
    registry = RunRegistry(tmp_path / "runs.db")
    (row_after,) = [r for r in registry.list() if r["output_dir"] == str(run_dir)]
    assert row_after["run_id"] == row["run_id"]
    assert row_after["status"] == "success" and row_after["step"] == 16 and row_after["error_type"] is None
