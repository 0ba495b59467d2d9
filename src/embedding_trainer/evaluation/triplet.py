"""Triplet accuracy: how often the anchor is closer to its positive than to a negative."""

import torch
from sentence_transformers import SentenceTransformer

from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics, encode_unique, truncate
from embedding_trainer.models.prompts import DOCUMENT, QUERY


class TripletEvaluator(DimensionEvaluator):
    """Fraction of (anchor, positive, negative) with cos(anchor, positive) > cos(anchor, negative),
    over every negative of every row (one for triplets, n for n-tuples). Per example: that fraction
    over the row's own negatives. Anchors are encoded with the model's `query` prompt, positives and
    negatives with its `document` prompt."""

    name = "triplet"
    primary_metric = "accuracy_cosine"
    example_unit = "rows"

    def __init__(
        self, anchors: list[str], positives: list[str], negatives: list[list[str]], **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.columns = [list(anchors), list(positives), *[list(column) for column in negatives]]

    @classmethod
    def from_eval_data(cls, eval_data, **kwargs) -> "TripletEvaluator":
        """From eval rows with columns anchor, positive and negative or negative_1..negative_n."""
        rows = eval_data.rows
        negatives = [rows[name] for name in rows.column_names if name.startswith("negative")]
        return cls(rows["anchor"], rows["positive"], negatives, **kwargs)

    def __call__(
        self, model: SentenceTransformer, dims: list[int], loss: torch.nn.Module | None = None
    ) -> DimensionMetrics:
        roles = [QUERY] + [DOCUMENT] * (len(self.columns) - 1)
        anchors, positives, *negatives = encode_unique(self, model, self.columns, roles)
        metrics, self.last_per_example = {}, {}
        for dim in dims:
            anchor = truncate(anchors, dim)
            positive_sim = (anchor * truncate(positives, dim)).sum(-1)
            wins = [
                (positive_sim > (anchor * truncate(negative, dim)).sum(-1)).double() for negative in negatives
            ]
            metrics[dim] = {"accuracy_cosine": float(sum(win.mean() for win in wins) / len(wins))}
            self.last_per_example[dim] = {"accuracy_cosine": (sum(wins) / len(wins)).numpy()}
        return metrics
