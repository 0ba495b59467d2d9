"""Correlation of cosine similarity with gold scores (STS-style), at every dimension."""

from pathlib import Path

import torch
from scipy.stats import pearsonr, spearmanr
from sentence_transformers import SentenceTransformer

from embedding_trainer.data.schema import numeric_labels, to_schema
from embedding_trainer.data.sources import file_format, read_table
from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics, encode_unique, truncate


class SimilarityEvaluator(DimensionEvaluator):
    """Spearman and Pearson correlation between cos(sentence_A, sentence_B) and the gold score."""

    name = "similarity"
    primary_metric = "spearman_cosine"

    def __init__(self, sentences_a: list[str], sentences_b: list[str], scores: list[float], **kwargs) -> None:
        super().__init__(**kwargs)
        self.sentences_a, self.sentences_b, self.scores = list(sentences_a), list(sentences_b), list(scores)

    @classmethod
    def from_eval_data(cls, eval_data, **kwargs) -> "SimilarityEvaluator":
        """From eval rows with columns sentence_A, sentence_B, score."""
        rows = eval_data.rows
        return cls(rows["sentence_A"], rows["sentence_B"], rows["score"], **kwargs)

    @classmethod
    def from_file(
        cls,
        eval_data,
        path: str,
        format: str | None = None,
        read_options: dict | None = None,
        column_map: dict | None = None,
        score_range: list[float] | None = None,
        **kwargs,
    ) -> "SimilarityEvaluator":
        """From a scored-pairs file of its own (for formats without labels, such as single
        sentences), independent of the run's eval data, which is ignored."""
        source = f"evaluation data {path}"
        table = read_table(Path(path), file_format(Path(path), format), dict(read_options or {}))
        rows = to_schema(table, ["sentence_A", "sentence_B", "score"], column_map, "score", source)
        rows = numeric_labels(
            rows,
            "score",
            source,
            list(score_range) if score_range else None,
            "sts_benchmark_evaluator.score_range",
        )
        return cls(rows["sentence_A"], rows["sentence_B"], rows["score"], **kwargs)

    def __call__(
        self, model: SentenceTransformer, dims: list[int], loss: torch.nn.Module | None = None
    ) -> DimensionMetrics:
        emb_a, emb_b = encode_unique(self, model, [self.sentences_a, self.sentences_b])
        metrics = {}
        for dim in dims:
            cosine = (truncate(emb_a, dim) * truncate(emb_b, dim)).sum(-1).double().numpy()
            metrics[dim] = {
                "spearman_cosine": float(spearmanr(self.scores, cosine).statistic),
                "pearson_cosine": float(pearsonr(self.scores, cosine).statistic),
            }
        return metrics
