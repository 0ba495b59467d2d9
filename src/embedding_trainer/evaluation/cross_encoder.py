"""Evaluators of a cross-encoder (reranker), through sentence-transformers' own cross-encoder evaluators:
reranking each query's candidates (`CrossEncoderReranking`) and classifying labelled pairs
(`CrossEncoderPairClassification`). A cross-encoder has no truncation dimensions: its score is its one
"dimension" (`model.dimension: 1`), so each evaluated dimension gets the same metrics."""

import random

import torch
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.cross_encoder.evaluation import (
    CrossEncoderClassificationEvaluator,
    CrossEncoderCorrelationEvaluator,
    CrossEncoderRerankingEvaluator,
)

from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics


class CrossEncoderReranking(DimensionEvaluator):
    """MAP, MRR@k and NDCG@k of the model's ranking of each query's candidates: its positives, its own
    negatives (triplet and n-tuple rows) and `other_positives` positives of other queries drawn with
    `seed` (`CrossEncoderRerankingEvaluator` on `samples`, each `{query, positive: [...], negative: [...]}`)."""

    name = "reranking"

    def __init__(self, samples: list[dict], at_k: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.samples = samples
        self.primary_metric = f"ndcg@{at_k}"
        self.evaluator = CrossEncoderRerankingEvaluator(
            samples,
            at_k=at_k,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            write_csv=False,
        )

    @classmethod
    def from_eval_data(
        cls, eval_data, other_positives: int = 9, seed: int = 0, **kwargs
    ) -> "CrossEncoderReranking":
        """From eval rows with columns anchor, positive and optionally negative or negative_1..n: one
        sample per distinct anchor (its rows' positives and negatives, in first-seen order)."""
        return cls(reranking_samples(eval_data.rows, other_positives, seed), **kwargs)

    def __call__(
        self, model: CrossEncoder, dims: list[int], loss: torch.nn.Module | None = None
    ) -> DimensionMetrics:
        return _at_every_dim(self.evaluator(model), dims)


def reranking_samples(rows, other_positives: int, seed: int) -> list[dict]:
    """`{query, positive, negative}` per distinct anchor of `rows`: its positives, then as negatives its
    rows' own negatives and `other_positives` other anchors' positives drawn with `seed` (fewer when the
    rows have fewer)."""
    negative_columns = [name for name in rows.column_names if name.startswith("negative")]
    samples: dict[str, dict] = {}
    for row in rows:
        sample = samples.setdefault(row["anchor"], {"query": row["anchor"], "positive": [], "negative": []})
        sample["positive"].append(row["positive"])
        sample["negative"].extend(row[name] for name in negative_columns)
    documents = list(dict.fromkeys(rows["positive"]))
    draw = random.Random(seed)
    for sample in samples.values():
        others = [text for text in documents if text not in sample["positive"]]
        sample["negative"] += draw.sample(others, min(other_positives, len(others)))
        sample["negative"] = list(dict.fromkeys(sample["negative"]))
    return list(samples.values())


class CrossEncoderPairClassification(DimensionEvaluator):
    """Accuracy, F1, precision, recall and average precision of the model's 0/1 label of each
    (sentence_A, sentence_B) pair (`CrossEncoderClassificationEvaluator`: its best threshold)."""

    name = "pair_classification"
    primary_metric = "average_precision"

    def __init__(self, pairs: list[list[str]], labels: list[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.evaluator = CrossEncoderClassificationEvaluator(
            pairs,
            labels,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            write_csv=False,
        )

    @classmethod
    def from_eval_data(cls, eval_data, **kwargs) -> "CrossEncoderPairClassification":
        """From eval rows with columns sentence_A, sentence_B and a 0/1 label."""
        rows = eval_data.rows
        pairs = [list(pair) for pair in zip(rows["sentence_A"], rows["sentence_B"])]
        return cls(pairs, [int(label) for label in rows["label"]], **kwargs)

    def __call__(
        self, model: CrossEncoder, dims: list[int], loss: torch.nn.Module | None = None
    ) -> DimensionMetrics:
        return _at_every_dim(self.evaluator(model), dims)


class CrossEncoderCorrelation(DimensionEvaluator):
    """Pearson and Spearman correlation of the model's score of each (sentence_A, sentence_B) pair with its
    gold score (`CrossEncoderCorrelationEvaluator`)."""

    name = "correlation"
    primary_metric = "spearman"

    def __init__(self, pairs: list[list[str]], scores: list[float], **kwargs) -> None:
        super().__init__(**kwargs)
        self.evaluator = CrossEncoderCorrelationEvaluator(
            pairs,
            scores,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            write_csv=False,
        )

    @classmethod
    def from_eval_data(cls, eval_data, **kwargs) -> "CrossEncoderCorrelation":
        """From eval rows with columns sentence_A, sentence_B and a score."""
        rows = eval_data.rows
        pairs = [list(pair) for pair in zip(rows["sentence_A"], rows["sentence_B"])]
        return cls(pairs, [float(score) for score in rows["score"]], **kwargs)

    def __call__(
        self, model: CrossEncoder, dims: list[int], loss: torch.nn.Module | None = None
    ) -> DimensionMetrics:
        return _at_every_dim(self.evaluator(model), dims)


def _at_every_dim(metrics: dict[str, float], dims: list[int]) -> DimensionMetrics:
    """The evaluator's `metrics` (floats) as the same values at each of `dims`."""
    values = {name: float(value) for name, value in metrics.items()}
    return {dim: dict(values) for dim in dims}
