"""Batches of similar length (less padding), optionally without repeated texts in a batch."""

from collections.abc import Sequence

import numpy as np
import torch

from embedding_trainer.data.packing import Packing, pack_batches
from embedding_trainer.data.samplers import PlannedBatchSampler


class LengthGroupedBatchSampler(PlannedBatchSampler):
    """Each epoch: a seeded shuffle of the rows, cut into megabatches of `batch_size x
    megabatch_factor` rows; each megabatch sorted by length (longest first); the sorted megabatches,
    one after the other, cut into batches (`pack_batches`); then the batches shuffled. Padding
    shrinks to the length spread inside a batch, while which rows meet in a batch stays random at
    the megabatch scale.

    With `row_values` (one set of hashable values per row, for example its texts), no batch holds a
    value twice: a row that repeats a value of the batch being filled waits for the next batch
    (so rows left at the end of a megabatch open the next one), and rows left at the end swap with
    rows of earlier batches. Every batch holds at least half a batch (`pack_batches`: full ones
    but the last, raised from the others, or dropped with `drop_last`); len() is exact, and rows
    that fit nowhere are reported (`PlannedBatchSampler`). Deterministic in (seed, epoch).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        drop_last: bool = False,
        row_values: Sequence[frozenset] | None = None,  # e.g. samplers' RowValues
        megabatch_factor: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__(len(lengths), batch_size, drop_last, seed)
        self.lengths = np.asarray(lengths)
        self.row_values = row_values
        self.megabatch_size = batch_size * megabatch_factor

    def plan_epoch(self, generator: torch.Generator) -> Packing:
        order = torch.randperm(self.num_rows, generator=generator).numpy()
        megabatches = [
            order[start : start + self.megabatch_size] for start in range(0, len(order), self.megabatch_size)
        ]
        grouped = [m[np.argsort(-self.lengths[m], kind="stable")] for m in megabatches]
        grouped = np.concatenate(grouped) if grouped else order
        packing = pack_batches(grouped, self.batch_size, self.drop_last, self.row_values)
        packing.batches = packing.batches.reordered(
            torch.randperm(len(packing.batches), generator=generator).numpy()
        )
        return packing
