"""Known relevance of the training rows: which texts the data says are relevant to each other.

Every (anchor, positive) row states that its positive is relevant to its anchor; a query with several
relevant documents (a retrieval folder's qrels, or the same anchor on several rows) has one row per
document. `RelevanceSets` collects those pairs and numbers their texts, so that a batch's texts can be
turned into ids (`__call__`, the collator's `targets` hook) and pairs of ids tested for relevance on
any device (`pair_keys`, see `embedding_trainer.training.relevance_mask`).
"""

from collections.abc import Iterable

import datasets
import torch

UNKNOWN = -1  # the id of a text that is in no relevance pair


class RelevanceSets:
    """The relevance pairs (anchor text, positive text) of the training rows.

    Args:
        pairs: (anchor, positive) texts; repeated pairs count once.
        columns: the input columns of a batch's rows, in the loss's order (anchor, positive,
            negatives...): `__call__` gives one id per column.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]], columns: list[str]) -> None:
        self.columns = list(columns)
        self.ids: dict[str, int] = {}
        related: set[tuple[int, int]] = set()
        for anchor, positive in pairs:
            related.add((self._number(anchor), self._number(positive)))
        self.pairs = len(related)
        size = self.size
        keys = [a * size + b for a, b in related] + [b * size + a for a, b in related]
        # Both orders: relevance is tested symmetrically (a document may also be an anchor).
        self.pair_keys = torch.tensor(sorted(set(keys)), dtype=torch.long)

    @classmethod
    def of_rows(cls, rows: datasets.Dataset, columns: list[str]) -> "RelevanceSets":
        """The pairs of `rows`' first two `columns` (anchor, positive)."""
        return cls(zip(rows[columns[0]], rows[columns[1]]), columns)

    def _number(self, text: str) -> int:
        return self.ids.setdefault(text, len(self.ids))

    @property
    def size(self) -> int:
        """The number of texts with an id (ids are 0..size-1)."""
        return max(len(self.ids), 1)

    def __call__(self, rows: list[dict]) -> torch.Tensor:
        """Each row's text ids, one per input column: int64 [rows, columns], UNKNOWN for a text in no pair."""
        return torch.tensor(
            [[self.ids.get(row[column], UNKNOWN) for column in self.columns] for row in rows],
            dtype=torch.long,
        )
