"""Reading a dataset's columns a chunk of rows at a time, so the checks and splits of the training rows keep
bounded state while the rows stay memory-mapped Arrow (`datasets`' cache files): what grows with the row
count is numpy arrays of fixed-size keys, never Python objects per row.

Texts are compared by a 128-bit digest (BLAKE2b): two different texts share one with a probability near
n^2 / 2^129 (below 1e-24 for 10 million texts), so equal digests are taken as equal texts."""

import hashlib
from collections.abc import Callable, Iterator

import datasets
import numpy as np

CHUNK_ROWS = 10_000  # rows read at a time
DIGEST = np.dtype("S16")  # a text's key: 16 bytes of BLAKE2b


def column_chunks(
    dataset: datasets.Dataset, columns: list[str], chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[int, dict[str, list]]]:
    """(offset of the chunk's first row, {column: its values as Python objects}) for `chunk_rows` rows at a
    time of `dataset`'s `columns`, in row order."""
    view = dataset.select_columns(columns)
    for start in range(0, len(view), chunk_rows):
        yield start, view[start : start + chunk_rows]


def text_digest(text) -> bytes:
    """The 16-byte key of `text` (its str() in UTF-8; surrogates kept)."""
    return hashlib.blake2b(str(text).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def column_digests(
    dataset: datasets.Dataset,
    column: str,
    key: Callable[[object], str] = str,
    chunk_rows: int = CHUNK_ROWS,
) -> np.ndarray:
    """One digest per row of `dataset`'s `column` (of `key(value)`), in row order."""
    digests = np.empty(len(dataset), dtype=DIGEST)
    for start, chunk in column_chunks(dataset, [column], chunk_rows):
        values = chunk[column]
        digests[start : start + len(values)] = [text_digest(key(value)) for value in values]
    return digests


class KeyGroups:
    """Rows grouped by equal keys (`keys`: one per row): `distinct` holds each key once in the order of
    its first row, `of_row` each row's group (an index into `distinct`)."""

    def __init__(self, keys: np.ndarray) -> None:
        unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # groups by first row
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        self.distinct: np.ndarray = unique[order]
        self.of_row: np.ndarray = rank[inverse.reshape(-1)]

    @property
    def count(self) -> int:
        return len(self.distinct)

    def rows_of(self, groups: np.ndarray) -> np.ndarray:
        """A mask over the rows: True for the rows of `groups` (a mask over the groups)."""
        return groups[self.of_row]
