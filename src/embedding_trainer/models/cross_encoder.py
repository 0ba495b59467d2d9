"""The cross-encoder (reranker) model family: a sentence-transformers `CrossEncoder` that scores a
(query, passage) pair in one pass, built offline from a transformer with a new one-logit scoring head,
and the checks and batches that let it train through the same phases as an embedding model.

A model option names its family in `family:` (absent: `sentence_transformer`), a loss option the family
it trains in `model_family:` (absent: `sentence_transformer`); `settings.family` reads them and refuses a
mismatch before anything loads. A cross-encoder's one "dimension" is its score (`model.dimension: 1`)."""

from dataclasses import dataclass

import torch
from sentence_transformers.cross_encoder import CrossEncoder

from embedding_trainer.models.loading import tiny_transformer_folder

EMBEDDING = "sentence_transformer"
CROSS_ENCODER = "cross_encoder"


def family_of(model: object) -> str:
    """The family of a loaded `model`: `cross_encoder` for a CrossEncoder, else `sentence_transformer`."""
    return CROSS_ENCODER if isinstance(model, CrossEncoder) else EMBEDDING


def new_cross_encoder(name_or_path: str, max_seq_length: int | None = None, seed: int = 0) -> CrossEncoder:
    """A `CrossEncoder` from the transformer of `name_or_path` (a Hugging Face or sentence-transformers
    folder, or a hub id) with a one-logit scoring head, initialised from `seed` when the folder has none
    (a saved cross-encoder keeps its own). Seeded on a forked random state: the run's stream is untouched."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CrossEncoder(name_or_path, num_labels=1, max_length=max_seq_length)
    return model


def build_tiny_cross_encoder(
    cache_dir: str, max_seq_length: int = 64, seed: int = 0, **shape: int
) -> CrossEncoder:
    """`new_cross_encoder` over the tiny random BERT of `tiny_transformer_folder` (offline, for tests) of
    that `shape` (its `hidden_size`, `num_layers`, `num_heads`)."""
    folder = tiny_transformer_folder(cache_dir, max_seq_length=max_seq_length, seed=seed, **shape)
    return new_cross_encoder(str(folder), max_seq_length, seed)


@dataclass
class TextBatchCollator:
    """Collate rows into `(texts, labels)` for a cross-encoder loss, which tokenizes its own pairs:
    `texts` holds one list of strings per input column (in order), `labels` the label column's values
    (zeros when there is none, as for (query, positive[, negatives]) rows)."""

    inputs: list[str]
    label_column: str | None

    def __call__(self, rows: list[dict]) -> tuple[list[list[str]], torch.Tensor]:
        texts = [[row[column] for row in rows] for column in self.inputs]
        if self.label_column is None:
            return texts, torch.zeros(len(rows))
        return texts, torch.tensor([row[self.label_column] for row in rows])
