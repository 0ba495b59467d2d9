"""Phases 3 and 5 of a run: the Lightning trainer with its callbacks and loggers (and the training plan's
checks, before the model loads), then the fit itself."""

import functools
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from embedding_trainer.data import EmbeddingDataModule
from embedding_trainer.data.objectives import ObjectivesDataModule
from embedding_trainer.phases.evaluation import Evaluations
from embedding_trainer.reporting.history import TrainingHistory
from embedding_trainer.runs.preemption import PreemptionCallback
from embedding_trainer.runs.rank_launch import ranks_run_this_job
from embedding_trainer.runs.resume import RandomStateCallback
from embedding_trainer.runs.tracking import RegistryProgressCallback, RunTracker
from embedding_trainer.settings.training import TrainingSettings
from embedding_trainer.sweeps.pruning import pruning_callbacks
from embedding_trainer.training.batch_negatives import InBatchNegativesCallback
from embedding_trainer.training.early_stopping import EarlyStopping
from embedding_trainer.training.module import EmbeddingModule
from embedding_trainer.training.objectives import ObjectivePart
from embedding_trainer.training.step_plan import (
    TrainingPlan,
    check_in_batch_negatives,
    check_steps,
    train_min_steps,
)
from embedding_trainer.utils.errors import ConfigError


@dataclass
class Training:
    """The run's `trainer`, with the callbacks the report reads (`history`: the training curves;
    `stopping`: early stopping, None when off) and the `world_size` it trains on."""

    trainer: pl.Trainer
    history: TrainingHistory
    stopping: EarlyStopping | None
    world_size: int


def build_training(
    settings: TrainingSettings,
    evaluations: Evaluations,
    parts: list[ObjectivePart],
    tracker: RunTracker,
) -> Training:
    """The trainer of `settings.trainer` with the run's callbacks (`settings.callbacks`, the evaluations,
    progress, pruning, resume and preemption) and loggers (`settings.loggers`); raises ConfigError when
    the training plan of an objective (`parts`, see `objective_parts`) trains nothing or cannot use its
    in-batch negatives. One objective trains at least `settings.min_steps` steps (its epochs raised to
    reach them)."""
    diagnostics = evaluations.diagnostics()
    if len(parts) == 1 and parts[0].settings.in_batch_negatives:
        diagnostics.append(InBatchNegativesCallback())
    history = TrainingHistory()
    configured = [instantiate(c) for c in settings.callbacks]
    # A partial callback config (callbacks=early_stopping) is completed with the evaluation it follows.
    evaluation = evaluations.evaluation
    following = [c(evaluation=evaluation) for c in configured if isinstance(c, functools.partial)]
    stopping = next((c for c in following if isinstance(c, EarlyStopping)), None)
    callbacks = [c for c in configured if not isinstance(c, functools.partial)] + [
        evaluation,
        *following,
        *diagnostics,
        history,
        RegistryProgressCallback(tracker, settings.progress_every_n_steps),
        *pruning_callbacks(settings.sweep_trial, evaluation),
        RandomStateCallback(),
        PreemptionCallback(settings.output_dir),
    ]
    loggers = [instantiate(c) for c in settings.loggers]
    trainer = build_trainer(settings.trainer, callbacks, loggers)
    world_size = trainer.num_nodes * trainer.num_devices  # known before the processes start
    check_training_plan(trainer, parts, world_size, settings.min_steps)
    return Training(trainer, history, stopping, world_size)


def build_trainer(trainer_cfg: DictConfig, callbacks: list[pl.Callback], loggers: list) -> pl.Trainer:
    """The Lightning Trainer of `trainer_cfg` (the `trainer` settings); its own refusals (unknown
    accelerator or precision, bad counts) become ConfigError naming the trainer settings."""
    try:
        return instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False)
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(
            f"The Lightning Trainer refused the trainer settings: {cause}. Fix the trainer.* value it names "
            "(see conf/trainer/default.yaml for the defaults)."
        ) from None


def check_training_plan(
    trainer: pl.Trainer,
    parts: list[ObjectivePart],
    world_size: int,
    min_steps: int | None,
) -> None:
    """Check each objective's training plan on `world_size` devices (`check_steps`, and
    `check_in_batch_negatives` for an in-batch-negative loss); with one objective, raise the trainer's
    epochs to `min_steps`."""
    for part in parts:
        data, objective = part.data, part.settings
        plan = TrainingPlan.of(trainer, len(data.train_dataset), objective.batch_size, world_size)
        check_steps(plan)
        if objective.in_batch_negatives:
            check_in_batch_negatives(plan, objective.loss_name, data.inputs or data.text_columns)
    if len(parts) == 1:  # several objectives train their epochs of the combined batches
        train_min_steps(trainer, plan, min_steps)


def fit(
    training: Training,
    module: EmbeddingModule,
    datamodule: EmbeddingDataModule | ObjectivesDataModule,
    ckpt_path: str | None,
    output_dir: Path,
) -> None:
    """Train `module` on `datamodule` (resuming from `ckpt_path` when set), on every rank this job runs."""
    with ranks_run_this_job(output_dir, training.world_size):
        training.trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
