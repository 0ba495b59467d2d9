"""Information-retrieval metrics at every dimension from one encoding of queries and corpus.

The metrics follow sentence-transformers' `InformationRetrievalEvaluator` exactly (cosine
similarity, ties ranked by ascending corpus id, the same metric definitions), so with binary
relevance the numbers equal its numbers with `truncate_dim`, without re-encoding the corpus once
per dimension. With graded relevance NDCG is graded as trec_eval computes it (gain = grade); the
other metrics count any grade >= 1 as relevant.
"""

from collections.abc import Mapping
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

from embedding_trainer.data.sources import is_retrieval_folder, read_retrieval_split
from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics, truncate
from embedding_trainer.evaluation.corpus_embeddings import (
    STORE_DTYPES,
    CorpusStore,
    chunked_top_k,
    encode_to_store,
    tensor_chunks,
)
from embedding_trainer.models.prompts import DOCUMENT, QUERY
from embedding_trainer.utils.errors import DataError


class RetrievalEvaluator(DimensionEvaluator):
    """NDCG, MRR, MAP, accuracy, precision and recall at k of each query against the whole corpus.

    `relevant_docs` gives each query's relevant documents as a set of ids (grade 1 each) or as
    {document id: grade}; grades are whole numbers, 0 or below not relevant. NDCG@k is
    sum(grade_r / log2(r + 1)) over the top k ranks r, divided by the same sum over the query's
    grades sorted descending; MAP@k divides by min(k, relevant documents), as sentence-transformers does.

    Scoring is chunked: peak extra memory is about
    `4 * (query_chunk_size * corpus_chunk_size + 2 * query_chunk_size * (max_k + corpus_chunk_size))`
    bytes on top of the embeddings themselves (`4 * (n_queries + n_corpus) * full_dim` bytes).
    A corpus of at least `corpus_on_disk_from` documents (None: never) keeps its embeddings on disk
    instead (`corpus_embeddings.CorpusStore`, as `corpus_store_dtype`, in a temporary folder under
    `corpus_store_folder`, None: the system's, removed after each evaluation): it is encoded
    `corpus_chunk_size` documents at a time straight into the file and scored chunk by chunk from it, so
    memory no longer grows with the corpus. With float32 the metrics equal the in-memory ones up to float
    rounding (the corpus is encoded in chunks); float16 halves the file and may move a near-tie.
    """

    name = "retrieval"
    example_unit = "queries"

    def __init__(
        self,
        queries: dict[str, str],
        corpus: dict[str, str],
        relevant_docs: Mapping[str, set[str] | Mapping[str, int]],
        ndcg_at_k: list[int] = (10,),
        mrr_at_k: list[int] = (10,),
        map_at_k: list[int] = (100,),
        accuracy_at_k: list[int] = (1, 3, 5, 10),
        precision_recall_at_k: list[int] = (1, 3, 5, 10),
        query_chunk_size: int = 1024,
        corpus_chunk_size: int = 50_000,
        corpus_on_disk_from: int | None = 500_000,
        corpus_store_dtype: str = "float32",
        corpus_store_folder: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if corpus_store_dtype not in STORE_DTYPES:
            raise ValueError(
                f"corpus_store_dtype must be one of {', '.join(STORE_DTYPES)}, got {corpus_store_dtype!r}."
            )
        grades = {qid: _grades(docs) for qid, docs in relevant_docs.items()}
        self.query_ids = [qid for qid in queries if grades.get(qid)]
        if not self.query_ids:
            raise ValueError("Retrieval evaluation needs at least one query with a relevant document.")
        self.queries = [queries[qid] for qid in self.query_ids]
        self.example_ids = self.query_ids
        # Corpus in ascending id order: index order then breaks score ties as the reference does.
        self.corpus_ids = sorted(corpus)
        self.corpus = [corpus[cid] for cid in self.corpus_ids]
        index_of = {cid: index for index, cid in enumerate(self.corpus_ids)}
        self.relevant = [sorted(index_of[cid] for cid in grades[qid]) for qid in self.query_ids]
        self.relevant_grades = [
            [grades[qid][self.corpus_ids[index]] for index in indices]
            for qid, indices in zip(self.query_ids, self.relevant)
        ]
        self.ndcg_at_k, self.mrr_at_k, self.map_at_k = list(ndcg_at_k), list(mrr_at_k), list(map_at_k)
        self.accuracy_at_k, self.precision_recall_at_k = list(accuracy_at_k), list(precision_recall_at_k)
        self.max_k = max(
            self.ndcg_at_k + self.mrr_at_k + self.map_at_k + self.accuracy_at_k + self.precision_recall_at_k
        )
        self.query_chunk_size, self.corpus_chunk_size = query_chunk_size, corpus_chunk_size
        self.corpus_on_disk = corpus_on_disk_from is not None and len(self.corpus) >= corpus_on_disk_from
        self.corpus_store_dtype, self.corpus_store_folder = corpus_store_dtype, corpus_store_folder
        self.primary_metric = f"ndcg@{max(self.ndcg_at_k)}"

    @classmethod
    def from_eval_data(cls, eval_data, **kwargs) -> "RetrievalEvaluator":
        """From a retrieval-layout split, or from (anchor, positive) rows: each distinct anchor is a
        query, each distinct positive a document, relevant where they were paired."""
        if eval_data.retrieval is not None:
            split = eval_data.retrieval
            return cls(split.queries, split.corpus, split.relevant_docs, **kwargs)
        anchors, positives = eval_data.rows["anchor"], eval_data.rows["positive"]
        query_id = {text: f"q{i}" for i, text in enumerate(dict.fromkeys(anchors))}
        doc_id = {text: f"d{i}" for i, text in enumerate(dict.fromkeys(positives))}
        relevant: dict[str, set[str]] = {}
        for anchor, positive in zip(anchors, positives):
            relevant.setdefault(query_id[anchor], set()).add(doc_id[positive])
        return cls(
            {qid: text for text, qid in query_id.items()},
            {did: text for text, did in doc_id.items()},
            relevant,
            **kwargs,
        )

    @classmethod
    def from_folder(
        cls,
        eval_data,
        path: str,
        split: str = "test",
        encoding: str = "utf-8",
        document_title: str = "prepend",
        **kwargs,
    ) -> "RetrievalEvaluator":
        """From split `split` of a retrieval-layout folder of its own (for formats without labels, such as
        the single sentences of a distillation run), independent of the run's eval data, which is ignored.
        DataError when `path` is no retrieval folder or has no such split."""
        folder = Path(path)
        if not is_retrieval_folder(folder):
            raise DataError(
                f"dataset_type.evaluator.path={path} is not a retrieval folder (corpus.jsonl, queries.jsonl "
                "and qrels/<split>.tsv): point it at one."
            )
        split_data = read_retrieval_split(
            folder, split, encoding, document_title, "dataset_type.evaluator.split"
        )
        return cls(split_data.queries, split_data.corpus, split_data.relevant_docs, **kwargs)

    def __call__(
        self, model: SentenceTransformer, dims: list[int], loss: torch.nn.Module | None = None
    ) -> DimensionMetrics:
        """Metrics at each of `dims`; their per-query values (in `query_ids` order) go to `last_per_example`.
        Queries are encoded with the model's `query` prompt, the corpus with its `document` prompt."""
        query_embeddings = self.encode(model, self.queries, QUERY)
        if self.corpus_on_disk:
            with self.corpus_store(model) as store:
                per_query = {
                    dim: self.per_query(self.ranked_grades(truncate(query_embeddings, dim), store))
                    for dim in dims
                }
        else:
            corpus_embeddings = self.encode(model, self.corpus, DOCUMENT)
            per_query = {
                dim: self.per_query(
                    self.ranked_grades(truncate(query_embeddings, dim), truncate(corpus_embeddings, dim))
                )
                for dim in dims
            }
        self.last_per_example = {
            dim: {name: values.numpy() for name, values in metrics.items()}
            for dim, metrics in per_query.items()
        }
        return {
            dim: {name: values.mean().item() for name, values in metrics.items()}
            for dim, metrics in per_query.items()
        }

    def corpus_store(self, model: SentenceTransformer) -> CorpusStore:
        """The corpus encoded as documents by `model` into a new `CorpusStore`, `corpus_chunk_size`
        documents at a time; the caller closes it."""
        return encode_to_store(
            lambda texts: self.encode(model, texts, DOCUMENT),
            self.corpus,
            self.corpus_chunk_size,
            self.corpus_store_dtype,
            self.corpus_store_folder,
        )

    def ranked_grades(self, queries: torch.Tensor, corpus: torch.Tensor | CorpusStore) -> torch.Tensor:
        """Float64 [n_queries, k] matrix: the relevance grade for query q of the document ranked
        r-th (0: not relevant), for the top k = min(max_k, corpus size) documents ranked by
        (-cosine, corpus id). `corpus`: embeddings already truncated like `queries`, or a store, read
        at the queries' dimension."""
        k = min(self.max_k, len(corpus))
        rows = []
        for start in range(0, len(queries), self.query_chunk_size):
            if isinstance(corpus, CorpusStore):
                chunks = corpus.chunks(queries.shape[1], self.corpus_chunk_size)
            else:
                chunks = tensor_chunks(corpus, self.corpus_chunk_size)
            _, top_index = chunked_top_k(queries[start : start + self.query_chunk_size], chunks, k)
            relevant, grades = self._relevant_matrix(start, start + len(top_index))
            position = torch.searchsorted(relevant, top_index).clamp(max=relevant.shape[1] - 1)
            found = relevant.gather(1, position) == top_index
            rows.append(torch.where(found, grades.gather(1, position), 0.0))
        return torch.cat(rows)

    def _relevant_matrix(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Relevant corpus indices of queries start..end, ascending in each row (padded past every
        corpus index), and their grades (padded with 0)."""
        lists = self.relevant[start:end]
        matrix = torch.full((len(lists), max(map(len, lists))), torch.iinfo(torch.long).max, dtype=torch.long)
        grades = torch.zeros(matrix.shape, dtype=torch.float64)
        for row, (indices, row_grades) in enumerate(zip(lists, self.relevant_grades[start:end])):
            matrix[row, : len(indices)] = torch.tensor(indices)
            grades[row, : len(indices)] = torch.tensor(row_grades, dtype=torch.float64)
        return matrix, grades

    def per_query(self, grades: torch.Tensor) -> dict[str, torch.Tensor]:
        """The configured metrics from a ranked-grades matrix (see `ranked_grades`): one float64 value per query."""
        hits = (grades > 0).double()
        n_relevant = torch.tensor([len(r) for r in self.relevant], dtype=torch.float64)
        ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64)
        discounts = 1.0 / torch.log2(torch.arange(2, self.max_k + 2, dtype=torch.float64))
        results = {}
        for k in self.accuracy_at_k:
            results[f"accuracy@{k}"] = hits[:, :k].amax(dim=1)
        for k in self.precision_recall_at_k:
            correct = hits[:, :k].sum(dim=1)
            results[f"precision@{k}"] = correct / k
            results[f"recall@{k}"] = correct / n_relevant
        for k in self.mrr_at_k:
            top = hits[:, :k]
            first = top.argmax(dim=1)
            reciprocal = torch.where(top.amax(dim=1) > 0, 1.0 / (first + 1).double(), 0.0)
            results[f"mrr@{k}"] = reciprocal
        ideal_grades = [
            torch.tensor(sorted(row, reverse=True), dtype=torch.float64) for row in self.relevant_grades
        ]
        for k in self.ndcg_at_k:
            top = grades[:, :k]
            dcg = (top * discounts[: top.shape[1]]).sum(dim=1)
            ideal = torch.stack([(row[:k] * discounts[: min(len(row), k)]).sum() for row in ideal_grades])
            results[f"ndcg@{k}"] = dcg / ideal
        for k in self.map_at_k:
            top = hits[:, :k]
            precision_at_hit = top.cumsum(dim=1) / ranks[: top.shape[1]] * top
            results[f"map@{k}"] = precision_at_hit.sum(dim=1) / n_relevant.clamp(max=k)
        return results


def _grades(docs: set[str] | Mapping[str, int]) -> dict[str, int]:
    """{document id: grade} of the relevant documents (grade above 0) in a set (grade 1) or a grade mapping."""
    if isinstance(docs, Mapping):
        return {doc: grade for doc, grade in docs.items() if grade > 0}
    return dict.fromkeys(docs, 1)
