"""The query adapter's training loss, on frozen embeddings."""

import torch
import torch.nn.functional as F
from sentence_transformers.base.modules import Module


class QueryAdapterLoss(torch.nn.Module):
    """MultipleNegativesRankingLoss on precomputed embeddings, with `adapter` applied to the queries:
    each adapted query is scored (cosine x `scale`) against candidate documents and cross-entropy
    picks its own positive. With `dims`, the sum of that loss over the embeddings truncated to each
    dimension (as MatryoshkaLoss with unit weights).

    Candidates: with `documents` None, the batch's documents (the positives, then each negative
    column's texts), as MNRL ranks them; with `documents` ([n, dim], every training document), all of
    them, the other documents known to be relevant to a query left out of its ranking.

    `forward(features, labels)` takes features [queries, positives, negatives...] as [batch, dim]
    tensors of the frozen model's embeddings (`VectorBatchCollator`); `labels` are unused in-batch,
    else [batch, 1 + m]: each query's positive's row in `documents`, then its other relevant rows (-1: none)."""

    def __init__(
        self,
        adapter: Module,
        scale: float = 20.0,
        dims: list[int] | None = None,
        documents: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.adapter = adapter
        self.scale = scale
        self.dims = list(dims) if dims else None
        # Not saved in checkpoints: they are the frozen model's, computed again (from the cache) on resume.
        self.register_buffer("documents", documents, persistent=False)

    def forward(self, features: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        queries = self.adapter({"sentence_embedding": features[0]})["sentence_embedding"]
        if self.documents is None:
            documents, targets, excluded = (
                torch.cat(features[1:]),
                torch.arange(len(queries), device=queries.device),
                None,
            )
        else:
            documents, targets, excluded = self.documents, labels[:, 0], labels[:, 1:]
        losses = []
        for dim in self.dims or [queries.shape[-1]]:
            logits = (
                self.scale * F.normalize(queries[:, :dim], dim=-1) @ F.normalize(documents[:, :dim], dim=-1).T
            )
            if excluded is not None and excluded.numel():
                rows = torch.arange(len(queries), device=logits.device).unsqueeze(1).expand_as(excluded)
                known = excluded >= 0
                logits = logits.index_put(
                    (rows[known], excluded[known]), torch.tensor(float("-inf"), device=logits.device)
                )
            losses.append(F.cross_entropy(logits, targets))
        return torch.stack(losses).sum()
