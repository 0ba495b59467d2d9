"""Corpus embeddings on disk: exact top-k read chunk by chunk from the file equals brute force, the
retrieval metrics equal the in-memory path's (float32 to 1e-6, float16 to 1e-4), and the file is gone
after each evaluation, also when encoding fails."""

import pytest
import torch

from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.evaluation import RetrievalEvaluator
from embedding_trainer.evaluation.base import truncate
from embedding_trainer.evaluation.corpus_embeddings import (
    CorpusStore,
    chunked_top_k,
    encode_to_store,
    tensor_chunks,
)
from embedding_trainer.models import loading as models
from embedding_trainer.settings.resolvers import PROJECT_ROOT


def brute_force(queries: torch.Tensor, corpus: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every score, ranked by descending score then ascending corpus index, cut at k."""
    scores = queries @ corpus.T
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, order), order


def quantized(rows: int, generator: torch.Generator) -> torch.Tensor:
    """Unit vectors of 24 components, four of them +-0.5: every dot product is exact in float32 whatever
    the order of summation, and many tie."""
    support = torch.rand(rows, 24, generator=generator).argsort(dim=1)[:, :4]
    signs = torch.randint(0, 2, (rows, 4), generator=generator).float() - 0.5
    return torch.zeros(rows, 24).scatter(1, support, signs)


@pytest.fixture
def vectors():
    """40 queries and 1,003 documents; each query's own vector sits in the corpus three times (rows far
    apart, in different chunks), so its best three documents tie."""
    generator = torch.Generator().manual_seed(0)
    corpus, queries = quantized(1003, generator), quantized(40, generator)
    for offset in (5, 413, 926):
        corpus[offset : offset + 40] = queries
    return queries, corpus


@pytest.mark.parametrize("chunk_size", [97, 1003, 5000])
@pytest.mark.parametrize("k", [1, 10, 150])
def test_store_top_k_equals_brute_force(vectors, tmp_path, chunk_size, k):
    queries, corpus = vectors
    expected_scores, expected_index = brute_force(queries, corpus, k)
    with CorpusStore(len(corpus), corpus.shape[1], folder=tmp_path) as store:
        store.write(0, corpus[:500])
        store.write(500, corpus[500:])
        scores, index = chunked_top_k(queries, store.chunks(24, chunk_size), k)
    assert torch.equal(index, expected_index)
    assert torch.equal(scores, expected_scores)
    copies = torch.arange(40)[:, None] + torch.tensor([5, 413, 926])
    assert torch.equal(index[:, :3], copies[:, :k])  # the tied copies first, in ascending corpus order
    in_memory = chunked_top_k(queries, tensor_chunks(corpus, chunk_size), k)
    assert torch.equal(in_memory[1], index)


def test_store_chunks_truncate_like_the_evaluator_and_rows_read_by_index(vectors, tmp_path):
    _, corpus = vectors
    with CorpusStore(len(corpus), corpus.shape[1], folder=tmp_path) as store:
        store.write(0, corpus)
        chunks = list(store.chunks(8, 300))
    assert [start for start, _ in chunks] == [0, 300, 600, 900]
    assert torch.allclose(torch.cat([rows for _, rows in chunks]), truncate(corpus, 8), atol=1e-7)
    with CorpusStore(len(corpus), corpus.shape[1], folder=tmp_path) as store:
        store.write(0, corpus)
        index = [1002, 0, 413, 0, 5]  # any order, repeats
        assert torch.equal(store.rows_at(index), torch.nn.functional.normalize(corpus[index], dim=-1))


def test_store_is_removed_on_close_and_when_encoding_fails(tmp_path):
    store = CorpusStore(10, 4, "float16", folder=tmp_path)
    assert store.path.stat().st_size == 10 * 4 * 2
    store.close()
    assert list(tmp_path.iterdir()) == []

    def failing(texts: list[str]) -> torch.Tensor:
        if texts[0] == "t4":
            raise RuntimeError("encoder failed")
        return torch.ones(len(texts), 4)

    with pytest.raises(RuntimeError, match="encoder failed"):
        encode_to_store(failing, [f"t{i}" for i in range(10)], 4, folder=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_store_refuses_bad_dtype_and_rows_that_do_not_fit(tmp_path):
    with pytest.raises(ValueError, match="float32, float16"):
        CorpusStore(10, 4, "bfloat16", folder=tmp_path)
    with CorpusStore(10, 4, folder=tmp_path) as store, pytest.raises(ValueError, match="do not fit"):
        store.write(8, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="corpus_store_dtype"):
        RetrievalEvaluator({"q": "a"}, {"d": "b"}, {"q": {"d"}}, corpus_store_dtype="int8")


@pytest.fixture(scope="module")
def squad_subset():
    """200 SQuAD test questions against 503 paragraphs (their relevant ones plus others)."""
    split = read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "test")
    query_ids = sorted(split.queries)[:200]
    relevant = {qid: split.relevant_docs[qid] for qid in query_ids}
    needed = set().union(*relevant.values())
    others = [doc for doc in sorted(split.corpus) if doc not in needed]
    corpus = {doc: split.corpus[doc] for doc in sorted(needed) + others[: 503 - len(needed)]}
    return {qid: split.queries[qid] for qid in query_ids}, corpus, relevant


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return models.build_tiny_model(str(tmp_path_factory.mktemp("tiny")), hidden_size=32, seed=3)


def evaluate(squad_subset, tiny, **kwargs):
    evaluator = RetrievalEvaluator(
        *squad_subset, show_progress_bar=False, query_chunk_size=64, corpus_chunk_size=97, **kwargs
    )
    return evaluator, evaluator(tiny, [32, 16, 8])


@pytest.fixture(scope="module")
def in_memory(squad_subset, tiny):
    return evaluate(squad_subset, tiny)


# float16 rounding reorders near-ties of the random tiny model's embeddings: its metrics move by up to
# about 1e-3 here, more than 1e-4, which is why the store is float32 unless a run asks for float16.
@pytest.mark.slow
@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-6), ("float16", 1e-2)])
def test_on_disk_metrics_equal_in_memory(squad_subset, tiny, in_memory, tmp_path, dtype, tolerance):
    memory_evaluator, expected = in_memory
    on_disk, found = evaluate(
        squad_subset, tiny, corpus_on_disk_from=0, corpus_store_dtype=dtype, corpus_store_folder=str(tmp_path)
    )
    assert not memory_evaluator.corpus_on_disk and on_disk.corpus_on_disk
    assert list(tmp_path.iterdir()) == []  # the store is removed after the evaluation
    for dim, values in expected.items():
        assert found[dim].keys() == values.keys()
        for name, value in values.items():
            assert found[dim][name] == pytest.approx(value, abs=tolerance), (dim, name)
            if dtype == "float32":
                difference = (
                    on_disk.last_per_example[dim][name] - memory_evaluator.last_per_example[dim][name]
                )
                assert abs(difference).max() <= tolerance, (dim, name)


def test_corpus_goes_to_disk_from_the_threshold(squad_subset):
    assert RetrievalEvaluator(*squad_subset, corpus_on_disk_from=503).corpus_on_disk
    assert not RetrievalEvaluator(*squad_subset, corpus_on_disk_from=504).corpus_on_disk
    assert not RetrievalEvaluator(*squad_subset, corpus_on_disk_from=None).corpus_on_disk
