"""Stopping a run on SIGUSR1, SIGUSR2 or SIGTERM without losing work: save a full checkpoint and
stop with `RunPreempted`.

After SIGUSR1 (the sbatch file's time-limit warning, or `scancel --signal=USR1`) or SIGUSR2
(submitit's), the SLURM job is to be requeued (`RunPreempted.requeue_job`): the command line does it
as the process's last act (`requeue_after`), since SLURM answers `scontrol requeue` with a SIGTERM.
SIGTERM itself never requeues: it is how `scancel` cancels a job (a cancelled job must stay
cancelled), and a SLURM preempting with PreemptMode=REQUEUE requeues the job itself."""

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities import rank_zero_only

from embedding_trainer.runs.resume import PREEMPTED_CHECKPOINT
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)  # warnings before a time limit (or a preemption)


class RunPreempted(Exception):
    """The run stopped on a signal after saving `checkpoint`; `exit_code` is 128 + the signal number;
    `requeue_job` is the SLURM job to requeue once everything is written (None: not to requeue)."""

    def __init__(self, message: str, checkpoint: str, signum: int, requeue_job: str | None = None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.exit_code = 128 + signum
        self.requeue_job = requeue_job


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


def job_to_requeue(rank_zero: bool, signum: int) -> str | None:
    """Inside a SLURM job, on rank zero, for a warning signal (`REQUEUE_SIGNALS`): the job's id;
    otherwise None."""
    return slurm_job_id() if rank_zero and signum in REQUEUE_SIGNALS else None


def requeue_after(preempted: RunPreempted) -> None:
    """Requeue the SLURM job `preempted` names, if any: the last act of a stopped run's process."""
    if preempted.requeue_job and requeue(preempted.requeue_job):
        log.info(f"Requeued SLURM job {preempted.requeue_job}: it resumes when it starts again.")


def _after(signum: int, job_id: str | None, resume: str) -> str:
    """What a stopped run says happens next."""
    if job_id:
        return f"requeueing SLURM job {job_id}"
    if signum == signal.SIGTERM and slurm_job_id() is not None:
        return f"not requeued (SIGTERM: cancelled, or preempted by a SLURM that requeues it itself); {resume}"
    return resume


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """Around a whole run: SIGUSR1, SIGUSR2 or SIGTERM outside training (while data or the model
    load, during an evaluation) raise `RunPreempted` without a checkpoint, so the run ends as a
    failure with its claim released and its registry row closed, instead of dying mid-write.
    During training `PreemptionCallback` takes the signals over. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame) -> None:
        job_id = job_to_requeue(rank_zero_only.rank == 0, signum)
        raise RunPreempted(
            f"Stopped on {signal.Signals(signum).name} outside training (nothing to checkpoint); "
            f"{_after(signum, job_id, 'run the same command again to start over')}.",
            "",
            signum,
            job_id,
        )

    previous = {signum: signal.signal(signum, stop) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class PreemptionCallback(Checkpoint):
    """While training, SIGUSR1, SIGUSR2 and SIGTERM only set a flag (replacing Lightning's own handlers,
    which are restored afterwards). At the next optimizer-step boundary every rank agrees on the
    flag; then the run saves `<output_dir>/checkpoints/preempted.ckpt` (model, optimizer,
    scheduler, loops, sampler position, random state, evaluation history) and `RunPreempted` is
    raised (naming the SLURM job to requeue when the signal was a warning, `REQUEUE_SIGNALS`).

    At an epoch's last step (its last batch, or `max_steps`) the stop waits for the epoch's end, after
    its evaluation and checkpoint: Lightning resumes a checkpoint taken there in the next epoch (or as
    finished), so the epoch-end hooks would never run. A `Checkpoint` subclass, so Lightning runs it after the model checkpoint
    callbacks at every hook (their step and epoch-end checkpoints are written before the stop)."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / PREEMPTED_CHECKPOINT
        self.signum: int | None = None
        self._stop_at_epoch_end: int | None = (
            None  # the agreed signal, once the stop waits for the epoch's end
        )
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
        if (batch_idx + 1) % trainer.accumulate_grad_batches or self._stop_at_epoch_end is not None:
            return  # mid-accumulation: the accumulated gradients are not in checkpoints
        if not trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            return
        signum = self.signum or signal.SIGTERM  # a rank that got no signal stops with the others
        if (
            trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
            or trainer.global_step == trainer.max_steps
        ):
            self._stop_at_epoch_end = signum
            return
        self._stop(trainer, signum)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stop_at_epoch_end is not None:
            self._stop(trainer, self._stop_at_epoch_end)

    def _stop(self, trainer: pl.Trainer, signum: int) -> None:
        """Save the checkpoint and raise `RunPreempted`."""
        trainer.save_checkpoint(self.path)
        job_id = job_to_requeue(trainer.is_global_zero, signum)
        resume = f"to resume, run the same command with hydra.run.dir={self.output_dir}"
        raise RunPreempted(
            f"Stopped on {signal.Signals(signum).name} at step {trainer.global_step}: saved {self.path}; "
            f"{_after(signum, job_id, resume)}.",
            str(self.path),
            signum,
            job_id,
        )
