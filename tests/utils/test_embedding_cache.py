"""The embedding cache: a hit reads what the miss stored without running the model; a change of
weights, maximum length, prompt or texts misses; a damaged entry is encoded again; writers filling
one entry at once leave it whole; an evaluator scores the same through the cache as without it
(with the model's query and document prompts too, each entry stored under its prompt)."""

import logging
import threading

import numpy as np
import pytest
import torch

from conftest import FAST
from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.evaluate import evaluate
from embedding_trainer.evaluation import RetrievalEvaluator
from embedding_trainer.evaluation.base import using_cache
from embedding_trainer.models import loading as models
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.utils.embedding_cache import EmbeddingCache, encode

TOPICS = ["cats", "the sea", "rain in spring", "a long train journey across the plains"]
TEXTS = [f"sentence {i} about {TOPICS[i % 4]}" for i in range(30)] + ["sentence 0 about cats"]  # one repeat
DISTINCT = len(set(TEXTS))


@pytest.fixture
def model(model_cache):
    """A fresh tiny model (the same weights each time), free to change."""
    return models.build_tiny_model(str(model_cache))


def forward_passes(model) -> list:
    """A list that grows by one at every forward pass of `model`'s transformer."""
    calls = []
    model[0].register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_the_second_call_reads_the_cache_without_running_the_model(model, tmp_path, caplog):
    cache = EmbeddingCache(tmp_path)
    fresh = encode(model, TEXTS, show_progress_bar=False)
    first = cache.embeddings(model, TEXTS, show_progress_bar=False)
    calls = forward_passes(model)
    with caplog.at_level(logging.INFO):
        second = cache.embeddings(model, TEXTS, show_progress_bar=False)
        reordered = cache.embeddings(model, [*TEXTS[::-1], TEXTS[5]], show_progress_bar=False)
    assert not calls
    assert second.dtype == torch.float32 and second.shape == (len(TEXTS), 32)
    torch.testing.assert_close(first, fresh, atol=1e-6, rtol=0)
    torch.testing.assert_close(second, fresh, atol=1e-6, rtol=0)
    assert torch.equal(reordered, second[[*range(len(TEXTS) - 1, -1, -1), 5]])
    assert "embeddings of 31 texts read from the cache" in caplog.text
    stored = np.load(cache.path(model, TEXTS), mmap_mode="r")
    assert stored.shape == (DISTINCT, 32) and len(list(tmp_path.rglob("*.npy"))) == 1


@pytest.mark.slow
def test_changed_texts_prompt_weights_or_max_length_miss(model, tmp_path):
    cache = EmbeddingCache(tmp_path)
    before = cache.embeddings(model, TEXTS, show_progress_bar=False)
    calls = forward_passes(model)

    def misses(texts: list[str] = TEXTS, **prompt) -> bool:
        passes = len(calls)
        cache.embeddings(model, texts, show_progress_bar=False, **prompt)
        return len(calls) > passes

    assert misses(TEXTS[:-2]) and misses([*TEXTS, "one more"]) and misses(prompt="query: ")
    with torch.no_grad():
        list(model.parameters())[-1][0] += 1e-3  # the last layer norm's bias
    assert misses()
    assert not torch.equal(cache.embeddings(model, TEXTS, show_progress_bar=False), before)
    model.max_seq_length = 4
    assert misses() and not misses()  # the changed model then reads its own entry
    assert len({path.parent for path in tmp_path.rglob("*.npy")}) == 3


@pytest.mark.parametrize(
    "damage", [lambda data: data[: len(data) // 2], lambda data: b""], ids=["half", "empty"]
)
def test_a_damaged_entry_is_encoded_again(model, tmp_path, caplog, damage):
    cache = EmbeddingCache(tmp_path)
    first = cache.embeddings(model, TEXTS, show_progress_bar=False)
    path = cache.path(model, TEXTS)
    path.write_bytes(damage(path.read_bytes()))
    calls = forward_passes(model)
    with caplog.at_level(logging.WARNING):
        again = cache.embeddings(model, TEXTS, show_progress_bar=False)
    assert calls and torch.equal(again, first) and "unreadable" in caplog.text
    assert np.load(path, mmap_mode="r").shape == (DISTINCT, 32)


def test_writers_filling_one_entry_at_once_leave_it_whole(model_cache, tmp_path):
    cache = EmbeddingCache(tmp_path)
    writers = [models.build_tiny_model(str(model_cache)) for _ in range(4)]
    start = threading.Barrier(len(writers))
    results = {}

    def fill(index: int) -> None:
        start.wait()
        results[index] = cache.embeddings(writers[index], TEXTS, show_progress_bar=False)

    threads = [threading.Thread(target=fill, args=(index,)) for index in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(writers)
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert files == [cache.path(writers[0], TEXTS)]  # no partial file left behind
    calls = forward_passes(writers[0])
    for result in results.values():
        torch.testing.assert_close(cache.embeddings(writers[0], TEXTS, show_progress_bar=False), result)
    assert not calls


@pytest.mark.parametrize(
    "prompts", [{}, {"query": "query: ", "document": "passage: "}], ids=["plain", "prompts"]
)
@pytest.mark.slow
def test_a_retrieval_evaluator_scores_the_same_through_the_cache(model, tmp_path, prompts):
    model.prompts.update(prompts)
    split = read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "test")
    query_ids = sorted(split.queries)[:40]
    relevant = {qid: split.relevant_docs[qid] for qid in query_ids}
    documents = set().union(*relevant.values()) | set(sorted(split.corpus)[:60])
    evaluator = RetrievalEvaluator(
        {qid: split.queries[qid] for qid in query_ids},
        {doc: split.corpus[doc] for doc in documents},
        relevant,
        show_progress_bar=False,
    )
    without = evaluator(model, [32, 16])
    with using_cache(evaluator, EmbeddingCache(tmp_path)):
        filled = evaluator(model, [32, 16])
        read = evaluator(model, [32, 16])
    assert filled == without and read == without
    assert evaluator.embedding_cache is None and len(list(tmp_path.rglob("*.npy"))) == 2  # queries, corpus
    cache = EmbeddingCache(tmp_path)  # each stored under its prompt
    assert cache.path(model, evaluator.queries, prompt=prompts.get("query")).is_file()
    assert cache.path(model, evaluator.corpus, prompt=prompts.get("document")).is_file()


def test_using_cache_restores_the_previous_cache_when_the_block_raises(tmp_path):
    evaluator = RetrievalEvaluator({"q": "query"}, {"d": "document"}, {"q": {"d"}})
    earlier = evaluator.embedding_cache = EmbeddingCache(tmp_path / "earlier")
    with pytest.raises(RuntimeError), using_cache(evaluator, EmbeddingCache(tmp_path)) as inside:
        assert inside.embedding_cache.folder == tmp_path
        raise RuntimeError
    assert evaluator.embedding_cache is earlier


@pytest.mark.slow
def test_a_second_run_and_an_evaluation_of_the_same_model_read_the_baseline_from_the_cache(
    make_cfg, tmp_path, caplog
):
    cache = [f"paths.cache_dir={tmp_path / 'cache'}"]  # a cache of this test's own, filled by the first run
    runs = []
    for name in ("first", "second"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="embedding_trainer"):
            _, objects = train(make_cfg(*FAST, *cache, output_dir=tmp_path / name))
        runs.append((objects["evaluation"].baseline, caplog.text))
    (first, first_log), (second, second_log) = runs
    assert "not in the cache yet" in first_log and "read from the cache" not in first_log
    assert "read from the cache" in second_log and "not in the cache yet" not in second_log
    assert second == first  # the same numbers, to the last bit
    assert not any(
        "read from the cache" in line for line in second_log.split("val/score")[1:]
    )  # baseline only

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="embedding_trainer"):
        evaluate(make_cfg(*FAST, *cache, output_dir=tmp_path / "evaluated", config_name="evaluate"))
    assert "read from the cache" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="embedding_trainer"):
        train(make_cfg(*FAST, *cache, "evaluation.embedding_cache=false", output_dir=tmp_path / "off"))
    assert "Embedding cache" not in caplog.text
