"""A seeded slice of the training rows, held out whole groups at a time: every row of a query (the
rows' first column), or of a passage for generated pairs, goes to one side, so nothing held out is
also trained on."""

import random

import datasets
import numpy as np

from embedding_trainer.data.chunked import KeyGroups, row_keys, select_rows
from embedding_trainer.utils.errors import DataError


def held_out_count(
    size: float, groups: int, setting: str = "data.validation_size", unit: str = "queries"
) -> int:
    """How many of `groups` a `setting` (e.g. `data.validation_size`) of `size` holds out: a fraction in
    (0, 1) of them (at least one), or a count; DataError unless at least one group is left to train on."""
    if 0 < size < 1:
        count = max(1, round(size * groups))
    else:
        count = int(size) if float(size).is_integer() else 0
    if count < 1 or count >= groups:
        raise DataError(
            f"{setting}={size} holds out {count} of the {groups} distinct training {unit}; "
            "give a fraction in (0, 1) or a count from 1 to one less than that."
        )
    return count


def hold_out(
    rows: datasets.Dataset,
    size: float,
    seed: int,
    key_column: str | None = None,
    setting: str = "data.validation_size",
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """`rows` split into (kept, held out): the held-out rows are those of `held_out_count(size, ...)`
    distinct values of `key_column` (None: queries, the first column; a column: passages), drawn with `seed`;
    both keep the rows' order. The keys are read a chunk at a time (`embedding_trainer.data.chunked`)."""
    unit = "queries" if key_column is None else "passages"
    groups = KeyGroups(row_keys(rows, [key_column or rows.column_names[0]]))
    chosen = np.zeros(groups.count, dtype=bool)
    chosen[draw(groups.count, held_out_count(size, groups.count, setting, unit), seed)] = True
    held = groups.rows_of(chosen)
    return select_rows(rows, np.flatnonzero(~held)), select_rows(rows, np.flatnonzero(held))


def draw(population: int, count: int, seed: int) -> list[int]:
    """`count` of the positions 0..`population`-1, drawn with `seed`: the positions `random.Random(seed).sample`
    picks from any sequence of that length."""
    return random.Random(seed).sample(range(population), count)
