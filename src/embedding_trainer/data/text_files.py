"""Reading a retrieval folder's text files line by line (JSON lines, qrels), decoded with the data's
encoding (a UTF-8 byte-order mark skipped, any newlines), and the DataError for a file not in it.
Every file that does not fit says where: the file, its line and what to change."""

import codecs
import csv
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from embedding_trainer.utils.errors import DataError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

QRELS_COLUMNS = ("query-id", "corpus-id", "score")
MAX_SHOWN = 5  # ids or lines named in a message


def opened_encoding(encoding: str) -> str:
    """The codec that reads text in `encoding`: for UTF-8, `utf-8-sig` (the same text, a byte-order mark
    at the start skipped). DataError naming data.encoding for an encoding Python does not know."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(
            f"data.encoding={encoding} is not a text encoding Python knows: set it to the files' encoding, "
            "for example utf-8 or latin-1."
        ) from None
    return "utf-8-sig" if name == "utf-8" else encoding


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
        raise decode_error(path, encoding, failure.reason) from None


def _decode_failure(error: BaseException | None) -> UnicodeDecodeError | None:
    """The UnicodeDecodeError behind `error` (itself, or along its causes), if any."""
    while error is not None and not isinstance(error, UnicodeDecodeError):
        error = error.__cause__ or error.__context__
    return error


def decode_error(path: Path, encoding: str, reason: str) -> DataError:
    """The message for a file that is not in the encoding it is read with."""
    return DataError(
        f"Cannot decode {path} as {encoding} ({reason}): the file has another encoding. "
        "Set data.encoding=<the file's encoding>, for example data.encoding=latin-1."
    )


def read_jsonl(path: Path, encoding: str, required: tuple[str, ...] = ()) -> list[dict]:
    """The JSON object of every non-blank line of `path`, each holding the `required` keys; DataError
    naming the first line that is no JSON, no object (a JSON array file is not JSON lines) or lacks one."""
    rows = []
    with decoded_with(path, encoding), path.open(encoding=opened_encoding(encoding)) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{path} line {number} is not valid JSON ({error.msg}): {line[:80]!r}."
                ) from None
            missing = [key for key in required if key not in row] if isinstance(row, dict) else None
            if missing is None:
                raise DataError(
                    f"{path} line {number} is a JSON {type(row).__name__}, not an object: a JSON lines file holds one "
                    f'object per line, such as {{"_id": "d1", "text": "..."}} (convert a JSON array with `jq -c ".[]"`).'
                )
            if missing:
                raise DataError(
                    f"{path} line {number} has no {missing} (keys {sorted(row)}); every line needs {list(required)}."
                )
            rows.append(row)
    return rows


def texts_by_id(path: Path, rows: list[dict], text_of: Callable[[dict], str]) -> dict[str, str]:
    """{`_id`: `text_of(row)`} of `rows` (read from `path`). An id repeated with the same text is kept once
    (logged); DataError naming the ids repeated with different texts."""
    texts: dict[str, str] = {}
    conflicting, repeated = {}, 0
    for row in rows:
        row_id, text = str(row["_id"]), text_of(row)
        if row_id not in texts:
            texts[row_id] = text
        elif texts[row_id] == text:
            repeated += 1
        else:
            conflicting[row_id] = None
    if conflicting:
        shown = list(conflicting)[:MAX_SHOWN]
        raise DataError(
            f"{path} repeats {len(conflicting)} _id values with different texts (e.g. {shown}): which text is "
            "meant is unknown. Give each text its own _id, or keep one line per _id."
        )
    if repeated:
        log.info(
            f"{path}: {repeated} lines repeat an _id with the same text; kept one line per id ({len(texts)} ids)."
        )
    return texts


def read_qrels(path: Path, encoding: str) -> dict[str, dict[str, int]]:
    """{query id: {document id: grade}} of a qrels file (a `query-id`, `corpus-id`, `score` header, tab-separated;
    whole-number grades), every judgment kept (grade 0 or below too). DataError naming the header, line or
    (query, document) pair that does not fit; a pair judged twice alike is kept once."""
    judged: dict[str, dict[str, int]] = {}
    conflicting = []
    with decoded_with(path, encoding), path.open(encoding=opened_encoding(encoding), newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        if not set(QRELS_COLUMNS) <= set(reader.fieldnames or ()):
            raise DataError(
                f"{path} starts with {reader.fieldnames}, not the header {'<tab>'.join(QRELS_COLUMNS)}: a qrels file "
                "is tab-separated with that header line, then one judgment per line."
            )
        for row in reader:
            query, doc, grade = row["query-id"], row["corpus-id"], _grade(row["score"], path, reader.line_num)
            if judged.setdefault(query, {}).setdefault(doc, grade) != grade:
                conflicting.append(f"line {reader.line_num}: ({query}, {doc})")
    if conflicting:
        raise DataError(
            f"{path} grades {len(conflicting)} (query, document) pairs twice, differently ({', '.join(conflicting[:MAX_SHOWN])}): "
            "keep one judgment per pair."
        )
    return judged


def _grade(score: str | None, path: Path, number: int) -> int:
    """A qrels score as a whole-number relevance grade; DataError naming line `number` for anything else."""
    try:
        grade = float(score)
    except (TypeError, ValueError):  # TypeError: a line with fewer than three fields
        grade = None
    if grade is None or not grade.is_integer():
        raise DataError(
            f"{path} line {number} has score {score!r}: qrels scores must be whole-number relevance grades "
            "(0: not relevant), one tab-separated query-id, corpus-id and score per line."
        )
    return int(grade)
