"""Reading a dataset's columns a chunk of rows at a time, so the checks and splits of the training rows keep
bounded state while the rows stay memory-mapped Arrow (`datasets`' cache files): what grows with the row
count is numpy arrays of fixed-size keys, never Python objects per row.

Texts are compared by a 128-bit digest (BLAKE2b): two different texts share one with a probability near
n^2 / 2^129 (below 1e-24 for 10 million texts), so equal digests are taken as equal texts. A row's key costs
16 bytes, its group 8."""

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

CHUNK_ROWS = 10_000  # rows read at a time


def column_chunks(
    dataset: datasets.Dataset, columns: list[str], chunk_rows: int | None = None
) -> Iterator[tuple[int, dict[str, list]]]:
    """(offset of the chunk's first row, {column: its values as Python objects}) for `chunk_rows` rows
    (None: CHUNK_ROWS) at a time of `dataset`'s `columns`, in row order (`dataset[column]` sliced: a
    datasets.Dataset's lazy Column, or any rows whose columns slice so)."""
    read, chunk_rows = {column: dataset[column] for column in columns}, chunk_rows or CHUNK_ROWS
    for start in range(0, len(dataset), chunk_rows):
        yield start, {column: values[start : start + chunk_rows] for column, values in read.items()}


def scratch_array(size: int, dtype: type = np.uint64) -> np.ndarray:
    """An array of `size` `dtype` values in a temporary file (its pages are the file's, not resident memory;
    the file is gone once the array is)."""
    if not size:
        return np.zeros(0, dtype)
    file = tempfile.TemporaryFile()  # noqa: SIM115 (the map holds it open; gone when both close)
    return np.memmap(file, dtype=dtype, mode="w+", shape=(size,))


def run_starts(sorted_values: np.ndarray, chunk_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For ascending `sorted_values` (an array or a memmap), read `chunk_size` values at a time: per chunk,
    (the positions where a run of equal values starts, the values there). Each chunk is copied before it
    is yielded, so the caller may overwrite `sorted_values` at or before the chunk's start."""
    previous = None
    for start in range(0, len(sorted_values), chunk_size):
        chunk = np.array(sorted_values[start : start + chunk_size])
        new = np.ones(len(chunk), bool)
        new[1:] = chunk[1:] != chunk[:-1]
        if previous is not None:
            new[0] = chunk[0] != previous
        previous, positions = chunk[-1], np.flatnonzero(new)
        yield positions + start, chunk[positions]


def column_texts(dataset: datasets.Dataset, column: str, chunk_rows: int | None = None) -> Iterator:
    """`dataset`'s values in `column`, in row order, read `chunk_rows` rows at a time (`column_chunks`)."""
    for _start, chunk in column_chunks(dataset, [column], chunk_rows):
        yield from chunk[column]


def select_rows(dataset: datasets.Dataset, indices: np.ndarray) -> datasets.Dataset:
    """`dataset`'s rows at `indices`; with cache files, the indices mapping is written beside them (a
    memory-mapped file named by the rows and indices; `Dataset.select` keeps it in memory)."""
    if not dataset.cache_files:
        return dataset.select(indices)
    indices = np.asarray(indices, dtype=np.uint64)
    name = hashlib.blake2b(dataset._fingerprint.encode() + indices.tobytes(), digest_size=16).hexdigest()
    folder = Path(dataset.cache_files[0]["filename"]).parent
    return dataset.select(indices, indices_cache_file_name=str(folder / f"cache-rows-{name}.arrow"))


def text_digest(text) -> bytes:
    """The 16-byte key of `text` (its str() in UTF-8; surrogates kept)."""
    return hashlib.blake2b(str(text).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def row_keys(
    dataset: datasets.Dataset,
    columns: list[str],
    digest: Callable[..., bytes] = text_digest,
    chunk_rows: int | None = None,
) -> np.ndarray:
    """Each row's `digest(*its values of columns)` (default: the `text_digest` of one column's value), as
    `as_keys` gives them, read `chunk_rows` rows at a time."""
    keys = np.empty((2, len(dataset)), dtype=np.uint64)
    for start, chunk in column_chunks(dataset, columns, chunk_rows):
        digests = [digest(*values) for values in zip(*(chunk[column] for column in columns))]
        keys[:, start : start + len(digests)] = as_keys(digests)
    return keys


def as_keys(digests: list[bytes]) -> np.ndarray:
    """16-byte digests as two uint64 rows (shape (2, n): their first and last 8 bytes)."""
    return np.frombuffer(b"".join(digests), dtype=np.uint64).reshape(-1, 2).T


class KeyGroups:
    """Rows grouped by equal keys (`keys`: `row_keys`): `of_row` holds each row's group, numbered in the
    order of the group's first row; `count` the number of groups. Rows are grouped by the keys' first 8
    bytes, checked against the last 8 (all 16 are compared when two keys share their first 8)."""

    def __init__(self, keys: np.ndarray) -> None:
        of_row = pd.factorize(keys[0])[0]
        first = _first_rows(of_row)
        if not np.array_equal(keys[1][first][of_row], keys[1]):
            of_row = pd.MultiIndex.from_arrays(list(keys)).factorize()[0]
            first = _first_rows(of_row)
        self.of_row: np.ndarray = of_row
        self._keys = keys[:, first]  # each group's key

    @property
    def count(self) -> int:
        return self._keys.shape[1]

    @cached_property
    def _lookup(self) -> pd.Index:
        """The groups' keys, to look keys up in: their first 8 bytes where those tell them apart, else all 16."""
        firsts = pd.Index(self._keys[0])
        return firsts if firsts.is_unique else pd.MultiIndex.from_arrays(list(self._keys))

    def groups_of(self, keys: np.ndarray) -> np.ndarray:
        """The group of each of `keys` (`as_keys`, made like the grouped keys; -1: no group)."""
        if isinstance(self._lookup, pd.MultiIndex):
            return self._lookup.get_indexer(pd.MultiIndex.from_arrays(list(keys)))
        groups = self._lookup.get_indexer(keys[0])
        found = groups >= 0
        found[found] = self._keys[1][groups[found]] == keys[1][found]
        return np.where(found, groups, -1)

    def rows_of(self, groups: np.ndarray) -> np.ndarray:
        """A mask over the rows: True for the rows of `groups` (a mask over the groups)."""
        return groups[self.of_row]


def _first_rows(of_row: np.ndarray) -> np.ndarray:
    """The first row of each group, in group order (`of_row`: groups numbered in the order of their first row)."""
    if len(of_row) == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.empty(len(of_row), dtype=bool)
    new[0] = True
    new[1:] = of_row[1:] > np.maximum.accumulate(of_row)[:-1]
    return np.flatnonzero(new)
