"""Information-retrieval metrics at every dimension from one encoding of queries and corpus.

The metrics follow sentence-transformers' `InformationRetrievalEvaluator` exactly (cosine
similarity, ties ranked by ascending corpus id, the same metric definitions), so the numbers
equal its numbers with `truncate_dim`, without re-encoding the corpus once per dimension.
"""

import torch
from sentence_transformers import SentenceTransformer

from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics, truncate


class RetrievalEvaluator(DimensionEvaluator):
    """NDCG, MRR, MAP, accuracy, precision and recall at k of each query against the whole corpus.

    Scoring is chunked: peak extra memory is about
    `4 * (query_chunk_size * corpus_chunk_size + 2 * query_chunk_size * (max_k + corpus_chunk_size))`
    bytes on top of the embeddings themselves (`4 * (n_queries + n_corpus) * full_dim` bytes),
    so a million-document corpus is scored in bounded memory.
    """

    name = "retrieval"

    def __init__(
        self,
        queries: dict[str, str],
        corpus: dict[str, str],
        relevant_docs: dict[str, set[str]],
        ndcg_at_k: list[int] = (10,),
        mrr_at_k: list[int] = (10,),
        map_at_k: list[int] = (100,),
        accuracy_at_k: list[int] = (1, 3, 5, 10),
        precision_recall_at_k: list[int] = (1, 3, 5, 10),
        query_chunk_size: int = 1024,
        corpus_chunk_size: int = 50_000,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.query_ids = [qid for qid in queries if relevant_docs.get(qid)]
        if not self.query_ids:
            raise ValueError("Retrieval evaluation needs at least one query with a relevant document.")
        self.queries = [queries[qid] for qid in self.query_ids]
        # Corpus in ascending id order: index order then breaks score ties as the reference does.
        self.corpus_ids = sorted(corpus)
        self.corpus = [corpus[cid] for cid in self.corpus_ids]
        index_of = {cid: index for index, cid in enumerate(self.corpus_ids)}
        self.relevant = [sorted(index_of[cid] for cid in relevant_docs[qid]) for qid in self.query_ids]
        self.ndcg_at_k, self.mrr_at_k, self.map_at_k = list(ndcg_at_k), list(mrr_at_k), list(map_at_k)
        self.accuracy_at_k, self.precision_recall_at_k = list(accuracy_at_k), list(precision_recall_at_k)
        self.max_k = max(self.ndcg_at_k + self.mrr_at_k + self.map_at_k + self.accuracy_at_k + self.precision_recall_at_k)
        self.query_chunk_size, self.corpus_chunk_size = query_chunk_size, corpus_chunk_size
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

    def __call__(self, model: SentenceTransformer, dims: list[int]) -> DimensionMetrics:
        query_embeddings = self.encode(model, self.queries)
        corpus_embeddings = self.encode(model, self.corpus)
        return {dim: self.metrics(self.hits(truncate(query_embeddings, dim), truncate(corpus_embeddings, dim))) for dim in dims}

    def hits(self, queries: torch.Tensor, corpus: torch.Tensor) -> torch.Tensor:
        """Boolean [n_queries, k] matrix: is the document ranked r-th for query q relevant to it,
        for the top k = min(max_k, corpus size) documents ranked by (-cosine, corpus id)."""
        k = min(self.max_k, len(corpus))
        rows = []
        for start in range(0, len(queries), self.query_chunk_size):
            top_scores, top_index = self._top_k(queries[start : start + self.query_chunk_size], corpus, k)
            relevant = self._relevant_matrix(start, start + len(top_index))
            rows.append((top_index.unsqueeze(-1) == relevant.unsqueeze(1)).any(-1))
        return torch.cat(rows)

    def _top_k(self, queries: torch.Tensor, corpus: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        best_scores = torch.empty(len(queries), 0)
        best_index = torch.empty(len(queries), 0, dtype=torch.long)
        for start in range(0, len(corpus), self.corpus_chunk_size):
            scores = queries @ corpus[start : start + self.corpus_chunk_size].T
            chunk_scores, chunk_index = scores.topk(min(k, scores.shape[1]), dim=1)
            best_scores = torch.cat([best_scores, chunk_scores], dim=1)
            best_index = torch.cat([best_index, chunk_index + start], dim=1)
            best_scores, order = best_scores.topk(min(k, best_scores.shape[1]), dim=1)
            best_index = best_index.gather(1, order)
        # Rank by descending score, ties by ascending corpus index (= ascending corpus id).
        by_index = best_index.argsort(dim=1)
        best_index, best_scores = best_index.gather(1, by_index), best_scores.gather(1, by_index)
        by_score = best_scores.argsort(dim=1, descending=True, stable=True)
        return best_scores.gather(1, by_score), best_index.gather(1, by_score)

    def _relevant_matrix(self, start: int, end: int) -> torch.Tensor:
        """Relevant corpus indices of queries start..end, padded with -1."""
        lists = self.relevant[start:end]
        matrix = torch.full((len(lists), max(map(len, lists))), -1, dtype=torch.long)
        for row, indices in enumerate(lists):
            matrix[row, : len(indices)] = torch.tensor(indices)
        return matrix

    def metrics(self, hits: torch.Tensor) -> dict[str, float]:
        """The configured metrics from a hits matrix (see `hits`), averaged over queries."""
        hits = hits.double()
        n_relevant = torch.tensor([len(r) for r in self.relevant], dtype=torch.float64)
        ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64)
        discounts = 1.0 / torch.log2(torch.arange(2, self.max_k + 2, dtype=torch.float64))
        results = {}
        for k in self.accuracy_at_k:
            results[f"accuracy@{k}"] = hits[:, :k].amax(dim=1).mean().item()
        for k in self.precision_recall_at_k:
            correct = hits[:, :k].sum(dim=1)
            results[f"precision@{k}"] = (correct / k).mean().item()
            results[f"recall@{k}"] = (correct / n_relevant).mean().item()
        for k in self.mrr_at_k:
            top = hits[:, :k]
            first = top.argmax(dim=1)
            reciprocal = torch.where(top.amax(dim=1) > 0, 1.0 / (first + 1).double(), 0.0)
            results[f"mrr@{k}"] = reciprocal.mean().item()
        for k in self.ndcg_at_k:
            top = hits[:, :k]
            dcg = (top * discounts[: top.shape[1]]).sum(dim=1)
            ideal = torch.stack([discounts[: min(int(n), k)].sum() for n in n_relevant])
            results[f"ndcg@{k}"] = (dcg / ideal).mean().item()
        for k in self.map_at_k:
            top = hits[:, :k]
            precision_at_hit = top.cumsum(dim=1) / ranks[: top.shape[1]] * top
            results[f"map@{k}"] = (precision_at_hit.sum(dim=1) / n_relevant.clamp(max=k)).mean().item()
        return results
