"""The parts the training rows are cut into, in this order: the held-out test part (`data.test_size`,
when there is no eval data), the rows trained on (`data.max_samples`), and the held-out validation
queries (`data.validation_size`), which come from the training rows `max_samples` leaves unused when
those hold enough queries, so validation costs no training row."""

from dataclasses import dataclass

import datasets
import numpy as np

from embedding_trainer.data.chunked import KeyGroups, row_keys, select_rows
from embedding_trainer.data.holdout import draw, held_out_count, hold_out
from embedding_trainer.data.sources import RetrievalSplit
from embedding_trainer.utils.errors import DataError


@dataclass(frozen=True)
class SplitSettings:
    """How the training rows are cut: `test_size` (with no eval source: the fraction held out, seeded, as
    the eval data), `max_samples` (the rows trained on; None: all) and `max_eval_samples` (the eval and
    validation rows kept, seeded; None: all). The validation hold-out (`data.validation_size`) is a data
    stage (`embedding_trainer.data.stages.holdout`)."""

    test_size: float | None = None
    max_samples: int | None = None
    max_eval_samples: int | None = None


@dataclass(frozen=True)
class Split:
    """The training rows kept and the rows held out of them, with what was done, for the log."""

    kept: datasets.Dataset
    held: datasets.Dataset | None
    note: str = ""


def sample_rows(rows: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """`limit` of `rows` in a seeded random order (all of them, in their order, when `limit` is None or
    not below their number)."""
    if limit is not None and limit < len(rows):
        return rows.shuffle(seed=seed).select(range(limit))
    return rows


def split_off_test(rows: datasets.Dataset, test_size: float, seed: int, passage_column: str | None) -> Split:
    """`test_size` of `rows` held out as the eval (test) data, seeded: single rows, or with `passage_column`
    (its passage's id in each row, generated pairs) whole passages."""
    if passage_column is not None:
        kept, held = hold_out(rows, test_size, seed, passage_column, "data.test_size")
    else:
        split = rows.train_test_split(test_size=test_size, seed=seed)
        kept, held = split["train"], split["test"]
    return Split(
        kept, held, f"{len(held)} rows (data.test_size={test_size}) held out of data.train_path as test data"
    )


def train_and_validation(
    rows: datasets.Dataset,
    max_samples: int | None,
    validation_size: float | None,
    seed: int,
    key_column: str | None = None,
) -> Split:
    """The rows trained on (`max_samples` of `rows`, seeded) and, with `validation_size`, the validation
    rows: that many distinct queries (`key_column`, default the first column; a fraction counts all of
    `rows`' queries) with all their rows, drawn (seeded) from the queries none of whose rows is trained on
    when there are enough of them, otherwise held out of `rows` before `max_samples` picks among the rest.
    The keys are read a chunk at a time (`embedding_trainer.data.chunked`)."""
    trained = sample_rows(rows, max_samples, seed)
    if validation_size is None:
        return Split(trained, None)
    column = key_column or rows.column_names[0]
    groups = KeyGroups(row_keys(rows, [column]))
    unit = "queries" if key_column is None else "passages"
    count = held_out_count(validation_size, groups.count, "data.validation_size", unit)
    used = np.ones(groups.count, dtype=bool)
    if trained is not rows:  # `max_samples` left rows unused
        used[:] = False
        used[groups.groups_of(row_keys(trained, [column]))] = True
    unused = np.flatnonzero(~used)
    if len(unused) >= count:
        chosen = np.zeros(groups.count, dtype=bool)
        chosen[unused[draw(len(unused), count, seed)]] = True
        held = select_rows(rows, np.flatnonzero(groups.rows_of(chosen)))
        return Split(
            trained,
            held,
            f"{count} validation {unit} (data.validation_size={validation_size}) held out of the rows data.max_samples leaves unused",
        )
    kept, held = hold_out(rows, validation_size, seed, key_column)
    return Split(
        sample_rows(kept, max_samples, seed),
        held,
        f"{count} validation {unit} (data.validation_size={validation_size}) held out of the training rows",
    )


def judged_documents(split: RetrievalSplit) -> RetrievalSplit:
    """`split` with its corpus cut to the documents its relevance judgments name (a training split's
    documents: held-out validation queries are ranked among these, never among other splits' documents)."""
    judged = {doc for docs in split.relevant_docs.values() for doc in docs}
    corpus = {doc: text for doc, text in split.corpus.items() if doc in judged}
    return RetrievalSplit(queries=split.queries, corpus=corpus, relevant_docs=split.relevant_docs)


def keep_queries(split: RetrievalSplit, query_texts: list[str]) -> RetrievalSplit:
    """`split` restricted to the queries whose text is in `query_texts` (the corpus stays whole)."""
    keep = set(query_texts)
    queries = {qid: text for qid, text in split.queries.items() if text in keep}
    return RetrievalSplit(
        queries=queries,
        corpus=split.corpus,
        relevant_docs={qid: split.relevant_docs[qid] for qid in queries},
    )


def check_split_settings(
    test_size: float | None, validation_path: str | None, validation_split: str | None
) -> None:
    """DataError for split settings that cannot work, before anything is read: a validation split without
    a source, a test_size outside (0, 1) (the hold-out's `data.validation_size`: `ValidationHoldout.check`)."""
    if validation_path is None and validation_split is not None:
        raise DataError(
            f"data.validation_split={validation_split} needs a source: set data.validation_path "
            "(or data.eval_path, whose split it then is)."
        )
    if test_size is not None and not 0 < test_size < 1:
        raise DataError(f"data.test_size must be a fraction in (0, 1), got {test_size}.")
