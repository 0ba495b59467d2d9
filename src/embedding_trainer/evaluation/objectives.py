"""Evaluating several objectives at once: every objective's evaluator on the same model, one table of
metrics named by objective, and `score`, the weighted mean of their primary metrics."""

import torch
from sentence_transformers import SentenceTransformer

from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics, PerExample, using_cache

SEPARATOR = "/"


class ObjectivesEvaluator(DimensionEvaluator):
    """Runs each objective's evaluator (`evaluators`, by objective name) at every dimension. Metrics:
    `<objective>/<metric>` for each of theirs, and `score` (the primary metric), at each dimension
    the `score_weights`-weighted mean of the objectives' primary metrics. Per-example scores are
    theirs under the same names (`objective_part` takes one objective's back). `embedding_cache` is
    passed on to them for each call, and the `loss` of a call, a `WeightedObjectiveLoss`, as each one's
    own objective's loss."""

    name = "objectives"
    primary_metric = "score"

    def __init__(self, evaluators: dict[str, DimensionEvaluator], score_weights: dict[str, float]) -> None:
        first = next(iter(evaluators.values()))
        super().__init__(first.batch_size, first.show_progress_bar)
        self.evaluators = dict(evaluators)
        self.score_weights = {name: float(score_weights[name]) for name in self.evaluators}
        self.scores_with_loss = any(evaluator.scores_with_loss for evaluator in self.evaluators.values())

    def parts(self) -> list[DimensionEvaluator]:
        return list(self.evaluators.values())

    def __call__(
        self, model: SentenceTransformer, dims: list[int], loss: torch.nn.Module | None = None
    ) -> DimensionMetrics:
        metrics: DimensionMetrics = {dim: {} for dim in dims}
        per_example: PerExample = {dim: {} for dim in dims}
        primaries = {dim: 0.0 for dim in dims}
        for name, evaluator in self.evaluators.items():
            with using_cache(evaluator, self.embedding_cache):
                theirs = evaluator(model, dims, None if loss is None else loss.losses[name])
            for dim in dims:
                metrics[dim].update(
                    {f"{name}{SEPARATOR}{metric}": value for metric, value in theirs[dim].items()}
                )
                primaries[dim] += self.score_weights[name] * theirs[dim][evaluator.primary_metric]
                for metric, values in (evaluator.last_per_example or {}).get(dim, {}).items():
                    per_example[dim][f"{name}{SEPARATOR}{metric}"] = values
        total = sum(self.score_weights.values())
        self.last_per_example = per_example if any(per_example.values()) else None
        return {dim: {"score": primaries[dim] / total, **metrics[dim]} for dim in dims}


def objective_part(
    metrics: DimensionMetrics | PerExample | None, name: str
) -> DimensionMetrics | PerExample | None:
    """Objective `name`'s own metrics (or per-example scores) of an `ObjectivesEvaluator`'s, under
    their own names (None: None, or nothing of that objective's)."""
    if metrics is None:
        return None
    prefix = f"{name}{SEPARATOR}"
    part = {
        dim: {metric[len(prefix) :]: value for metric, value in values.items() if metric.startswith(prefix)}
        for dim, values in metrics.items()
    }
    return part if any(part.values()) else None
