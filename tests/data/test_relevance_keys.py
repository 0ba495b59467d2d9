"""`RelevanceSets` numbers texts by their keys in sorted arrays on disk: the same relevance as the pairs of
texts themselves (a brute-force set of string pairs), from rows read in chunks as from pairs in memory."""

import itertools
import random

import datasets
import numpy as np
import pytest
import torch

from embedding_trainer.data import relevance
from embedding_trainer.data.relevance import UNKNOWN, RelevanceSets, contains, sorted_distinct


def pairs_with_repeats(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(anchor, positive) pairs over few texts: repeated anchors, positives, whole pairs, a text on both sides."""
    draw = random.Random(seed)
    return [(f"text {draw.randrange(30)}", f"text {draw.randrange(15, 45)}") for _ in range(count)]


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_ids_and_pairs_are_those_of_the_texts(monkeypatch, chunk):
    monkeypatch.setattr(relevance, "CHUNK", chunk)  # chunk edges inside the data, and none
    pairs = pairs_with_repeats(200)
    sets = RelevanceSets.of_pairs(pairs, ["anchor", "positive"])
    texts = sorted({text for pair in pairs for text in pair})
    assert sets.size == len(texts) and sets.pairs == len(set(pairs))
    rows = [{"anchor": a, "positive": p} for a, p in itertools.product(texts + ["unseen"], repeat=2)]
    ids = sets(rows)
    assert sorted(set(ids[:, 0].tolist()) - {UNKNOWN}) == list(range(len(texts)))
    assert (ids[:, 0] == UNKNOWN).sum().item() == len(texts) + 1  # each "unseen" anchor
    related = contains(sets.pair_keys, ids[:, 0] * sets.size + ids[:, 1]) & (ids >= 0).all(dim=1)
    expected = [
        (row["anchor"], row["positive"]) in set(pairs) or (row["positive"], row["anchor"]) in set(pairs)
        for row in rows
    ]
    assert related.tolist() == expected


def test_rows_read_in_chunks_give_the_relevance_of_their_pairs():
    pairs = pairs_with_repeats(300, seed=1)
    rows = datasets.Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})
    from_rows = RelevanceSets.of_rows(rows, ["anchor", "positive", "negative"])
    from_pairs = RelevanceSets.of_pairs(pairs, ["anchor", "positive", "negative"])
    assert torch.equal(from_rows.pair_keys, from_pairs.pair_keys) and from_rows.columns == from_pairs.columns
    batch = [{"anchor": a, "positive": p, "negative": "text 44"} for a, p in pairs[:20]]
    assert torch.equal(from_rows(batch), from_pairs(batch))


def test_no_pairs_know_no_text():
    sets = RelevanceSets.of_pairs([], ["anchor", "positive"])
    assert sets([{"anchor": "a", "positive": "b"}]).tolist() == [[UNKNOWN, UNKNOWN]]
    assert not contains(sets.pair_keys, torch.tensor([0, 1])).any()


def test_sorted_distinct_across_chunks(monkeypatch):
    monkeypatch.setattr(relevance, "CHUNK", 5)
    values = np.random.default_rng(0).integers(0, 20, 103).astype(np.int64)
    assert sorted_distinct(values.copy()).tolist() == sorted(set(values.tolist()))
