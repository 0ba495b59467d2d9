"""Reading rows from local files and retrieval-layout folders.

A retrieval-layout (BEIR) folder holds `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl`
(`_id`, `text`) and `qrels/<split>.tsv` (`query-id`, `corpus-id`, `score`: a whole-number relevance
grade, above 0 relevant). A document's text is `title + " " + text` where it has a non-empty title,
as BEIR and MTEB build it (`document_title="prepend"`), or its `text` alone (`"drop"`).
"""

import re
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.dataset as pa_dataset

from embedding_trainer.data.text_files import (
    decode_error,
    decoded_with,
    opened_encoding,
    read_jsonl,
    read_qrels,
    texts_by_id,
)
from embedding_trainer.utils.errors import DataError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

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


# Parquet read a row group at a time: pyarrow's default (pre_buffer) buffers every row group's column chunks
# of the scan at once, about the whole file in memory (10M pairs: +955 MB of peak reading a 784 MB file,
# +276 MB without; docs/large_data.md).
STREAMED_PARQUET = pa_dataset.ParquetFragmentScanOptions(pre_buffer=False)


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
    if builder == "parquet":
        options.setdefault("fragment_scan_options", STREAMED_PARQUET)
    try:
        with decoded_with(path, encoding):
            table = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except DataError:
        raise
    except (datasets.exceptions.DatasetGenerationError, pa.ArrowInvalid) as error:  # Arrow: not parquet
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
        raise decode_error(path, encoding, str(error)) from None


def check_reading(fmt: str | None, encoding: str) -> None:
    """DataError unless `fmt` (data.format) is a known format or None and `encoding` a known text encoding."""
    formats = sorted(set(FILE_FORMATS.values()))
    if fmt is not None and fmt not in formats:
        raise DataError(
            f"data.format must be one of {', '.join(formats)} or null (from the file's extension), got {fmt!r}; "
            "JSON lines files are json."
        )
    opened_encoding(encoding)


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
    scored 0 or below are judged not relevant and left out, and so are queries with no relevant
    document (logged); every file decoded with `encoding`. DataError for a missing split names
    `split_setting`, the setting that chose it; for ids the folder does not hold, or repeats with
    different texts, names them (`texts_by_id`, `read_qrels`)."""
    check_document_title(document_title)
    qrels_file = folder / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        found = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise DataError(f"{folder} has no qrels/{split}.tsv; its splits are {found}. Set {split_setting}.")
    judged = read_qrels(qrels_file, encoding)
    relevant_docs = {
        query: relevant
        for query, docs in judged.items()
        if (relevant := {doc: grade for doc, grade in docs.items() if grade > 0})
    }
    if len(relevant_docs) < len(judged):
        log.info(
            f"{qrels_file}: {len(judged) - len(relevant_docs)} of its {len(judged)} queries have no relevant "
            "document (every score 0 or below) and are left out: they can be neither trained nor scored."
        )
    corpus = _corpus(folder, encoding, document_title)
    queries = texts_by_id(
        folder / "queries.jsonl",
        read_jsonl(folder / "queries.jsonl", encoding, ("_id", "text")),
        itemgetter("text"),
    )
    unknown = {
        "queries.jsonl": [query for query in relevant_docs if query not in queries],
        "corpus.jsonl": sorted({doc for docs in relevant_docs.values() for doc in docs if doc not in corpus}),
    }
    named = [f"{len(ids)} ids not in {name} (e.g. {ids[:5]})" for name, ids in unknown.items() if ids]
    if named:
        raise DataError(
            f"{qrels_file} names {' and '.join(named)} of {folder}: add them there, or drop those qrels lines."
        )
    queries = {query: queries[query] for query in relevant_docs}
    return RetrievalSplit(queries=queries, corpus=corpus, relevant_docs=relevant_docs)


def _corpus(folder: Path, encoding: str, document_title: str) -> dict[str, str]:
    """{`_id`: text} of `folder`'s corpus.jsonl (`_document_text`); DataError when it holds no document."""
    path = folder / "corpus.jsonl"
    corpus = texts_by_id(
        path, read_jsonl(path, encoding, ("_id", "text")), lambda doc: _document_text(doc, document_title)
    )
    if not corpus:
        raise DataError(f"{path} holds no documents: one JSON object per line, with _id, title and text.")
    return corpus


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
        documents = [Document(*item) for item in _corpus(path, encoding, document_title).items()]
    elif path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_FILE_SUFFIXES)
        documents = []
        for file in files:
            with decoded_with(file, encoding):
                documents.append(
                    Document(
                        file.relative_to(path).as_posix(), file.read_text(encoding=opened_encoding(encoding))
                    )
                )
    else:
        what = (
            f"{path} must be a retrieval folder, a folder of .txt/.md files, or a JSONL file of "
            '{"text": ...} rows (one document each).'
        )
        try:
            rows = read_jsonl(path, encoding, ("text",)) if path.is_file() else []
        except DataError as error:
            raise DataError(f"{error} {what}") from None
        if not rows or any(not isinstance(row["text"], str) for row in rows):
            raise DataError(what)
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
