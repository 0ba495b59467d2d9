"""`val/score`: the one number that checkpointing, pruning and sweeps compare (`evaluation.selection_score`)."""

from dataclasses import dataclass

from embedding_trainer.evaluation.base import DimensionMetrics
from embedding_trainer.utils.errors import ConfigError


@dataclass(frozen=True)
class Objective:
    """`metric` averaged over `dims` of one evaluation (None: every dimension the evaluation reports).
    Higher is better."""

    metric: str
    dims: tuple[int, ...] | None = None

    def score(self, metrics: DimensionMetrics) -> float:
        """The objective of `metrics` ({dimension: {metric: value}}).

        Raises:
            ConfigError: the evaluation lacks one of `dims`, or does not report `metric`.
        """
        dims = self.dims or tuple(metrics)
        missing = [dim for dim in dims if dim not in metrics]
        if missing:
            raise ConfigError(
                f"evaluation.selection_score.dims={list(dims)}, but the evaluation reports dimensions {list(metrics)} "
                "only; list dimensions it reports (see evaluation.dims), or null for all of them."
            )
        names = sorted(next(iter(metrics.values())))
        if self.metric not in names:
            raise ConfigError(
                f"evaluation.selection_score.metric={self.metric!r} is not a metric of this evaluator; it reports "
                f"{', '.join(names)} (or null: its primary metric)."
            )
        return sum(metrics[dim][self.metric] for dim in dims) / len(dims)

    def __str__(self) -> str:
        where = "every evaluated dimension" if self.dims is None else f"dimensions {list(self.dims)}"
        return f"{self.metric} averaged over {where}"
