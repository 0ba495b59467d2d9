"""Known relevance of the training rows: which texts the data says are relevant to each other.

Every (anchor, positive) row states that its positive is relevant to its anchor; a query with several
relevant documents (a retrieval folder's qrels, or the same anchor on several rows) has one row per
document. `RelevanceSets` collects those pairs and numbers their texts, so that a batch's texts can be
turned into ids (`__call__`, the collator's `targets` hook) and pairs of ids tested for relevance on
any device (`pair_keys` with `contains`, see `embedding_trainer.training.relevance_mask`).

Nothing is kept per text or per row as a Python object: a text is its 64-bit key (`text_keys`), its id
its position among the sorted distinct keys, and a pair of ids the int64 `anchor * size + positive`; both
sorted arrays live in temporary files (`scratch_array`), read from the rows a chunk at a time, so millions
of rows add file pages, not resident memory. Two different texts share a key with odds of about
n^2 / 2^65 (1e-5 at 20 million texts); they would then share an id.
"""

from collections.abc import Iterable

import datasets
import numpy as np
import torch

from embedding_trainer.data.chunked import run_starts, scratch_array
from embedding_trainer.data.row_values import column_keys
from embedding_trainer.data.token_cache import text_keys

UNKNOWN = -1  # the id of a text that is in no relevance pair
CHUNK = 1 << 20  # values sorted, compacted or numbered at a time


class RelevanceSets:
    """The relevance pairs (anchor text, positive text) of the training rows.

    Args:
        anchor_keys, positive_keys: each row's anchor and positive text keys (`text_keys`); repeated pairs
            count once.
        columns: the input columns of a batch's rows, in the loss's order (anchor, positive,
            negatives...): `__call__` gives one id per column.
    """

    def __init__(self, anchor_keys: np.ndarray, positive_keys: np.ndarray, columns: list[str]) -> None:
        self.columns = list(columns)
        rows = len(anchor_keys)
        texts = scratch_array(2 * rows)
        texts[:rows], texts[rows:] = anchor_keys, positive_keys
        self.keys = sorted_distinct(texts)
        size = self.size
        pairs = scratch_array(2 * rows, np.int64)
        for start in range(0, rows, CHUNK):
            anchor = np.searchsorted(self.keys, anchor_keys[start : start + CHUNK]).astype(np.int64)
            positive = np.searchsorted(self.keys, positive_keys[start : start + CHUNK]).astype(np.int64)
            end = start + len(anchor)
            # Both orders: relevance is tested symmetrically (a document may also be an anchor).
            pairs[start:end], pairs[rows + start : rows + end] = (
                anchor * size + positive,
                positive * size + anchor,
            )
        self.pairs = len(sorted_distinct(pairs[:rows]))
        self.pair_keys = torch.from_numpy(sorted_distinct(pairs))

    @classmethod
    def of_pairs(cls, pairs: Iterable[tuple[str, str]], columns: list[str]) -> "RelevanceSets":
        """The relevance of (anchor, positive) text `pairs`."""
        pairs = list(pairs)
        return cls(text_keys(a for a, _ in pairs), text_keys(p for _, p in pairs), columns)

    @classmethod
    def of_rows(cls, rows: datasets.Dataset, columns: list[str]) -> "RelevanceSets":
        """The pairs of `rows`' first two `columns` (anchor, positive), read a chunk of rows at a time."""
        keys = column_keys(rows, columns[:2])
        return cls(keys[:, 0], keys[:, 1], columns)

    @property
    def size(self) -> int:
        """The number of texts with an id (ids are 0..size-1)."""
        return max(len(self.keys), 1)

    def __call__(self, rows: list[dict]) -> torch.Tensor:
        """Each row's text ids, one per input column: int64 [rows, columns], UNKNOWN for a text in no pair."""
        keys = np.stack([text_keys(row[column] for row in rows) for column in self.columns], axis=1)
        if not len(self.keys):
            return torch.full(keys.shape, UNKNOWN, dtype=torch.long)
        found = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return torch.from_numpy(np.where(self.keys[found] == keys, found, UNKNOWN).astype(np.int64))


def sorted_distinct(values: np.ndarray) -> np.ndarray:
    """`values` sorted in place, its distinct values moved to its front, which is returned (a view)."""
    values.sort()
    kept = 0
    for _positions, distinct in run_starts(values, CHUNK):
        values[kept : kept + len(distinct)] = distinct
        kept += len(distinct)
    return values[:kept]


def contains(sorted_keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Bool, shaped as `values`: which of `values` are in `sorted_keys` (ascending, distinct); a binary
    search per value, so a step's cost does not grow with the number of training pairs."""
    if not len(sorted_keys):
        return torch.zeros_like(values, dtype=torch.bool)
    found = torch.searchsorted(sorted_keys, values).clamp(max=len(sorted_keys) - 1)
    return sorted_keys[found] == values
