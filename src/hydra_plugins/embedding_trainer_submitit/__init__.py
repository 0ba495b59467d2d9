"""hydra-submitit-launcher's SLURM and local launchers, recording each job in the run registry as
`queued` before submitting it (`conf/launcher/slurm.yaml`, `conf/launcher/submitit_local.yaml`)."""

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher


class _QueuedFirst:
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from embedding_trainer.runs.queue import register_queued  # here: plugin discovery imports this module

        for index, overrides in enumerate(job_overrides):
            register_queued(self.hydra_context, self.config, list(overrides), initial_job_idx + index)
        return super().launch(job_overrides, initial_job_idx)


class QueuedSlurmLauncher(_QueuedFirst, SlurmLauncher):
    """SlurmLauncher that registers every job as `queued` first."""


class QueuedLocalLauncher(_QueuedFirst, LocalLauncher):
    """LocalLauncher (submitit's local processes) that registers every job as `queued` first."""
