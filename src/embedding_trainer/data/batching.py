"""Batching the training rows: the loss's batch sampler (or length-grouped batches), the token cache, and
the resumable loader that gives each rank its slice of every global batch."""

from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain

import datasets
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import Sampler

from embedding_trainer.data.chunked import column_texts
from embedding_trainer.data.distributed import ShardedBatchSampler
from embedding_trainer.data.length_grouping import LengthGroupedBatchSampler
from embedding_trainer.data.resumable import ResumableDataLoader
from embedding_trainer.data.row_values import row_values
from embedding_trainer.data.samplers import GroupByLabelBatchSampler, NoDuplicatesBatchSampler
from embedding_trainer.data.token_cache import TokenCache, UncachableFeatures
from embedding_trainer.utils.errors import DataError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class BatchSettings:
    """How training rows are batched.

    Attributes:
        sampler: a partial batch sampler taking (dataset, batch_size, drop_last, ...) (the loss's).
        transform: optional callable turning a list of rows into the rows the loss takes (with `columns`
            and `label` attributes), for example noise for denoising.
        batch_size: rows per batch on each rank.
        max_length: truncation of training inputs in tokens (None: the model's max_seq_length).
        tokenize_once: tokenize every distinct training text once, before the first epoch, instead of in
            every batch (not with a transform, which makes new texts per batch).
        group_by_length: batches of similar total token length (`LengthGroupedBatchSampler`), keeping the
            loss sampler's no-duplicates guarantee; not with label-grouped samplers.
        num_workers: the training loader's worker processes.
    """

    sampler: Callable
    transform: Callable | None = None
    batch_size: int = 32
    max_length: int | None = None
    tokenize_once: bool = True
    group_by_length: bool = False
    num_workers: int = 0

    def sampler_is(self, sampler_class: type) -> bool:
        """Whether the loss's batch sampler is (a partial of) `sampler_class` or a subclass."""
        target = getattr(self.sampler, "func", self.sampler)
        return isinstance(target, type) and issubclass(target, sampler_class)

    def check(self) -> None:
        """DataError for length grouping with a sampler whose label groups it cannot keep."""
        if self.group_by_length and self.sampler_is(GroupByLabelBatchSampler):
            raise DataError(
                "data.group_by_length=true cannot keep the label groups this loss's batch sampler makes; "
                "set data.group_by_length=false."
            )


def loss_sampler(
    batching: BatchSettings, rows: datasets.Dataset, label: str | None, batch_size: int, seed: int
) -> Sampler:
    """The loss's batch sampler over `rows` in batches of `batch_size`, seeded by `seed`."""
    return batching.sampler(
        rows,
        batch_size=batch_size,
        drop_last=False,
        valid_label_columns=[label] if label else None,
        generator=torch.Generator(),
        seed=seed,
    )


def build_token_cache(
    preprocess: Callable, prompts: dict[str, str | None], rows: datasets.Dataset, max_length: int | None
) -> TokenCache | None:
    """The texts of `rows`' columns (`prompts`: each text column's prompt) tokenized once, each with its
    column's prompt (None when the model's features cannot be cached: then every batch is tokenized as it
    comes)."""
    columns: dict[str | None, list[str]] = {}
    for column, prompt in prompts.items():
        columns.setdefault(prompt, []).append(column)
    texts = {
        prompt: chain.from_iterable(column_texts(rows, c) for c in cols) for prompt, cols in columns.items()
    }
    try:
        return TokenCache(preprocess, texts, max_length)
    except UncachableFeatures as error:
        log.warning(f"Tokenizing per batch: {error}")
        return None


def row_token_counts(
    token_cache: TokenCache, prompts: dict[str, str | None], rows: datasets.Dataset
) -> np.ndarray:
    """Each row's tokens over its text columns (`prompts`: each one's prompt), after truncation."""
    counts = np.zeros(len(rows), dtype=np.int64)
    for column, prompt in prompts.items():
        counts += token_cache.text_lengths(column_texts(rows, column), prompt)
    return counts


def length_grouped_sampler(
    batching: BatchSettings,
    token_counts: np.ndarray,
    rows: datasets.Dataset,
    text_columns: list[str],
    batch_size: int,
    seed: int,
) -> LengthGroupedBatchSampler:
    """Length-grouped batches by the rows' token counts, without repeated texts in a batch when the
    loss's sampler promises that."""
    values = row_values(rows, text_columns) if batching.sampler_is(NoDuplicatesBatchSampler) else None
    return LengthGroupedBatchSampler(token_counts, batch_size, False, values, seed=seed)


def world_and_rank(trainer: pl.Trainer | None) -> tuple[int, int]:
    """The trainer's world size and global rank ((1, 0) before a trainer is attached)."""
    return (trainer.world_size, trainer.global_rank) if trainer else (1, 0)


def train_loader(
    dataset, global_sampler: Sampler, collate: Callable, num_workers: int, rank: int, world_size: int
) -> ResumableDataLoader:
    """The resumable training loader of `dataset`'s rows: rank `rank`'s slice of each global batch of
    `global_sampler` (`ShardedBatchSampler`), collated by `collate`."""
    return ResumableDataLoader(
        dataset,
        batch_sampler=ShardedBatchSampler(global_sampler, rank, world_size),
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
