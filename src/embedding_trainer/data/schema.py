"""Fitting loaded rows to a dataset type's schema: column names, order and label values."""

import math

import datasets

from embedding_trainer.errors import DataError


def to_schema(
    dataset: datasets.Dataset, columns: list[str], column_map: dict | None, dataset_type: str, source: str
) -> datasets.Dataset:
    """Rename columns by `column_map` (data column -> schema column), keep the schema's columns in
    schema order and drop the rest. Raises DataError naming the columns found when one is missing."""
    if column_map:
        unknown = [name for name in column_map if name not in dataset.column_names]
        if unknown:
            raise DataError(
                f"data.column_map names columns {unknown} that {source} does not have; "
                f"its columns are {dataset.column_names}."
            )
        dataset = dataset.rename_columns({old: new for old, new in column_map.items() if old != new})
    missing = [name for name in columns if name not in dataset.column_names]
    if missing:
        suggestion = ", ".join(f"{found}: {wanted}" for found, wanted in zip(dataset.column_names, columns))
        raise DataError(
            f"dataset_type={dataset_type} needs columns {columns}, but {source} has no {missing}; "
            f"its columns are {dataset.column_names}. Map yours onto the schema with "
            f"data.column_map, for example: 'data.column_map={{{suggestion}}}'."
        )
    return dataset.select_columns(columns)


def check_not_empty(dataset: datasets.Dataset, source: str) -> None:
    """Raise DataError when `dataset` has no rows."""
    if len(dataset) == 0:
        raise DataError(f"{source} has no rows: point data.train_path/eval_path at a file with data.")


def numeric_labels(
    dataset: datasets.Dataset, column: str, source: str, value_range: list[float] | None
) -> datasets.Dataset:
    """Convert `column` to finite floats, rescaled from `value_range` = [low, high] to [0, 1] when given.

    Raises DataError naming the first rows whose value is not a number or not finite.
    """
    values, bad = [], []
    for index, raw in enumerate(dataset[column]):
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            bad.append(f"row {index}: {raw!r}")
        values.append(value)
    if bad:
        raise DataError(
            f"Column {column!r} of {source} must hold finite numbers; {len(bad)} rows do not "
            f"({', '.join(bad[:5])}). Fix or drop those rows, or map another column with data.column_map."
        )
    if value_range is not None:
        low, high = value_range
        if not high > low:
            raise DataError(f"data.score_range must be [low, high] with high > low, got {list(value_range)}.")
        values = [(value - low) / (high - low) for value in values]
    dataset = dataset.remove_columns(column).add_column(column, values)
    return dataset.cast_column(column, datasets.Value("float32"))
