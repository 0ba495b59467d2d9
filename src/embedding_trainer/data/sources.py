"""Reading rows from local files and retrieval-layout folders.

A retrieval-layout (BEIR) folder holds `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl`
(`_id`, `text`) and `qrels/<split>.tsv` (`query-id`, `corpus-id`, `score`).
"""

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import datasets

from embedding_trainer.errors import DataError

FILE_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


@dataclass
class RetrievalSplit:
    """Queries, the whole corpus, and which documents are relevant to each query of one split."""

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant_docs: dict[str, set[str]]

    def pairs(self) -> datasets.Dataset:
        """One (anchor=query text, positive=document text) row per relevant (query, document)."""
        anchors, positives = [], []
        for query_id, doc_ids in self.relevant_docs.items():
            for doc_id in sorted(doc_ids):
                anchors.append(self.queries[query_id])
                positives.append(self.corpus[doc_id])
        return datasets.Dataset.from_dict({"anchor": anchors, "positive": positives})


def is_hub_id(name: str) -> bool:
    """True when `name` is no local path but reads as a hub dataset id (`name` or `owner/name`)."""
    return not Path(name).exists() and bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name)) and Path(name).suffix not in FILE_FORMATS


def read_hub(name: str, config: str | None, split: str) -> datasets.Dataset:
    """Split `split` of hub dataset `name` (configuration `config`), from the cache or downloaded."""
    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as error:  # the hub client raises many transport and HTTP error types
        raise DataError(
            f"Cannot load dataset {name!r} (config {config}, split {split}) from the Hugging Face Hub: "
            f"{type(error).__name__}: {str(error)[:300]}. It is not a local path either. Connect to the hub, or "
            "download it elsewhere and point data.train_path/eval_path at the local files."
        ) from None


def is_retrieval_folder(path: Path) -> bool:
    """True when `path` is a folder in the retrieval layout."""
    return path.is_dir() and (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file()


def file_format(path: Path, declared: str | None) -> str:
    """The format of data file `path`: `declared` if given, else from its extension."""
    if declared:
        return declared
    if path.suffix in FILE_FORMATS:
        return FILE_FORMATS[path.suffix]
    raise DataError(
        f"Cannot tell the format of {path}: name it with one of {sorted(FILE_FORMATS)} or set "
        "data.format to json, csv, tsv or parquet."
    )


def read_table(path: Path, fmt: str, read_options: dict) -> datasets.Dataset:
    """All rows of a json/jsonl/csv/tsv/parquet file as a Dataset. `read_options` go to the reader
    (for csv/tsv: pandas.read_csv arguments such as `quoting`, `header`, `column_names`)."""
    options = dict(read_options)
    builder = fmt
    if fmt == "tsv":
        builder, options = "csv", {"sep": "\t", **options}
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except datasets.exceptions.DatasetGenerationError as error:
        cause = error.__cause__ or error
        raise DataError(f"Could not read {path} as {fmt}: {cause}. Check data.format and data.read_options.") from None
    except ValueError as error:
        if "corresponds to no data" not in str(error):  # how `datasets` reports a file without rows
            raise
        return datasets.Dataset.from_dict({})


def read_retrieval_split(folder: Path, split: str) -> RetrievalSplit:
    """The queries of `split` that have relevant documents, the full corpus, and the relevance sets."""
    qrels_file = folder / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        found = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise DataError(f"{folder} has no qrels/{split}.tsv; its splits are {found}. Set data.train_split/eval_split.")
    relevant_docs: dict[str, set[str]] = {}
    with qrels_file.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if float(row["score"]) > 0:
                relevant_docs.setdefault(row["query-id"], set()).add(row["corpus-id"])
    corpus = {doc["_id"]: _document_text(doc) for doc in _read_jsonl(folder / "corpus.jsonl")}
    queries = {q["_id"]: q["text"] for q in _read_jsonl(folder / "queries.jsonl") if q["_id"] in relevant_docs}
    missing = [doc for docs in relevant_docs.values() for doc in docs if doc not in corpus]
    if missing or len(queries) != len(relevant_docs):
        raise DataError(f"{qrels_file} names queries or documents that {folder} does not hold (e.g. {missing[:3]}).")
    return RetrievalSplit(queries=queries, corpus=corpus, relevant_docs=relevant_docs)


def _document_text(doc: dict) -> str:
    # Retrieval benchmarks store the passage body in `text`; titles are kept out of the passage,
    # as in sentence-transformers' own BEIR evaluations of SQuAD-style data.
    return doc["text"]


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
