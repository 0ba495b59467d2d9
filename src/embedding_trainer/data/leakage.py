"""Leakage between training and evaluation data: evaluation queries the model trains on, and
evaluation (query, relevant text) pairs that are training pairs, whether the training row has the
text as its positive or as a negative (sampled or mined: the loss then pushes the evaluation's answer
away). Texts are compared after collapsing whitespace and case; pairs in either order. Queries are
the first column where it is one (`anchor`, `sentence`); in sentence_A/sentence_B formats only whole
pairs count (a sentence may be in many pairs, and a pair is what is scored)."""

from dataclasses import dataclass, field

import datasets

from embedding_trainer.data.chunked import column_chunks, text_digest
from embedding_trainer.utils.errors import DataError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

LEAKAGE_MODES = ("error", "warn", "off")
QUERY_COLUMNS = ("anchor", "sentence")  # schema columns that hold queries (or the items evaluated)
EXAMPLES = 3
EXAMPLE_CHARS = 80


def normalised(text) -> str:
    """`text` with runs of whitespace as one space, case-folded."""
    return " ".join(str(text).split()).casefold()


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
    when given, else the eval rows' first two columns."""
    if retrieval is not None:
        queries = list(retrieval.queries.values())
        pairs = [
            (retrieval.queries[query], retrieval.corpus[doc])
            for query, docs in retrieval.relevant_docs.items()
            for doc in docs
        ]
    elif eval_rows is not None:
        queries = eval_rows[text_columns[0]]
        pairs = list(zip(queries, eval_rows[text_columns[1]])) if len(text_columns) > 1 else []
    else:
        return Leakage()
    if text_columns[0] not in QUERY_COLUMNS:
        queries = []
    query_keys = [text_digest(normalised(query)) for query in queries]
    pair_keys = [_pair(first, second) for first, second in pairs]
    trained_queries, trained_pairs = _in_training(train_rows, text_columns, set(query_keys), set(pair_keys))
    leaked = [query for query, key in zip(queries, query_keys) if key in trained_queries]
    leaked_pairs = [pair[0] for pair, key in zip(pairs, pair_keys) if key in trained_pairs]
    return Leakage(
        queries=len(leaked),
        query_total=len(queries),
        pairs=len(leaked_pairs),
        pair_total=len(pairs),
        examples=list(dict.fromkeys(leaked + leaked_pairs))[:EXAMPLES],
    )


def _in_training(
    train_rows: datasets.Dataset, text_columns: list[str], query_keys: set[bytes], pair_keys: set[bytes]
) -> tuple[set[bytes], set[bytes]]:
    """Of the evaluation `query_keys` and `pair_keys` (digests of normalised texts and pairs), those among
    the training rows' queries and (query, other text) pairs, read a chunk of rows at a time."""
    queries: set[bytes] = set()
    pairs: set[bytes] = set()
    columns = text_columns if pair_keys else text_columns[:1]
    if not query_keys and not pair_keys:
        return queries, pairs
    for _start, chunk in column_chunks(train_rows, columns):
        anchors = chunk[text_columns[0]]
        if query_keys:
            queries.update(key for text in anchors if (key := text_digest(normalised(text))) in query_keys)
        for column in columns[1:]:
            found = (_pair(*row) for row in zip(anchors, chunk[column]))
            pairs.update(key for key in found if key in pair_keys)
    return queries, pairs


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
