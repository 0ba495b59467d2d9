"""The cross-encoder (reranker) model family: a sentence-transformers `CrossEncoder` that scores a
(query, passage) pair in one pass, built offline from a transformer with a new one-logit scoring head,
and the checks and batches that let it train through the same phases as an embedding model.

A model option names its family in `family:` (absent: `sentence_transformer`), a loss option the family
it trains in `model_family:` (absent: `sentence_transformer`); `settings.family` reads them and refuses a
mismatch before anything loads. A cross-encoder's one "dimension" is its score (`model.dimension: 1`)."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from sentence_transformers.cross_encoder import CrossEncoder

from embedding_trainer.models.loading import tiny_transformer_folder
from embedding_trainer.utils.errors import DataError

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


@dataclass
class ListwiseBatchCollator:
    """Collate listwise rows (anchor, passages, scores) into `(texts, labels)` for a listwise loss:
    `texts` = [queries, each row's list of passages], `labels` one float tensor of scores per row."""

    def __call__(self, rows: list[dict]) -> tuple[list[list], list[torch.Tensor]]:
        texts = [[row["anchor"] for row in rows], [list(row["passages"]) for row in rows]]
        return texts, [torch.tensor(row["scores"], dtype=torch.float32) for row in rows]


@dataclass
class MarginBatchCollator:
    """Collate listwise rows whose first passage is the positive into `(texts, labels)` for MarginMSE:
    `texts` = [queries, first passages, second passages, ...], `labels` the (rows, passages) scores, of
    which the loss takes the margins (first passage's score minus each other's). Every row of a batch
    must have the same number of passages (at least two); DataError naming the rows otherwise."""

    def __call__(self, rows: list[dict]) -> tuple[list[list[str]], torch.Tensor]:
        counts = [len(row["passages"]) for row in rows]
        if min(counts) < 2 or len(set(counts)) > 1:
            raise DataError(
                f"loss=ce_margin_mse needs listwise rows with the same number of passages (at least 2: the "
                f"positive first, then negatives) in every row; a batch has rows of {sorted(set(counts))} "
                f"passages (row anchors {[row['anchor'][:40] for row in rows[:3]]}...). Give every row as many "
                "passages, or use a listwise loss (loss=ce_listnet, ce_lambda, ...)."
            )
        texts = [[row["anchor"] for row in rows]] + [
            list(column) for column in zip(*(row["passages"] for row in rows))
        ]
        return texts, torch.tensor([row["scores"] for row in rows], dtype=torch.float32)


def text_collator(
    transform: Callable | None, label_type: str | None, columns: list[str], label: str | None
) -> Callable[[list[dict]], tuple]:
    """The collator of a cross-encoder loss: the one the loss names for the dataset type (`transform`, its
    `batch_transform`: for a cross-encoder a collator of rows into `(texts, labels)`), else listwise rows
    (`label_type` "listwise") as lists (`ListwiseBatchCollator`), else the rows' text `columns` and `label`
    column (`TextBatchCollator`)."""
    if transform is not None:
        return transform
    if label_type == "listwise":
        return ListwiseBatchCollator()
    return TextBatchCollator(columns, label)
