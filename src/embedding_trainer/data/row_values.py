"""The values that keep training rows apart in a batch without repeated texts (`row_values`), as
64-bit text keys in numpy arrays, so that millions of rows take 8 bytes per text, not Python sets."""

import re
from collections.abc import Sequence

import datasets
import numpy as np

from embedding_trainer.data.chunked import column_chunks, run_starts, scratch_array
from embedding_trainer.data.token_cache import text_keys

# The columns whose texts rows may share within a batch: a triplet's or n-tuple's negatives.
NEGATIVE_COLUMN = re.compile(r"negative(_\d+)?")


def column_keys(rows: datasets.Dataset, columns: Sequence[str], chunk_size: int = 65536) -> np.ndarray:
    """The text keys of `columns` ([rows, columns] uint64), in a file-backed array (not resident)."""
    if not len(rows) or not columns:
        return np.zeros((len(rows), len(columns)), np.uint64)
    keys = scratch_array(len(rows) * len(columns)).reshape(len(rows), len(columns))
    for index, column in enumerate(columns):
        for start, chunk in column_chunks(rows, [column], chunk_size):
            keys[start : start + len(chunk[column]), index] = text_keys(chunk[column])
    return keys


def _longest_run(values: np.ndarray, chunk_size: int) -> tuple[int, int]:
    """(the value of the longest run of equal values in sorted `values`, its length), read in chunks."""
    best, best_length = 0, 0
    open_start, open_value = np.zeros(0, np.int64), values[:0]  # the last run seen, its end not yet
    for positions, heads in run_starts(values, chunk_size):
        starts, firsts = np.concatenate([open_start, positions]), np.concatenate([open_value, heads])
        lengths = np.diff(starts)
        if len(lengths) and lengths.max() > best_length:
            best_length, best = int(lengths.max()), int(firsts[int(np.argmax(lengths))])
        open_start, open_value = starts[-1:], firsts[-1:]
    if len(open_start) and len(values) - int(open_start[0]) > best_length:
        best_length, best = len(values) - int(open_start[0]), int(open_value[0])
    return best, best_length


def _mix(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A 64-bit value per (text key, row) (splitmix64 of both): a shared negative's value."""
    with np.errstate(over="ignore"):
        z = keys ^ (rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class RowValues(Sequence):
    """`values[row]`: the frozenset of int values `pack_batches` keeps apart for that row (its texts'
    keys, and one value per shared negative, see `row_values`); `describe(value)` names a value by
    its text. `texts` is [rows, columns] keys; `extras` (CSR: `indptr`, `data`) the added values."""

    def __init__(self, rows, columns, texts, indptr, data, shared: tuple[np.ndarray, np.ndarray]) -> None:
        self.rows, self.columns, self.texts = rows, columns, texts
        self.indptr, self.data, self.shared = indptr, data, shared

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, row: int) -> frozenset:
        extras = self.data[self.indptr[row] : self.indptr[row + 1]] if len(self.data) else ()
        return frozenset([*self.texts[row].tolist(), *(int(value) for value in extras)])

    def most_held(self, chunk_size: int = 1 << 20) -> tuple[int, int]:
        """(a value held by the most rows, how many rows hold it), over all rows ((0, 0) for none).
        Counted by sorting every row's distinct values in place in a temporary file, in chunks."""
        rows, columns = self.texts.shape
        held = scratch_array(rows * columns + len(self.data))
        size = 0
        for start in range(0, rows, chunk_size):
            block = np.asarray(self.texts[start : start + chunk_size])
            for index in range(columns):  # a text a row holds twice counts once
                repeated = (block[:, :index] == block[:, index : index + 1]).any(axis=1)
                held[size : size + int((~repeated).sum())] = block[~repeated, index]
                size += int((~repeated).sum())
        held[size : size + len(self.data)] = self.data
        held = held[: size + len(self.data)]
        held.sort()
        return _longest_run(held, chunk_size)

    def describe(self, value: int) -> str:
        """The text of `value` (a text key or a shared negative's value)."""
        values, keys = self.shared
        match = np.flatnonzero(values == np.uint64(value))
        key = keys[match[0]] if len(match) else np.uint64(value)
        row, column = np.argwhere(np.asarray(self.texts) == key)[0]
        return self.rows[self.columns[int(column)]][int(row)]


def _shared_negatives(
    rows: datasets.Dataset, texts: np.ndarray, negatives: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """(row, value) pairs, unique, sorted by row, of the shared negatives, and (values, text keys)."""
    flat = np.asarray(texts).ravel()
    holder_rows = np.repeat(np.arange(len(rows)), texts.shape[1])
    order = np.argsort(flat, kind="stable")
    flat, holder_rows = flat[order], holder_rows[order]
    negative_keys = column_keys(rows, negatives)
    pairs = []
    for index in range(len(negatives)):
        keys = np.asarray(negative_keys[:, index])
        found = np.searchsorted(flat, keys)
        held = (found < len(flat)) & (flat[np.minimum(found, len(flat) - 1)] == keys)
        pairs.append(np.stack([keys[held], np.flatnonzero(held).astype(np.uint64)], axis=1))
    pairs = np.unique(np.concatenate(pairs), axis=0) if pairs else np.zeros((0, 2), np.uint64)
    keys, negative_rows = pairs[:, 0], pairs[:, 1].astype(np.int64)
    values = _mix(keys, negative_rows)
    low, high = np.searchsorted(flat, keys, "left"), np.searchsorted(flat, keys, "right")
    counts = high - low
    starts = np.repeat(low - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    owners = np.concatenate([negative_rows, holder_rows[starts]])
    held_values = np.concatenate([values, np.repeat(values, counts)])
    both = np.unique(np.stack([owners.astype(np.uint64), held_values], axis=1), axis=0)
    return both[:, 0].astype(np.int64), both[:, 1], (values, keys)


def row_values(dataset: datasets.Dataset, columns: Sequence[str]) -> RowValues:
    """Each row's values in `columns`, as the sets `pack_batches` keeps apart: two rows whose sets
    meet never share a batch.

    A text two rows hold keeps them apart whichever columns hold it, unless both hold it as a
    negative (a `negative` or `negative_<i>` column). For in-batch losses, a repeated anchor or
    positive, or a text that is one row's positive and another's negative, puts a copy of an
    anchor's own positive among its negatives (a false negative); a negative that two rows share
    is only a candidate twice, never anyone's positive (no row of the batch holds it as one).
    Mined hard negatives share a few close texts between many rows: keeping those rows apart as
    well would leave most rows of a small dataset out of every epoch. So an anchor's or positive's
    text is a value itself (its key, `text_keys`), and a negative's text that is some row's anchor
    or positive gives a value (the text's key mixed with the negative's row) held by the
    negative's row and those rows. The texts are read in chunks, never whole columns.
    """
    negatives = [column for column in columns if NEGATIVE_COLUMN.fullmatch(column)]
    others = [column for column in columns if column not in negatives]
    texts = column_keys(dataset, others)
    empty = np.zeros(0, np.uint64)
    if not negatives or not others:
        return RowValues(dataset, others, texts, np.zeros(len(dataset) + 1, np.int64), empty, (empty, empty))
    owners, values, shared = _shared_negatives(dataset, texts, negatives)
    indptr = np.searchsorted(owners, np.arange(len(dataset) + 1))
    return RowValues(dataset, others, texts, indptr, values, shared)
