"""Evaluation encoding shared out across processes (gloo, as `trainer=ddp_sim`): each process encodes its
share of the texts, every process gets the same metrics as one process encoding everything, and the
embedding cache is filled once and read back by all."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.evaluation.retrieval import RetrievalEvaluator
from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.utils.embedding_cache import EmbeddingCache, encode
from embedding_trainer.utils.sharded_encoding import Shard, current_shard, sharded_encoding

WORLD_SIZE = 2
DIMS = [32, 16, 8]


def _evaluator() -> RetrievalEvaluator:
    """25 real SQuAD test questions against 41 paragraphs (theirs and others): odd counts, so the
    processes' shares differ in length."""
    split = read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "test")
    query_ids = sorted(split.relevant_docs)[:25]
    relevant = {qid: split.relevant_docs[qid] for qid in query_ids}
    corpus_ids = sorted({doc for docs in relevant.values() for doc in docs})
    corpus_ids += [doc for doc in sorted(split.corpus) if doc not in corpus_ids][: 41 - len(corpus_ids)]
    return RetrievalEvaluator(
        {qid: split.queries[qid] for qid in query_ids},
        {doc: split.corpus[doc] for doc in corpus_ids},
        relevant,
        batch_size=4,
        show_progress_bar=False,
    )


def _counting_encodes(model) -> list[int]:
    """Wraps `model.encode` to record how many texts each call encodes in this process."""
    counts, original = [], model.encode

    def counted(sentences, *args, **kwargs):
        counts.append(len(sentences))
        return original(sentences, *args, **kwargs)

    model.encode = counted
    return counts


def _worker(rank: int, init_file: str, model_cache: str, cache_folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        torch.set_num_threads(1)
        model = build_tiny_model(model_cache)
        model.eval()
        evaluator = _evaluator()
        counts = _counting_encodes(model)
        alone = evaluator(model, DIMS)
        assert counts == [25, 41]
        counts.clear()

        with sharded_encoding(torch.device("cpu")) as shard:
            assert shard == current_shard() == Shard(rank, WORLD_SIZE, torch.device("cpu"))
            shared = evaluator(model, DIMS)
            assert counts == (
                [13, 21] if rank == 0 else [12, 20]
            )  # its share of the queries, then the corpus
            one_text = encode(model, ["a single text"], show_progress_bar=False)  # fewer texts than processes
            assert counts[-1] == 1 and one_text.shape[0] == 1
        assert current_shard() is None

        assert set(shared) == set(alone)
        for dim in DIMS:
            assert set(shared[dim]) == set(alone[dim])
            for name, value in alone[dim].items():
                assert shared[dim][name] == pytest.approx(value, abs=1e-6), (dim, name)
        assert 0 < alone[32]["ndcg@10"] < 1

        # The cache: filled by the processes together (the first stores the entry), then read by all.
        cache = EmbeddingCache(cache_folder)
        texts = evaluator.corpus
        counts.clear()
        with sharded_encoding(torch.device("cpu")):
            filled = cache.embeddings(model, texts, 4, False)
            dist.barrier()
            read = cache.embeddings(model, texts, 4, False)
        assert counts == [21 if rank == 0 else 20]  # encoded once, its share, and read the second time
        assert torch.equal(filled, read)
        assert torch.allclose(filled, encode(model, texts, 4, False), atol=1e-5)
        assert len(list(cache.folder.rglob("*.npy"))) == 1
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_processes_share_the_encoding_and_get_the_metrics_of_one(model_cache, tmp_path):
    build_tiny_model(str(model_cache))  # built once here, so the processes only load it
    mp.start_processes(  # spawn: a forked child can deadlock on the parent's intra-op thread pool
        _worker,
        args=(str(tmp_path / "rendezvous"), str(model_cache), str(tmp_path / "embeddings")),
        nprocs=WORLD_SIZE,
        start_method="spawn",
    )


def test_without_a_process_group_encoding_is_not_sharded():
    with sharded_encoding(torch.device("cpu")) as shard:
        assert shard is None and current_shard() is None
