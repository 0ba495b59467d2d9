"""Triplet accuracy: how often the anchor is closer to its positive than to its negative."""

from sentence_transformers import SentenceTransformer

from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics, encode_unique, truncate


class TripletEvaluator(DimensionEvaluator):
    """Fraction of (anchor, positive, negative) with cos(anchor, positive) > cos(anchor, negative)."""

    name = "triplet"
    primary_metric = "accuracy_cosine"

    def __init__(self, anchors: list[str], positives: list[str], negatives: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.columns = [list(anchors), list(positives), list(negatives)]

    @classmethod
    def from_eval_data(cls, eval_data, **kwargs) -> "TripletEvaluator":
        """From eval rows with columns anchor, positive, negative."""
        rows = eval_data.rows
        return cls(rows["anchor"], rows["positive"], rows["negative"], **kwargs)

    def __call__(self, model: SentenceTransformer, dims: list[int]) -> DimensionMetrics:
        anchors, positives, negatives = encode_unique(self, model, self.columns)
        metrics = {}
        for dim in dims:
            anchor = truncate(anchors, dim)
            positive_sim = (anchor * truncate(positives, dim)).sum(-1)
            negative_sim = (anchor * truncate(negatives, dim)).sum(-1)
            metrics[dim] = {"accuracy_cosine": float((positive_sim > negative_sim).double().mean())}
        return metrics
