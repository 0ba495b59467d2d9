"""Did anything else get worse? The forgetting guard: a general evaluation (`evaluation.forgetting_guard`,
default the STS benchmark test split) of the model before and after training at every evaluated
dimension, kept apart from `val/score`."""

import torch
from hydra.utils import instantiate
from sentence_transformers import SentenceTransformer

from embedding_trainer.data.datamodule import EvalData
from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics, metrics_json
from embedding_trainer.evaluation.before_after import BeforeAfterEvaluation
from embedding_trainer.evaluation.similarity import SimilarityEvaluator
from embedding_trainer.settings.evaluation import EvaluationSettings
from embedding_trainer.utils.embedding_cache import EmbeddingCache
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


class GeneralEvaluation(BeforeAfterEvaluation):
    """The forgetting guard: a before/after evaluation that warns when its primary metric falls by
    more than `max_drop` at any dimension (a negative `max_drop` also warns on rises smaller than its
    magnitude)."""

    def __init__(
        self,
        evaluator: DimensionEvaluator,
        dims: list[int],
        max_drop: float,
        label: str,
        baseline_cache: EmbeddingCache | None = None,
    ) -> None:
        super().__init__(evaluator, dims, label, "general", baseline_cache=baseline_cache)
        self.max_drop = max_drop
        self.warning: str | None = None

    def finish(self, model: SentenceTransformer, device: torch.device) -> DimensionMetrics:
        """Evaluate the final `model` (see `BeforeAfterEvaluation.finish`), log the comparison, and set
        `warning` when the metric dropped by more than `max_drop`."""
        super().finish(model, device)
        metric = self.evaluator.primary_metric
        changes = {}
        if self.baseline is not None:
            changes = {dim: self.finetuned[dim][metric] - self.baseline[dim][metric] for dim in self.dims}
        shown = ", ".join(f"dim {dim}: {change:+.4f}" for dim, change in changes.items())
        log.info(
            f"General evaluation ({self.label}) {metric} change after training: {shown or 'no baseline'}"
        )
        dropped = {dim: change for dim, change in changes.items() if -change > self.max_drop}
        if dropped:
            shown = ", ".join(
                f"{dim} ({self.baseline[dim][metric]:.4f} -> {self.finetuned[dim][metric]:.4f})"
                for dim in dropped
            )
            self.warning = (
                f"The general evaluation ({self.label}) {metric} dropped by more than "
                f"evaluation.forgetting_max_drop={self.max_drop} at dimension(s) {shown}: the fine-tuning may have "
                "cost general quality."
            )
            log.warning(self.warning)
        return self.finetuned

    def to_json(self) -> dict:
        """The report's form: what was evaluated, both results by dimension, and the warning (or None)."""
        return {
            "data": self.label,
            "evaluator": self.evaluator.name,
            "primary_metric": self.evaluator.primary_metric,
            "max_drop": self.max_drop,
            "baseline": metrics_json(self.baseline),
            "finetuned": metrics_json(self.finetuned),
            "warning": self.warning,
        }


def general_evaluation(
    settings: EvaluationSettings,
    run_evaluator: DimensionEvaluator,
    eval_data: EvalData,
    baseline_cache: EmbeddingCache | None = None,
) -> GeneralEvaluation | None:
    """The forgetting guard of the evaluation `settings` (its baseline encoding through `baseline_cache`
    when given), or None when it is off (`forgetting_guard` None) or the run's own evaluator already is
    that evaluation (see `already_evaluated`)."""
    if settings.forgetting_guard is None:
        return None
    evaluator = instantiate(settings.forgetting_guard)(
        eval_data, batch_size=settings.batch_size, show_progress_bar=settings.show_progress_bar
    )
    label = settings.forgetting_label
    if already_evaluated(run_evaluator, evaluator):
        log.info(f"The run's own evaluation is already on {label}: no separate general evaluation.")
        return None
    return GeneralEvaluation(
        evaluator, list(settings.dims), settings.forgetting_max_drop, label, baseline_cache
    )


def already_evaluated(run_evaluator: DimensionEvaluator, general: DimensionEvaluator) -> bool:
    """Whether `general` is a similarity evaluation and every scored pair of a similarity evaluation of
    the run (`run_evaluator`, or one of its objectives') is one of its pairs (the same set, or a sample of it)."""
    if not isinstance(general, SimilarityEvaluator):
        return False
    general_pairs = set(zip(general.sentences_a, general.sentences_b, general.scores))
    return any(
        isinstance(part, SimilarityEvaluator)
        and set(zip(part.sentences_a, part.sentences_b, part.scores)) <= general_pairs
        for part in run_evaluator.parts()
    )
