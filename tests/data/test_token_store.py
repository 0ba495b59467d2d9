"""Batching in bounded memory: the token cache lives in memory-mapped files (streamed in, removed
with the cache, reopened after pickling), and the numpy row values keep exactly the rows apart that
the texts themselves keep apart (shared negatives included)."""

import gc
import os
import pickle
import signal
import socket
import time
from collections import Counter
from itertools import combinations
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from embedding_trainer.data.packing import pack_batches
from embedding_trainer.data.row_values import NEGATIVE_COLUMN, row_values
from embedding_trainer.data.token_cache import TokenCache
from embedding_trainer.models import loading as models

TEXTS = [f"text number {i} " + "word " * (i % 7) for i in range(50)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return models.build_tiny_model(str(tmp_path_factory.mktemp("tiny")), max_seq_length=16)


def test_the_cache_streams_texts_into_mapped_files_removed_with_it(tiny, tmp_path):
    streamed = (text for text in TEXTS)  # read once, never as a list
    cache = TokenCache(tiny.preprocess, {None: streamed, "q: ": TEXTS[:5]}, max_length=12, folder=tmp_path)
    assert all(isinstance(array, np.memmap) for array in (cache.lengths, cache.keys, *cache.tokens.values()))
    expected = tiny.preprocess(TEXTS[10:20], max_length=12)
    got = cache.batch(TEXTS[10:20])
    assert list(expected) == list(got)
    assert all(torch.equal(got[k], v) if torch.is_tensor(v) else got[k] == v for k, v in expected.items())
    assert cache.text_lengths(TEXTS[:2], "q: ").tolist() == [
        int(tiny.preprocess([text], prompt="q: ", max_length=12)["attention_mask"].sum())
        for text in TEXTS[:2]
    ]
    with pytest.raises(KeyError, match="1 texts are not in the token cache under prompt 'q: '"):
        cache.batch([TEXTS[9]], "q: ")

    copy = pickle.loads(pickle.dumps(cache))  # as a spawned loader worker gets it: the files, reopened
    assert len(pickle.dumps(cache)) < 10_000
    assert (copy.batch(TEXTS[:3])["input_ids"] == cache.batch(TEXTS[:3])["input_ids"]).all()

    folder = cache.folder
    assert folder.parent == tmp_path and folder.is_dir()
    del cache, copy
    gc.collect()
    assert not folder.exists()


def test_a_new_cache_removes_the_folders_of_killed_processes_only(tmp_path):
    """A process killed with SIGKILL leaves its folder; the next cache on this host removes it, and
    keeps a live process's folder and another host's."""
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: makes a cache, says where, and waits to be killed
        try:
            cache = TokenCache(None, {None: []}, None, folder=tmp_path)
            os.write(writing, str(cache.folder).encode())
        finally:
            time.sleep(60)
            os._exit(1)
    killed = Path(os.read(reading, 4096).decode())
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(reading), os.close(writing)
    assert killed.is_dir() and f"-{pid}-" in killed.name
    other_host = tmp_path / f"token-cache-{socket.gethostname()}x-{pid}-abc"
    other_host.mkdir()
    live = TokenCache(None, {None: []}, None, folder=tmp_path)
    assert not killed.exists()
    TokenCache(None, {None: []}, None, folder=tmp_path)
    assert live.folder.is_dir() and other_host.is_dir()


def test_an_empty_cache_batches_nothing(tiny):
    cache = TokenCache(tiny.preprocess, {None: []}, max_length=None)
    assert cache.text_lengths([]).tolist() == []
    with pytest.raises(KeyError):
        cache.batch(["anything"])


def _reference_values(rows: dict[str, list[str]]) -> list[set]:
    """The row values as strings, by the rule `row_values` documents: a text is a value, and a
    negative's text that some row holds as anchor or positive is a value (text, negative's row) of
    the negative's row and of those rows."""
    negatives = [column for column in rows if NEGATIVE_COLUMN.fullmatch(column)]
    others = [column for column in rows if column not in negatives]
    count = len(rows[others[0]])
    values = [{rows[column][row] for column in others} for row in range(count)]
    for row in range(count):
        for text in {rows[column][row] for column in negatives}:
            holders = [other for other in range(count) if text in {rows[c][other] for c in others}]
            for holder in [row, *holders] if holders else []:
                values[holder].add((text, row))
    return values


def test_row_values_keep_apart_exactly_the_rows_their_texts_keep_apart():
    rng = np.random.default_rng(0)
    pool = [f"t{i}" for i in range(25)]  # few texts: many shared anchors, positives and negatives
    rows = {
        column: [pool[i] for i in rng.integers(0, len(pool), size=40)]
        for column in ("anchor", "positive", "negative_1", "negative_2")
    }
    dataset = datasets.Dataset.from_dict(rows)
    values, reference = row_values(dataset, list(rows)), _reference_values(rows)
    assert len(values) == len(reference)
    for first, second in combinations(range(len(reference)), 2):
        assert bool(values[first] & values[second]) == bool(reference[first] & reference[second])
    # the counts that decide which rows an epoch cannot place, and the text a report names
    value, count = values.most_held()
    assert count == max(Counter(value for row in reference for value in row).values())
    assert sum(value in values[row] for row in range(len(values))) == count
    assert values.describe(value) in pool

    for batch_size in (4, 8):
        order = rng.permutation(len(reference))
        got, expected = (pack_batches(order, batch_size, False, v) for v in (values, reference))
        assert [list(map(int, batch)) for batch in got.batches] == [list(b) for b in expected.batches]
        assert got.left_out == expected.left_out
