"""Embeddings of the training rows' texts under an unchanged model (a frozen encoder, a teacher), computed
once through the embedding cache: each text in its column's role (query or document), with that role's prompt."""

from dataclasses import dataclass

import datasets
import torch
from sentence_transformers import SentenceTransformer

from embedding_trainer.models.prompts import DOCUMENT, column_role, prompt_text
from embedding_trainer.utils.embedding_cache import EmbeddingCache
from embedding_trainer.utils.log import get_logger

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
    route: str | None = None,
    purpose: str = "Training texts",
) -> dict[str, TextVectors]:
    """{role: the embeddings of the texts of `rows`' `columns` in that role}: the anchor column's texts
    as queries, the positive and negative columns' as documents, each with its role's prompt and through
    its role's route of a model that routes by task (as `encode_query` / `encode_document`), or all
    through `route` when given (the document route of a model from `with_query_adapter`: the frozen
    model's own modules), read from `cache` where they are stored, else encoded and stored. `purpose`
    starts the log line that counts them.

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
            f"{purpose}: {len(distinct)} distinct {role} texts"
            + (
                f", {len(distinct) - len(rest)} of them from the evaluation corpus"
                if role == DOCUMENT
                else ""
            )
        )
        stored = [
            cache.embeddings(model, part, batch_size, show_progress_bar, prompt=prompt, task=route or role)
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
