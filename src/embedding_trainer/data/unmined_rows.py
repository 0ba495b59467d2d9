"""What becomes of the training rows that hard-negative mining gave no negatives
(`data.hard_negatives.rows_without_negatives`): `sampled` keeps them with negatives drawn at random from
the mining's documents (seeded; never a known positive of the row's anchor), `drop` leaves them out.

Texts are compared by their 64-bit keys (`text_keys`) in numpy arrays, 8 bytes a text, not Python sets
of the texts."""

from collections import defaultdict

import datasets
import numpy as np

from embedding_trainer.data.row_values import column_keys
from embedding_trainer.data.token_cache import text_keys

# The choices, the default first. `in_batch` (a row with only its batch's in-batch negatives) is not one:
# every batch of a loss carries the same columns, so such rows would need batches, a collator and a
# loss call of their own, and filling their negative columns with another row's text is `sampled`.
WITHOUT_NEGATIVES = ("sampled", "drop")


def with_unmined_rows(
    rows: datasets.Dataset,
    mined: datasets.Dataset,
    choice: str,
    corpus: list[str] | None,
    seed: int,
    scores: str = "scores",
) -> tuple[datasets.Dataset, int]:
    """`mined` (anchor, positive, negative_1..n, `scores`) followed by the rows of `rows` it lacks, as
    `choice` says (`sampled`: with drawn negatives, `with_drawn_negatives`, and empty `scores`; `drop`:
    none), and how many distinct rows it lacked."""
    missing = unmined(rows, mined)
    if choice == "drop" or not len(missing):
        return mined, len(missing)
    wanted = sum(name.startswith("negative_") for name in mined.column_names)
    drawn = with_drawn_negatives(missing, rows, corpus, wanted, seed)
    drawn = drawn.add_column(scores, [[] for _ in range(len(drawn))]).cast(mined.features)
    return datasets.concatenate_datasets([mined, drawn]), len(missing)


def pair_keys(rows: datasets.Dataset) -> np.ndarray:
    """One 64-bit key per row's (anchor, positive) pair."""
    keys = column_keys(rows, ["anchor", "positive"])
    with np.errstate(over="ignore"):
        return keys[:, 0] * np.uint64(0x9E3779B97F4A7C15) ^ keys[:, 1]


def unmined(rows: datasets.Dataset, mined: datasets.Dataset) -> datasets.Dataset:
    """The rows of `rows` (anchor, positive) whose pair is in no row of `mined`, each distinct pair once,
    in the order of `rows`."""
    keys = pair_keys(rows)
    missing = ~np.isin(keys, pair_keys(mined))
    _, first = np.unique(keys[missing], return_index=True)
    return rows.select(np.flatnonzero(missing)[np.sort(first)])


def with_drawn_negatives(
    missing: datasets.Dataset,
    rows: datasets.Dataset,
    corpus: list[str] | None,
    num_negatives: int,
    seed: int,
) -> datasets.Dataset:
    """`missing` rows (anchor, positive) with `num_negatives` negatives each (negative_1..n): distinct
    documents of the mining (`corpus`, or None, then the positives of `rows`, each distinct text equally
    likely) that are no positive of the row's anchor in `rows`, drawn by a generator seeded by `seed`
    (the same inputs and seed give the same rows). Rows with too few such documents are left out."""
    corpus = corpus or []
    keys = column_keys(rows, ["anchor", "positive"])
    document_keys = np.concatenate([text_keys(corpus), keys[:, 1]])
    _, distinct = np.unique(document_keys, return_index=True)
    anchors = text_keys(missing["anchor"])
    known = _known_positives(keys, anchors)
    generator = np.random.default_rng(seed)
    columns: dict[str, list[str]] = {"anchor": [], "positive": []}
    columns.update({f"negative_{number}": [] for number in range(1, num_negatives + 1)})
    for row, anchor in zip(missing, anchors.tolist()):
        own = known[anchor]
        if len(distinct) - len(own) < num_negatives:
            continue
        drawn: list[int] = []
        while len(drawn) < num_negatives:
            position = int(distinct[generator.integers(len(distinct))])
            if int(document_keys[position]) not in own and position not in drawn:
                drawn.append(position)
        columns["anchor"].append(row["anchor"])
        columns["positive"].append(row["positive"])
        for number, position in enumerate(drawn, start=1):
            text = corpus[position] if position < len(corpus) else rows[position - len(corpus)]["positive"]
            columns[f"negative_{number}"].append(text)
    return datasets.Dataset.from_dict(columns)


def _known_positives(keys: np.ndarray, anchors: np.ndarray) -> dict:
    """{anchor key: the keys of its positives} for the anchors of `anchors`, from the [rows, 2] (anchor,
    positive) `keys` of the training rows."""
    wanted = np.isin(keys[:, 0], anchors)
    known: dict[int, set[int]] = defaultdict(set)
    for anchor, positive in zip(keys[wanted, 0].tolist(), keys[wanted, 1].tolist()):
        known[anchor].add(positive)
    return known
