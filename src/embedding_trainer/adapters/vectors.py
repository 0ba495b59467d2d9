"""The frozen model's embeddings of the training texts, computed once through the embedding cache, and
batches of them: what a query adapter trains on instead of running the encoder."""

from dataclasses import dataclass

import datasets
import torch
from sentence_transformers import SentenceTransformer

from embedding_trainer.adapters.router import FROZEN_ROUTE
from embedding_trainer.embedding_cache import EmbeddingCache
from embedding_trainer.log import get_logger
from embedding_trainer.prompts import DOCUMENT, column_role, prompt_text

log = get_logger(__name__)


@dataclass
class TextVectors:
    """Embeddings of distinct texts: row `row[text]` of `embeddings`."""

    embeddings: torch.Tensor
    row: dict[str, int]

    def of(self, texts: list[str]) -> torch.Tensor:
        return self.embeddings[[self.row[text] for text in texts]]


def training_vectors(
    model: SentenceTransformer,
    rows: datasets.Dataset,
    columns: list[str],
    cache: EmbeddingCache,
    corpora: list[list[str]],
    batch_size: int = 64,
    show_progress_bar: bool = True,
) -> dict[str, TextVectors]:
    """{role: the frozen embeddings of the texts of `rows`' `columns` in that role}: the anchor
    column's texts as queries, the positive and negative columns' as documents, each with its role's
    prompt but all through `model`'s document route (for a model from `with_query_adapter`, the frozen
    model's own modules; the adapter applies in the loss), read from `cache` where they are stored,
    else encoded and stored.

    `corpora`: the document collections the run's evaluations encode (a retrieval evaluator's corpus).
    Each is read or encoded whole, as the same cache entry the baseline evaluation reads, and the
    training documents found there are taken from it, so documents that are also the eval corpus are
    encoded once per model for both; only the training documents outside every corpus are extra."""
    texts: dict[str, list[str]] = {}
    for column in columns:
        texts.setdefault(column_role(column), []).extend(rows[column])
    vectors = {}
    for role, role_texts in texts.items():
        distinct = list(dict.fromkeys(role_texts))
        prompt = prompt_text(model.prompts, role)
        parts = list(corpora) if role == DOCUMENT else []
        covered = set().union(*parts)
        rest = [text for text in distinct if text not in covered]
        if rest:
            parts.append(rest)
        log.info(
            f"Adapter training: {len(distinct)} distinct {role} texts"
            + (
                f", {len(distinct) - len(rest)} of them from the evaluation corpus"
                if role == DOCUMENT
                else ""
            )
        )
        stored = [
            cache.embeddings(model, part, batch_size, show_progress_bar, prompt=prompt, task=FROZEN_ROUTE)
            for part in parts
        ]
        row: dict[str, int] = {}
        offset = 0
        for part in parts:
            for index, text in enumerate(part):
                row.setdefault(text, offset + index)
            offset += len(part)
        vectors[role] = TextVectors(torch.cat(stored), row)
    return vectors


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
