"""Recording the training curve (loss and learning rate per optimizer step) for the report, and
reading the validation score of each evaluation beside it."""

import pytorch_lightning as pl

from embedding_trainer.evaluation.callback import EvaluationCallback


class TrainingHistory(pl.Callback):
    """Keeps `(step, loss, lr)` after every optimizer step in `rows`: the step's number, the loss of
    its (last) batch and the learning rate the step trained at (read before the optimizer stepped:
    the scheduler has moved on to the next step's by the end of the batch). Saved in checkpoints so
    a resumed run's report shows the whole curve."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float]] = []
        self._step_lr: float | None = None

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        self._step_lr = float(optimizer.param_groups[0]["lr"])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, *args) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or self._step_lr is None or (self.rows and self.rows[-1][0] == trainer.global_step):
            return
        self.rows.append((trainer.global_step, float(loss.detach()), self._step_lr))
        self._step_lr = None

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = [tuple(row) for row in state_dict["rows"]]


def validation_scores(evaluation: EvaluationCallback) -> list[tuple[int, float]]:
    """`(step, val/score)` of every evaluation `evaluation` made, in step order: the baseline's at step
    0 (when it ran), then each one during training (checkpointed with it, so a resumed run has them all)."""
    scores = {0: evaluation.score(evaluation.baseline)} if evaluation.baseline is not None else {}
    scores.update((step, evaluation.score(metrics)) for step, metrics in evaluation.history.items())
    return sorted(scores.items())
