"""Batches of similar length (less padding), optionally without repeated texts in a batch."""

from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Each epoch: a seeded shuffle of the rows, cut into megabatches of `batch_size x
    megabatch_factor` rows; each megabatch sorted by length (longest first) and cut into batches;
    then the batches shuffled. Padding shrinks to the length spread inside a batch, while which
    rows meet in a batch stays random at the megabatch scale.

    With `row_values` (one set of hashable values per row, for example its texts), a row is
    deferred to a later batch when it shares a value with the batch being filled, the guarantee of
    sentence-transformers' NoDuplicatesBatchSampler. Rows left over at the end of a megabatch move
    to the next; those left at the end are shuffled into enough of the last batches, so short
    batches (dropped with `drop_last`) are rare, as with the sentence-transformers sampler.

    Deterministic in (seed, epoch); `set_epoch` is called by Lightning at each epoch start.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        drop_last: bool = False,
        row_values: Sequence[frozenset] | None = None,
        megabatch_factor: int = 32,
        seed: int = 0,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.row_values = row_values
        self.megabatch_size = batch_size * megabatch_factor
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).numpy()
        batches: list[list[int]] = []
        carried: list[int] = []
        for start in range(0, len(order), self.megabatch_size):
            megabatch = order[start : start + self.megabatch_size]
            by_length = megabatch[np.argsort(-self.lengths[megabatch], kind="stable")].tolist()
            full, carried = self._fill(carried + by_length)
            batches.extend(full)
        if carried:  # rows that repeat each other: mix them, in random order, into enough last batches
            repeats = Counter(value for row in carried for value in self._values(row))
            mixed = max(repeats.values(), default=1) + -(-len(carried) // self.batch_size)
            tail = batches[-mixed:]
            del batches[-mixed:]
            pool = carried + [row for batch in tail for row in batch]
            pool = [pool[i] for i in torch.randperm(len(pool), generator=generator).tolist()]
            full, rest = self._fill(pool)
            batches.extend(full + self._fill(rest, allow_short=True)[0])
        if self.drop_last:
            batches = [batch for batch in batches if len(batch) == self.batch_size]
        for index in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[index]

    def _fill(self, pending: list[int], allow_short: bool = False) -> tuple[list[list[int]], list[int]]:
        """Cut `pending` into full batches in order, deferring rows that repeat a value of the batch
        being filled; returns the batches and the rows left (all of them as short batches when
        `allow_short`)."""
        batches = []
        while len(pending) >= self.batch_size or (allow_short and pending):
            batch, seen, deferred = [], set(), []
            for position, row in enumerate(pending):
                if len(batch) == self.batch_size:
                    deferred.extend(pending[position:])
                    break
                values = self._values(row)
                if seen.isdisjoint(values):
                    batch.append(row)
                    seen.update(values)
                else:
                    deferred.append(row)
            if len(batch) < self.batch_size and not allow_short:
                return batches, batch + deferred
            batches.append(batch)
            pending = deferred
        return batches, pending

    def _values(self, row: int) -> frozenset:
        return self.row_values[row] if self.row_values is not None else frozenset()
