"""hydra-submitit-launcher's SLURM and local launchers, recording each job in the run registry as
`queued` before submitting it (`conf/launcher/slurm.yaml`, `conf/launcher/submitit_local.yaml`),
and as `failed` when the submission itself fails (sbatch refused it)."""

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher


class _QueuedFirst:
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        # here: plugin discovery imports this module
        from embedding_trainer.runs.queue import fail_still_queued, register_queued

        queued = [
            register_queued(self.hydra_context, self.config, list(overrides), initial_job_idx + index)
            for index, overrides in enumerate(job_overrides)
        ]
        try:
            return super().launch(job_overrides, initial_job_idx)
        except Exception as error:
            fail_still_queued([tracker for tracker in queued if tracker is not None], error)
            raise


class QueuedSlurmLauncher(_QueuedFirst, SlurmLauncher):
    """SlurmLauncher that registers every job as `queued` first, and ends a job's step when one of
    its tasks fails (`srun --kill-on-bad-exit=1`): otherwise the other DDP ranks wait for the dead
    one until the time limit."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.params.setdefault("srun_args", ["--kill-on-bad-exit=1"])


class QueuedLocalLauncher(_QueuedFirst, LocalLauncher):
    """LocalLauncher (submitit's local processes) that registers every job as `queued` first."""
