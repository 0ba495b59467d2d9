"""Reading a run's sources (a data file, a retrieval folder, a hub dataset, or documents to generate
pairs from) into rows of the dataset type's schema."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import datasets

from embedding_trainer.data.schema import Normalization, Schema, fit_rows
from embedding_trainer.data.sources import (
    RetrievalSplit,
    file_format,
    is_hub_id,
    is_retrieval_folder,
    misread_hint,
    read_documents,
    read_hub,
    read_retrieval_split,
    read_table,
)
from embedding_trainer.data.stages import DataStage, StageContext
from embedding_trainer.utils.errors import DataError

# The split read when a source names none: BEIR folders call their validation qrels `dev`.
DEFAULT_SPLITS = {"train": "train", "eval": "test", "validation": "dev"}
# What to do when an eval or validation source does not fit the schema as the training data is read.
SOURCE_FIXES = {
    "eval": "Point data.eval_path at data like the training data (the same column_map and reader settings "
    "read it), or set data.eval_path=null to hold out data.test_size of the training rows.",
    "validation": "Point data.validation_path at data like the training data (the same column_map and reader "
    "settings read it), or set it to null (data.validation_size then holds out training queries).",
}


class Source(NamedTuple):
    """A data file, retrieval-layout folder or hub dataset id (None: no such source), and its split
    (the qrels split of a retrieval folder or the split of a hub dataset; None: the role's default)."""

    path: str | None
    split: str | None = None


@dataclass(frozen=True)
class Sources:
    """The train, eval and validation sources (`data.{train,eval,validation}_{path,split}`). Eval path
    None: `data.test_size` of the training rows, or no eval rows. A validation split without a validation
    path is that split of the eval path."""

    train: Source
    eval: Source = field(default_factory=lambda: Source(None))
    validation: Source = field(default_factory=lambda: Source(None))

    @classmethod
    def of(
        cls,
        train_path: str | None,
        train_split: str | None = None,
        eval_path: str | None = None,
        eval_split: str | None = None,
        validation_path: str | None = None,
        validation_split: str | None = None,
    ) -> "Sources":
        if validation_path is None and validation_split is not None:
            validation_path = eval_path
        return cls(
            Source(train_path, train_split),
            Source(eval_path, eval_split),
            Source(validation_path, validation_split),
        )

    def check(self, generates_pairs: bool) -> None:
        """DataError when a configured local path does not exist (nothing is read), or when pairs are to be
        generated from documents (`generates_pairs`) that are no local path."""
        named = {"train_path": self.train, "eval_path": self.eval, "validation_path": self.validation}
        for key, (path, _split) in named.items():
            if path is not None and not Path(path).exists() and not is_hub_id(path):
                raise DataError(
                    f"data.{key}={path} does not exist. Point it at a data file, a retrieval folder or a hub dataset id."
                )
        if generates_pairs and not Path(self.train.path).exists():
            raise DataError(
                f"data.synthetic_queries generates queries for local documents, but data.train_path={self.train.path} "
                "is no local path: point it at a folder of .txt/.md files, a JSONL file of {text} rows or a retrieval folder."
            )


@dataclass(frozen=True)
class ReaderSettings:
    """How files are read: `format` (None: from the extension), `read_options` (empty: a header row;
    comma-separated .csv, tab-separated .tsv), the text `encoding` of local json/csv/tsv files and retrieval
    folders, `document_title` (`prepend`: a retrieval folder's document is `title + " " + text`, as BEIR and
    MTEB build it; `drop`: its `text` alone) and `hub_config` (the configuration name of a hub dataset)."""

    format: str | None = None
    read_options: dict = field(default_factory=dict)
    encoding: str = "utf-8"
    document_title: str = "prepend"
    hub_config: str | None = None


@dataclass(frozen=True)
class RowReader:
    """Reads sources into rows of `schema`, normalized by `normalization`, seeded by `seed`; with `synthetic`,
    the training rows are pairs generated from documents (`tokenizer()`: the model's, for chunking)."""

    schema: Schema
    normalization: Normalization
    reading: ReaderSettings
    seed: int
    synthetic: DataStage | None = None
    tokenizer: Callable[[], object] | None = None

    def fit(self, table: datasets.Dataset, source: str) -> datasets.Dataset:
        """`table` as rows of the schema (`fit_rows`)."""
        return fit_rows(table, self.schema, self.normalization, self.seed, source)

    def read(self, source: Source, role: str) -> tuple[datasets.Dataset, RetrievalSplit | None]:
        """`source`'s rows for `role` (`train`, `eval` or `validation`) and, for a retrieval folder, its split;
        an eval or validation source that does not fit says how to do without it."""
        try:
            return self._read(source.path, source.split or DEFAULT_SPLITS[role], f"{role} data {source.path}")
        except DataError as error:
            raise DataError(f"{error} {SOURCE_FIXES.get(role, '')}".rstrip()) from None

    def _read(self, path: str, split: str, source: str) -> tuple[datasets.Dataset, RetrievalSplit | None]:
        """A local file's rows that do not fit get the reader settings and the first row as read in the message."""
        reading = self.reading
        if is_retrieval_folder(Path(path)):
            retrieval = read_retrieval_split(Path(path), split, reading.encoding, reading.document_title)
            return self.fit(retrieval.pairs(), f"{source} (split {split})"), retrieval
        if Path(path).is_dir():
            raise DataError(
                f"{source} is a folder but not in the retrieval layout (corpus.jsonl, queries.jsonl)."
            )
        if not Path(path).exists():
            return self.fit(read_hub(path, reading.hub_config, split), f"{source} (split {split})"), None
        fmt = file_format(Path(path), reading.format)
        table = read_table(Path(path), fmt, reading.read_options, reading.encoding)
        try:
            return self.fit(table, source), None
        except DataError as error:
            raise DataError(
                f"{error} {misread_hint(table, fmt, reading.read_options, reading.encoding)}"
            ) from None

    def synthetic_rows(self, path: str) -> datasets.Dataset:
        """The rows generated from the documents at `path` (the chunking / synthetic-queries stage, `data.stages.synthetic_queries`), fitted to the schema,
        with each pair's `chunk_id` and `document_id`."""
        documents = read_documents(Path(path), self.reading.encoding, self.reading.document_title)
        table = datasets.Dataset.from_dict(
            {"id": [document.id for document in documents], "text": [document.text for document in documents]}
        )
        pairs = self.synthetic.run(table, StageContext(tokenizer=self.tokenizer, seed=self.seed))
        if len(pairs) == 0:
            raise DataError(
                f"data.synthetic_queries made no pair from {path}: its passages are too short for "
                "data.synthetic_queries.cropping (lower its min_words, or use longer documents)."
            )
        rows = self.fit(pairs.select_columns(["anchor", "positive"]), f"synthetic pairs from {path}")
        rows = rows.add_column("chunk_id", pairs["chunk_id"])
        return rows.add_column("document_id", pairs["document_id"])
