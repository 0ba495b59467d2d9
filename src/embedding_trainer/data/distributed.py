"""Sharding global batches across data-parallel ranks.

Every rank builds the same seeded sequence of global batches (batch size = per-device batch x
world size, so a no-duplicates sampler keeps the whole global batch free of duplicates) and takes
its own contiguous slice of each one. Lightning's own distributed sampler is turned off
(`use_distributed_sampler: false`): it cannot wrap sentence-transformers' batch samplers.
"""

from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler

from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


class ShardedBatchSampler(Sampler[list[int]]):
    """Rank `rank`'s slice of each batch of `sampler`, a global batch sampler seeded alike on
    every rank (with world_size 1: its batches unchanged).

    Each global batch of n rows is cut into `world_size` equal contiguous slices of
    n // world_size rows, rank r taking slice r, so the ranks' slices are disjoint and, in rank
    order, are the global batch. Every rank must see the same batch size (to gather embeddings),
    so a global batch loses its last n % world_size rows, and one smaller than `world_size` is
    skipped; the rows so lost are logged once.

    `len()` is the number of slices yielded: with several ranks, it reads the epoch's global
    batches, from `sampler.packing()` where the sampler plans its epochs (the harness's samplers,
    `PlannedBatchSampler`), else by iterating `sampler`, which then must draw the same batches on
    every pass of an epoch (sentence-transformers' samplers reseed from seed + epoch at each pass).

    Lightning sets the epoch on `batch_sampler.sampler` at each epoch start: that is `sampler`
    here, so the global sampler reshuffles every epoch.
    """

    def __init__(self, sampler, rank: int, world_size: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}.")
        self.sampler = sampler
        self.rank = rank
        self.world_size = world_size
        self._reported = False

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._global_batches():
            share = len(batch) // self.world_size
            if share:
                yield [int(row) for row in batch[self.rank * share : (self.rank + 1) * share]]

    def __len__(self) -> int:
        if self.world_size == 1:
            return len(self.sampler)
        return sum(len(batch) >= self.world_size for batch in self._global_batches())

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch to the global sampler, which reseeds its shuffle with it."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def _global_batches(self) -> list[Sequence[int]]:
        """The global sampler's batches of the current epoch (reporting, once, the rows the slices lose)."""
        packing = getattr(self.sampler, "packing", None)
        batches = packing().batches if packing is not None else list(self.sampler)
        lost = sum(len(batch) % self.world_size for batch in batches)
        if lost and not self._reported and self.world_size > 1:
            log.info(
                f"{lost} rows of an epoch's {sum(map(len, batches))} are in no rank's batch: every one of the "
                f"{self.world_size} ranks trains the same number of rows per batch, so a global batch whose size "
                f"is not a multiple of {self.world_size} loses its last rows (different rows each epoch)."
            )
            self._reported = True
        return batches
