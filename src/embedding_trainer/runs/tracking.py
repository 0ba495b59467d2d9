"""Recording one training run in the registry: start, progress while training, and how it ended."""

from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from optuna import TrialPruned
from pytorch_lightning.utilities import rank_zero_only

from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.runs.resume import stored_run_id, unfinished
from embedding_trainer.runs.run_ids import folder_run_id, new_run_id


def command_line_overrides() -> list[str]:
    """The overrides this run was launched with (empty outside a Hydra command line)."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # no Hydra runtime: composed in-process (tests, notebooks)
        return []


def config_text(cfg: DictConfig) -> str:
    """The config as the registry keeps it: YAML, resolved where it resolves (an unresolvable config is
    kept as written). The one reader of the config here (the entry point's `RunPlace.from_config` and the
    queued-job launcher call it); the tracker itself takes the text."""
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except Exception:  # a bad interpolation is the run's error to report, not the registry's
        return OmegaConf.to_yaml(cfg)


def run_id_for(output_dir: str | Path, registry: RunRegistry | None) -> str:
    """The registry id of the run writing `output_dir`: the id an earlier start of the same unfinished
    run stored there (a resume, a requeue, a queued job); else the id the folder's path carries
    (`run_ids.folder_run_id`, so DDP ranks and restarts in one folder agree on it) unless the registry
    holds it for another run (a finished run there, moved aside by `overwrite`); else a new one."""
    stored = stored_run_id(output_dir)
    if stored:
        return stored
    carried = folder_run_id(output_dir)
    if carried is None or (registry is not None and _taken(registry, carried, Path(output_dir))):
        return new_run_id()
    return carried


def _taken(registry: RunRegistry, run_id: str, output_dir: Path) -> bool:
    """Whether `run_id` is the row of another run than the unfinished one in `output_dir`."""
    try:
        folder = registry.get(run_id)["output_dir"]
    except KeyError:
        return False
    return folder is None or Path(folder) != output_dir or not unfinished(output_dir)


class RunTracker:
    """The registry row of the run writing `output_dir` (its id: `run_id_for`). On every rank but
    zero, and with `path` None, it records nothing."""

    def __init__(self, path: str | None, task: str, output_dir: str | Path) -> None:
        self.registry = RunRegistry(path) if path and rank_zero_only.rank == 0 else None
        self.task = task
        self.run_id = run_id_for(output_dir, self.registry)
        self.ended = False

    def start(self, config: str, output_dir: str) -> None:
        """Record the run as `running` in `output_dir`, with its `config` (YAML) and command-line overrides."""
        if self.registry:
            self.registry.start(self.run_id, self.task, command_line_overrides(), config, output_dir)

    def moved(self, old_dir: str, new_dir: str) -> None:
        """Record that the runs of `old_dir` now live in `new_dir` (a finished run moved aside)."""
        if self.registry:
            self.registry.moved(old_dir, new_dir)

    def folder_removed(self) -> None:
        """Record that the run's folder was removed (its configuration was refused at the start)."""
        if self.registry:
            self.registry.folder_removed(self.run_id)

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
