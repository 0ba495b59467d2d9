"""Hard-negative mining with the corpus embeddings on disk (`mining_on_disk`): with `sampling=top` it
mines what sentence-transformers' `mine_hard_negatives` mines (same rows, negatives and scores), with and
without a corpus of its own, with the filters active and chunks smaller than the data; with
`sampling=random` it is seeded, independent of the chunk sizes and draws from the same window; the
threshold picks the miner and enters the cache key only where the result can change; rows without
negatives are kept as in memory."""

import json
import random

import pytest

from embedding_trainer.data.hard_negatives import (
    HardNegativeSettings,
    _mine_in_memory,
    mine_cached,
    mining_key,
    on_disk,
)
from embedding_trainer.data.mining_on_disk import mine_on_disk
from embedding_trainer.data.sources import read_corpus, read_retrieval_split
from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.settings.resolvers import PROJECT_ROOT

CHUNKS = {"chunk_size": 23, "query_chunk_size": 40}  # several chunks of documents and of anchors


@pytest.fixture(scope="module")
def pairs():
    """150 SQuAD (question, paragraph) rows: repeated paragraphs, so anchors share positives."""
    return (
        read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "train")
        .pairs()
        .select(range(0, 1500, 10))
    )


@pytest.fixture(scope="module")
def miner(tmp_path_factory):
    return build_tiny_model(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """SQuAD test paragraphs as a {text} JSONL corpus of their own, one repeated."""
    paragraphs = read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "test").pairs()["positive"]
    documents = list(dict.fromkeys(paragraphs))[:60]
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in documents + documents[:1]))
    return read_corpus(path)


def _settings(**changes) -> HardNegativeSettings:
    return HardNegativeSettings(**{"num_negatives": 3, "range_min": 0, "range_max": 12, **changes})


def assert_same_mining(expected, mined) -> None:
    """Same rows in the same order, every score to 1e-6, and the same negatives except where two
    documents score exactly alike for an anchor (the order of exact ties is the one freedom)."""
    assert mined.column_names == expected.column_names and len(mined) == len(expected) > 0
    ties = 0
    for want, got in zip(expected.to_list(), mined.to_list()):
        assert (got["anchor"], got["positive"]) == (want["anchor"], want["positive"])
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-6)
        ties += any(got[name] != want[name] for name in got if name.startswith("negative_"))
    assert ties <= len(expected) // 50


@pytest.mark.parametrize(
    "changes",
    [
        {"relative_margin": 0.002, "max_score": 0.975},
        {"relative_margin": 0.001, "range_max": None, "range_min": 2},
    ],
    ids=["filters", "derived_window"],
)
@pytest.mark.parametrize(
    "own_corpus", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["positives", "own_corpus"]
)
def test_top_sampling_mines_what_sentence_transformers_mines(pairs, miner, corpus, changes, own_corpus):
    settings, documents = _settings(**changes), corpus if own_corpus else None
    expected, printed = _mine_in_memory(pairs, miner, settings, documents, seed=0)
    mined, summary = mine_on_disk(pairs, miner, settings, documents, seed=0, **CHUNKS)
    assert_same_mining(expected, mined)
    for active in ("relative_margin", "max_score"):  # each filter set skipped candidates
        assert (changes.get(active) is not None) == (f"due to the {active}" in printed)
    assert f"{len(mined)} of " in summary


def test_rows_without_negatives_are_kept_as_the_mining_in_memory_keeps_them(pairs, miner, tmp_path):
    strict = {"relative_margin": 0.002, "max_score": 0.975}
    kept = [
        mine_cached(
            pairs, miner, _settings(**strict, corpus_on_disk_from=at), None, tmp_path / str(at), seed=0
        )
        for at in (None, 0)  # one cache each: `top` mines the same either way
    ]
    assert kept[1].summary.startswith("Mined with the corpus embeddings on disk")
    assert kept[0].to_json() == kept[1].to_json() and kept[1].sampled > 0 and kept[1].dropped == 0
    sampled = [mining.rows.select(range(mining.mined, len(mining.rows))).to_list() for mining in kept]
    assert sampled[0] == sampled[1]  # the same rows lacked negatives, and the same seed drew theirs


@pytest.mark.slow
def test_random_sampling_is_seeded_and_draws_from_the_top_window(pairs, miner, tmp_path):
    pairs = pairs.select(range(100))
    window = _settings(num_negatives=6, range_min=1, range_max=7, relative_margin=0.001)
    drawn = _settings(num_negatives=3, range_min=1, range_max=7, relative_margin=0.001, sampling="random")
    full, _ = mine_on_disk(pairs, miner, window, None, seed=0, **CHUNKS)
    first, _ = mine_on_disk(pairs, miner, drawn, None, seed=5, folder=tmp_path, **CHUNKS)
    random.seed(123)  # the global generator plays no part
    again, _ = mine_on_disk(pairs, miner, drawn, None, seed=5, **CHUNKS)
    other, _ = mine_on_disk(pairs, miner, drawn, None, seed=6, **CHUNKS)
    assert again.to_list() == first.to_list() and other.to_list() != first.to_list()
    rechunked, _ = mine_on_disk(pairs, miner, drawn, None, seed=5, chunk_size=23, query_chunk_size=7)
    assert_same_mining(first, rechunked)  # the draw follows the anchor, not its chunk
    assert list(tmp_path.iterdir()) == []  # the embeddings' files are gone
    windows = {(row["anchor"], row["positive"]): row for row in full.to_list()}
    assert len(first) >= len(full) > 0
    for row in first.to_list():
        negatives = [row[f"negative_{i}"] for i in (1, 2, 3)]
        assert row["scores"][1:] == sorted(row["scores"][1:], reverse=True)
        if (row["anchor"], row["positive"]) in windows:
            candidates = windows[row["anchor"], row["positive"]]
            assert set(negatives) <= {candidates[f"negative_{i}"] for i in range(1, 7)}


def test_the_threshold_picks_the_miner_and_keys_the_cache_only_where_results_change(pairs, miner, tmp_path):
    documents = len(set(pairs["positive"]))
    assert on_disk(pairs, _settings(corpus_on_disk_from=documents), None)
    assert not on_disk(pairs, _settings(corpus_on_disk_from=documents + 1), None)
    assert not on_disk(pairs, _settings(corpus_on_disk_from=None), None)
    assert on_disk(pairs, _settings(corpus_on_disk_from=documents + 1), ["another document"])
    for sampling, same in (("top", True), ("random", False)):
        keys = {
            mining_key(pairs, miner, _settings(sampling=sampling, corpus_on_disk_from=threshold), None, 0)
            for threshold in (0, None)
        }
        assert (len(keys) == 1) == same
    mined = mine_cached(
        pairs, miner, _settings(corpus_on_disk_from=0, relative_margin=None), None, tmp_path, seed=0
    )
    assert mined.summary.startswith("Mined with the corpus embeddings on disk")
    assert sorted(path.name for path in (tmp_path / "hard_negatives").iterdir()) == [mined.cached.name]
