"""The Lightning callback that evaluates the model before, during and after training."""

import pytorch_lightning as pl
import torch

from embedding_trainer.evaluation.base import (
    DimensionEvaluator,
    DimensionMetrics,
    PerExample,
    flat_metrics,
    per_example_arrays,
    per_example_tensors,
    using_cache,
)
from embedding_trainer.evaluation.selection_score import Objective
from embedding_trainer.utils.embedding_cache import EmbeddingCache
from embedding_trainer.utils.log import get_logger
from embedding_trainer.utils.sharded_encoding import sharded_encoding

log = get_logger(__name__)


class EvaluationCallback(pl.Callback):
    """Runs `evaluator` at every dimension of `dims`: before training (the baseline), at the end of
    each epoch and, if `every_n_steps` is set, every that many optimizer steps.

    Each evaluation is logged as `val/<evaluator>_<metric>_dim<d>` plus `val/score`, the `objective`
    (default: the primary metric averaged over the evaluated dimensions; higher is better), which
    checkpointing monitors and sweeps optimize.
    Results are kept per global step in `history` and saved in checkpoints, so a resumed run
    neither repeats the baseline nor loses earlier results. On global rank zero, the evaluator's
    per-example scores (if it has any) are kept too, and checkpointed: the baseline's in
    `baseline_examples`, and in `examples` those of the latest and of the best-scoring evaluation
    (the first of equal scores, as checkpointing keeps) by step.

    `baseline_cache`: when set, the baseline (an unchanged model) encodes through it, so a run of the
    same model on the same data reads the embeddings back instead of encoding them again.
    """

    baseline_cache: EmbeddingCache | None

    def __init__(
        self,
        evaluator: DimensionEvaluator,
        dims: list[int],
        every_n_steps: int | None = None,
        baseline: bool = True,
        objective: Objective | None = None,
        baseline_cache: EmbeddingCache | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.baseline_cache = baseline_cache
        self.dims = list(dims)
        self.objective = objective or Objective(evaluator.primary_metric)
        self.every_n_steps = every_n_steps
        self.run_baseline = baseline
        self.baseline: DimensionMetrics | None = None
        self.history: dict[int, DimensionMetrics] = {}
        self.baseline_examples: PerExample | None = None
        self.examples: dict[int, PerExample] = {}

    def score(self, metrics: DimensionMetrics) -> float:
        """`val/score` of one evaluation: its `objective`."""
        return self.objective.score(metrics)

    def flatten(self, metrics: DimensionMetrics) -> dict[str, float]:
        """`val/...` keys for one evaluation, with `val/score`."""
        flat = flat_metrics("val", self.evaluator.name, metrics)
        flat["val/score"] = self.score(metrics)
        return flat

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> DimensionMetrics:
        """Evaluate the module's SentenceTransformer now and log the result at the current step.
        With several processes, every process encodes its share of the evaluation texts
        (`sharded_encoding`) and global rank zero sends its metrics to every rank, so all ranks log,
        checkpoint and stop on the same `val/score`."""
        with sharded_encoding(trainer.strategy.root_device):
            metrics = self._run_evaluator(pl_module)
        metrics = trainer.strategy.broadcast(metrics, src=0)
        flat = self.flatten(metrics)
        for logger in trainer.loggers:
            logger.log_metrics(flat, step=trainer.global_step)
        log.info(f"Step {trainer.global_step}: val/score {flat['val/score']:.4f} ({self.objective})")
        return metrics

    def _run_evaluator(self, pl_module: pl.LightningModule) -> DimensionMetrics:
        """The evaluator's metrics of the module's model, with the module's loss (see `scores_with_loss`)."""
        was_training = pl_module.training
        pl_module.eval()
        try:
            return self.evaluator(pl_module.model, self.dims, pl_module.loss)
        finally:
            pl_module.train(was_training)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run_baseline and self.baseline is None:
            log.info("Evaluating the model before training (baseline)")
            with using_cache(self.evaluator, self.baseline_cache):
                self.baseline = self.evaluate(trainer, pl_module)
            self.baseline_examples = self.evaluator.last_per_example if trainer.is_global_zero else None

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
        if trainer.is_global_zero and self.evaluator.last_per_example is not None:
            self.examples[trainer.global_step] = self.evaluator.last_per_example
            best = max(sorted(self.history), key=lambda step: self.score(self.history[step]))
            self.examples = {
                step: values for step, values in self.examples.items() if step in (best, trainer.global_step)
            }

    def latest(self) -> tuple[int, DimensionMetrics]:
        """The step and metrics of the most recent evaluation during training."""
        step = max(self.history)
        return step, self.history[step]

    def state_dict(self) -> dict:
        # Per-example scores as tensors: checkpoints stay loadable with torch.load(weights_only=True).
        return {
            "baseline": self.baseline,
            "history": self.history,
            "baseline_examples": per_example_tensors(self.baseline_examples),
            "examples": {step: per_example_tensors(values) for step, values in self.examples.items()},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.baseline = state_dict["baseline"]
        self.history = dict(state_dict["history"])
        self.baseline_examples = per_example_arrays(state_dict.get("baseline_examples"))
        self.examples = {
            step: per_example_arrays(values) for step, values in state_dict.get("examples", {}).items()
        }
