"""The rows a run trained and evaluated on, written to its folder (`<output_dir>/data/`) as they were used."""

import json
from pathlib import Path

import datasets


def write_prepared_rows(
    folder: Path,
    splits: dict[str, datasets.Dataset | None],
    class_names: list[str] | None,
    synthetic_pairs: dict[str, datasets.Dataset],
) -> None:
    """Write each split's rows (`splits`: {name: rows}, None skipped) to `<folder>/<name>.jsonl` with an `id`
    column (the row's position), the class names in label order to `classes.json`, and the generated pairs
    with their passages and the split each went to (`synthetic_pairs`) to `synthetic_pairs.jsonl`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        if rows is not None:
            with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
                for index, row in enumerate(_python_rows(rows)):
                    handle.write(json.dumps({"id": index, **row}, ensure_ascii=False) + "\n")
    if class_names:
        (folder / "classes.json").write_text(json.dumps(class_names) + "\n", encoding="utf-8")
    if synthetic_pairs:
        with (folder / "synthetic_pairs.jsonl").open("w", encoding="utf-8") as handle:
            for split, rows in synthetic_pairs.items():
                for row in rows:
                    handle.write(json.dumps({"split": split, **row}, ensure_ascii=False) + "\n")


def _python_rows(rows: datasets.Dataset, chunk_rows: int = 10_000):
    """`rows` as Python dicts in row order, converted from Arrow `chunk_rows` at a time (iterating a Dataset
    row by row formats each row on its own: about ten times slower at millions of rows)."""
    for table in rows.with_format("arrow").iter(batch_size=chunk_rows):
        yield from table.to_pylist()
