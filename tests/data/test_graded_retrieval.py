"""Retrieval evaluation as the benchmarks do it: graded NDCG, MRR@10 and MAP@100 equal pytrec_eval's
(trec_eval's) per query, binary relevance keeps sentence-transformers' numbers, and a retrieval
folder's documents are `title + " " + text` (or `text` with `data.document_title=drop`)."""

import json

import pytest
import pytrec_eval
import torch
from hydra.utils import instantiate

from embedding_trainer.data.build import build_datamodule
from embedding_trainer.data.sources import read_corpus, read_retrieval_split
from embedding_trainer.evaluation import RetrievalEvaluator
from embedding_trainer.evaluation.base import truncate
from embedding_trainer.models import loading as models
from embedding_trainer.utils.errors import DataError

FAST = ["model=tiny", "debug=fdr", "logger=none", "evaluation.show_progress_bar=false"]
MEASURES = {"ndcg_cut_10", "map_cut_100", "recip_rank"}


def graded_set(n_queries: int = 30, n_docs: int = 200, dim: int = 16, seed: int = 7):
    """Seeded query and document embeddings, and qrels {query: {doc: grade 0-3}}: one to five judged
    documents per query, placed near the query by their grade so that they rank high but not in order;
    the last query has only grade-0 judgments."""
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(n_queries, dim, generator=generator)
    docs = torch.randn(n_docs, dim, generator=generator)
    qrels: dict[str, dict[str, int]] = {}
    for q in range(n_queries):
        judged = torch.randperm(n_docs, generator=generator)[
            : int(torch.randint(1, 6, (1,), generator=generator))
        ]
        grades = torch.randint(0, 4, (len(judged),), generator=generator)
        if q == n_queries - 1:
            grades.zero_()
        elif grades.max() == 0:
            grades[0] = 1
        for doc, grade in zip(judged.tolist(), grades.tolist()):
            docs[doc] += queries[q] * (0.5 + 0.5 * grade * torch.rand(1, generator=generator))
            qrels.setdefault(f"q{q:02d}", {})[f"d{doc:03d}"] = grade
    query_ids, doc_ids = [f"q{q:02d}" for q in range(n_queries)], [f"d{d:03d}" for d in range(n_docs)]
    return query_ids, doc_ids, truncate(queries, dim), truncate(docs, dim), qrels


def pytrec_per_query(qrels, query_ids, doc_ids, scores: torch.Tensor) -> dict[str, dict[str, float]]:
    """pytrec_eval's NDCG@10, MAP@100 and MRR@10 per query (recip_rank on a run cut to the top 10,
    since trec_eval's has no cutoff)."""
    full = {qid: dict(zip(doc_ids, map(float, row))) for qid, row in zip(query_ids, scores.tolist())}
    top10 = {qid: dict(sorted(run.items(), key=lambda item: -item[1])[:10]) for qid, run in full.items()}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, MEASURES)
    measured = evaluator.evaluate(full)
    for qid, values in evaluator.evaluate(top10).items():
        measured[qid]["recip_rank"] = values["recip_rank"]
    return measured


def assert_equal_to_pytrec(ours: dict[str, list[float]], query_ids: list[str], reference) -> None:
    """Our per-query NDCG@10, MRR@10 and MAP@100 equal pytrec_eval's to 1e-6."""
    pairs = {"ndcg@10": "ndcg_cut_10", "mrr@10": "recip_rank", "map@100": "map_cut_100"}
    for name, measure in pairs.items():
        expected = [reference[qid][measure] for qid in query_ids]
        assert ours[name] == pytest.approx(expected, abs=1e-6), name


def test_graded_metrics_equal_pytrec_eval():
    query_ids, doc_ids, queries, docs, qrels = graded_set()
    scores = queries @ docs.T
    gaps = scores.sort(dim=1, descending=True).values.diff(dim=1).abs()
    assert (
        gaps.min() > 2e-6
    )  # no (near) ties: trec_eval breaks ties by descending document id, we by ascending
    evaluator = RetrievalEvaluator(
        dict(zip(query_ids, query_ids)),
        dict(zip(doc_ids, doc_ids)),
        qrels,
        show_progress_bar=False,
        query_chunk_size=7,
        corpus_chunk_size=37,
    )
    assert evaluator.query_ids == query_ids[:-1]  # a query judged only 0 has nothing relevant
    assert max(max(grades) for grades in evaluator.relevant_grades) == 3
    assert max(len(grades) for grades in evaluator.relevant_grades) > 2
    ours = {
        name: values.tolist()
        for name, values in evaluator.per_query(evaluator.ranked_grades(queries[:-1], docs)).items()
    }
    assert_equal_to_pytrec(ours, evaluator.query_ids, pytrec_per_query(qrels, query_ids, doc_ids, scores))
    assert 0.2 < sum(ours["ndcg@10"]) / len(ours["ndcg@10"]) < 0.95
    assert any(0 < value < 1 for value in ours["ndcg@10"])


def test_binary_relevance_as_sets_or_grades_gives_the_same_numbers():
    query_ids, doc_ids, queries, docs, qrels = graded_set(seed=8)
    binary_sets = {qid: {doc for doc, grade in judged.items() if grade > 0} for qid, judged in qrels.items()}
    binary_grades = {
        qid: {doc: int(grade > 0) for doc, grade in judged.items()} for qid, judged in qrels.items()
    }
    texts = dict(zip(query_ids, query_ids)), dict(zip(doc_ids, doc_ids))
    results = []
    for relevant in (binary_sets, binary_grades, qrels):
        evaluator = RetrievalEvaluator(*texts, relevant, show_progress_bar=False)
        results.append(
            {
                k: v.tolist()
                for k, v in evaluator.per_query(evaluator.ranked_grades(queries[:-1], docs)).items()
            }
        )
    assert results[0] == results[1]
    assert results[2]["ndcg@10"] != results[0]["ndcg@10"]  # grades change NDCG only
    assert {k: v for k, v in results[2].items() if k != "ndcg@10"} == {
        k: v for k, v in results[0].items() if k != "ndcg@10"
    }


def write_retrieval_folder(folder, docs: list[dict], qrels: dict[str, dict[str, str]]):
    """A retrieval-layout folder: corpus `docs`, one query per qrels key (its text: `question <id>`),
    and `qrels/<split>.tsv` for each split of `qrels` ({split: tsv rows without the header})."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    query_ids = sorted({row.split("\t")[0] for rows in qrels.values() for row in rows.splitlines()})
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": f"question {q}"}) + "\n" for q in query_ids)
    )
    for split, rows in qrels.items():
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


TITLED = [
    {"_id": "d1", "title": "Paris", "text": "is the capital of France."},
    {"_id": "d2", "title": "", "text": "no title here."},
    {"_id": "d3", "text": "no title field."},
    {"_id": "d4", "title": None, "text": "a null title."},
    {"_id": "d5", "title": "  ", "text": "a blank title."},
]


@pytest.mark.parametrize(
    ("mode", "d1"), [("prepend", "Paris is the capital of France."), ("drop", "is the capital of France.")]
)
def test_document_title_prepend_or_drop(tmp_path, mode, d1):
    folder = write_retrieval_folder(tmp_path / "set", TITLED, {"test": "q1\td1\t2\nq1\td2\t0\nq2\td3\t1\n"})
    split = read_retrieval_split(folder, "test", document_title=mode)
    untitled = {
        "d2": "no title here.",
        "d3": "no title field.",
        "d4": "a null title.",
        "d5": "a blank title.",
    }
    assert split.corpus == {"d1": d1, **untitled}
    assert read_corpus(folder, document_title=mode) == list(split.corpus.values())
    assert split.relevant_docs == {"q1": {"d1": 2}, "q2": {"d3": 1}}  # graded; scored 0: not relevant
    assert split.queries == {"q1": "question q1", "q2": "question q2"}


def test_bad_document_title_or_qrels_score_is_a_data_error(tmp_path):
    folder = write_retrieval_folder(
        tmp_path / "set", TITLED, {"test": "q1\td1\t1\n", "half": "q1\td1\t0.5\n"}
    )
    with pytest.raises(DataError, match="data.document_title must be one of prepend, drop"):
        read_retrieval_split(folder, "test", document_title="append")
    with pytest.raises(DataError, match="whole-number relevance grades"):
        read_retrieval_split(folder, "half")


def test_graded_retrieval_folder_evaluates_end_to_end(make_cfg, tmp_path, model_cache):
    """Through the data config: titles prepended, graded qrels, the configured evaluator on a real
    (tiny) model, per query equal to pytrec_eval on the same embeddings."""
    docs = [
        {"_id": f"d{i:02d}", "title": f"Topic {i % 7}", "text": f"passage {i} about subject {i * 3 % 11}"}
        for i in range(40)
    ]
    train_rows = "".join(f"t{i}\td{i:02d}\t1\n" for i in range(8))
    test_rows = "".join(
        f"q{i}\td{(i * 5 + j) % 40:02d}\t{(i + j) % 4}\n" for i in range(12) for j in range(4)
    )
    folder = write_retrieval_folder(tmp_path / "set", docs, {"train": train_rows, "test": test_rows})
    cfg = make_cfg(
        *FAST,
        f"data.train_path={folder}",
        f"data.eval_path={folder}",
        "data.train_split=train",
        "data.eval_split=test",
        "data.max_eval_samples=null",
    )
    datamodule = build_datamodule(cfg)
    datamodule.load()
    assert datamodule.eval_data.retrieval.corpus["d03"] == "Topic 3 passage 3 about subject 9"
    evaluator = instantiate(cfg.dataset_type.evaluator)(datamodule.eval_data, show_progress_bar=False)
    assert len(evaluator.query_ids) == 12 and {3} <= {
        g for grades in evaluator.relevant_grades for g in grades
    }

    model = models.build_tiny_model(str(model_cache), hidden_size=32, seed=3)
    metrics = evaluator(model, [32, 16])
    queries, corpus = evaluator.encode(model, evaluator.queries), evaluator.encode(model, evaluator.corpus)
    qrels = {qid: dict(judged) for qid, judged in datamodule.eval_data.retrieval.relevant_docs.items()}
    for dim in (32, 16):
        scores = truncate(queries, dim) @ truncate(corpus, dim).T
        reference = pytrec_per_query(qrels, evaluator.query_ids, evaluator.corpus_ids, scores)
        ours = {name: values.tolist() for name, values in evaluator.last_per_example[dim].items()}
        assert_equal_to_pytrec(ours, evaluator.query_ids, reference)
        assert metrics[dim]["ndcg@10"] == pytest.approx(sum(ours["ndcg@10"]) / 12, abs=1e-12)
