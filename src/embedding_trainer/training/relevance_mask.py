"""Known relevance is never a negative (`loss.mask_known_relevance`).

An in-batch loss scores each anchor against every document of its batch. When the data says a document
of another row is also relevant to that anchor (see `embedding_trainer.data.relevance`), or a mined
negative is one of the anchor's known positives, that score is masked: set to -inf before the softmax,
so the pair is neither pulled nor pushed. The row's own (anchor, positive) target is never masked.

How: each batch's labels are its rows' text ids (`RelevanceSets`: the loss declares them in its
`batch_needs`, the collator provides them). `KnownRelevanceLoss` takes them (gathered across processes when
the loss gathers embeddings) and builds the loss it is given anew through the public constructors
(`masked_copy`): its scorer gets `similarity_fct=MaskedSimilarity(...)`, which masks every score matrix the
loss computes; a modifier around it is built anew around the masked scorer, and nothing of the given loss
changes. GIST's constructor takes no similarity: its similarity module gets a forward hook that masks its
output during each forward of `KnownRelevanceLoss` (`masking_gist`).
A loss computes its matrices in a fixed order (`PLANS`: which texts are the rows and columns of each);
mini-batched (cached) losses repeat that order per mini-batch, and Matryoshka or adaptive-layer modifiers
repeat the whole forward, which the plan follows from the matrices' shapes. A matrix of an unexpected
shape raises instead of masking the wrong pairs.
"""

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import datasets
import torch
import torch.distributed as dist
from omegaconf import DictConfig
from sentence_transformers.sentence_transformer.losses import (
    AdaptiveLayerLoss,
    CachedGISTEmbedLoss,
    GISTEmbedLoss,
    Matryoshka2dLoss,
    MatryoshkaLoss,
)
from torch import Tensor, nn

from embedding_trainer.data.relevance import RelevanceSets, contains
from embedding_trainer.training.declared import BatchNeeds, DeclaresBatchNeeds, LoggedTerms
from embedding_trainer.training.losses import class_name
from embedding_trainer.utils.errors import ConfigError

SPANS = ("chunk", "local", "all")


@dataclass(frozen=True)
class Side:
    """The texts along one side of a score matrix: the input `columns` (0 anchors, 1 positives, 2..
    negatives) stacked in that order, each over the rows of `span`: `chunk` the next rows of this
    process's batch (a mini-batch, or all of them), `local` all of this process's rows, `all` the rows
    of every process when the loss gathers embeddings (else this process's)."""

    columns: tuple[int, ...]
    span: str


@dataclass(frozen=True)
class Score:
    """One score matrix a loss computes: texts of `rows` x texts of `cols`. `masked` False: passed
    through (a guide model's scores)."""

    rows: Side
    cols: Side
    masked: bool = True


def ranking_plan(loss: nn.Module, columns: int) -> list[Score]:
    """(Cached)MultipleNegatives(Symmetric)RankingLoss: per mini-batch, one matrix per direction in
    `loss.directions`, in the order sentence-transformers 6.2 computes them."""
    documents = tuple(range(1, columns))
    by_direction = {
        "query_to_doc": Score(Side((0,), "chunk"), Side(documents, "all")),
        "query_to_query": Score(Side((0,), "chunk"), Side((0,), "all")),
        "doc_to_query": Score(Side((0,), "all"), Side((1,), "chunk")),  # transposed by the loss
        "doc_to_doc": Score(Side(documents, "all"), Side((1,), "chunk")),  # transposed by the loss
    }
    return [score for direction, score in by_direction.items() if direction in loss.directions]


def gist_plan(loss: nn.Module, columns: int) -> list[Score]:
    """(Cached)GISTEmbedLoss: per mini-batch, anchor-positive, anchor-anchor and positive-positive
    matrices (when contrasted) and one per negative column, each followed by the guide's (unmasked)."""
    scores = [Score(Side((0,), "chunk"), Side((1,), "all"))]
    if loss.contrast_anchors:
        scores.append(Score(Side((0,), "chunk"), Side((0,), "local")))  # anchors are not gathered
    if loss.contrast_positives:
        scores.append(Score(Side((1,), "chunk"), Side((1,), "all")))
    scores += [Score(Side((0,), "chunk"), Side((column,), "all")) for column in range(2, columns)]
    return [matrix for score in scores for matrix in (score, dataclasses.replace(score, masked=False))]


def documents_plan(loss: nn.Module, columns: int) -> list[Score]:
    """InfoNCELoss: one matrix, the anchors x every document column."""
    return [Score(Side((0,), "chunk"), Side(tuple(range(1, columns)), "all"))]


# The losses that can mask known relevance, by class name: the order of their score matrices.
PLANS: dict[str, Callable[[nn.Module, int], list[Score]]] = {
    "MultipleNegativesRankingLoss": ranking_plan,
    "CachedMultipleNegativesRankingLoss": ranking_plan,
    "MultipleNegativesSymmetricRankingLoss": ranking_plan,
    "CachedMultipleNegativesSymmetricRankingLoss": ranking_plan,
    "GISTEmbedLoss": gist_plan,
    "CachedGISTEmbedLoss": gist_plan,
    "InfoNCELoss": documents_plan,
}


class BatchMask:
    """The current batch's text ids and where its loss is in its plan of score matrices.

    Args:
        relevance: the training data's relevance pairs.
        plan: (number of input columns) -> the loss's score matrices per mini-batch.
    """

    def __init__(self, relevance: RelevanceSets, plan: Callable[[int], list[Score]]) -> None:
        self.pair_keys = relevance.pair_keys
        self.size = relevance.size
        self.plan_of = plan
        self.flat_ids: Tensor | None = None

    def start(self, ids: Tensor, offset: int, local: int) -> Tensor:
        """Begin a batch: `ids` [rows, columns] of every row the loss sees (all processes' when it gathers),
        this process's rows being `local` rows from `offset`. Returns the number of (local anchor, document)
        pairs masked."""
        self.rows, self.offset, self.local = ids.size(0), offset, local
        self.flat_ids = ids.T.reshape(-1)  # position: column * rows + row
        self.pair_keys = self.pair_keys.to(ids.device)
        self.plan = self.plan_of(ids.size(1))
        self.step, self.position = 0, 0
        documents = Side(tuple(range(1, ids.size(1))), "all")
        return self.block(self.positions(Side((0,), "local"), 0), self.positions(documents, 0)).sum()

    def positions(self, side: Side, chunk: int) -> Tensor:
        """The flat positions of `side`'s texts (`chunk`: the number of rows of a `chunk` span)."""
        start, end = {
            "chunk": (self.offset + self.position, self.offset + self.position + chunk),
            "local": (self.offset, self.offset + self.local),
            "all": (0, self.rows),
        }[side.span]
        rows = torch.arange(start, end, device=self.flat_ids.device)
        return torch.cat([column * self.rows + rows for column in side.columns])

    def block(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Bool [rows, cols]: True where the two texts are a known relevance pair, except a row's own
        (anchor, positive) pair."""
        a, b = self.flat_ids[rows], self.flat_ids[cols]
        known = (a >= 0)[:, None] & (b >= 0)[None, :]
        related = known & contains(self.pair_keys, a[:, None] * self.size + b[None, :])
        same_row = (rows % self.rows)[:, None] == (cols % self.rows)[None, :]
        anchor_and_positive = (rows // self.rows)[:, None] + (cols // self.rows)[None, :] == 1
        return related & ~(same_row & anchor_and_positive)

    def apply(self, scores: Tensor) -> Tensor:
        """`scores`, the loss's next score matrix, with its masked pairs at -inf."""
        if self.flat_ids is None:
            raise RuntimeError("KnownRelevanceLoss: a score matrix was computed outside its forward.")
        score = self.plan[self.step]
        chunk = scores.size(0) if score.rows.span == "chunk" else scores.size(1)
        rows, cols = self.positions(score.rows, chunk), self.positions(score.cols, chunk)
        if scores.shape != (len(rows), len(cols)):
            raise RuntimeError(
                f"KnownRelevanceLoss expected a {len(rows)} x {len(cols)} score matrix ({score}), got "
                f"{tuple(scores.shape)}: the loss computes its scores in another order than its plan in "
                "embedding_trainer.training.relevance_mask.PLANS (another sentence-transformers version?)."
            )
        if score.masked:
            scores = scores.masked_fill(self.block(rows, cols), -torch.inf)
        self.step += 1
        if self.step == len(self.plan):
            self.step, self.position = 0, (self.position + chunk) % self.local
        return scores


class MaskedSimilarity(nn.Module):
    """A loss's `similarity_fct` whose every score matrix goes through `mask.apply`."""

    def __init__(self, similarity_fct: Callable[[Tensor, Tensor], Tensor], mask: BatchMask) -> None:
        super().__init__()
        self.similarity_fct = similarity_fct
        self.mask = mask

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.mask.apply(self.similarity_fct(a, b))


GIST_LOSSES = (GISTEmbedLoss, CachedGISTEmbedLoss)
MATRYOSHKA_SETTINGS = ("matryoshka_dims", "matryoshka_weights", "n_dims_per_step")


def constructor_arguments(built: nn.Module, /, **given) -> dict:
    """The arguments the loss `built` was built with, by its constructor's parameter names: those `given`,
    the others read back from the same-named attributes sentence-transformers losses keep."""
    parameters = inspect.signature(type(built).__init__).parameters.values()
    names = [
        p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return {name: given[name] if name in given else getattr(built, name) for name in names}


def masked_copy(loss: nn.Module, mask: BatchMask) -> nn.Module:
    """`loss` (a loss of `PLANS` whose constructor takes `similarity_fct`, alone or in MatryoshkaLoss,
    AdaptiveLayerLoss or Matryoshka2dLoss) built anew with the same arguments, its scorer's every score
    matrix going through `mask` (its `similarity_fct` a `MaskedSimilarity`). `loss` itself is left as it is."""
    if isinstance(loss, Matryoshka2dLoss):  # an AdaptiveLayerLoss around the MatryoshkaLoss it builds
        matryoshka = loss.loss
        settings = {name: getattr(matryoshka, name) for name in MATRYOSHKA_SETTINGS}
        return Matryoshka2dLoss(
            **constructor_arguments(loss, loss=masked_copy(matryoshka.loss, mask), **settings)
        )
    if isinstance(loss, (MatryoshkaLoss, AdaptiveLayerLoss)):
        return type(loss)(**constructor_arguments(loss, loss=masked_copy(loss.loss, mask)))
    if type(loss).__name__ in PLANS and not isinstance(loss, GIST_LOSSES):
        masked = MaskedSimilarity(loss.similarity_fct, mask)
        return type(loss)(**constructor_arguments(loss, similarity_fct=masked))
    raise ValueError(
        f"KnownRelevanceLoss cannot build {type(loss).__name__} anew around a masked loss: mask a loss of "
        f"{', '.join(PLANS)}, alone or in MatryoshkaLoss, AdaptiveLayerLoss or Matryoshka2dLoss."
    )


class KnownRelevanceLoss(nn.Module, LoggedTerms, DeclaresBatchNeeds):
    """`loss` (an in-batch loss of `PLANS`, possibly inside modifiers) with known relevance masked: the
    wrapped loss (`self.loss`) is `loss` built anew with its scores masked (`masked_copy`); a GIST loss,
    whose constructor takes no similarity, is wrapped itself and masked during each forward
    (`masking_gist`).

    Inputs: the wrapped loss's features, and as labels the rows' text ids, int64 [rows, input columns]
    (its `batch_needs`: `relevance`'s ids); the wrapped loss gets zero labels. After each forward,
    `logged_terms()["masked_pairs"]` holds the number of (anchor, document) pairs of this process's rows
    that were masked (documents: every positive and negative the loss scores them against).
    """

    def __init__(self, loss: nn.Module, relevance: RelevanceSets) -> None:
        super().__init__()
        self.relevance = relevance
        scorer = next((m for m in loss.modules() if type(m).__name__ in PLANS), None)
        if scorer is None:
            raise ValueError(
                f"{type(loss).__name__} holds none of the losses that can mask known relevance ({', '.join(PLANS)})."
            )
        self.mask = BatchMask(relevance, functools.partial(PLANS[type(scorer).__name__], scorer))
        self.loss = loss if isinstance(scorer, GIST_LOSSES) else masked_copy(loss, self.mask)
        self.gathers = bool(scorer.gather_across_devices)
        self.masked_pairs: Tensor | None = None

    def forward(self, sentence_features, labels: Tensor) -> Tensor:
        features = list(sentence_features)
        if labels.ndim != 2 or labels.size(1) != len(features):
            raise ValueError(
                f"KnownRelevanceLoss takes the rows' text ids as labels, [rows, {len(features)}]; got shape "
                f"{tuple(labels.shape)} (its batch_needs: the data module's batches carry them once given the needs)."
            )
        ids, offset = labels.long(), 0
        if self.gathers and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [torch.empty_like(ids) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, ids)
            ids, offset = torch.cat(gathered), dist.get_rank() * len(labels)
        self.masked_pairs = self.mask.start(ids, offset, len(labels)).float()
        with masking_gist(self.loss, self.mask):
            return self.loss(features, torch.zeros(len(labels), device=labels.device))

    def logged_terms(self) -> dict[str, Tensor]:
        return {} if self.masked_pairs is None else {"masked_pairs": self.masked_pairs}

    def batch_needs(self) -> BatchNeeds:
        return BatchNeeds(text_ids=self.relevance)


@contextmanager
def masking_gist(loss: nn.Module, mask: BatchMask) -> Iterator[None]:
    """Inside the block, every score matrix of a GIST loss in `loss` goes through `mask.apply`: a forward
    hook (PyTorch's public route) on its similarity module, which computes each of its score matrices,
    removed after the block. GISTEmbedLoss takes no `similarity_fct` argument; its cached form computes
    every matrix in its forward too."""
    handles = [
        module.similarity_fct.register_forward_hook(lambda _module, _inputs, scores: mask.apply(scores))
        for module in loss.modules()
        if isinstance(module, GIST_LOSSES)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def with_relevance_mask(loss: nn.Module, mask: bool, rows: datasets.Dataset, columns: list[str]) -> nn.Module:
    """`loss` as `KnownRelevanceLoss` over the relevance pairs of the training `rows` (their input
    `columns`, in the loss's order) when `mask` (`loss.mask_known_relevance`); else `loss` itself. Call it
    once the training rows are final (after mining)."""
    if not mask:
        return loss
    return KnownRelevanceLoss(loss, RelevanceSets.of_rows(rows, columns))


def check_relevance_mask(cfg: DictConfig) -> None:
    """`loss.mask_known_relevance` is true or false (or unset: off), and true only for a loss of `PLANS`."""
    value = cfg.loss.get("mask_known_relevance")
    if value is None or value is False:
        return
    if value is not True:
        raise ConfigError(f"loss.mask_known_relevance must be true or false, got {value!r}.")
    name = class_name(cfg.loss._target_)
    if name not in PLANS:
        raise ConfigError(
            f"loss.mask_known_relevance=true: {name} cannot mask known relevance (the losses that can: "
            f"{', '.join(PLANS)}); set loss.mask_known_relevance=false."
        )
