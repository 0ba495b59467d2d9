"""Preemption end to end: a real training process gets SIGUSR1 halfway, saves a full checkpoint and
exits; the same command started again resumes and ends exactly where an uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from conftest import PREEMPTION_JOB, wait_for_registry_row
from embedding_trainer.runs.preemption import RunPreempted
from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.runs.resume import resume_checkpoint
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train

JOB = PREEMPTION_JOB


def _start(tmp_path, run_dir, log_name: str, job: list[str] = JOB) -> subprocess.Popen:
    """`python train.py *job` in `run_dir`, its output going to tmp_path/log_name (`process.log`)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("SLURM_JOB_ID", None)
    command = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        *job,
        f"hydra.run.dir={run_dir}",
        f"paths.log_dir={tmp_path}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    with (tmp_path / log_name).open("w") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    process.log = tmp_path / log_name
    return process


def _finish(process: subprocess.Popen) -> str:
    process.wait(timeout=300)
    return process.log.read_text()


def _finetuned(run_dir) -> dict:
    return json.loads((run_dir / "results.json").read_text())["finetuned"]


# LoRA: the checkpoint holds the adapters with the frozen weights, the optimizer state of the adapters.
@pytest.mark.parametrize("extra", [[], ["model/lora=default"]], ids=["full", "lora"])
@pytest.mark.slow
def test_preempted_run_resumes_with_the_same_command_and_ends_like_an_uninterrupted_one(
    tmp_path, make_cfg, extra
):
    # Both runs choose their checkpoint on the default held-out validation (data=score: 500 training
    # pairs), named so that make_cfg (conftest.GUARDS_OFF) keeps it in the in-process reference too.
    job = [*JOB, *extra, "data.validation_size=500"]
    reference_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    reference_cfg = make_cfg(*job, f"paths.cache_dir={tmp_path / 'cache'}", output_dir=reference_dir)
    # Build the tiny model into the shared cache first, so every run loads the same files alike.
    instantiate(reference_cfg.model.encoder)
    interrupted = _start(tmp_path, run_dir, "interrupted.log", job)
    signaller_errors: list[BaseException] = []

    def signal_halfway() -> None:
        try:
            wait_for_registry_row(
                interrupted,
                tmp_path / "runs.db",
                lambda row: row["output_dir"] == str(run_dir) and row["step"] >= 2,
                "step 2",
                300,
            )
            interrupted.send_signal(signal.SIGUSR1)
        except BaseException as error:  # pytest.fail too: reported by the test thread below
            signaller_errors.append(error)

    signaller = threading.Thread(target=signal_halfway)
    signaller.start()
    train(reference_cfg)  # the uninterrupted run, in this process meanwhile
    signaller.join()
    assert not signaller_errors, signaller_errors
    output = _finish(interrupted)
    assert interrupted.returncode == 128 + signal.SIGUSR1, output[-3000:]
    assert (
        "Stopped on SIGUSR1 at step" in output
        and f"run the same command with hydra.run.dir={run_dir}" in output
    )
    assert "Traceback" not in output
    checkpoint = torch.load(
        run_dir / "checkpoints" / "preempted.ckpt", map_location="cpu", weights_only=False
    )
    stopped_at = checkpoint["global_step"]
    assert 2 <= stopped_at < 12
    assert not (run_dir / "results.json").exists()
    (row,) = [r for r in RunRegistry(tmp_path / "runs.db").list() if r["output_dir"] == str(run_dir)]
    assert row["status"] == "failed" and row["error_type"] == "RunPreempted"

    resumed = _start(tmp_path, run_dir, "resumed.log", job)
    output = _finish(resumed)
    assert resumed.returncode == 0, output[-3000:]
    assert (
        f"Resuming the unfinished run in {run_dir} from {run_dir / 'checkpoints' / 'preempted.ckpt'}"
        in output
    )
    assert "before training (baseline)" not in output

    expected, got = _finetuned(reference_dir), _finetuned(run_dir)
    assert got.keys() == expected.keys()
    for dim in expected:
        assert got[dim] == pytest.approx(expected[dim], rel=1e-5, abs=1e-6), dim
    registry = RunRegistry(tmp_path / "runs.db")
    (row_after,) = [r for r in registry.list() if r["output_dir"] == str(run_dir)]
    assert row_after["run_id"] == row["run_id"]
    assert row_after["status"] == "success" and row_after["step"] == 12 and row_after["error_type"] is None


def test_an_unfinished_folder_resumes_from_its_newest_checkpoint(tmp_path):
    folder, elsewhere = tmp_path / "run", str(tmp_path / "other.ckpt")
    assert resume_checkpoint(folder, None) is None
    assert resume_checkpoint(folder, elsewhere) == elsewhere  # a fresh folder starts from ckpt_path
    (folder / "checkpoints").mkdir(parents=True)
    last, preempted = folder / "checkpoints" / "last.ckpt", folder / "checkpoints" / "preempted.ckpt"
    last.write_bytes(b"")
    preempted.write_bytes(b"")
    os.utime(last, (1, 1))
    assert resume_checkpoint(folder, None) == str(preempted)
    assert resume_checkpoint(folder, elsewhere) == str(preempted)  # the run's own progress wins
    os.utime(last, None)
    os.utime(preempted, (1, 1))
    assert resume_checkpoint(folder, None) == str(last)
    (folder / "results.json").write_text("{}")  # finished: a new run in this folder starts afresh
    assert resume_checkpoint(folder, None) is None
    assert resume_checkpoint(folder, elsewhere) == elsewhere


class SignalAtStep(pl.Callback):
    """Sends this process `signum` at the end of optimizer step `step` (once), as SLURM would."""

    def __init__(self, step: int, signum: int = signal.SIGUSR1) -> None:
        self.step, self.signum, self.sent = step, signum, False

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


# A signal at a boundary where an evaluation and a checkpoint are due: the epoch's last batch (the
# epoch-end evaluation ran in on_train_epoch_end, after the batch), or a step checkpoint (written by
# ModelCheckpoint after the batch's other callbacks). In both the uninterrupted run's best state is the
# one at the stop, so a resumed run that lost that evaluation or checkpoint ends on another model.
@pytest.mark.parametrize(
    "stop_at, extra",
    [
        (6, []),
        (2, ["evaluation.every_n_steps=2", "+callbacks.model_checkpoint.every_n_train_steps=2"]),
    ],
    ids=["epoch_end", "step_checkpoint"],
)
@pytest.mark.slow
def test_a_stop_where_an_evaluation_is_due_resumes_with_that_evaluation_and_checkpoint(
    tmp_path, make_cfg, stop_at, extra
):
    job = [*JOB, "model/lora=default", *extra]  # LoRA: its best states are the ones at these stops
    reference_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    train(make_cfg(*job, output_dir=reference_dir))
    reference = json.loads((reference_dir / "results.json").read_text())
    assert reference["step"] == stop_at  # the uninterrupted run selects the state at the stop

    signalling = [
        *job,
        f"+callbacks.signal._target_={__name__}.SignalAtStep",
        f"+callbacks.signal.step={stop_at}",
    ]
    with pytest.raises(RunPreempted, match=f"Stopped on SIGUSR1 at step {stop_at}:"):
        train(make_cfg(*signalling, output_dir=run_dir))
    assert (run_dir / "checkpoints" / f"step{stop_at}.ckpt").exists()
    train(make_cfg(*job, output_dir=run_dir))
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["step"] == stop_at
    for dim, metrics in reference["finetuned"].items():
        assert resumed["finetuned"][dim] == pytest.approx(metrics, rel=1e-5, abs=1e-6), dim
