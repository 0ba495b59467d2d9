"""Our one-encoding retrieval metrics equal sentence-transformers' InformationRetrievalEvaluator
with truncate_dim, metric by metric, at every dimension; with the model's query and document
prompts, they equal it with query_prompt and corpus_prompt."""

import pytest
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.evaluation import RetrievalEvaluator
from embedding_trainer.models import loading as models
from embedding_trainer.settings.resolvers import PROJECT_ROOT

K = {
    "ndcg_at_k": [10],
    "mrr_at_k": [10],
    "map_at_k": [100],
    "accuracy_at_k": [1, 3, 5, 10],
    "precision_recall_at_k": [1, 3, 5, 10],
}


@pytest.fixture(scope="module")
def squad_subset():
    """300 SQuAD test questions against 400 paragraphs (their relevant ones plus others)."""
    split = read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "test")
    query_ids = sorted(split.queries)[:300]
    relevant = {qid: split.relevant_docs[qid] for qid in query_ids}
    needed = set().union(*relevant.values())
    others = [doc for doc in sorted(split.corpus) if doc not in needed]
    corpus = {doc: split.corpus[doc] for doc in sorted(needed) + others[: 400 - len(needed)]}
    return {qid: split.queries[qid] for qid in query_ids}, corpus, relevant


# The model's prompts in each case: none, and instruction-style query and document prompts.
PROMPTS = {
    "no_prompts": {},
    "prompts": {
        "query": "Instruct: Given a question, retrieve passages that answer it\nQuery: ",
        "document": "passage: ",
    },
}


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tiny"))


def tiny_model(tiny_cache: str, prompts: dict):
    return models.build_tiny_model(tiny_cache, hidden_size=32, seed=3, prompts=prompts)


@pytest.fixture(scope="module")
def ours(squad_subset, tiny_cache):
    """Our metrics of the tiny model at every dimension (one evaluation per case of PROMPTS)."""
    evaluator = RetrievalEvaluator(
        *squad_subset, show_progress_bar=False, corpus_chunk_size=97, query_chunk_size=64, **K
    )
    return {
        case: evaluator(tiny_model(tiny_cache, prompts), [32, 16, 8]) for case, prompts in PROMPTS.items()
    }


@pytest.mark.parametrize("case", PROMPTS)
@pytest.mark.parametrize("dim", [32, 16, 8])
@pytest.mark.slow
def test_metrics_equal_information_retrieval_evaluator(squad_subset, tiny_cache, ours, dim, case):
    prompts = PROMPTS[case]
    reference = InformationRetrievalEvaluator(
        *squad_subset,
        truncate_dim=dim,
        write_csv=False,
        name="ref",
        query_prompt=prompts.get("query"),
        corpus_prompt=prompts.get("document"),
        **K,
    )(tiny_model(tiny_cache, prompts))
    compared = 0
    for name, value in ours[case][dim].items():
        assert reference[f"ref_cosine_{name}"] == pytest.approx(value, abs=1e-6), name
        compared += 1
    assert compared == 15
    assert 0.0 < ours[case][dim]["ndcg@10"] < 1.0
    assert ours["prompts"][dim] != ours["no_prompts"][dim]  # the prompts change what is encoded


def test_pairs_without_ids_become_queries_and_a_corpus():
    import datasets

    from embedding_trainer.data import EvalData

    rows = datasets.Dataset.from_dict({"anchor": ["a", "a", "b"], "positive": ["x", "y", "x"]})
    evaluator = RetrievalEvaluator.from_eval_data(EvalData(rows=rows), show_progress_bar=False)
    assert evaluator.queries == ["a", "b"]
    assert evaluator.corpus == ["x", "y"]
    assert evaluator.relevant == [[0, 1], [0]]
