"""Properties of every batch sampler the harness configures, alone and sharded over 2 and 3 ranks,
over seeds, epochs and data shapes (duplicate-heavy ones included): each row in at most one batch
per epoch and every row in none reported, the number yielded equal to len(), no repeated text in a
no-duplicates batch, no batch under half a batch (bar a lone one), deterministic per (seed, epoch),
reshuffled across epochs. Rows may share a negative in a batch, never an anchor or positive, nor a
text that is one row's negative and another's positive."""

import logging
import random

import pytest
import torch
import yaml
from hydra.utils import get_object

from embedding_trainer.data.distributed import ShardedBatchSampler
from embedding_trainer.data.length_grouping import LengthGroupedBatchSampler
from embedding_trainer.data.packing import DROP_LAST, REPEATS, min_batch_rows
from embedding_trainer.data.row_values import row_values
from embedding_trainer.data.samplers import (
    GroupByLabelBatchSampler,
    NoDuplicatesBatchSampler,
    ShuffledBatchSampler,
)
from embedding_trainer.settings.resolvers import CONFIG_DIR
from embedding_trainer.utils.errors import DataError

SEEDS = range(3)
EPOCHS = range(2)


class Rows(dict):
    """Columns of training rows, read as the samplers read a datasets.Dataset (`len`, `column_names`,
    `rows[column]`), without its per-access cost (tests/data/test_batching.py uses real ones)."""

    @property
    def column_names(self) -> list[str]:
        return list(self)

    def __len__(self) -> int:
        return len(self["anchor"])


def _rows(
    positives: list[str],
    anchors: list[str] | None = None,
    labels: list[str] | None = None,
    negatives: list[list[str]] | None = None,
) -> Rows:
    anchors = anchors or [f"question {i}" for i in range(len(positives))]
    rows = Rows(anchor=anchors, positive=positives)
    for index, column in enumerate(negatives or [], start=1):
        rows[f"negative_{index}"] = column
    rows["label"] = labels or ["x"] * len(positives)
    return rows


def _texts(rows: Rows) -> list[str]:
    return [column for column in rows.column_names if column != "label"]


def _grouped(sizes: list[int]) -> list[str]:
    """Positives shared by groups of the given sizes (a paragraph with several questions)."""
    return [f"paragraph {group}" for group, size in enumerate(sizes) for _ in range(size)]


_rng = random.Random(0)
# name: (rows, batch size, whether every row fits in no-duplicates batches)
SHAPES = {
    "distinct": (_rows([f"p{i}" for i in range(100)]), 8, True),
    "one_over_a_multiple": (_rows([f"p{i}" for i in range(97)]), 8, True),
    "a_multiple": (_rows([f"p{i}" for i in range(64)]), 16, True),
    "squad_like": (_rows(_grouped([_rng.randint(1, 4) for _ in range(45)])), 8, True),
    "anchors_repeat_and_cross": (
        _rows(
            [f"p{i}" for i in range(60)] + [f"q{i}" for i in range(20)],
            [f"q{i % 40}" for i in range(60)] + [f"p{i}" for i in range(20)],
        ),
        8,
        True,
    ),
    "many_share_one_positive": (_rows(["the popular one"] * 40 + [f"p{i}" for i in range(80)]), 8, False),
    "all_share_one_positive": (_rows(["the only one"] * 30), 8, False),
    "batch_larger_than_data": (_rows([f"p{i}" for i in range(5)]), 32, True),
    "one_row": (_rows(["p"]), 4, True),
    # mined hard negatives: one close text every row's negative, and each row's other negative the
    # next row's positive
    "negatives_shared_and_crossing": (
        _rows(
            [f"p{i}" for i in range(96)],
            negatives=[["the close one"] * 96, [f"p{(i + 1) % 96}" for i in range(96)]],
        ),
        8,
        True,
    ),
}
LABEL_SHAPES = {
    "balanced": (_rows([f"p{i}" for i in range(120)], labels=[f"l{i % 10}" for i in range(120)]), 8),
    "skewed": (
        _rows([f"p{i}" for i in range(90)], labels=["big"] * 60 + [f"l{i % 13}" for i in range(30)]),
        8,
    ),
    "singletons": (
        _rows([f"p{i}" for i in range(50)], labels=[f"l{i}" for i in range(30)] + ["a", "b"] * 10),
        4,
    ),
}


def _lengths(rows: Rows) -> list[int]:
    return [sum(len(rows[column][row]) for column in _texts(rows)) for row in range(len(rows))]


def _make(kind: str, rows, batch_size: int, drop_last: bool, seed: int):
    if kind == "shuffled":
        return ShuffledBatchSampler(rows, batch_size, drop_last, ["label"], torch.Generator(), seed)
    if kind == "no_duplicates":
        return NoDuplicatesBatchSampler(rows, batch_size, drop_last, ["label"], torch.Generator(), seed)
    if kind == "group_by_label":
        return GroupByLabelBatchSampler(rows, batch_size, drop_last, ["label"], torch.Generator(), seed)
    values = row_values(rows, _texts(rows)) if kind == "length_grouped_no_duplicates" else None
    return LengthGroupedBatchSampler(
        _lengths(rows), batch_size, drop_last, values, megabatch_factor=2, seed=seed
    )


NO_DUPLICATES = ("no_duplicates", "length_grouped_no_duplicates")
KINDS = ("shuffled", "length_grouped", *NO_DUPLICATES)


def _sharded_epoch(kind, rows, batch_size, drop_last, seed, epoch, world_size) -> list[list[list[int]]]:
    """Each rank's batches of `epoch`, from its own sampler (as each DDP process builds one), after
    checking that each yields len() batches."""
    per_rank = []
    for rank in range(world_size):
        sharded = ShardedBatchSampler(
            _make(kind, rows, batch_size * world_size, drop_last, seed), rank, world_size
        )
        sharded.set_epoch(epoch)
        batches = list(sharded)
        assert len(batches) == len(sharded), (
            f"rank {rank} yields {len(batches)} batches, len() says {len(sharded)}"
        )
        per_rank.append(batches)
    return per_rank


def _check_shards(per_rank, global_batches, world_size) -> set[int]:
    """The ranks' slices of each global batch are disjoint, equal in size and, in rank order, the
    batch less its last len % world_size rows; returns the rows no rank got."""
    kept = [batch for batch in global_batches if len(batch) >= world_size]
    assert [len(batches) for batches in per_rank] == [len(kept)] * world_size
    for index, batch in enumerate(kept):
        slices = [batches[index] for batches in per_rank]
        assert len({len(piece) for piece in slices}) == 1
        assert [row for piece in slices for row in piece] == batch[: len(slices[0]) * world_size]
    trained = {row for batches in per_rank for batch in batches for row in batch}
    return {row for batch in global_batches for row in batch} - trained


def _check_global(kind, sampler, rows, batch_size, drop_last, fits) -> list[list[int]]:
    """One epoch of the global sampler: len() batches, rows once, the rest reported, no repeated
    texts, the size floor."""
    batches = list(sampler)
    assert len(batches) == len(sampler)
    placed = [row for batch in batches for row in batch]
    assert len(placed) == len(set(placed)), "a row is in two batches"
    left_out = sampler.packing().left_out
    reported = [row for reason_rows in left_out.values() for row in reason_rows]
    assert sorted(placed + reported) == list(range(len(rows))), "a row is neither placed nor reported"
    if fits and kind != "group_by_label":
        assert sampler.packing().count(*REPEATS) == 0
        assert len(left_out.get(DROP_LAST, [])) < batch_size
    if kind in NO_DUPLICATES:
        for batch in batches:
            _check_no_duplicates(rows, batch)
    if drop_last:
        assert all(len(batch) == batch_size for batch in batches)
    elif kind == "group_by_label":
        for batch in batches:
            labels = [rows["label"][row] for row in batch]
            assert (
                len(batch) >= 4
                and len(set(labels)) >= 2
                and min(labels.count(label) for label in labels) >= 2
            )
    else:
        assert len(batches) == 1 or all(len(batch) >= min_batch_rows(batch_size) for batch in batches)
    return batches


def _check_no_duplicates(rows: Rows, batch: list[int]) -> None:
    """No text of `batch` is held by two of its rows, unless both hold it as a negative."""
    holders: dict[str, dict[int, bool]] = {}  # text -> {row: whether the row holds it only as a negative}
    for row in batch:
        for column in _texts(rows):
            negative = column.startswith("negative")
            held = holders.setdefault(rows[column][row], {})
            held[row] = held.get(row, True) and negative
    for text, held in holders.items():
        assert len(held) == 1 or all(held.values()), f"a batch repeats {text!r} ({held})"


def _check_epochs(kind, rows, batch_size, drop_last, fits, world_size) -> None:
    for seed in SEEDS:
        walked = _make(kind, rows, batch_size * world_size, drop_last, seed)
        epochs = []
        for epoch in EPOCHS:
            walked.set_epoch(epoch)
            batches = _check_global(kind, walked, rows, batch_size * world_size, drop_last, fits)
            # each rank's sampler is new and set to `epoch` at once: its slices show the same batches
            per_rank = _sharded_epoch(kind, rows, batch_size, drop_last, seed, epoch, world_size)
            lost = _check_shards(per_rank, batches, world_size)
            assert len(lost) == sum(len(batch) % world_size for batch in batches)
            epochs.append(batches)
        if sum(map(len, epochs[0])) >= 4:
            assert epochs[0] != epochs[1], "epoch 1 repeats epoch 0's batches"


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("kind", KINDS)
def test_batch_samplers_keep_their_promises(kind, shape, drop_last, world_size):
    rows, batch_size, fits = SHAPES[shape]
    if kind in NO_DUPLICATES and shape == "all_share_one_positive":
        pytest.skip("refused: test_mostly_repeated_rows_are_refused")
    _check_epochs(kind, rows, batch_size, drop_last, fits or kind not in NO_DUPLICATES, world_size)


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shape", list(LABEL_SHAPES))
def test_label_grouped_batches_keep_their_promises(shape, drop_last, world_size):
    rows, batch_size = LABEL_SHAPES[shape]
    _check_epochs("group_by_label", rows, batch_size, drop_last, False, world_size)


@pytest.mark.parametrize("kind", NO_DUPLICATES)
def test_rows_that_fit_no_batch_are_reported(kind, caplog):
    rows, batch_size, _ = SHAPES["many_share_one_positive"]
    sampler = _make(kind, rows, batch_size, False, seed=0)
    with caplog.at_level(logging.WARNING):
        batches = list(sampler)
    popular = [row for batch in batches for row in batch if rows["positive"][row] == "the popular one"]
    assert len(popular) == len(batches)  # one per batch: as many as can be placed
    left_out = len(rows) - sum(map(len, batches))
    assert f"{left_out} of 120 training rows are in no batch of epoch 0" in caplog.text
    assert "'the popular one' is in 40 rows, the epoch has 15 batches" in caplog.text


@pytest.mark.parametrize("kind", NO_DUPLICATES)
def test_mostly_repeated_rows_are_refused(kind):
    rows, batch_size, _ = SHAPES["all_share_one_positive"]
    with pytest.raises(DataError, match="29 of 30 training rows are in no batch.*lower data.batch_size"):
        len(_make(kind, rows, batch_size, False, seed=0))


def test_label_grouping_reports_the_rows_it_leaves_out(caplog):
    rows, batch_size = LABEL_SHAPES["singletons"]
    with caplog.at_level(logging.WARNING):
        batches = list(_make("group_by_label", rows, batch_size, False, seed=0))
    assert sum(map(len, batches)) == 20  # the 30 one-row labels fit no batch
    assert (
        "30 of 50 training rows are in no batch of epoch 0 (batches of 4): 30 fit no label-grouped batch"
        in caplog.text
    )


def test_every_configured_batch_sampler_is_tested():
    tested = {ShuffledBatchSampler, NoDuplicatesBatchSampler, GroupByLabelBatchSampler}
    for path in sorted((CONFIG_DIR / "batch_sampler").glob("*.yaml")):
        target = yaml.safe_load(path.read_text())["_target_"]
        assert get_object(target) in tested, f"{path.name}: {target} has no property test here"
