"""Evaluators of a cross-encoder (reranker), through sentence-transformers' own cross-encoder evaluators:
reranking each query's candidates (`CrossEncoderReranking`; of listwise rows,
`CrossEncoderListwiseReranking`) and classifying labelled pairs
(`CrossEncoderPairClassification`). A cross-encoder has no truncation dimensions: its score is its one
"dimension" (`model.dimension: 1`), so each evaluated dimension gets the same metrics."""

import random
from collections.abc import Callable

import torch
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.cross_encoder.evaluation import (
    CrossEncoderClassificationEvaluator,
    CrossEncoderCorrelationEvaluator,
    CrossEncoderRerankingEvaluator,
)

from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics


class CrossEncoderEvaluation(DimensionEvaluator):
    """A sentence-transformers cross-encoder evaluator (`self.evaluator`, set by the subclass) whose metrics
    are reported at every evaluated dimension."""

    evaluator: Callable[[CrossEncoder], dict[str, float]]

    def __call__(
        self, model: CrossEncoder, dims: list[int], loss: torch.nn.Module | None = None
    ) -> DimensionMetrics:
        values = {name: float(value) for name, value in self.evaluator(model).items()}
        return {dim: dict(values) for dim in dims}


class CrossEncoderReranking(CrossEncoderEvaluation):
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


class CrossEncoderListwiseReranking(CrossEncoderReranking):
    """`CrossEncoderReranking` of listwise rows: each row's query reranks its own passages, of which those
    scored above 0 are its positives (rows without one are skipped by the evaluator)."""

    @classmethod
    def from_eval_data(cls, eval_data, **kwargs) -> "CrossEncoderListwiseReranking":
        """From eval rows with columns anchor, passages and scores (dataset_type=listwise)."""
        return cls(listwise_samples(eval_data.rows), **kwargs)


def listwise_samples(rows) -> list[dict]:
    """`{query, positive, negative}` of each listwise row: its passages scored above 0, and the others."""
    return [
        {
            "query": query,
            "positive": [text for text, score in zip(passages, scores) if score > 0],
            "negative": [text for text, score in zip(passages, scores) if score <= 0],
        }
        for query, passages, scores in zip(rows["anchor"], rows["passages"], rows["scores"])
    ]


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


class CrossEncoderPairs(CrossEncoderEvaluation):
    """The model's score of each (sentence_A, sentence_B) pair against the pair's `label_column` value (as
    `label_type`), by the subclass's sentence-transformers `evaluator_class`."""

    evaluator_class: type
    label_column: str
    label_type: type

    def __init__(self, pairs: list[list[str]], labels: list, **kwargs) -> None:
        super().__init__(**kwargs)
        self.evaluator = self.evaluator_class(
            pairs,
            labels,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            write_csv=False,
        )

    @classmethod
    def from_eval_data(cls, eval_data, **kwargs) -> "CrossEncoderPairs":
        """From eval rows with columns sentence_A, sentence_B and the label column."""
        rows = eval_data.rows
        pairs = [list(pair) for pair in zip(rows["sentence_A"], rows["sentence_B"])]
        return cls(pairs, [cls.label_type(label) for label in rows[cls.label_column]], **kwargs)


class CrossEncoderPairClassification(CrossEncoderPairs):
    """Accuracy, F1, precision, recall and average precision of the model's 0/1 label of each pair
    (`CrossEncoderClassificationEvaluator`: its best threshold)."""

    name = "pair_classification"
    primary_metric = "average_precision"
    evaluator_class = CrossEncoderClassificationEvaluator
    label_column, label_type = "label", int


class CrossEncoderCorrelation(CrossEncoderPairs):
    """Pearson and Spearman correlation of the model's score of each pair with its gold score
    (`CrossEncoderCorrelationEvaluator`)."""

    name = "correlation"
    primary_metric = "spearman"
    evaluator_class = CrossEncoderCorrelationEvaluator
    label_column, label_type = "score", float
