"""What a fit actually trained, as opposed to what the config asked for: data.min_steps raises
trainer.max_epochs at run time, early stopping and trainer.max_steps end a run sooner, and a smoke
run (trainer.fast_dev_run) trains one batch whatever the limits say."""

from dataclasses import asdict, dataclass

import pytorch_lightning as pl


def _limit(value: int | None) -> int | None:
    """A trainer limit with Lightning's "no limit" (None or -1) as None."""
    return None if value is None or value < 0 else int(value)


@dataclass(frozen=True)
class TrainedLength:
    """The length of a finished fit.

    Attributes:
        epochs: epochs trained, the last possibly cut short (`trainer.current_epoch` after the fit;
            a resumed run counts the epochs before it too).
        steps: optimizer steps trained (`trainer.global_step`).
        kept_step: the optimizer step of the model kept (the checkpoint chosen by `val/score`).
        max_epochs: the epoch limit the fit ran under, after data.min_steps raised it (None: none).
        configured_epochs: trainer.max_epochs as configured (None: none).
        max_steps: trainer.max_steps (None: none).
        min_steps: data.min_steps (None: none).
        smoke_run: trainer.fast_dev_run: one batch, the limits ignored.
    """

    epochs: int
    steps: int
    kept_step: int
    max_epochs: int | None
    configured_epochs: int | None
    max_steps: int | None
    min_steps: int | None
    smoke_run: bool

    @classmethod
    def of(
        cls, trainer: pl.Trainer, configured_epochs: int | None, min_steps: int | None, kept_step: int
    ) -> "TrainedLength":
        """The length of `trainer`'s finished fit; `configured_epochs`: trainer.max_epochs of the config,
        `min_steps`: data.min_steps, `kept_step`: the step of the model kept."""
        return cls(
            epochs=int(trainer.current_epoch),
            steps=int(trainer.global_step),
            kept_step=int(kept_step),
            max_epochs=_limit(trainer.max_epochs),
            configured_epochs=_limit(configured_epochs),
            max_steps=_limit(trainer.max_steps),
            min_steps=min_steps,
            smoke_run=bool(trainer.fast_dev_run),
        )

    def limits(self) -> str:
        """The limits the fit ran under, saying when data.min_steps raised the epochs."""
        if self.smoke_run:
            return "trainer.fast_dev_run (one training batch; epoch and step limits ignored)"
        epochs = f"trainer.max_epochs={self.max_epochs if self.max_epochs is not None else -1}"
        if self.max_epochs != self.configured_epochs:
            epochs += f" (raised from {self.configured_epochs} by data.min_steps={self.min_steps})"
        return f"{epochs}, trainer.max_steps={self.max_steps if self.max_steps is not None else -1}"

    def rows(self) -> list[list[str]]:
        """Rows of (setting, value) for a settings table: epochs and steps trained, the step kept, the limits."""
        return [
            ["epochs trained", str(self.epochs)],
            ["optimizer steps trained", f"{self.steps} (model kept: step {self.kept_step})"],
            ["epoch and step limits", self.limits()],
        ]

    def sentence(self) -> str:
        """'Trained N optimizer step(s) over E epoch(s)'."""
        return (
            f"Trained {self.steps} optimizer step{'s' if self.steps != 1 else ''} over {self.epochs} "
            f"epoch{'s' if self.epochs != 1 else ''}"
        )

    def to_json(self) -> dict:
        """The attributes as a dict (results.json `training`); `TrainedLength(**it)` rebuilds it."""
        return asdict(self)
