"""Sharding global batches across data-parallel ranks.

Every rank builds the same seeded sequence of global batches (batch size = per-device batch x
world size, so a no-duplicates sampler keeps the whole global batch free of duplicates) and takes
its own contiguous slice of each one. Lightning's own distributed sampler is turned off
(`use_distributed_sampler: false`): it cannot wrap sentence-transformers' batch samplers.
"""

from collections.abc import Iterator

from torch.utils.data import Sampler


class ShardedBatchSampler(Sampler[list[int]]):
    """Rank `rank`'s slice of each batch of `sampler`, a global batch sampler seeded alike on
    every rank (with world_size 1: its batches unchanged).

    Each global batch of n rows is cut into `world_size` equal contiguous slices of
    n // world_size rows, rank r taking slice r, so the ranks' slices are disjoint and, in rank
    order, are the global batch. A last global batch whose size is not a multiple of
    `world_size` loses its last n % world_size rows (every rank must see the same batch size
    to gather embeddings), and is skipped when smaller than `world_size`.

    Lightning sets the epoch on `batch_sampler.sampler` at each epoch start: that is `sampler`
    here, so sentence-transformers' samplers reshuffle every epoch.
    """

    def __init__(self, sampler, rank: int, world_size: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}.")
        self.sampler = sampler
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.sampler:
            share = len(batch) // self.world_size
            if share:
                yield list(batch[self.rank * share : (self.rank + 1) * share])

    def __len__(self) -> int:
        """The global sampler's number of batches (an upper bound when a last batch is skipped)."""
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch to the global sampler, which reseeds its shuffle with it."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
