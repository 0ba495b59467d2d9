"""Listwise rows (dataset_type=listwise): a query, its passages and a numeric score per passage, the
(query, docs[], labels[]) rows sentence-transformers' listwise cross-encoder losses take.

Rows come as they are (columns anchor, passages, scores; or mapped onto them by `data.column_map` or by
position) or from (anchor, positive[, negative_1..n]) n-tuples: the positive scored 1, each negative 0
(with `data.negatives_per_anchor`, pairs get that many negatives sampled from other rows' positives)."""

import math
from collections.abc import Iterator

import datasets

from embedding_trainer.data.chunked import column_chunks
from embedding_trainer.data.sampled_negatives import with_sampled_negatives
from embedding_trainer.utils.errors import DataError

QUERY, PASSAGES, SCORES = "anchor", "passages", "scores"
NEGATIVE = "negative"
FEATURES = datasets.Features(
    {
        QUERY: datasets.Value("string"),
        PASSAGES: datasets.Sequence(datasets.Value("string")),
        SCORES: datasets.Sequence(datasets.Value("float32")),
    }
)


def is_n_tuple(table: datasets.Dataset) -> bool:
    """Whether `table` holds (anchor, positive[, negative_i...]) rows rather than listwise ones."""
    return PASSAGES not in table.column_names and {QUERY, "positive"} <= set(table.column_names)


def from_n_tuples(table: datasets.Dataset, negatives_per_anchor: int | None, seed: int) -> datasets.Dataset:
    """Listwise rows of (anchor, positive, negative_1..n) `table`: passages [positive, negative_1, ...] scored
    [1, 0, ...]; with `negatives_per_anchor`, that many negatives are first sampled (seeded) for pairs."""
    if negatives_per_anchor:
        table = with_sampled_negatives(table, negatives_per_anchor, NEGATIVE, seed)
    negatives = sorted(
        (name for name in table.column_names if name.startswith(f"{NEGATIVE}_")),
        key=lambda name: int(name.rsplit("_", 1)[1]),
    )
    columns = ["positive", *negatives]

    def listwise(batch: dict) -> dict:
        passages = [list(texts) for texts in zip(*(batch[name] for name in columns))]
        return {
            QUERY: batch[QUERY],
            PASSAGES: passages,
            SCORES: [[1.0] + [0.0] * len(negatives) for _ in passages],
        }

    return table.map(
        listwise, batched=True, remove_columns=table.column_names, features=FEATURES, desc="Listwise rows"
    )


def checked_listwise(table: datasets.Dataset, source: str) -> datasets.Dataset:
    """`table`'s (anchor, passages, scores) rows with scores as float32 lists; DataError naming the first
    rows that are not (a query text, a nonempty list of passage texts, as many finite numeric scores)."""
    bad = [problem for _, problem in zip(range(5), _row_problems(table))]
    if bad:
        raise DataError(
            f"{source} has listwise rows that do not fit dataset_type=listwise ({'; '.join(bad)}). Every row "
            f"needs a query text ({QUERY!r}), a nonempty list of passage texts ({PASSAGES!r}) and a list of as "
            f"many numbers ({SCORES!r}, one score per passage): fix or drop those rows, or map your columns "
            "onto these with data.column_map."
        )
    return table.cast(FEATURES)


def _row_problems(table: datasets.Dataset) -> Iterator[str]:
    """`row <index>: <what is wrong>` for each row of `table` that is not a valid listwise row."""
    for start, chunk in column_chunks(table, [QUERY, PASSAGES, SCORES]):
        for offset, (query, passages, scores) in enumerate(zip(chunk[QUERY], chunk[PASSAGES], chunk[SCORES])):
            problem = _problem(query, passages, scores)
            if problem:
                yield f"row {start + offset}: {problem}"


def _problem(query, passages, scores) -> str | None:
    """What is wrong with one listwise row (None: nothing)."""
    if not isinstance(query, str) or not query.strip():
        return f"the query is {query!r}, not a text"
    if not isinstance(passages, list) or not passages:
        return f"passages is {_shown(passages)}, not a nonempty list of texts"
    if not isinstance(scores, list) or len(scores) != len(passages):
        return f"{len(passages)} passages but scores is {_shown(scores)} (one number per passage needed)"
    if not all(isinstance(text, str) and text.strip() for text in passages):
        return f"passages {_shown(passages)} hold an empty or non-text value"
    if not all(_finite(score) for score in scores):
        return f"scores {_shown(scores)} hold a value that is not a finite number"
    return None


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
