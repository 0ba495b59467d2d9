"""The Lightning callback that evaluates the model before, during and after training."""

import pytorch_lightning as pl
import torch

from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics
from embedding_trainer.log import get_logger

log = get_logger(__name__)


class EvaluationCallback(pl.Callback):
    """Runs `evaluator` at every dimension of `dims`: before training (the baseline), at the end of
    each epoch and, if `every_n_steps` is set, every that many optimizer steps.

    Each evaluation is logged as `val/<evaluator>_<metric>_dim<d>` plus `val/score`, the primary
    metric averaged over the dimensions (higher is better), which checkpointing monitors.
    Results are kept per global step in `history` and saved in checkpoints, so a resumed run
    neither repeats the baseline nor loses earlier results.
    """

    def __init__(
        self, evaluator: DimensionEvaluator, dims: list[int], every_n_steps: int | None = None, baseline: bool = True
    ) -> None:
        self.evaluator = evaluator
        self.dims = list(dims)
        self.every_n_steps = every_n_steps
        self.run_baseline = baseline
        self.baseline: DimensionMetrics | None = None
        self.history: dict[int, DimensionMetrics] = {}

    def score(self, metrics: DimensionMetrics) -> float:
        """The primary metric averaged over the evaluated dimensions."""
        return sum(values[self.evaluator.primary_metric] for values in metrics.values()) / len(metrics)

    def flatten(self, metrics: DimensionMetrics) -> dict[str, float]:
        """`val/...` keys for one evaluation, with `val/score`."""
        flat = {
            f"val/{self.evaluator.name}_{name}_dim{dim}": value
            for dim, values in metrics.items()
            for name, value in values.items()
        }
        flat["val/score"] = self.score(metrics)
        return flat

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> DimensionMetrics:
        """Evaluate the module's SentenceTransformer now and log the result at the current step.
        With several processes, global rank zero evaluates and sends its metrics to every rank, so
        all ranks log, checkpoint and stop on the same `val/score`."""
        metrics = self._run_evaluator(pl_module) if trainer.is_global_zero else None
        metrics = trainer.strategy.broadcast(metrics, src=0)
        flat = self.flatten(metrics)
        for logger in trainer.loggers:
            logger.log_metrics(flat, step=trainer.global_step)
        log.info(f"Step {trainer.global_step}: val/score {flat['val/score']:.4f} ({self.evaluator.primary_metric})")
        return metrics

    def _run_evaluator(self, pl_module: pl.LightningModule) -> DimensionMetrics:
        was_training = pl_module.training
        pl_module.eval()
        try:
            return self.evaluator(pl_module.model, self.dims)
        finally:
            pl_module.train(was_training)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run_baseline and self.baseline is None:
            log.info("Evaluating the model before training (baseline)")
            self.baseline = self.evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step not in self.history:
            self._record(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step not in self.history:
            self._record(trainer, pl_module)

    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = self.evaluate(trainer, pl_module)
        self.history[trainer.global_step] = metrics
        trainer.callback_metrics["val/score"] = torch.tensor(self.score(metrics))

    def latest(self) -> tuple[int, DimensionMetrics]:
        """The step and metrics of the most recent evaluation during training."""
        step = max(self.history)
        return step, self.history[step]

    def state_dict(self) -> dict:
        return {"baseline": self.baseline, "history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.baseline = state_dict["baseline"]
        self.history = dict(state_dict["history"])
