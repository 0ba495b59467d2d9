"""Fitting loaded rows to a dataset type's schema: column names, order and label values."""

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import datasets

from embedding_trainer.data.chunked import column_chunks
from embedding_trainer.data.listwise import checked_listwise, from_n_tuples, is_n_tuple
from embedding_trainer.data.sampled_negatives import with_sampled_negatives
from embedding_trainer.utils.errors import DataError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

MAX_SHOWN_ROWS = 5  # refused rows named in a message


@dataclass(frozen=True)
class Schema:
    """A dataset type's rows (`dataset_type`): its name, ordered columns, the label column and its kind
    (`score`, `binary`, `class`, or `listwise`: a list of scores per row), a numbered column family such as
    `negative` for n-tuples, and the text columns fed to the loss in order (None: the non-label columns;
    may repeat a column)."""

    name: str
    columns: tuple[str, ...]
    label: str | None = None
    label_type: str | None = None
    variadic: str | None = None
    inputs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Normalization:
    """How a source's table becomes rows of the schema: `column_map` ({data column: schema column}; None:
    by name, else by position), `score_range` ([low, high] of scores, rescaled to [0, 1]), `class_names`
    (in label order; None: the sorted classes of the training rows) and `negatives_per_anchor` (n-tuples
    from (anchor, positive) pairs: this many negatives sampled per row from the other rows' positives)."""

    column_map: dict | None = None
    score_range: tuple[float, float] | None = None
    class_names: tuple[str, ...] | None = None
    negatives_per_anchor: int | None = None


def fit_rows(
    table: datasets.Dataset, schema: Schema, normalization: Normalization, seed: int, source: str
) -> datasets.Dataset:
    """`table` as rows of `schema` (columns renamed and ordered, negatives sampled, seeded, labels checked
    and converted); DataError naming `source` when it does not fit."""
    check_not_empty(table, source)
    if schema.label_type == "listwise":
        return listwise_rows(table, schema, normalization, seed, source)
    if normalization.negatives_per_anchor:
        table = with_sampled_negatives(table, normalization.negatives_per_anchor, schema.variadic, seed)
    rows = to_schema(
        table, list(schema.columns), normalization.column_map, schema.name, source, schema.variadic
    )
    texts = rows.select_columns([c for c in rows.column_names if c != schema.label])
    check_complete_rows(texts, source)
    check_text_columns(texts, source)
    if schema.label_type == "score":
        return numeric_labels(rows, schema.label, source, normalization.score_range)
    if schema.label_type == "binary":
        return binary_labels(rows, schema.label, source)
    return rows


def listwise_rows(
    table: datasets.Dataset, schema: Schema, normalization: Normalization, seed: int, source: str
) -> datasets.Dataset:
    """`table` as listwise rows (`data/listwise.py`): its columns renamed by `column_map`, built from n-tuples
    (or pairs with `negatives_per_anchor`) when it has a positive and no passages, then checked."""
    if normalization.column_map:
        renamed = [normalization.column_map.get(name, name) for name in table.column_names]
        table = to_schema(table, renamed, normalization.column_map, schema.name, source)
    if is_n_tuple(table):
        table = from_n_tuples(table, normalization.negatives_per_anchor, seed)
    return checked_listwise(to_schema(table, list(schema.columns), None, schema.name, source), source)


def to_schema(
    dataset: datasets.Dataset,
    columns: list[str],
    column_map: dict | None,
    dataset_type: str,
    source: str,
    variadic: str | None = None,
) -> datasets.Dataset:
    """Rows with exactly the schema's columns, in schema order.

    Columns are renamed by `column_map` (data column -> schema column) when given; otherwise taken
    by name when all are present, else by position (the n-th column becomes the n-th schema
    column). With `variadic` (for example "negative"), every further column named `<variadic>_<i>`
    is kept too, in index order, and at least one is required. Extra columns are dropped with a
    note. Raises DataError naming the columns found when one is missing.
    """
    found = dataset.column_names
    if column_map:
        unknown = [name for name in column_map if name not in found]
        if unknown:
            raise DataError(
                f"data.column_map names columns {unknown} that {source} does not have; its columns are {found}."
            )
        dataset = dataset.rename_columns({old: new for old, new in column_map.items() if old != new})
    elif not all(name in found for name in columns) and variadic is None and len(found) >= len(columns):
        mapping = dict(zip(found, columns))
        log.info(f"{source}: columns taken by position: {mapping} (set data.column_map to choose others)")
        dataset = dataset.select_columns(list(mapping)).rename_columns(
            {old: new for old, new in mapping.items() if old != new}
        )
    wanted = list(columns) + (_variadic_columns(dataset.column_names, variadic) if variadic else [])
    missing = [name for name in columns if name not in dataset.column_names]
    if variadic and len(wanted) == len(columns):
        missing.append(f"{variadic}_1")
    if missing:
        suggestion = ", ".join(f"{have}: {want}" for have, want in zip(found, columns))
        needed = list(columns) + ([f"{variadic}_1..{variadic}_n"] if variadic else [])
        raise DataError(
            f"dataset_type={dataset_type} needs columns {needed}, but {source} has no {missing}; its columns are {found}. Map yours onto the schema with "
            f"data.column_map, for example: 'data.column_map={{{suggestion}}}'."
        )
    dropped = [name for name in dataset.column_names if name not in wanted]
    if dropped:
        log.info(f"{source}: dropping columns the schema does not use: {dropped}")
    return dataset.select_columns(wanted)


def _variadic_columns(names: list[str], prefix: str) -> list[str]:
    numbered = [
        (int(match.group(1)), name) for name in names if (match := re.fullmatch(rf"{prefix}_(\d+)", name))
    ]
    return [name for _, name in sorted(numbered)]


def check_complete_rows(dataset: datasets.Dataset, source: str) -> None:
    """Raise DataError naming the first rows with an empty or missing text (a different count of
    negatives in an n-tuple shows up this way)."""
    bad = list(islice(_rows_with_empty_values(dataset), 5))
    if bad:
        raise DataError(
            f"{source} has rows with missing values ({'; '.join(bad)}); every row needs every column "
            f"{dataset.column_names} (n-tuples need the same number of negatives in each row)."
        )


def _rows_with_empty_values(dataset: datasets.Dataset) -> Iterator[str]:
    """`row <index>: [<its columns with an empty or missing text>]` for each such row, in row order."""
    for start, chunk in column_chunks(dataset, dataset.column_names):
        for offset, values in enumerate(zip(*chunk.values())):
            empty = [
                name
                for name, value in zip(chunk, values)
                if value is None or (isinstance(value, str) and not value.strip())
            ]
            if empty:
                yield f"row {start + offset}: {empty}"


def check_text_columns(dataset: datasets.Dataset, source: str) -> None:
    """Raise DataError naming the text columns that hold something else (numbers, lists) and their type."""
    bad = [
        f"{name} ({feature.dtype if isinstance(feature, datasets.Value) else type(feature).__name__})"
        for name, feature in dataset.features.items()
        if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"))
    ]
    if bad:
        raise DataError(
            f"{source} has columns that must hold text but do not: {'; '.join(bad)}. Quote the values as "
            "strings in the file, or map a text column onto them with data.column_map."
        )


def check_not_empty(dataset: datasets.Dataset, source: str) -> None:
    """Raise DataError when `dataset` has no rows."""
    if len(dataset) == 0:
        raise DataError(f"{source} has no rows: point data.train_path/eval_path at a file with data.")


def numeric_labels(
    dataset: datasets.Dataset,
    column: str,
    source: str,
    value_range: Sequence[float] | None,
    setting: str = "data.score_range",
) -> datasets.Dataset:
    """Convert `column` to finite floats, rescaled from `value_range` = [low, high] (`setting`) to [0, 1]
    when given.

    Raises DataError naming the first rows whose value is not a number or not finite, or lies outside
    `value_range` (and the range that holds them all).
    """
    not_finite, outside = BadRows(), BadRows()
    low, high = value_range if value_range is not None else (-math.inf, math.inf)
    seen = [math.inf, -math.inf]  # the lowest and highest finite value
    for index, raw in _indexed(dataset, column):
        value = _number(raw)
        if not math.isfinite(value):
            not_finite.add(f"row {index}: {raw!r}")
            continue
        seen = [min(seen[0], value), max(seen[1], value)]
        if not low <= value <= high:
            outside.add(f"row {index}: {value:g}")
    if not_finite.count:
        raise DataError(
            f"Column {column!r} of {source} must hold finite numbers; {not_finite.count} rows do not "
            f"({not_finite}). Fix or drop those rows, or map another column with data.column_map."
        )
    if value_range is None:
        return _converted(dataset, column, _number, datasets.Value("float32"))
    if not high > low:
        raise DataError(f"{setting} must be [low, high] with high > low, got {list(value_range)}.")
    if outside.count:
        wide = f"[{min(low, seen[0]):g},{max(high, seen[1]):g}]"
        raise DataError(
            f"Column {column!r} of {source} has {outside.count} scores outside {setting}=[{low:g}, {high:g}] "
            f"({outside}), which would be rescaled outside [0, 1]. Set {setting} to the scale "
            f"of your scores (all of them lie in {setting}={wide}), or fix or drop those rows."
        )
    return _converted(
        dataset, column, lambda raw: (float(raw) - low) / (high - low), datasets.Value("float32")
    )


BINARY = {0: 0, 1: 1, "0": 0, "1": 1}


def _binary(raw) -> int | None:
    return BINARY.get(raw.strip() if isinstance(raw, str) else raw)


def binary_labels(dataset: datasets.Dataset, column: str, source: str) -> datasets.Dataset:
    """Check that `column` holds only 0 and 1 (as numbers or digit strings) and store it as int64."""
    bad = BadRows()
    for index, raw in _indexed(dataset, column):
        if _binary(raw) is None:
            bad.add(f"row {index}: {raw!r}")
    if bad.count:
        raise DataError(f"Column {column!r} of {source} must be 0 or 1; {bad.count} rows are not ({bad}).")
    return _converted(dataset, column, _binary, datasets.Value("int64"))


def distinct_classes(dataset: datasets.Dataset, column: str) -> set[str]:
    """The class names in `column` (its values as text), read a chunk at a time."""
    return {str(value) for _index, value in _indexed(dataset, column)}


def class_labels(dataset: datasets.Dataset, column: str, source: str, names: list[str]) -> datasets.Dataset:
    """Replace class names in `column` by their index in `names`; raise DataError for unknown classes."""
    index_of = {str(name): index for index, name in enumerate(names)}
    found = distinct_classes(dataset, column)
    unknown = sorted(found - set(index_of))
    if unknown:
        found = sorted(found)
        raise DataError(
            f"Column {column!r} of {source} has classes {unknown[:10]} not among the known classes {list(names)} "
            f"(data.class_names, or the training data's classes when it is null); its classes are {found[:10]}. "
            "Set data.class_names to all classes in label order, for example "
            f"'data.class_names=[{','.join(found[:10])}]', add them to the training data, or drop those rows."
        )
    return _converted(dataset, column, lambda value: index_of[str(value)], datasets.Value("int64"))


class BadRows:
    """The rows a check refuses: their `count`, and the first MAX_SHOWN_ROWS described (str: those, joined)."""

    def __init__(self) -> None:
        self.count, self.shown = 0, []

    def add(self, described: str) -> None:
        self.count += 1
        if len(self.shown) < MAX_SHOWN_ROWS:
            self.shown.append(described)

    def __str__(self) -> str:
        return ", ".join(self.shown)


def _number(raw) -> float:
    """`raw` as a float (NaN when it is none)."""
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


def _indexed(dataset: datasets.Dataset, column: str) -> Iterator[tuple[int, object]]:
    """(row index, value) of `column`, read a chunk of rows at a time."""
    for start, chunk in column_chunks(dataset, [column]):
        yield from enumerate(chunk[column], start)


def _converted(dataset: datasets.Dataset, column: str, convert, feature) -> datasets.Dataset:
    """`dataset` with each value of `column` replaced by `convert(value)`, of type `feature`, at the same
    position; written a batch at a time (to a cache file when `dataset` has them: it stays memory-mapped)."""
    features = dataset.features.copy()
    features[column] = feature
    return dataset.map(
        lambda values: {column: [convert(value) for value in values]},
        batched=True,
        input_columns=[column],
        features=features,
        desc=f"Converting {column}",
    ).select_columns(dataset.column_names)
