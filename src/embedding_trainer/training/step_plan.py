"""What a run will train, computed once the data is loaded and before the model loads: optimizer
steps from the data size, batch size, devices, accumulation, epochs and step limits, and checks
that refuse plans that cannot train (no step at all, in-batch negatives with one-row batches)."""

import math
from dataclasses import dataclass

import pytorch_lightning as pl

from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


@dataclass
class TrainingPlan:
    """Optimizer steps of a run: `rows` training rows in global batches of `global_batch` rows
    (per-device batch x `world_size`), `accumulate` batches per step, at most `max_epochs` epochs
    (None: no limit), `max_steps` steps (None: no limit), `batch_limit` batches per epoch (None: all)."""

    rows: int
    batch_size: int
    world_size: int
    accumulate: int
    max_epochs: int | None
    max_steps: int | None
    batch_limit: int | float | None

    @classmethod
    def of(cls, trainer: pl.Trainer, rows: int, batch_size: int, world_size: int) -> "TrainingPlan":
        """The plan of `trainer` (its epochs, steps, accumulation and batch limit) on `world_size` devices."""
        max_epochs = trainer.max_epochs
        max_steps = trainer.max_steps
        limit = trainer.limit_train_batches
        return cls(
            rows=rows,
            batch_size=batch_size,
            world_size=world_size,
            accumulate=trainer.accumulate_grad_batches,
            max_epochs=None if max_epochs is None or max_epochs < 0 else max_epochs,
            max_steps=None if max_steps is None or max_steps < 0 else max_steps,
            batch_limit=None if limit is None or (isinstance(limit, float) and limit == 1.0) else limit,
        )

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        """Batches each device trains per epoch: a last global batch with fewer rows than devices is
        skipped. The train loader's len() is this number unless its batch sampler leaves rows out
        (it then says how many and why: `embedding_trainer.data.samplers`)."""
        full, rest = divmod(self.rows, self.global_batch)
        batches = full + (rest >= self.world_size)
        if isinstance(self.batch_limit, float):
            return int(batches * self.batch_limit)
        return batches if self.batch_limit is None else min(batches, int(self.batch_limit))

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch / self.accumulate)

    @property
    def steps(self) -> float:
        """Optimizer steps in the whole run (inf when neither epochs nor steps are limited)."""
        by_epochs = math.inf if self.max_epochs is None else self.steps_per_epoch * self.max_epochs
        return min(by_epochs, math.inf if self.max_steps is None else self.max_steps)

    def describe(self) -> str:
        devices = f" x {self.world_size} devices" if self.world_size > 1 else ""
        limit = f", trainer.limit_train_batches={self.batch_limit}" if self.batch_limit is not None else ""
        return (
            f"{self.rows} training rows in batches of {self.batch_size}{devices} = {self.batches_per_epoch} "
            f"batches per epoch{limit}, trainer.accumulate_grad_batches={self.accumulate}, "
            f"trainer.max_epochs={self.max_epochs if self.max_epochs is not None else -1}, "
            f"trainer.max_steps={self.max_steps if self.max_steps is not None else -1}"
        )


def check_steps(plan: TrainingPlan) -> None:
    """Raise ConfigError when the plan trains no optimizer step."""
    if plan.steps >= 1:
        return
    raise ConfigError(
        f"This run would train 0 optimizer steps: {plan.describe()}. Train at least one: set "
        "trainer.max_epochs to 1 or more and trainer.max_steps to -1 (no limit) or a positive number, "
        "and give at least as many training rows as devices."
    )


def epochs_for_min_steps(plan: TrainingPlan, min_steps: int | None) -> int | None:
    """The epochs that train at least `min_steps` optimizer steps (`data.min_steps`), when the plan's
    epochs train fewer; None when there is nothing to raise (no minimum, a trainer.max_steps limit, no
    epoch limit, enough steps already, or no step per epoch)."""
    if (
        not min_steps
        or plan.max_steps is not None
        or plan.max_epochs is None
        or not 0 < plan.steps < min_steps
    ):
        return None
    return math.ceil(min_steps / plan.steps_per_epoch)


def train_min_steps(trainer: pl.Trainer, plan: TrainingPlan, min_steps: int | None) -> None:
    """Raise the trainer's epochs to `epochs_for_min_steps` (before `fit`), and log why."""
    epochs = epochs_for_min_steps(plan, min_steps)
    if epochs is None:
        return
    trainer.fit_loop.max_epochs = epochs
    log.info(
        f"Training {epochs} epochs, not {plan.max_epochs}: {plan.steps_per_epoch} optimizer steps per epoch and "
        f"data.min_steps={min_steps} ({plan.rows} training rows in batches of {plan.global_batch}). "
        "data.min_steps=null trains trainer.max_epochs."
    )


def check_in_batch_negatives(plan: TrainingPlan, loss: str, input_columns: list[str]) -> None:
    """`loss` (a class name), which scores each anchor against the other rows of its batch (its config's
    `in_batch_negatives`), learns nothing from one-row batches unless the rows carry negatives of their own (more than two
    input columns): refuse that; warn when batches hold fewer rows than asked for.

    This judges the configuration and the number of rows; the data's own shape is the batch
    sampler's part: the harness's samplers put at least half a batch in every batch (bar a lone
    one) and report the rows they cannot place so, such as rows repeating a text that a
    no-duplicates batch holds once (`embedding_trainer.data.samplers`)."""
    rows_per_batch = min(plan.rows, plan.global_batch)
    if rows_per_batch < 2 and len(input_columns) <= 2:
        raise ConfigError(
            f"{loss} scores each anchor against the other rows of its batch, but every batch here has "
            f"{rows_per_batch} row ({plan.rows} training row{'s' if plan.rows != 1 else ''}, data.batch_size={plan.batch_size}): there is "
            "nothing to contrast, the loss is 0 and the model cannot learn. Give more training rows and "
            "data.batch_size of 2 or more (32 or more is usual)."
        )
    if rows_per_batch < plan.global_batch:
        log.warning(
            f"{loss} uses in-batch negatives, but the {plan.rows} training rows are fewer than one batch of "
            f"{plan.global_batch}: every anchor sees only {rows_per_batch - 1} in-batch negatives."
        )
    elif plan.global_batch < 2:
        log.warning(
            f"{loss} uses in-batch negatives, but batches have 1 row: only the rows' own negatives train it."
        )
