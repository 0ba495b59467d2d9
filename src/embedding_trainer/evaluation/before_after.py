"""An evaluation run only before training and on the final model: the held-out test evaluation that
scores the reported table when a validation split picks the checkpoint, and the forgetting guard."""

import pytorch_lightning as pl
import torch
from sentence_transformers import SentenceTransformer

from embedding_trainer.evaluation.base import (
    DimensionEvaluator,
    DimensionMetrics,
    PerExample,
    flat_metrics,
    per_example_arrays,
    per_example_tensors,
    using_cache,
)
from embedding_trainer.utils.embedding_cache import EmbeddingCache
from embedding_trainer.utils.log import get_logger
from embedding_trainer.utils.sharded_encoding import sharded_encoding

log = get_logger(__name__)


class BeforeAfterEvaluation(pl.Callback):
    """Runs `evaluator` (named `label` in messages) at `dims`: on the untrained model when training
    starts (`baseline`, unless `run_baseline` is off; every process encodes its share of the texts and
    gets the metrics; logged at step 0 as `<prefix>/<evaluator>_<metric>_dim<d>`; checkpointed, so a
    resumed run keeps it and never takes a trained model for it) and, through `finish`, on the final
    model (`finetuned`; on global rank zero alone, after training). The evaluator's
    per-example scores of both are kept (`baseline_examples`, `finetuned_examples`; None when it has
    none). Both evaluations give the evaluator the training loss (`loss`, the module's, taken when
    training starts; see `scores_with_loss`). `baseline_cache`: as `EvaluationCallback.baseline_cache`."""

    baseline_cache: EmbeddingCache | None

    def __init__(
        self,
        evaluator: DimensionEvaluator,
        dims: list[int],
        label: str,
        prefix: str,
        run_baseline: bool = True,
        baseline_cache: EmbeddingCache | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.baseline_cache = baseline_cache
        self.dims = list(dims)
        self.label = label
        self.prefix = prefix
        self.run_baseline = run_baseline
        self.baseline: DimensionMetrics | None = None
        self.baseline_examples: PerExample | None = None
        self.finetuned: DimensionMetrics | None = None
        self.finetuned_examples: PerExample | None = None
        self.loss: torch.nn.Module | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.loss = pl_module.loss
        if self.run_baseline and self.baseline is None and trainer.global_step == 0:
            log.info(f"Evaluating {self.label} before training")
            with (
                sharded_encoding(trainer.strategy.root_device),
                using_cache(self.evaluator, self.baseline_cache),
            ):
                self.baseline = self._evaluate(pl_module.model)
            self.baseline_examples = self.evaluator.last_per_example
            for logger in trainer.loggers:
                logger.log_metrics(self.flatten(self.baseline), step=0)

    def flatten(self, metrics: DimensionMetrics) -> dict[str, float]:
        """Logger keys of one evaluation: `<prefix>/<evaluator>_<metric>_dim<d>`."""
        return flat_metrics(self.prefix, self.evaluator.name, metrics)

    def finish(self, model: SentenceTransformer, device: torch.device) -> DimensionMetrics:
        """Evaluate the final `model` (on `device` for the evaluation, then back where it was)."""
        where = model.device
        model.to(device)
        try:
            self.finetuned = self._evaluate(model)
            self.finetuned_examples = self.evaluator.last_per_example
        finally:
            model.to(where)
        return self.finetuned

    def _evaluate(self, model: SentenceTransformer) -> DimensionMetrics:
        was_training = model.training
        model.eval()
        try:
            return self.evaluator(model, self.dims, self.loss)
        finally:
            model.train(was_training)

    def state_dict(self) -> dict:
        return {"baseline": self.baseline, "baseline_examples": per_example_tensors(self.baseline_examples)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.baseline = state_dict["baseline"]
        self.baseline_examples = per_example_arrays(state_dict.get("baseline_examples"))
