"""Stopping a run on SIGUSR1, SIGUSR2 or SIGTERM (SLURM preemption or time limit: the sbatch file
asks for SIGUSR1, submitit for SIGUSR2, a preempting SLURM sends SIGTERM) without losing work:
save a full checkpoint, ask SLURM to requeue the job, and stop with `RunPreempted`."""

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from embedding_trainer.log import get_logger
from embedding_trainer.runtime.resume import PREEMPTED_CHECKPOINT

log = get_logger(__name__)

SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


class RunPreempted(Exception):
    """The run stopped on a signal after saving `checkpoint`; `exit_code` is 128 + the signal number."""

    def __init__(self, message: str, checkpoint: str, signum: int) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.exit_code = 128 + signum


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` takes for this SLURM job (array jobs: `<job>_<task>`), None off SLURM."""
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return os.environ.get("SLURM_JOB_ID")


def requeue(job_id: str) -> bool:
    """Ask SLURM to requeue `job_id`; False (with a warning) when scontrol fails or is missing."""
    try:
        result = subprocess.run(
            ["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning(f"Could not requeue SLURM job {job_id}: {error}")
        return False
    if result.returncode != 0:
        log.warning(f"scontrol requeue {job_id} failed: {result.stderr.strip()}")
    return result.returncode == 0


def requeue_this_job(rank_zero: bool) -> str | None:
    """Inside a SLURM job, on rank zero: requeue the job and return its id; otherwise (or when
    `scontrol requeue` fails) None."""
    job_id = slurm_job_id()
    return job_id if rank_zero and job_id is not None and requeue(job_id) else None


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """Around a whole run: SIGUSR1, SIGUSR2 or SIGTERM outside training (while data or the model
    load, during an evaluation) raise `RunPreempted` without a checkpoint (inside a SLURM job,
    rank zero requeues it first), so the run ends as a failure with its claim released and its
    registry row closed, instead of dying mid-write.
    During training `PreemptionCallback` takes the signals over. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame) -> None:
        job_id = requeue_this_job(rank_zero_only.rank == 0)
        after = f"requeued SLURM job {job_id}" if job_id else "run the same command again to start over"
        raise RunPreempted(
            f"Stopped on {signal.Signals(signum).name} outside training (nothing to checkpoint); {after}.",
            "",
            signum,
        )

    previous = {signum: signal.signal(signum, stop) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class PreemptionCallback(pl.Callback):
    """While training, SIGUSR1, SIGUSR2 and SIGTERM only set a flag (replacing Lightning's own handlers,
    which are restored afterwards). At the next optimizer-step boundary every rank agrees on the
    flag; then the run saves `<output_dir>/checkpoints/preempted.ckpt` (model, optimizer,
    scheduler, loops, sampler position, random state, evaluation history), rank zero runs
    `scontrol requeue` when inside a SLURM job, and `RunPreempted` is raised."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / PREEMPTED_CHECKPOINT
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _flag(self, signum: int, frame) -> None:
        self.signum = signum

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._flag) for signum in SIGNALS}

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # mid-accumulation: the accumulated gradients are not in checkpoints
        if not trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            return
        signum = self.signum or signal.SIGTERM  # a rank that got no signal stops with the others
        trainer.save_checkpoint(self.path)
        job_id = requeue_this_job(trainer.is_global_zero)
        step = trainer.global_step
        if job_id:
            after = f"requeued SLURM job {job_id}; it resumes from the checkpoint when it starts again"
        else:
            after = f"to resume, run the same command with hydra.run.dir={self.output_dir}"
        raise RunPreempted(
            f"Stopped on {signal.Signals(signum).name} at step {step}: saved {self.path}; {after}.",
            str(self.path),
            signum,
        )
