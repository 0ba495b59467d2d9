"""Loading, normalizing and batching the datasets a run trains and evaluates on."""

from embedding_trainer.data.datamodule import EmbeddingDataModule, EvalData
from embedding_trainer.data.sources import RetrievalSplit

__all__ = ["EmbeddingDataModule", "EvalData", "RetrievalSplit"]
