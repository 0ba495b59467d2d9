"""Cutting one epoch's row order into batches (`pack_batches`): full batches in order, no value
(text) twice in a batch when the rows carry values, no batch below half a batch, and every row
that cannot be placed so counted with its reason (`Packing.left_out`). The batch samplers choose
the order (`samplers.py`, `length_grouping.py`); this module only cuts it."""

from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

# Why rows of the order are in no batch (keys of `Packing.left_out`).
REPEATED = "repeated"  # a value more rows hold than the epoch has batches
NO_ROOM = "no_room"  # every batch with room already held one of the row's values
SHORT_LAST = "short_last"  # a batch at the end stayed below half a batch
DROP_LAST = "drop_last"  # the short last batch drop_last asks to drop
LABELS = "labels"  # label-grouped batches had no place for it (see samplers.GroupByLabelBatchSampler)
# The reasons that come from repeated values: more than half the rows left out for them is hopeless.
REPEATS = (REPEATED, NO_ROOM, SHORT_LAST)


class Batches(Sequence):
    """An epoch's batches of row indices, small for millions of rows: the full batches `_cut_full` makes
    are the rows of one [batches, batch_size] array (int32 while the indices fit); the batches appended
    after them (`append`, `extend`) and those replaced (`batches[i] = rows`, as the tails' swaps do) are
    lists. `reordered(positions)` is the same batches in another order, sharing them."""

    def __init__(self, full: np.ndarray) -> None:
        self.full, self.changed, self.added, self.positions = full, {}, [], None

    def __len__(self) -> int:
        return len(self.full) + len(self.added) if self.positions is None else len(self.positions)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        index = range(len(self))[index]
        if self.positions is not None:
            index = int(self.positions[index])
        if index in self.changed:
            return self.changed[index]
        return self.full[index] if index < len(self.full) else self.added[index - len(self.full)]

    def __setitem__(self, index: int, rows: Sequence[int]) -> None:
        assert self.positions is None, "a reordered Batches is not changed"
        self.changed[range(len(self))[index]] = rows

    def append(self, rows: Sequence[int]) -> None:
        assert self.positions is None, "a reordered Batches is not changed"
        self.added.append(rows)

    def extend(self, batches: Iterable[Sequence[int]]) -> None:
        for rows in batches:
            self.append(rows)

    def reordered(self, positions: np.ndarray) -> "Batches":
        """These batches in the order `positions` (a permutation of their indices) gives."""
        batches = Batches(self.full)
        batches.changed, batches.added, batches.positions = self.changed, self.added, np.asarray(positions)
        return batches


@dataclass
class Packing:
    """An epoch's batches (row indices, in the order to train them: `Batches`, or lists) and the rows in none of them,
    by reason (`REPEATED`, `NO_ROOM`, `SHORT_LAST`, `DROP_LAST`, `LABELS`). `most_repeated`:
    (value, rows holding it, batches of the epoch) when rows were left out as `REPEATED`."""

    batches: Sequence[Sequence[int]]
    left_out: dict[str, list[int]] = field(default_factory=dict)
    most_repeated: tuple[str, int, int] | None = None

    def count(self, *reasons: str) -> int:
        """Rows left out for any of `reasons`."""
        return sum(len(self.left_out.get(reason, [])) for reason in reasons)

    def describe(self) -> str:
        """Why rows were left out, one clause per reason (drop_last, which was asked for, omitted)."""
        clauses = []
        if self.count(REPEATED):
            value, holders, batches = self.most_repeated
            shown = value if len(value) <= 60 else value[:57] + "..."
            clauses.append(
                f"{self.count(REPEATED)} repeat a text that more rows hold than the epoch has batches, while a "
                f"batch holds a text once ({shown!r} is in {holders} rows, the epoch has {batches} batches)"
            )
        if self.count(NO_ROOM):
            clauses.append(f"{self.count(NO_ROOM)} share a text with every batch that had room")
        if self.count(SHORT_LAST):
            clauses.append(
                f"{self.count(SHORT_LAST)} made a last batch below half a batch that no other batch could "
                "fill without repeating a text"
            )
        if self.count(LABELS):
            clauses.append(
                f"{self.count(LABELS)} fit no label-grouped batch (a label with one row, a label's odd row, "
                "the largest label's rows beyond the second largest's, or a last batch too short to keep)"
            )
        return "; ".join(clauses)


def min_batch_rows(batch_size: int) -> int:
    """The fewest rows a batch of a packing holds (half a batch, rounded up), bar a lone batch."""
    return -(-batch_size // 2)


def pack_batches(
    order: Sequence[int], batch_size: int, drop_last: bool, values: Sequence[frozenset] | None = None
) -> Packing:
    """Cut `order` (row indices) into batches, keeping its order as far as the rules allow.

    Contract: each row of `order` is in at most one batch, and every row in none is in
    `left_out` under its reason. Batches hold `batch_size` rows but those at the end: the rows
    left when no further batch fills go to tail batches, and a tail under `min_batch_rows` is
    raised to it with rows of the batches before it (each keeping at least that many), or left
    out; so every batch holds at least half a batch, bar a lone batch when the order has fewer
    rows. With drop_last, every batch is full: short tails are left out. With `values` (per row
    index, hashable values such as its texts), no two rows of a batch share a value: a row that
    repeats a value of the batch being filled waits for the next one, and a left row that fits
    no tail swaps places with a row of an earlier batch that fits one. `values` may be a
    `RowValues` (numpy-backed, for millions of rows); the batches are a `Batches` (4 bytes a row).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    packing = Packing([])
    rows = order if values is None else _within_capacity(order, values, batch_size, drop_last, packing)
    batches, rest = _cut_full(rows, values, batch_size)
    tails = _place_rest(batches, rest, values, batch_size, packing)
    batches.extend(tail for tail in tails if len(tail) == batch_size)
    short = sorted((tail for tail in tails if 0 < len(tail) < batch_size), key=len, reverse=True)
    for index, tail in enumerate(short):
        if not drop_last:
            _raise_short(batches, tail, values, batch_size, packing)
        else:  # the last is the remainder drop_last asks to drop; the others are short for repeated values
            reason = DROP_LAST if index == len(short) - 1 else NO_ROOM
            packing.left_out.setdefault(reason, []).extend(tail)
    packing.batches = batches
    return packing


def _batches_of(rows: int, batch_size: int, drop_last: bool) -> int:
    return rows // batch_size if drop_last else -(-rows // batch_size)


def _within_capacity(
    order: Sequence[int], values: Sequence[frozenset], batch_size: int, drop_last: bool, packing: Packing
) -> list[int]:
    """`order` without the rows that cannot fit because a batch holds a value once: of a value held
    by more rows than the epoch has batches, the rows after the first that many (`REPEATED`);
    repeated while leaving rows out lowers the number of batches."""
    rows = order
    value, count = _most_held(order, values)
    batches = _batches_of(len(rows), batch_size, drop_last)
    if count <= batches or batches == 0:  # (0: drop_last drops them all)
        return rows
    packing.most_repeated = (getattr(values, "describe", str)(value), count, batches)
    while batches:
        seen: Counter = Counter()
        kept, dropped = [], []
        for row in rows:
            if all(seen[value] < batches for value in values[row]):
                kept.append(row)
                seen.update(values[row])
            else:
                dropped.append(row)
        if not dropped:
            return rows
        packing.left_out.setdefault(REPEATED, []).extend(dropped)
        rows = kept
        batches = _batches_of(len(rows), batch_size, drop_last)
    return rows


def _most_held(order: Sequence[int], values: Sequence[frozenset]) -> tuple[object, int]:
    """(a value held by the most rows of `order`, how many hold it); (None, 0) for no values. A
    numpy-backed `values` (with `most_held`) counts with numpy when `order` holds all its rows."""
    if hasattr(values, "most_held") and len(order) == len(values):
        return values.most_held()
    holders = Counter(value for row in order for value in values[row])
    return holders.most_common(1)[0] if holders else (None, 0)


def _cut_full(
    rows: Sequence[int], values: Sequence[frozenset] | None, batch_size: int
) -> tuple[Batches, list[int]]:
    """Full batches in order: each takes the earliest waiting rows, then the next ones, skipping
    (until a later batch) a row that repeats one of its values. Returns them and the rows left
    when no further batch fills (fewer than a batch, or rows that repeat each other)."""
    dtype = np.int32 if len(rows) < 2**31 else np.int64
    if values is None:
        cut = len(rows) - len(rows) % batch_size
        return Batches(np.asarray(rows[:cut], dtype=dtype).reshape(-1, batch_size)), rows[cut:]
    flat, filled = np.empty(len(rows), dtype=dtype), 0
    waiting: deque[int] = deque()
    stream = iter(rows)
    while True:
        batch, seen, skipped = [], set(), []
        while len(batch) < batch_size:
            row = waiting.popleft() if waiting else next(stream, None)
            if row is None:
                return Batches(flat[:filled].reshape(-1, batch_size)), batch + skipped
            if seen.isdisjoint(values[row]):
                batch.append(row)
                seen.update(values[row])
            else:
                skipped.append(row)
        waiting.extendleft(reversed(skipped))
        flat[filled : filled + batch_size] = batch
        filled += batch_size


@dataclass
class _Batch:
    """A batch being assembled: its rows (the list itself, changed in place) and their values."""

    rows: list[int]
    values: set

    @classmethod
    def of(cls, rows: list[int], values: Sequence[frozenset]) -> "_Batch":
        return cls(rows, set().union(*(values[row] for row in rows)))

    def takes(self, row_values: frozenset, batch_size: int) -> bool:
        return len(self.rows) < batch_size and self.values.isdisjoint(row_values)

    def add(self, row: int, row_values: frozenset) -> None:
        self.rows.append(row)
        self.values |= row_values


def _place_rest(
    batches: Batches,
    rest: list[int],
    values: Sequence[frozenset] | None,
    batch_size: int,
    packing: Packing,
) -> list[list[int]]:
    """Put `rest` into as few tail batches as can hold it, filling them one after the other: each
    row (those whose values repeat most among `rest` first, as they have the fewest places) goes
    to the first tail with room that takes it, directly or by a swap (`_swap_in`), else nowhere
    (`NO_ROOM`). Returns the tails (all full but the last ones, as far as the values allow)."""
    if values is None:
        return [list(rest)]
    tails = [_Batch([], set()) for _ in range(-(-len(rest) // batch_size))]
    earlier = _Earlier(batches, values)
    repeats = Counter(value for row in rest for value in values[row])
    for row in sorted(rest, key=lambda row: -max((repeats[value] for value in values[row]), default=0)):
        open_tails = (tail for tail in tails if len(tail.rows) < batch_size)
        if not any(_swap_in(row, earlier, tail, values, batch_size) for tail in open_tails):
            packing.left_out.setdefault(NO_ROOM, []).append(row)
    return [tail.rows for tail in tails]


class _Earlier:
    """The batches before the tails as `_Batch`es, latest first, each made (its rows turned into a
    list in `batches`, which swaps then change) only when reached: the tails rarely look far back."""

    def __init__(self, batches: Batches, values: Sequence[frozenset]) -> None:
        self.batches, self.values, self.made = batches, values, {}

    def latest_first(self) -> Iterator[_Batch]:
        for index in range(len(self.batches) - 1, -1, -1):
            if index not in self.made:
                self.batches[index] = list(self.batches[index])
                self.made[index] = _Batch.of(self.batches[index], self.values)
            yield self.made[index]


def _swap_in(row: int, earlier: _Earlier, tail: _Batch, values: Sequence[frozenset], batch_size: int) -> bool:
    """Put `row` into `tail` if it holds none of its values; else in place of a row of the latest
    earlier batch that holds none of them and has a row `tail` takes, that row moving to `tail`.
    False when neither can."""
    if tail.takes(values[row], batch_size):
        tail.add(row, values[row])
        return True
    for batch in earlier.latest_first():
        if not batch.values.isdisjoint(values[row]):
            continue
        for position, other in enumerate(batch.rows):
            if tail.takes(values[other], batch_size):
                batch.rows[position] = row
                batch.values = (batch.values - values[other]) | values[row]
                tail.add(other, values[other])
                return True
    return False


def _raise_short(
    batches: Batches,
    tail: list[int],
    values: Sequence[frozenset] | None,
    batch_size: int,
    packing: Packing,
) -> None:
    """Append `tail` to `batches`, first raised to `min_batch_rows` with rows from the latest
    batches (each keeping that many, none repeating a value of the tail); a tail that cannot be
    raised is left out (`SHORT_LAST`), unless it would be the only batch."""
    floor = min_batch_rows(batch_size)
    if len(tail) >= floor or not batches:
        batches.append(tail)
        return
    taken = set().union(*(values[row] for row in tail)) if values is not None else set()
    moves: list[tuple[int, int]] = []
    for index in range(len(batches) - 1, -1, -1):
        batch = batches[index]
        spare = len(batch) - floor
        for row in reversed(batch):
            if len(tail) + len(moves) >= floor or spare <= 0:
                break
            if values is None or taken.isdisjoint(values[row]):
                moves.append((index, row))
                taken |= values[row] if values is not None else set()
                spare -= 1
        if len(tail) + len(moves) >= floor:
            for index, row in moves:
                batches[index] = [other for other in batches[index] if other != row]
            batches.append(tail + [row for _, row in moves])
            return
    packing.left_out.setdefault(SHORT_LAST, []).extend(tail)
