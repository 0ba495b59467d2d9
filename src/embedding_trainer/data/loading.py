"""A run's train, eval and validation data: its sources read into schema rows (`RowReader`) and cut into
the rows trained on, the eval data and the validation data (see `embedding_trainer.data.splits`)."""

from dataclasses import dataclass, field

import datasets

from embedding_trainer.data.reading import RowReader, Sources
from embedding_trainer.data.schema import class_labels, distinct_classes
from embedding_trainer.data.sources import RetrievalSplit
from embedding_trainer.data.splits import (
    SplitSettings,
    judged_documents,
    keep_queries,
    sample_rows,
    split_off_test,
)
from embedding_trainer.data.stages import StageContext
from embedding_trainer.data.stages.holdout import ValidationHoldout
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

# Generated pairs carry the passage they came from until the splits are made (by passage).
CHUNK_COLUMNS = ("chunk_id", "document_id")


@dataclass
class EvalData:
    """What an evaluator needs: the eval rows in schema order (None when the dataset type is
    evaluated on a fixed general set), the training rows (the support set of k-NN evaluation),
    the class names of a class label, and for a retrieval-layout source the queries, full
    corpus and relevance sets of the eval split."""

    rows: datasets.Dataset | None
    retrieval: RetrievalSplit | None = None
    train_rows: datasets.Dataset | None = None
    class_names: list[str] | None = None


@dataclass
class LoadedData:
    """The rows trained on (None when not read), the eval data, the validation data (None: none), the class
    names of a class label, and the generated pairs with their passages by split (`write_prepared_rows`)."""

    train: datasets.Dataset | None
    eval_data: EvalData
    validation_data: EvalData | None = None
    class_names: list[str] | None = None
    synthetic_pairs: dict[str, datasets.Dataset] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitLoader:
    """Reads `sources` with `reader` and cuts the rows by `splits` and the validation `holdout` (None: no
    validation rows held out of the training rows); `class_names` (None: the sorted classes of the training
    rows) orders a class label."""

    reader: RowReader
    sources: Sources
    splits: SplitSettings
    class_names: list[str] | None = None
    holdout: ValidationHoldout | None = None

    def load(self) -> LoadedData:
        """The train, eval and validation data of a training run (sources checked beforehand)."""
        (train_rows, train_retrieval), (rows, retrieval), notes = self._train_and_eval_rows(True)
        validation, validation_retrieval = None, None
        if self.sources.validation.path is not None:
            validation, validation_retrieval = self.reader.read(self.sources.validation, "validation")
        class_names, (train_rows, rows, validation) = self._labelled(train_rows, rows, validation)
        generated, seed = self.reader.synthetic is not None, self.reader.seed
        if self.holdout is None:
            train = sample_rows(train_rows, self.splits.max_samples, seed)
        else:
            train = self.holdout.run(train_rows, StageContext(seed=seed))
            notes, validation = [*notes, self.holdout.note], self.holdout.held
            validation_retrieval = judged_documents(train_retrieval) if train_retrieval else None
        pairs: dict[str, datasets.Dataset] = {}
        if generated:
            pairs, (train, rows, validation) = set_aside_passages(train, rows, validation)
        loaded = LoadedData(
            train, self._eval_data(rows, retrieval, train, class_names), None, class_names, pairs
        )
        if validation is not None:
            loaded.validation_data = self._eval_data(validation, validation_retrieval, train, class_names)
        eval_count = "no" if rows is None else len(loaded.eval_data.rows)
        validation_count = (
            "" if validation is None else f", {len(loaded.validation_data.rows)} validation rows"
        )
        held = "; ".join(note for note in notes if note)
        log.info(
            f"Data: {len(train)} training rows, {eval_count} eval rows{validation_count} "
            f"({self.reader.schema.name})" + (f": {held} (seed {seed})" if held else "")
        )
        return loaded

    def load_evaluation(self, train_rows: bool) -> LoadedData:
        """The eval data of an evaluation without training (with eval_path null, the part data.test_size
        holds out of the training rows, the same rows `load` holds out) and the training rows when
        `train_rows` or the eval rows are a part of them; no validation data."""
        (train, _), (rows, retrieval), notes = self._train_and_eval_rows(train_rows)
        class_names, (train, rows, _) = self._labelled(train, rows, None)
        loaded = LoadedData(train, self._eval_data(rows, retrieval, train, class_names), None, class_names)
        held = f": {notes[0]} (seed {self.reader.seed})" if notes else ""
        log.info(f"Data: {len(loaded.eval_data.rows)} eval rows ({self.reader.schema.name}){held}")
        return loaded

    def _train_and_eval_rows(self, train: bool) -> tuple[tuple, tuple, list[str]]:
        """((training rows, their retrieval split), (eval rows, theirs), notes): the eval rows of eval_path,
        or with eval_path null data.test_size of the training rows held out (noted); the training rows are
        (None, None) when not `train` and the eval rows are not a part of them."""
        eval_source, generated = self.sources.eval, self.reader.synthetic is not None
        train_rows, train_retrieval = None, None
        if train or eval_source.path is None:
            if generated:
                train_rows = self.reader.synthetic_rows(self.sources.train.path)
            else:
                train_rows, train_retrieval = self.reader.read(self.sources.train, "train")
        if eval_source.path is not None:
            return (train_rows, train_retrieval), self.reader.read(eval_source, "eval"), []
        if not self.splits.test_size:
            return (train_rows, train_retrieval), (None, None), []
        passages = CHUNK_COLUMNS[0] if generated else None
        test = split_off_test(train_rows, self.splits.test_size, self.reader.seed, passages)
        note = f"no data.eval_path, so {test.note} (set data.eval_path to test on data of your own)"
        return (test.kept, train_retrieval), (test.held, None), [note]

    def _labelled(
        self, *splits: datasets.Dataset | None
    ) -> tuple[list[str] | None, list[datasets.Dataset | None]]:
        """The class names and the (train, eval, validation) rows with class labels as class indices (other
        label kinds: the rows as they are); the class names default to the sorted classes of the training
        rows (the first; needed then)."""
        schema = self.reader.schema
        if schema.label_type != "class":
            return self.class_names, list(splits)
        names = self.class_names or sorted(distinct_classes(splits[0], schema.label))
        roles = ("train data", "eval data", "validation data")
        return names, [
            class_labels(rows, schema.label, role, names) if rows is not None else None
            for rows, role in zip(splits, roles)
        ]

    def _eval_data(
        self,
        rows: datasets.Dataset | None,
        retrieval: RetrievalSplit | None,
        train: datasets.Dataset | None,
        class_names: list[str] | None,
    ) -> EvalData:
        """Evaluation data of `rows` (at most max_eval_samples of them, seeded) and, for a retrieval
        source, its split restricted to those rows' queries (the corpus stays whole)."""
        if rows is not None:
            rows = sample_rows(rows, self.splits.max_eval_samples, self.reader.seed)
            if retrieval is not None:
                retrieval = keep_queries(retrieval, rows["anchor"])
        return EvalData(rows=rows, retrieval=retrieval, train_rows=train, class_names=class_names)


def set_aside_passages(
    *splits: datasets.Dataset | None,
) -> tuple[dict[str, datasets.Dataset], list[datasets.Dataset | None]]:
    """The (train, eval, validation) rows that are generated, with their passages, by split name (for
    `write_prepared_rows`), and the splits without those columns."""
    generated = [rows is not None and CHUNK_COLUMNS[0] in rows.column_names for rows in splits]
    names = ("train", "eval", "validation")
    kept = {name: rows for name, rows, is_generated in zip(names, splits, generated) if is_generated}
    return kept, [
        rows.remove_columns(list(CHUNK_COLUMNS)) if is_generated else rows
        for rows, is_generated in zip(splits, generated)
    ]
