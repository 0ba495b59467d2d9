"""Recording one training run in the registry: start, progress while training, and how it ended."""

import secrets
import time

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from optuna import TrialPruned
from pytorch_lightning.utilities import rank_zero_only

from embedding_trainer.runs.registry import RunRegistry


def command_line_overrides() -> list[str]:
    """The overrides this run was launched with (empty outside a Hydra command line)."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # no Hydra runtime: composed in-process (tests, notebooks)
        return []


def config_text(cfg: DictConfig) -> str:
    """The config as YAML, resolved where it resolves (an unresolvable config is kept as written)."""
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except Exception:  # a bad interpolation is the run's error to report, not the registry's
        return OmegaConf.to_yaml(cfg)


class RunTracker:
    """The registry row of one run (`run_id`: continue an earlier row, e.g. of a resumed run). On
    every rank but zero, and with `path` None, it records nothing."""

    def __init__(self, path: str | None, task: str, run_id: str | None = None) -> None:
        self.registry = RunRegistry(path) if path and rank_zero_only.rank == 0 else None
        self.task = task
        self.run_id = run_id or f"{task}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        self.ended = False

    def start(self, cfg: DictConfig, output_dir: str) -> None:
        if self.registry:
            self.registry.start(
                self.run_id, self.task, command_line_overrides(), config_text(cfg), output_dir
            )

    def moved(self, old_dir: str, new_dir: str) -> None:
        """Record that the runs of `old_dir` now live in `new_dir` (a finished run moved aside)."""
        if self.registry:
            self.registry.moved(old_dir, new_dir)

    def progress(self, step: int, total_steps: int | None) -> None:
        if self.registry:
            self.registry.progress(self.run_id, step, total_steps)

    def succeed(self, metrics: dict, model_path: str | None) -> None:
        if self.registry and not self.ended:
            self.registry.finish(self.run_id, "success", metrics, model_path)
        self.ended = True

    def fail(self, error: BaseException) -> None:
        """Record the first error only: Lightning turns Ctrl-C into SystemExit after reporting it.
        A sweep trial stopped by its pruner (`optuna.TrialPruned`) is recorded as `pruned`."""
        if self.registry and not self.ended:
            if isinstance(error, TrialPruned):
                self.registry.finish(self.run_id, "pruned")
            else:
                self.registry.fail(self.run_id, error)
        self.ended = True


class RegistryProgressCallback(pl.Callback):
    """Writes the step, total and percent of training to the run's registry row every
    `every_n_steps` optimizer steps and at the end of training, and the error (Ctrl-C included)
    if training stops on one."""

    def __init__(self, tracker: RunTracker, every_n_steps: int = 10) -> None:
        self.tracker = tracker
        self.every_n_steps = every_n_steps

    def _total(self, trainer: pl.Trainer) -> int | None:
        total = trainer.estimated_stepping_batches
        return int(total) if total != float("inf") else None

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.tracker.progress(trainer.global_step, self._total(trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.tracker.progress(trainer.global_step, self._total(trainer))

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.tracker.fail(exception)
