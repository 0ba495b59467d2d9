"""n-tuples from (anchor, positive) pairs: negatives sampled, seeded, from the other rows' positives
(`data.negatives_per_anchor`)."""

import random

import datasets

from embedding_trainer.utils.errors import DataError


def with_sampled_negatives(table: datasets.Dataset, count: int, variadic: str, seed: int) -> datasets.Dataset:
    """(anchor, positive) rows plus `count` columns `<variadic>_1..` drawn, seeded, from the other rows'
    distinct positives (never the row's own, never twice in a row); a table that already has
    `<variadic>_1` is returned unchanged. DataError when there are no more than `count` distinct positives."""
    if f"{variadic}_1" in table.column_names:
        return table
    positives = list(dict.fromkeys(table["positive"]))
    if len(positives) <= count:
        raise DataError(
            f"data.negatives_per_anchor={count} needs more than that many distinct positives; "
            f"the data has {len(positives)}."
        )
    rng = random.Random(seed)
    negatives = []
    for positive in table["positive"]:
        drawn: list[str] = []
        while len(drawn) < count:
            candidate = rng.choice(positives)
            if candidate != positive and candidate not in drawn:
                drawn.append(candidate)
        negatives.append(drawn)
    for index in range(count):
        table = table.add_column(f"{variadic}_{index + 1}", [row[index] for row in negatives])
    return table
