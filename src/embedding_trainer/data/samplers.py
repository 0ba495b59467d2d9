"""The harness's batch samplers (the `batch_sampler/` config group): each plans an epoch's batches
from (seed, epoch) alone, caches them, and so knows its exact length; rows it cannot place are
reported with the reason, and a plan that leaves most rows out is refused.

Each takes sentence-transformers' batch-sampler arguments `(dataset, batch_size, drop_last,
valid_label_columns, generator, seed)`; a passed `generator` is not drawn from (the shuffle is
seeded from seed + epoch), except by the label-grouped sampler, which hands it to
sentence-transformers' sampler.
"""

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator

import datasets
import torch
from sentence_transformers.base import sampler as st_sampler
from torch.utils.data import Sampler

from embedding_trainer.data.packing import LABELS, REPEATS, Packing, pack_batches
from embedding_trainer.data.row_values import RowValues, row_values
from embedding_trainer.utils.errors import DataError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


class PlannedBatchSampler(Sampler[list[int]], ABC):
    """A batch sampler whose epoch is planned whole (`plan_epoch`, by the subclass) and cached:
    `len()` is the number of batches the epoch yields, and the same (seed, epoch) yields the same
    batches on every pass and in every process. `set_epoch` is called by Lightning at each epoch
    start (through `ShardedBatchSampler`). Rows an epoch leaves out are logged (a warning the
    first time); more than half of them left out for repeated texts raises DataError."""

    def __init__(self, num_rows: int, batch_size: int, drop_last: bool, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be at least 1, got {batch_size}.")
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self._planned: tuple[int, Packing] | None = None
        self._reported = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @abstractmethod
    def plan_epoch(self, generator: torch.Generator) -> Packing:
        """The current epoch's packing, drawing its randomness from `generator` (seeded from seed + epoch)."""

    def packing(self) -> Packing:
        """The current epoch's packing: its batches and the rows it leaves out (planned once per epoch)."""
        if self._planned is None or self._planned[0] != self.epoch:
            packing = self.plan_epoch(torch.Generator().manual_seed(self.seed + self.epoch))
            self._report(packing)
            self._planned = (self.epoch, packing)
        return self._planned[1]

    def __len__(self) -> int:
        return len(self.packing().batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.packing().batches:
            yield [int(row) for row in batch]

    def _report(self, packing: Packing) -> None:
        left_out = packing.count(*REPEATS, LABELS)
        if not left_out:
            return
        message = (
            f"{type(self).__name__}: {left_out} of {self.num_rows} training rows are in no batch of epoch "
            f"{self.epoch} (batches of {self.batch_size}): {packing.describe()}."
        )
        if packing.count(*REPEATS) * 2 > self.num_rows:
            raise DataError(
                f"{message} Most rows repeat texts that a batch without repeated texts holds once: remove the "
                "repeated texts from the training rows, or lower data.batch_size (more, smaller batches hold "
                "more copies of a text)."
            )
        log.log(logging.DEBUG if self._reported else logging.WARNING, message)
        self._reported = True


class ShuffledBatchSampler(PlannedBatchSampler):
    """Batches of a seeded random permutation of the rows (a new one each epoch), all full but the
    last, which, when under half a batch, takes rows from the batch before it (`pack_batches`)."""

    def __init__(
        self,
        dataset: datasets.Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(len(dataset), batch_size, drop_last, seed)
        self.row_values: RowValues | None = None  # NoDuplicatesBatchSampler's values

    def plan_epoch(self, generator: torch.Generator) -> Packing:
        order = torch.randperm(self.num_rows, generator=generator).numpy()
        return pack_batches(order, self.batch_size, self.drop_last, self.row_values)


class NoDuplicatesBatchSampler(ShuffledBatchSampler):
    """`ShuffledBatchSampler` whose batches never hold a text twice (any column but the label
    columns, compared across columns; two rows may share a negative, see `row_values`), so an
    in-batch negative is never a copy of a row's own text: a row that repeats a text of the batch
    being filled waits for a later batch.

    Unlike sentence-transformers' sampler of the same name (which, when rows repeat each other,
    yields more batches than its len(), some of one row, or redraws rows), every batch but a lone
    one holds at least half a batch and len() is exact; rows that fit nowhere are reported. Unlike
    it too, a negative shared by two rows does not keep them apart (`row_values`).
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        excluded = set(valid_label_columns or []) | {"dataset_name"}
        self.row_values = row_values(dataset, [c for c in dataset.column_names if c not in excluded])


class GroupByLabelBatchSampler(PlannedBatchSampler):
    """sentence-transformers' `GroupByLabelBatchSampler` (batches of 2 rows of each of several labels,
    for in-batch triplet mining), planned and reported: its len() already equals what it yields, but
    it leaves rows out by design (a label with one row, a label's odd row, the largest label's rows
    beyond the second largest's, a last batch under 4 rows), which is logged here. Its batches keep
    their size (a label-grouped batch cannot lend rows without breaking its pairs): a last batch
    may hold as few as 4 rows."""

    def __init__(
        self,
        dataset: datasets.Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(len(dataset), batch_size, drop_last, seed)
        self.grouper = st_sampler.GroupByLabelBatchSampler(
            dataset, batch_size, drop_last, valid_label_columns, generator or torch.Generator(), seed
        )

    def plan_epoch(self, generator: torch.Generator) -> Packing:
        self.grouper.set_epoch(self.epoch)  # it reseeds its own generator from seed + epoch
        batches = [list(batch) for batch in self.grouper]
        placed = {row for batch in batches for row in batch}
        left_out = [row for row in range(self.num_rows) if row not in placed]
        return Packing(batches, {LABELS: left_out} if left_out else {})
