"""Batch samplers whose construction sentence-transformers leaves to its trainer."""

import datasets
import torch
from sentence_transformers.base.sampler import DefaultBatchSampler
from torch.utils.data import RandomSampler


def shuffled_batch_sampler(
    dataset: datasets.Dataset,
    batch_size: int,
    drop_last: bool,
    valid_label_columns: list[str] | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> DefaultBatchSampler:
    """Plain batches over a seeded random permutation of `dataset` (a new one each epoch)."""
    generator = generator or torch.Generator()
    generator.manual_seed(seed)
    return DefaultBatchSampler(
        RandomSampler(dataset, generator=generator),
        batch_size=batch_size,
        drop_last=drop_last,
        valid_label_columns=valid_label_columns,
        generator=generator,
        seed=seed,
    )
