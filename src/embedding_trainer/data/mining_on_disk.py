"""Hard-negative mining over a corpus too large for its embeddings to sit in memory: the corpus and the
anchors are encoded chunk by chunk into `CorpusStore`s (files in a temporary folder), and each chunk of
anchors takes its top candidates with `chunked_top_k`, so resident memory grows with the chunk sizes and
the candidates kept per anchor, not with the corpus.

The results are those of sentence-transformers' `mine_hard_negatives` with n-tuple output and scores,
for the settings `HardNegativeSettings` holds: the corpus is the given texts (None: the positives) plus
the positives, deduplicated; duplicate anchors are one query with all their positives; every positive of
an anchor is excluded from its candidates; candidates are the `range_max + (most rows of one anchor)`
nearest documents, then `relative_margin` (against the anchor's lowest positive score) and `max_score`
drop candidates, `range_min` skips the best survivors and `num_negatives` are taken; an anchor with fewer
survivors than that is left out. Rows come grouped by anchor in first-appearance order. `sampling=top`
gives the same rows, negatives and scores (up to float rounding and the order of exactly tied scores);
`sampling=random` draws, per anchor, `num_negatives` of the same survivors as sentence-transformers would
draw from, with a generator seeded by `seed` and the anchor's position, so it is reproducible and the
same however the anchors are chunked (up to float rounding of near ties), but not the draw
sentence-transformers makes (Python's global `random`).
"""

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import torch
from sentence_transformers import SentenceTransformer

from embedding_trainer.evaluation.corpus_embeddings import CorpusStore, chunked_top_k, encode_to_store
from embedding_trainer.utils.errors import ConfigError

if TYPE_CHECKING:
    from embedding_trainer.data.hard_negatives import HardNegativeSettings

NEGATIVE_INFINITY = float("-inf")
SIMILARITIES = ("cosine", "dot")  # equal on the unit-length embeddings the miner compares


def window_end(
    range_min: int, range_max: int | None, num_negatives: int, filtered: bool, max_positives: int
) -> int:
    """`range_max`, or where sentence-transformers ends the window when it is None: past `num_negatives`
    candidates (ten times as many when a filter may drop some) and the most positives of one anchor."""
    if range_max is not None:
        return range_max
    return range_min + num_negatives * (10 if filtered else 1) + max_positives


@dataclass
class Pairs:
    """Training pairs as the miner sees them: distinct `queries`, the distinct `documents` (corpus, then
    positives), and each query's distinct positives as document positions, in first-appearance order."""

    queries: list[str]
    documents: list[str]
    positives_of: list[list[int]]
    max_positives: int

    @classmethod
    def of(cls, anchors: list[str], positives: list[str], corpus: list[str] | None) -> "Pairs":
        """The pairs of `anchors` and `positives` (row by row) against `corpus` (None: the positives)."""
        queries = list(dict.fromkeys(anchors))
        documents = list(dict.fromkeys((positives if corpus is None else list(corpus)) + positives))
        document_at = {text: position for position, text in enumerate(documents)}
        query_at = {query: position for position, query in enumerate(queries)}
        positives_of: list[list[int]] = [[] for _ in queries]
        for anchor, positive in zip(anchors, positives):
            own = positives_of[query_at[anchor]]
            if document_at[positive] not in own:
                own.append(document_at[positive])
        return cls(queries, documents, positives_of, max(Counter(anchors).values()))


def mine_on_disk(
    rows: datasets.Dataset,
    model: SentenceTransformer,
    settings: "HardNegativeSettings",
    corpus: list[str] | None,
    seed: int,
    folder: str | Path | None = None,
    chunk_size: int = 16384,
    query_chunk_size: int = 1024,
) -> tuple[datasets.Dataset, str]:
    """(anchor, positive, negative_1..n, scores) rows mined by `model` as the module docstring says, and a
    summary; the embeddings live in temporary folders under `folder` (None: the system's) while mining."""
    if model.similarity_fn_name not in SIMILARITIES:
        raise ConfigError(
            f"Mining with the corpus on disk ranks by cosine, but the miner's similarity is "
            f"{model.similarity_fn_name}; set data.hard_negatives.corpus_on_disk_from=null."
        )
    pairs = Pairs.of(list(rows["anchor"]), list(rows["positive"]), corpus)
    filtered = settings.relative_margin is not None or settings.max_score is not None
    range_max = window_end(
        settings.range_min, settings.range_max, settings.num_negatives, filtered, pairs.max_positives
    )
    width = range_max + pairs.max_positives

    def encoder(encode):
        return lambda texts: (
            encode(
                texts,
                batch_size=settings.batch_size,
                normalize_embeddings=True,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
            .float()
            .cpu()
        )

    mined: list[Chunk] = []
    with (
        encode_to_store(
            encoder(model.encode_document), pairs.documents, chunk_size, folder=folder
        ) as documents,
        encode_to_store(encoder(model.encode_query), pairs.queries, chunk_size, folder=folder) as queries,
    ):
        for start, query_rows in queries.chunks(queries.dim, query_chunk_size):
            scores, index = chunked_top_k(query_rows, documents.chunks(documents.dim, chunk_size), width)
            own = pairs.positives_of[start : start + len(query_rows)]
            positive_scores = _positive_scores(query_rows, own, documents)
            scores, index = _filtered(scores, index, own, positive_scores, settings, width)
            mined.append(Chunk(positive_scores, *_chosen(scores, index, settings, range_max, seed, start)))
    return _rows(pairs, mined)


@dataclass
class Chunk:
    """The distinct queries of one chunk: the scores of their positives (one after another, in
    `positives_of` order), of their chosen negatives (-inf where too few survived) and the negatives'
    document positions."""

    positive_scores: torch.Tensor
    negative_scores: torch.Tensor
    negatives: torch.Tensor


def _positive_scores(query_rows: torch.Tensor, own: list[list[int]], documents: CorpusStore) -> torch.Tensor:
    """Each query's cosine with each of its positives, one query after another."""
    embeddings = documents.rows_at([position for positions in own for position in positions])
    repeated = query_rows.repeat_interleave(torch.tensor([len(positions) for positions in own]), dim=0)
    return (repeated * embeddings).sum(dim=1)


def _filtered(
    scores: torch.Tensor,
    index: torch.Tensor,
    own: list[list[int]],
    positive_scores: torch.Tensor,
    settings: "HardNegativeSettings",
    width: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`scores` and `index` padded to `width` columns (index -1), with -inf scores for padding, the
    queries' own positives, and the candidates that `relative_margin` or `max_score` rule out."""
    missing = width - scores.shape[1]
    scores = torch.cat([scores, scores.new_full((len(scores), missing), NEGATIVE_INFINITY)], dim=1)
    index = torch.cat([index, index.new_full((len(index), missing), -1)], dim=1)
    longest = max(len(positions) for positions in own)
    positives = torch.tensor([positions + [-1] * (longest - len(positions)) for positions in own])
    ruled_out = (index == -1) | (index.unsqueeze(2) == positives.unsqueeze(1)).any(dim=2)
    if settings.relative_margin is not None:
        counts = [len(positions) for positions in own]
        hardest = torch.stack([values.min() for values in positive_scores.split(counts)])
        ruled_out |= scores > (hardest - hardest.abs() * settings.relative_margin).unsqueeze(1)
    if settings.max_score is not None:
        ruled_out |= scores > settings.max_score
    return scores.masked_fill(ruled_out, NEGATIVE_INFINITY), index


def _chosen(
    scores: torch.Tensor,
    index: torch.Tensor,
    settings: "HardNegativeSettings",
    range_max: int,
    seed: int,
    start: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The negatives' scores and positions per query (query `start` first): of the survivors ranked
    range_min..range_max, the first `num_negatives` (`top`) or a draw seeded by `seed` and the query's
    position (`random`), best first."""
    order = scores.argsort(dim=1, descending=True, stable=True)[:, settings.range_min : range_max]
    scores, index = scores.gather(1, order), index.gather(1, order)
    wanted = settings.num_negatives
    if settings.sampling == "random":
        survivors = (scores > NEGATIVE_INFINITY).sum(dim=1).tolist()
        picked = [
            sorted(random.Random(f"{seed}/{start + row}").sample(range(count), wanted))
            if count >= wanted
            else list(range(wanted))  # too few: the row is left out
            for row, count in enumerate(survivors)
        ]
        order = torch.tensor(picked, dtype=torch.long).view(len(scores), wanted)
    else:
        order = torch.arange(wanted).expand(len(scores), -1)
    return scores.gather(1, order), index.gather(1, order)


def _rows(pairs: Pairs, mined: list[Chunk]) -> tuple[datasets.Dataset, str]:
    """The (anchor, positive, negative_1..n, scores) rows of the queries with all their negatives, one per
    positive, and a summary."""
    wanted = mined[0].negatives.shape[1]
    columns: dict[str, list] = {
        "anchor": [],
        "positive": [],
        **{f"negative_{i}": [] for i in range(1, wanted + 1)},
    }
    columns["scores"] = []
    query = 0
    for chunk in mined:
        positive_scores = iter(chunk.positive_scores.tolist())
        for negative_scores, negatives in zip(chunk.negative_scores.tolist(), chunk.negatives.tolist()):
            scores = [next(positive_scores) for _ in pairs.positives_of[query]]
            if NEGATIVE_INFINITY not in negative_scores:
                texts = [pairs.documents[position] for position in negatives]
                for position, score in zip(pairs.positives_of[query], scores):
                    columns["anchor"].append(pairs.queries[query])
                    columns["positive"].append(pairs.documents[position])
                    for number, text in enumerate(texts, start=1):
                        columns[f"negative_{number}"].append(text)
                    columns["scores"].append([score, *negative_scores])
            query += 1
    rows = datasets.Dataset.from_dict(columns)
    possible = sum(len(positions) for positions in pairs.positives_of)
    summary = (
        f"Mined with the corpus embeddings on disk: {len(pairs.queries)} distinct anchors against "
        f"{len(pairs.documents)} documents; {len(rows)} of {possible} (anchor, positive) rows got {wanted} negatives."
    )
    return rows, summary
