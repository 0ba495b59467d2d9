"""Batches of the frozen model's embeddings of the training texts: what a query adapter trains on instead
of running the encoder."""

from dataclasses import dataclass

import datasets
import torch

from embedding_trainer.models.prompts import column_role
from embedding_trainer.utils.text_vectors import TextVectors


@dataclass
class TrainingDocuments:
    """Every distinct document of the training rows (positive and negative columns) as ranking
    candidates: `embeddings` [n, dim] (frozen), and for each anchor text the candidate positions of
    its positives (`relevant`), so that a query is never pushed away from a document known to answer it."""

    embeddings: torch.Tensor
    position: dict[str, int]
    relevant: dict[str, list[int]]

    @classmethod
    def of(cls, rows: datasets.Dataset, columns: list[str], documents: TextVectors) -> "TrainingDocuments":
        texts = list(dict.fromkeys(text for column in columns[1:] for text in rows[column]))
        position = {text: index for index, text in enumerate(texts)}
        relevant: dict[str, list[int]] = {}
        for anchor, positive in zip(rows[columns[0]], rows[columns[1]]):
            if position[positive] not in relevant.setdefault(anchor, []):
                relevant[anchor].append(position[positive])
        return cls(documents.of(texts), position, relevant)

    def labels(self, rows: list[dict], anchor: str, positive: str) -> torch.Tensor:
        """[batch, 1 + m] long: each row's positive's position, then the positions of its anchor's
        other positives (padded with -1)."""
        others = [
            [i for i in self.relevant[row[anchor]] if i != self.position[row[positive]]] for row in rows
        ]
        width = max(map(len, others), default=0)
        return torch.tensor(
            [
                [self.position[row[positive]], *rest, *[-1] * (width - len(rest))]
                for row, rest in zip(rows, others)
            ]
        )


@dataclass
class VectorBatchCollator:
    """Collate rows into `(features, labels)` as `LossBatchCollator` does, each input column's
    features being its texts' frozen embeddings ([batch, dim] tensors, from `vectors` by the column's
    role) instead of tokens. Labels: zeros (in-batch ranking needs none), or with `documents` (ranking
    against every training document) `TrainingDocuments.labels`."""

    vectors: dict[str, TextVectors]
    inputs: list[str]
    documents: TrainingDocuments | None = None

    def __call__(self, rows: list[dict]) -> tuple[list[torch.Tensor], torch.Tensor]:
        features = [
            self.vectors[column_role(column)].of([row[column] for row in rows]) for column in self.inputs
        ]
        if self.documents is None:
            return features, torch.zeros(len(rows))
        return features, self.documents.labels(rows, self.inputs[0], self.inputs[1])
