"""Reading rows from local files and retrieval-layout folders.

A retrieval-layout (BEIR) folder holds `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl`
(`_id`, `text`) and `qrels/<split>.tsv` (`query-id`, `corpus-id`, `score`: a whole-number relevance
grade, above 0 relevant). A document's text is `title + " " + text` where it has a non-empty title,
as BEIR and MTEB build it (`document_title="prepend"`), or its `text` alone (`"drop"`).
"""

import csv
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa

from embedding_trainer.utils.errors import DataError

FILE_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
TEXT_FORMATS = ("json", "csv", "tsv")  # the formats read with a text encoding
SEPARATORS = {"csv": ",", "tsv": "\t"}
MAX_SHOWN_COLUMNS, MAX_SHOWN_CHARS = 8, 40  # of a row shown in a message
DOCUMENT_TITLES = ("prepend", "drop")  # what a retrieval corpus's document titles do


@dataclass
class RetrievalSplit:
    """Queries, the whole corpus, and the documents relevant to each query of one split with their
    relevance grades ({query id: {document id: grade >= 1}})."""

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant_docs: dict[str, dict[str, int]]

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
    return (
        not Path(name).exists()
        and bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name))
        and Path(name).suffix not in FILE_FORMATS
    )


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


def reader_options(fmt: str, read_options: dict, encoding: str) -> tuple[str, dict]:
    """The `datasets` builder for format `fmt` and the options it is called with: the csv/tsv
    separator (unless `read_options` sets one), `read_options`, and `encoding` for text formats.
    Empty `read_options` mean: a header row, comma-separated .csv, tab-separated .tsv."""
    options = {"sep": SEPARATORS[fmt]} if fmt in SEPARATORS else {}
    options.update(read_options)
    if fmt in TEXT_FORMATS:
        options["encoding"] = encoding
    return ("csv" if fmt == "tsv" else fmt), options


def describe_reader(fmt: str, read_options: dict, encoding: str) -> str:
    """`Read as <fmt> with options {...} (encoding ...)`: the reader settings in force, for messages."""
    options = reader_options(fmt, read_options, encoding)[1]
    options.pop("encoding", None)
    return f"Read as {fmt} with options {options}" + (
        f" (encoding {encoding})" if fmt in TEXT_FORMATS else ""
    )


def misread_hint(table: datasets.Dataset, fmt: str, read_options: dict, encoding: str) -> str:
    """The reader settings and the first row as read, for a message about rows that do not fit
    (what a file read with the wrong format, separator or header looks like)."""
    if len(table) == 0:
        row = "no rows as read"
    else:
        items = list(table[0].items())
        first = {name: _shorten(value) for name, value in items[:MAX_SHOWN_COLUMNS]}
        more = f" (+{len(items) - MAX_SHOWN_COLUMNS} more columns)" if len(items) > MAX_SHOWN_COLUMNS else ""
        row = f"first row as read: {first}{more}"
    return (
        f"{describe_reader(fmt, read_options, encoding)}; {row}. "
        "If that is not how the file looks, set data.format / data.read_options."
    )


def _shorten(value) -> str:
    """`value` as text, cut to MAX_SHOWN_CHARS."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def read_table(path: Path, fmt: str, read_options: dict, encoding: str = "utf-8") -> datasets.Dataset:
    """All rows of a json/jsonl/csv/tsv/parquet file as a Dataset. `read_options` go to the reader
    (for csv/tsv: pandas.read_csv arguments such as `quoting`, `header`, `column_names`); text
    formats are decoded with `encoding`. Raises DataError when the file cannot be decoded or parsed."""
    builder, options = reader_options(fmt, read_options, encoding)
    try:
        with decoded_with(path, encoding):
            table = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except DataError:
        raise
    except datasets.exceptions.DatasetGenerationError as error:
        cause = error.__cause__ or error
        raise DataError(
            f"Could not read {path}: {cause}. {describe_reader(fmt, read_options, encoding)}: "
            "check data.format and data.read_options."
        ) from None
    except ValueError as error:
        if "corresponds to no data" not in str(error):  # how `datasets` reports a file without rows
            raise
        return datasets.Dataset.from_dict({})
    _check_valid_text(table, path, encoding)
    return table


def _check_valid_text(table: datasets.Dataset, path: Path, encoding: str) -> None:
    """Raise the DataError of `decoded_with` when `table` holds invalid UTF-8 (the json reader
    passes UTF-8 input to Arrow undecoded, which fails only when the text is used)."""
    try:
        table.data.validate(full=True)
    except pa.ArrowInvalid as error:
        if "UTF8" not in str(error):
            raise
        raise _decode_error(path, encoding, str(error)) from None


@contextmanager
def decoded_with(path: Path, encoding: str) -> Iterator[None]:
    """Turn a failure to decode `path` with `encoding` (raised directly or wrapped, as `datasets`
    does) into a DataError that says to set data.encoding."""
    try:
        yield
    except Exception as error:
        failure = _decode_failure(error)
        if failure is None:
            raise
        raise _decode_error(path, encoding, failure.reason) from None


def _decode_failure(error: BaseException | None) -> UnicodeDecodeError | None:
    """The UnicodeDecodeError behind `error` (itself, or along its causes), if any."""
    while error is not None and not isinstance(error, UnicodeDecodeError):
        error = error.__cause__ or error.__context__
    return error


def _decode_error(path: Path, encoding: str, reason: str) -> DataError:
    """The message for a file that is not in the encoding it is read with."""
    return DataError(
        f"Cannot decode {path} as {encoding} ({reason}): the file has another encoding. "
        "Set data.encoding=<the file's encoding>, for example data.encoding=latin-1."
    )


def check_document_title(document_title: str) -> None:
    """Raise DataError unless `document_title` is one of DOCUMENT_TITLES."""
    if document_title not in DOCUMENT_TITLES:
        raise DataError(
            f"data.document_title must be one of {', '.join(DOCUMENT_TITLES)}, got {document_title!r}."
        )


def read_retrieval_split(
    folder: Path,
    split: str,
    encoding: str = "utf-8",
    document_title: str = "prepend",
    split_setting: str = "data.train_split/eval_split",
) -> RetrievalSplit:
    """The queries of `split` that have relevant documents, the full corpus (titles as
    `document_title` says), and each query's relevant documents with their grades: qrels rows
    scored 0 or below are judged not relevant and left out (every file decoded with `encoding`).
    DataError for a missing split names `split_setting`, the setting that chose it."""
    check_document_title(document_title)
    qrels_file = folder / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        found = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise DataError(f"{folder} has no qrels/{split}.tsv; its splits are {found}. Set {split_setting}.")
    relevant_docs: dict[str, dict[str, int]] = {}
    with decoded_with(qrels_file, encoding), qrels_file.open(encoding=encoding) as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            grade = _grade(row["score"], qrels_file)
            if grade > 0:
                relevant_docs.setdefault(row["query-id"], {})[row["corpus-id"]] = grade
    corpus = {
        doc["_id"]: _document_text(doc, document_title)
        for doc in _read_jsonl(folder / "corpus.jsonl", encoding)
    }
    queries = {
        q["_id"]: q["text"]
        for q in _read_jsonl(folder / "queries.jsonl", encoding)
        if q["_id"] in relevant_docs
    }
    missing = [doc for docs in relevant_docs.values() for doc in docs if doc not in corpus]
    if missing or len(queries) != len(relevant_docs):
        raise DataError(
            f"{qrels_file} names queries or documents that {folder} does not hold (e.g. {missing[:3]})."
        )
    return RetrievalSplit(queries=queries, corpus=corpus, relevant_docs=relevant_docs)


@dataclass
class Document:
    """One document of a corpus: its id (a retrieval folder's `_id`, a JSONL row's `_id`/`id` or line
    number, a text file's path inside its folder) and its text."""

    id: str
    text: str


TEXT_FILE_SUFFIXES = (".txt", ".md")


def read_documents(path: Path, encoding: str = "utf-8", document_title: str = "prepend") -> list[Document]:
    """The documents of a corpus: a retrieval folder's `corpus.jsonl` (titles as `document_title` says),
    a folder of `.txt`/`.md` files (read recursively, in path order; one document each), or a JSONL
    file of `{"text": ...}` rows (ids from `_id` or `id`, else the row number). Blank documents are
    left out; DataError when there is no document, or the path is none of those."""
    if is_retrieval_folder(path):
        check_document_title(document_title)
        rows = _read_jsonl(path / "corpus.jsonl", encoding)
        documents = [Document(str(doc["_id"]), _document_text(doc, document_title)) for doc in rows]
    elif path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_FILE_SUFFIXES)
        documents = []
        for file in files:
            with decoded_with(file, encoding):
                documents.append(
                    Document(file.relative_to(path).as_posix(), file.read_text(encoding=encoding))
                )
    else:
        rows = _read_jsonl(path, encoding) if path.is_file() else []
        if not rows or any(not isinstance(row, dict) or not isinstance(row.get("text"), str) for row in rows):
            raise DataError(
                f"{path} must be a retrieval folder, a folder of .txt/.md files, or a JSONL file of "
                '{"text": ...} rows (one document each).'
            )
        documents = [
            Document(str(row.get("_id", row.get("id", number))), row["text"])
            for number, row in enumerate(rows)
        ]
    documents = [doc for doc in documents if doc.text.strip()]
    if not documents:
        raise DataError(
            f"{path} holds no documents with text (.txt/.md files, or rows with a non-empty text)."
        )
    return documents


def read_corpus(path: Path, encoding: str = "utf-8", document_title: str = "prepend") -> list[str]:
    """The texts of `read_documents(path, ...)`."""
    return [doc.text for doc in read_documents(path, encoding, document_title)]


def _document_text(doc: dict, document_title: str) -> str:
    """`title + " " + text` when `document_title` is `prepend` and the title is not empty, else `text`."""
    title = doc.get("title") or ""
    return f"{title} {doc['text']}" if document_title == "prepend" and title.strip() else doc["text"]


def _grade(score: str, qrels_file: Path) -> int:
    """A qrels score as a whole-number relevance grade; DataError for anything else."""
    try:
        grade = float(score)
    except ValueError:
        grade = None
    if grade is None or not grade.is_integer():
        raise DataError(
            f"{qrels_file} has score {score!r}: qrels scores must be whole-number relevance grades (0: not relevant)."
        )
    return int(grade)


def _read_jsonl(path: Path, encoding: str) -> list[dict]:
    """The JSON object of every non-blank line of `path`; DataError naming the first broken line."""
    rows = []
    with decoded_with(path, encoding), path.open(encoding=encoding) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DataError(
                        f"{path} line {number} is not valid JSON ({error.msg}): {line[:80]!r}."
                    ) from None
    return rows
