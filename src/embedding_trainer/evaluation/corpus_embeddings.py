"""Corpus embeddings on disk, and exact top-k over corpus embeddings read chunk by chunk.

A corpus whose embeddings should not sit in memory is encoded in chunks straight into a file
(`CorpusStore`, float32 or float16) in a temporary folder that is removed when the store is closed.
Each chunk is memory-mapped only while it is written or read, so the pages of the file never stay in
the process's resident memory: peak memory is bounded by the chunk sizes, not the corpus size.
"""

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import numpy as np
import torch
import torch.nn.functional as F

STORE_DTYPES = {"float32": np.float32, "float16": np.float16}

# Chunks of corpus embeddings: (index of the chunk's first row in the corpus, float32 rows).
Chunks = Iterator[tuple[int, torch.Tensor]]


class CorpusStore:
    """`rows` x `dim` embeddings in a file of `dtype` (`float32` or `float16`) under a new temporary
    folder in `folder` (None: the system's temporary folder); `close` (or leaving a `with` block)
    removes the folder. Rows are written with `write` and read back, truncated and re-normalized,
    with `chunks`."""

    def __init__(self, rows: int, dim: int, dtype: str = "float32", folder: str | Path | None = None) -> None:
        if dtype not in STORE_DTYPES:
            raise ValueError(
                f"Corpus embeddings are stored as one of {', '.join(STORE_DTYPES)}, got {dtype!r}."
            )
        if rows < 1 or dim < 1:
            raise ValueError(f"A corpus store needs at least one row and one dimension, got {rows} x {dim}.")
        self.rows, self.dim, self.dtype = rows, dim, np.dtype(STORE_DTYPES[dtype])
        self.directory = Path(tempfile.mkdtemp(prefix="corpus_embeddings_", dir=folder))
        self.path = self.directory / "embeddings.bin"
        with open(self.path, "wb") as file:
            file.truncate(rows * dim * self.dtype.itemsize)

    def __len__(self) -> int:
        return self.rows

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _mapped(self, start: int, count: int, mode: str) -> np.memmap:
        offset = start * self.dim * self.dtype.itemsize
        return np.memmap(self.path, dtype=self.dtype, mode=mode, offset=offset, shape=(count, self.dim))

    def write(self, start: int, embeddings: torch.Tensor) -> None:
        """Store `embeddings` ([n, dim]) as rows start..start+n (rounded to the store's dtype)."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim or start + len(embeddings) > self.rows:
            raise ValueError(
                f"Rows {start}..{start + len(embeddings)} of shape {tuple(embeddings.shape)} do not fit a "
                f"{self.rows} x {self.dim} corpus store."
            )
        mapped = self._mapped(start, len(embeddings), "r+")
        mapped[:] = embeddings.detach().float().cpu().numpy()
        mapped.flush()
        del mapped

    def chunks(self, dim: int, chunk_size: int) -> Chunks:
        """The first `dim` components of every row, re-normalized to unit length (as `truncate` does),
        as float32 tensors of up to `chunk_size` rows, in row order."""
        for start in range(0, self.rows, chunk_size):
            mapped = self._mapped(start, min(chunk_size, self.rows - start), "r")
            rows = torch.from_numpy(np.array(mapped[:, :dim], dtype=np.float32))
            del mapped
            yield start, F.normalize(rows, p=2, dim=-1)

    def rows_at(self, index: list[int]) -> torch.Tensor:
        """Rows `index` (in that order, repeats allowed), full width, re-normalized, as float32."""
        mapped = self._mapped(0, self.rows, "r")
        rows = torch.from_numpy(np.array(mapped[np.asarray(index, dtype=np.int64)], dtype=np.float32))
        del mapped
        return F.normalize(rows.view(len(index), self.dim), p=2, dim=-1)

    def close(self) -> None:
        """Remove the store's folder (again: nothing)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def encode_to_store(
    encode: Callable[[list[str]], torch.Tensor],
    texts: list[str],
    chunk_size: int,
    dtype: str = "float32",
    folder: str | Path | None = None,
) -> CorpusStore:
    """A `CorpusStore` of `encode(chunk)` (float32 [len(chunk), dim]) for each chunk of `chunk_size`
    texts in order; removed again if encoding fails."""
    first = encode(texts[:chunk_size])
    store = CorpusStore(len(texts), first.shape[1], dtype, folder)
    try:
        store.write(0, first)
        del first
        for start in range(chunk_size, len(texts), chunk_size):
            store.write(start, encode(texts[start : start + chunk_size]))
    except BaseException:
        store.close()
        raise
    return store


def tensor_chunks(corpus: torch.Tensor, chunk_size: int) -> Chunks:
    """`corpus` rows as they are, in chunks of up to `chunk_size` rows (views, no copies)."""
    for start in range(0, len(corpus), chunk_size):
        yield start, corpus[start : start + chunk_size]


def chunked_top_k(queries: torch.Tensor, chunks: Chunks, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and corpus indices of the `k` best documents per query (dot products of `queries` with the
    rows of `chunks`, in corpus order), merged chunk by chunk, ranked by descending score then ascending
    corpus index: exactly the first k of a stable descending sort of all scores, ties included."""
    best_scores = torch.empty(len(queries), 0)
    best_index = torch.empty(len(queries), 0, dtype=torch.long)
    for start, chunk in chunks:
        chunk_scores, chunk_index = lowest_top_k(queries @ chunk.T, k)
        # Both parts ascend in corpus index, the kept ones (earlier chunks) first: positions follow the index.
        best_scores = torch.cat([best_scores, chunk_scores], dim=1)
        best_index = torch.cat([best_index, chunk_index + start], dim=1)
        best_scores, order = lowest_top_k(best_scores, k)
        best_index = best_index.gather(1, order)
    by_score = best_scores.argsort(dim=1, descending=True, stable=True)
    return best_scores.gather(1, by_score), best_index.gather(1, by_score)


def lowest_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The min(k, columns) highest scores of each row and their positions, in ascending position order;
    of the scores tied with the last one kept, the ones at the lowest positions (`topk` alone picks any)."""
    k = min(k, scores.shape[1])
    values, positions = scores.topk(k, dim=1)
    threshold = values[:, -1:]
    crowded = ((scores >= threshold).sum(dim=1) > k).nonzero()[:, 0]
    if len(crowded):
        rows, row_threshold = scores[crowded], threshold[crowded]
        above, tied = rows > row_threshold, rows == row_threshold
        room = k - above.sum(dim=1, keepdim=True)
        keep = above | (tied & (tied.cumsum(dim=1) <= room))
        positions[crowded] = keep.nonzero()[:, 1].view(len(crowded), k)
    positions = positions.sort(dim=1).values
    return scores.gather(1, positions), positions
