"""A seeded slice of the training rows, held out whole groups at a time: every row of a query (the
rows' first column), or of a passage for generated pairs, goes to one side, so nothing held out is
also trained on."""

import random

import datasets

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
    keys: list | None = None,
    setting: str = "data.validation_size",
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """`rows` split into (kept, held out): the held-out rows are those of `held_out_count(size, ...)`
    distinct values of `keys` (one per row; default the first column), drawn with `seed`; both keep the
    rows' order."""
    unit = "queries" if keys is None else "passages"
    keys = rows[rows.column_names[0]] if keys is None else keys
    distinct = list(dict.fromkeys(keys))
    chosen = set(random.Random(seed).sample(distinct, held_out_count(size, len(distinct), setting, unit)))
    held = [index for index, key in enumerate(keys) if key in chosen]
    held_set = set(held)
    kept = [index for index in range(len(rows)) if index not in held_set]
    return rows.select(kept), rows.select(held)
