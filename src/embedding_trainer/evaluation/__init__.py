"""Evaluators that score a model at every truncation dimension from one encoding, the callback
that runs them around training, and the baseline-versus-fine-tuned report."""

from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics
from embedding_trainer.evaluation.classification import (
    KnnClassificationEvaluator,
    PairBinaryEvaluator,
    SoftmaxAccuracyEvaluator,
)
from embedding_trainer.evaluation.cross_encoder import (
    CrossEncoderCorrelation,
    CrossEncoderPairClassification,
    CrossEncoderReranking,
)
from embedding_trainer.evaluation.retrieval import RetrievalEvaluator
from embedding_trainer.evaluation.similarity import SimilarityEvaluator
from embedding_trainer.evaluation.triplet import TripletEvaluator

__all__ = [
    "CrossEncoderCorrelation",
    "CrossEncoderPairClassification",
    "CrossEncoderReranking",
    "DimensionEvaluator",
    "DimensionMetrics",
    "KnnClassificationEvaluator",
    "PairBinaryEvaluator",
    "RetrievalEvaluator",
    "SimilarityEvaluator",
    "SoftmaxAccuracyEvaluator",
    "TripletEvaluator",
]
