"""What every evaluator provides, and encoding shared by all of them."""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer

from embedding_trainer.adapters.router import FROZEN_ROUTE, apply_modules, modules_after_frozen
from embedding_trainer.models.prompts import QUERY, prompt_text
from embedding_trainer.utils.embedding_cache import EmbeddingCache, encode

# Metrics of one evaluation: {dimension: {metric name: value}}.
DimensionMetrics = dict[int, dict[str, float]]
# Per-example scores of one evaluation: {dimension: {metric name: float64 array, one value per example}},
# whose mean is the metric's value in DimensionMetrics.
PerExample = dict[int, dict[str, np.ndarray]]


class DimensionEvaluator(ABC):
    """Scores a model at several truncation dimensions, encoding its inputs once.

    Subclasses set `name` (used in metric keys) and `primary_metric` (higher is better).

    Evaluators whose metrics are means over examples set `last_per_example` on each call to the
    per-example scores behind them (every such metric, every dimension; None otherwise, as for
    correlations), in the order of `example_ids` (None: the eval rows' positions), each example
    being one `example_unit`.

    `scores_with_loss`: True when the evaluator scores with a head the training loss trains (the softmax
    classifier), which it is given with each call (`loss`), so it cannot score a model without its
    training loss (a saved model alone).

    `embedding_cache`: when set, `encode` reads and fills it (see `using_cache`); only for a model
    that does not change, such as the one the baseline evaluates.

    `frozen_cache` (`use_frozen_cache`): when set, the frozen part of a query adapter's model (`adapters.router`) encodes
    through it at every evaluation (it never changes), and only the adapter runs on the stored embeddings.

    Prompts: queries are encoded with the model's `query` prompt and documents with its `document`
    prompt (`model.prompts`, as `encode_query` and `encode_document` apply them); the texts of
    symmetric data (both sides of a pair, single sentences) are encoded as queries
    (see `embedding_trainer.models.prompts`).
    """

    name: str
    primary_metric: str
    scores_with_loss: bool = False
    last_per_example: PerExample | None = None
    example_ids: list[str] | None = None
    example_unit: str = "examples"
    embedding_cache: EmbeddingCache | None = None
    frozen_cache: EmbeddingCache | None = None

    def __init__(self, batch_size: int = 64, show_progress_bar: bool = True) -> None:
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar

    def use_frozen_cache(self, cache: EmbeddingCache) -> None:
        """From now on, encode a query adapter's frozen model through `cache` (see `frozen_cache`)."""
        self.frozen_cache = cache

    def parts(self) -> list["DimensionEvaluator"]:
        """The evaluators whose metrics this one reports: itself (several objectives': theirs)."""
        return [self]

    @abstractmethod
    def __call__(
        self, model: SentenceTransformer, dims: list[int], loss: torch.nn.Module | None = None
    ) -> DimensionMetrics:
        """Metrics of `model` at each of `dims` (each at most the model's embedding dimension); `loss`: the
        training loss of `model` (None: none), read by an evaluator that `scores_with_loss`."""

    def encode(self, model: SentenceTransformer, texts: list[str], role: str = QUERY) -> torch.Tensor:
        """Full-dimension float32 embeddings of `texts` (one row each, on the CPU) encoded as `role`
        (`query` or `document`), as `encode_query` and `encode_document` do: with the model's prompt of
        that name prepended and, in a model that routes by task (a query adapter's), through that
        route. Through `embedding_cache` when one is set (keyed by the prompt and the route too). A query
        adapter's model encodes as its frozen model (through `embedding_cache` or `frozen_cache`), then
        for queries its adapter runs on those embeddings: the same numbers as its routes, up to float
        rounding, with no transformer run for texts stored before."""
        prompt = prompt_text(model.prompts, role)
        after_frozen = modules_after_frozen(model, role)
        if after_frozen is None:
            return self._encode(model, texts, prompt, role, self.embedding_cache)
        frozen = self._encode(model, texts, prompt, FROZEN_ROUTE, self.embedding_cache or self.frozen_cache)
        return apply_modules(after_frozen, frozen) if after_frozen else frozen

    def _encode(
        self,
        model: SentenceTransformer,
        texts: list[str],
        prompt: str | None,
        task: str,
        cache: EmbeddingCache | None,
    ) -> torch.Tensor:
        if cache is not None:
            return cache.embeddings(
                model, texts, self.batch_size, self.show_progress_bar, prompt=prompt, task=task
            )
        return encode(model, texts, self.batch_size, self.show_progress_bar, prompt=prompt, task=task)


@contextmanager
def using_cache(evaluator: DimensionEvaluator, cache: EmbeddingCache | None) -> Iterator[DimensionEvaluator]:
    """`evaluator` encoding through `cache` inside the block, its previous cache restored after it,
    even when the block raises (None: `evaluator` as it is). Wrap only evaluations of a model that does
    not change (the baseline): each evaluation of a changing model would store a new entry."""
    if cache is None:
        yield evaluator
        return
    previous, evaluator.embedding_cache = evaluator.embedding_cache, cache
    try:
        yield evaluator
    finally:
        evaluator.embedding_cache = previous


def truncate(embeddings: torch.Tensor, dim: int) -> torch.Tensor:
    """The first `dim` components of each row, re-normalized to unit length (cosine geometry)."""
    return F.normalize(embeddings[:, :dim], p=2, dim=-1)


def encode_unique(
    evaluator: DimensionEvaluator,
    model: SentenceTransformer,
    columns: list[list[str]],
    roles: list[str] | None = None,
) -> list[torch.Tensor]:
    """Embeddings for each column of texts, column i encoded as `roles[i]` (default: `query` for
    every column, as for symmetric data), encoding every distinct text once per role across all columns."""
    roles = roles or [QUERY] * len(columns)
    texts: dict[str, list[str]] = {}
    for role, column in zip(roles, columns):
        texts.setdefault(role, []).extend(column)
    position, embeddings = {}, {}
    for role, role_texts in texts.items():
        distinct = list(dict.fromkeys(role_texts))
        position[role] = {text: index for index, text in enumerate(distinct)}
        embeddings[role] = evaluator.encode(model, distinct, role)
    return [
        embeddings[role][torch.tensor([position[role][text] for text in column])]
        for role, column in zip(roles, columns)
    ]


def metrics_json(metrics: DimensionMetrics | None) -> dict | None:
    """`metrics` with string dimension keys, as JSON stores them (None stays None)."""
    return None if metrics is None else {str(dim): values for dim, values in metrics.items()}


def per_example_tensors(per_example: PerExample | None) -> dict | None:
    """`per_example` with tensors for arrays, as checkpoints store it (loadable with weights_only=True)."""
    if per_example is None:
        return None
    return {
        dim: {name: torch.from_numpy(values) for name, values in metrics.items()}
        for dim, metrics in per_example.items()
    }


def per_example_arrays(per_example: dict | None) -> PerExample | None:
    """The inverse of `per_example_tensors`."""
    if per_example is None:
        return None
    return {
        dim: {name: values.numpy() for name, values in metrics.items()}
        for dim, metrics in per_example.items()
    }


def flat_metrics(prefix: str, evaluator_name: str, metrics: DimensionMetrics) -> dict[str, float]:
    """`metrics` as logger keys: `<prefix>/<evaluator_name>_<metric>_dim<d>`."""
    return {
        f"{prefix}/{evaluator_name}_{name}_dim{dim}": value
        for dim, values in metrics.items()
        for name, value in values.items()
    }
