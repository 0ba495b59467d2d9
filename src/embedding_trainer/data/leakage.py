"""Leakage between training and evaluation data: evaluation queries the model trains on, and
evaluation (query, relevant text) pairs that are training pairs, whether the training row has the
text as its positive or as a negative (sampled or mined: the loss then pushes the evaluation's answer
away). Texts are compared after collapsing whitespace and case; pairs in either order. Queries are
the first column where it is one (`anchor`, `sentence`); in sentence_A/sentence_B formats only whole
pairs count (a sentence may be in many pairs, and a pair is what is scored)."""

from dataclasses import dataclass, field

import datasets
import numpy as np

from embedding_trainer.data.chunked import KeyGroups, as_keys, column_chunks, row_keys, text_digest
from embedding_trainer.utils.errors import DataError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

LEAKAGE_MODES = ("error", "warn", "off")
QUERY_COLUMNS = ("anchor", "sentence")  # schema columns that hold queries (or the items evaluated)
EXAMPLES = 3
EXAMPLE_CHARS = 80
EXAMPLE_ROWS = 100  # leaked rows read at a time for the examples


def normalised(text) -> str:
    """`text` with runs of whitespace as one space, case-folded."""
    return " ".join(str(text).split()).casefold()


def _query(text) -> bytes:
    """The digest of a normalised query."""
    return text_digest(normalised(text))


def _pair(first, second) -> bytes:
    """The digest of a pair of texts, in either order (normalised texts hold no newline)."""
    return text_digest("\n".join(sorted((normalised(first), normalised(second)))))


@dataclass
class Leakage:
    """Of `query_total` evaluation queries (first text column, or a retrieval split's queries),
    `queries` are training queries too; of `pair_total` evaluation (query, relevant text) pairs,
    `pairs` are training pairs. `examples`: some leaked queries (or first texts of leaked pairs)."""

    queries: int = 0
    query_total: int = 0
    pairs: int = 0
    pair_total: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.queries or self.pairs)

    def describe(self) -> str:
        if not self.query_total and not self.pair_total:
            return "Leakage check: no evaluation rows of its own to compare with the training rows."
        found = []
        if self.query_total:
            found.append(
                f"{self.queries} of {self.query_total} evaluation queries appear among the training queries"
            )
        if self.pair_total:
            found.append(
                f"{self.pairs} of {self.pair_total} evaluation (query, relevant text) pairs among the training pairs (as positive or negative)"
            )
        shown = "; ".join(repr(text[:EXAMPLE_CHARS]) for text in self.examples)
        return f"Leakage check: {', and '.join(found)}" + (f" (for example {shown})." if shown else ".")


def find_leakage(
    train_rows: datasets.Dataset, text_columns: list[str], eval_rows: datasets.Dataset | None, retrieval=None
) -> Leakage:
    """Compare the training rows' queries (first text column) and their (query, other text) pairs, one
    per further text column, with the evaluation data: a retrieval split's queries and relevance sets
    when given, else the eval rows' first two columns. Both sides are read a chunk of rows at a time;
    what is kept is a key per evaluation row (`embedding_trainer.data.chunked`)."""
    if retrieval is not None:
        relevant = [(query, doc) for query, docs in retrieval.relevant_docs.items() for doc in docs]
        queries = datasets.Dataset.from_dict({"query": list(retrieval.queries.values())})
        pairs = datasets.Dataset.from_dict(
            {
                "query": [retrieval.queries[query] for query, _ in relevant],
                "text": [retrieval.corpus[doc] for _, doc in relevant],
            }
        )
    elif eval_rows is not None:
        queries = eval_rows.select_columns(text_columns[:1])
        pairs = eval_rows.select_columns(text_columns[:2]) if len(text_columns) > 1 else None
    else:
        return Leakage()
    query_keys = _EvaluationKeys(queries if text_columns[0] in QUERY_COLUMNS else None, _query)
    pair_keys = _EvaluationKeys(pairs, _pair)
    columns = text_columns if pair_keys.total else text_columns[:1]
    for _start, chunk in column_chunks(train_rows, columns) if query_keys.total or pair_keys.total else ():
        anchors = chunk[text_columns[0]]
        query_keys.search([_query(text) for text in anchors])
        for column in columns[1:]:
            pair_keys.search([_pair(*pair) for pair in zip(anchors, chunk[column])])
    leaked, leaked_pairs = query_keys.leaked(), pair_keys.leaked()
    return Leakage(
        queries=len(leaked),
        query_total=query_keys.total,
        pairs=len(leaked_pairs),
        pair_total=pair_keys.total,
        examples=_examples((queries, leaked), (pairs, leaked_pairs)),
    )


class _EvaluationKeys:
    """The keys (`digest` of their values) of evaluation `rows` (None: none), and which of them `search`
    found among the training rows' keys."""

    def __init__(self, rows: datasets.Dataset | None, digest) -> None:
        self.total = 0 if rows is None else len(rows)
        self.groups = KeyGroups(row_keys(rows, rows.column_names, digest)) if self.total else None
        self.found = np.zeros(self.groups.count if self.groups else 0, dtype=bool)

    def search(self, digests: list[bytes]) -> None:
        if self.groups is not None:
            groups = self.groups.groups_of(as_keys(digests))
            self.found[groups[groups >= 0]] = True

    def leaked(self) -> np.ndarray:
        """The evaluation rows found among the training rows, in row order."""
        if self.groups is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.groups.rows_of(self.found))


def _examples(*leaked: tuple[datasets.Dataset | None, np.ndarray]) -> list[str]:
    """The first EXAMPLES distinct first texts of the leaked rows (each (rows, their leaked row indices)),
    in order."""
    examples: dict[str, None] = {}
    for rows, indices in leaked:
        for start in range(0, len(indices), EXAMPLE_ROWS):
            column = rows.column_names[0]
            for text in rows.select_columns([column])[indices[start : start + EXAMPLE_ROWS].tolist()][column]:
                examples.setdefault(text)
                if len(examples) == EXAMPLES:
                    return list(examples)
    return list(examples)


def check_leakage(leakage: Leakage, mode: str) -> None:
    """`mode` (one of LEAKAGE_MODES) error: raise DataError when anything leaked; warn: log it; off: nothing."""
    if mode == "off" or not leakage.found:
        return
    remedy = "Remove those rows from the training or the evaluation data, or evaluate on another split"
    if mode == "error":
        raise DataError(f"{leakage.describe()} {remedy} (or set data.leakage=warn to go on with a warning).")
    log.warning(
        f"{leakage.describe()} The evaluation overstates what the model learned. {remedy} "
        "(data.leakage=error stops such runs)."
    )
