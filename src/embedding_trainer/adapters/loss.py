"""The query adapter's training loss, on frozen embeddings."""

import torch
import torch.nn.functional as F
from sentence_transformers.base.modules import Module


class QueryAdapterLoss(torch.nn.Module):
    """MultipleNegativesRankingLoss on precomputed embeddings, with `adapter` applied to the queries:
    each adapted query is scored (cosine x `scale`) against every document of the batch (the positives,
    then each negative column's texts) and cross-entropy picks its own positive. With `dims`, the sum
    of that loss over the embeddings truncated to each dimension (as MatryoshkaLoss with unit weights).

    `forward(features, labels)` takes features [queries, positives, negatives...] as [batch, dim]
    tensors of the frozen model's embeddings (`VectorBatchCollator`); `labels` are unused."""

    def __init__(self, adapter: Module, scale: float = 20.0, dims: list[int] | None = None) -> None:
        super().__init__()
        self.adapter = adapter
        self.scale = scale
        self.dims = list(dims) if dims else None

    def forward(self, features: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        queries = self.adapter({"sentence_embedding": features[0]})["sentence_embedding"]
        documents = torch.cat(features[1:])
        targets = torch.arange(len(queries), device=queries.device)
        dims = self.dims or [queries.shape[-1]]
        losses = [
            F.cross_entropy(
                self.scale
                * F.normalize(queries[:, :dim], dim=-1)
                @ F.normalize(documents[:, :dim], dim=-1).T,
                targets,
            )
            for dim in dims
        ]
        return torch.stack(losses).sum()
