"""Nothing silently wrong (issue 29, part 4): bad data on the real config is refused before the model loads
with a message naming the file, the rows or ids and the setting to change; data that only looks odd (a
byte-order mark, mixed newlines, an id repeated with the same text, queries judged with nothing relevant) is
read as the plain file is, and says what it dropped; a full disk ends in one line naming the path and what
the run kept."""

import errno
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAST, assert_refused_before_the_model
from embedding_trainer.data.build import build_datamodule
from embedding_trainer.runs.lifecycle import run_command
from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.utils.errors import DataError, ModelLoadError

TINY = ["model=tiny", "logger=none", "evaluation.show_progress_bar=false", "debug=fdr"]
BOM, N = b"\xef\xbb\xbf", 8


def _file(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _lines(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


PAIRS = _lines([{"anchor": f"question {i}", "positive": f"passage {i}"} for i in range(N)])
CORPUS = _lines([{"_id": f"d{i}", "title": "", "text": f"passage {i}"} for i in range(N)])
QUERIES = _lines([{"_id": f"q{i}", "text": f"question {i}"} for i in range(N)])
QRELS = "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(N))


def _folder(tmp_path: Path, corpus=CORPUS, queries=QUERIES, qrels=QRELS, name: str = "set") -> Path:
    """A retrieval folder (train split only) of the given file contents."""
    for file, content in (("corpus.jsonl", corpus), ("queries.jsonl", queries), ("qrels/train.tsv", qrels)):
        _file(tmp_path / name, file, content)
    return tmp_path / name


def _train_on(path) -> list[str]:
    """Training data `path` with its test part held out of it."""
    return [f"data.train_path={path}", "data.eval_path=null"]


def _scores(tmp_path: Path, *scores: str) -> list[str]:
    body = "".join(f"a{i},b{i},{score}\n" for i, score in enumerate(scores))
    return [
        "dataset_type=score",
        "loss=cosent",
        *_train_on(_file(tmp_path, "s.csv", "sentence_A,sentence_B,score\n" + body)),
    ]


REPEATED_WITH_ANOTHER_TEXT = CORPUS + _lines(
    [{"_id": "d1", "text": "another passage"}, {"_id": "d5", "text": "x"}]
)

# (case, overrides given the test's tmp_path, fragments the DataError must hold)
REFUSED = [
    (
        "scores outside data.score_range",
        lambda t: [*_scores(t, 1, 7, 3, -1, 2, 4, 5, 0), "data.score_range=[0,5]"],
        [
            "2 scores outside data.score_range=[0, 5]",
            "row 1: 7",
            "row 3: -1",
            "s.csv",
            "data.score_range=[-1,7]",
        ],
    ),
    (
        "corpus repeating ids with different texts",
        lambda t: _train_on(_folder(t, corpus=REPEATED_WITH_ANOTHER_TEXT)),
        ["corpus.jsonl repeats 2 _id values with different texts", "['d1', 'd5']"],
    ),
    (
        "queries repeating an id with another text",
        lambda t: _train_on(_folder(t, queries=QUERIES + _lines([{"_id": "q2", "text": "what else?"}]))),
        ["queries.jsonl repeats 1 _id values with different texts", "['q2']"],
    ),
    (
        "corpus that is a JSON array",
        lambda t: _train_on(_folder(t, corpus=json.dumps([{"_id": "d0", "text": "passage 0"}]))),
        ["corpus.jsonl line 1 is a JSON list, not an object", "one object per line"],
    ),
    (
        "corpus that is CSV named .jsonl",
        lambda t: _train_on(_folder(t, corpus="_id,title,text\nd0,,passage 0\n")),
        ["corpus.jsonl line 1 is not valid JSON", "'_id,title,text\\n'"],
    ),
    (
        "corpus lines without _id",
        lambda t: _train_on(_folder(t, corpus=CORPUS + _lines([{"id": "d9", "text": "x"}]))),
        [f"corpus.jsonl line {N + 1} has no ['_id']", "every line needs ['_id', 'text']"],
    ),
    ("empty corpus", lambda t: _train_on(_folder(t, corpus="")), ["corpus.jsonl holds no documents"]),
    (
        "qrels without a header",
        lambda t: _train_on(_folder(t, qrels=QRELS.split("\n", 1)[1])),
        ["train.tsv starts with ['q0', 'd0', '1'], not the header query-id<tab>corpus-id<tab>score"],
    ),
    (
        "qrels score that is no whole number",
        lambda t: _train_on(_folder(t, qrels=QRELS + "q1\td2\trelevant\n")),
        [f"train.tsv line {N + 2} has score 'relevant'", "whole-number relevance grades"],
    ),
    (
        "qrels line with two fields",
        lambda t: _train_on(_folder(t, qrels=QRELS + "q1\td2\n")),
        [f"train.tsv line {N + 2} has score None", "tab-separated"],
    ),
    (
        "qrels grading a pair twice, differently",
        lambda t: _train_on(_folder(t, qrels=QRELS + "q1\td1\t2\n")),
        [f"grades 1 (query, document) pairs twice, differently (line {N + 2}: (q1, d1))"],
    ),
    (
        "qrels naming unknown queries and documents",
        lambda t: _train_on(_folder(t, qrels=QRELS + "q1\tdX\t1\nqX\td0\t1\n")),
        ["names 1 ids not in queries.jsonl (e.g. ['qX']) and 1 ids not in corpus.jsonl (e.g. ['dX'])"],
    ),
    (
        "numbers in a text column",
        lambda t: _train_on(
            _file(t, "p.jsonl", _lines([{"anchor": i, "positive": f"p{i}"} for i in range(N)]))
        ),
        ["columns that must hold text but do not: anchor (int64)", "Quote the values"],
    ),
    (
        "whitespace-only text",
        lambda t: _train_on(_file(t, "p.jsonl", PAIRS + _lines([{"anchor": " \t ", "positive": "p"}]))),
        [f"row {N}: ['anchor']", "missing values"],
    ),
    (
        "triplet lines without the negative",
        lambda t: [
            "dataset_type=triplet",
            *_train_on(
                _file(t, "t.jsonl", _lines([{"anchor": f"a{i}", "positive": f"p{i}"} for i in range(N)]))
            ),
        ],
        ["needs columns ['anchor', 'positive', 'negative']", "has no ['negative']"],
    ),
    (
        "parquet file that is text",
        lambda t: _train_on(_file(t, "p.parquet", PAIRS)),
        ["Could not read", "p.parquet", "Read as parquet"],
    ),
    (
        "JSON lines as data.format",
        lambda t: [*_train_on(_file(t, "p.jsonl", PAIRS)), "data.format=jsonl"],
        ["data.format must be one of csv, json, parquet, tsv", "'jsonl'"],
    ),
    (
        "unknown encoding",
        lambda t: [*_train_on(_file(t, "p.jsonl", PAIRS)), "data.encoding=utf-9"],
        ["data.encoding=utf-9 is not a text encoding"],
    ),
    (
        "score range on data without scores",
        lambda t: ["data.score_range=[0,5]"],
        ["data.score_range rescales a score label, and dataset_type=pair has none"],
    ),
]


@pytest.mark.parametrize("case, overrides, fragments", REFUSED, ids=[case[0] for case in REFUSED])
def test_bad_data_is_refused_before_the_model_loads(
    make_cfg, earlier_run, no_model_loading, tmp_path, case, overrides, fragments
):
    assert_refused_before_the_model(make_cfg(*TINY, *overrides(tmp_path)), earlier_run, DataError, fragments)


def _training_rows(make_cfg, *overrides: str) -> list[dict]:
    """The rows the composed run would train and test on (the data edge, no model)."""
    datamodule = build_datamodule(make_cfg(*TINY, "data.test_size=0.25", *overrides))
    datamodule.load()
    return [*datamodule.train_dataset, *datamodule.eval_data.rows]


def _crlf(text: str) -> str:
    """`text` with every other newline CRLF (mixed newlines)."""
    lines = text.split("\n")
    return "".join(line + ("\r\n" if i % 2 else "\n") for i, line in enumerate(lines[:-1]))


# (case, the odd file's overrides, the plain file's) given the test's tmp_path: both read to the same rows.
READ_AS_PLAIN = [
    (
        "JSON lines with a BOM and mixed newlines",
        lambda t: _file(t, "odd.jsonl", BOM + _crlf(PAIRS).encode()),
    ),
    (
        "CSV with a BOM and mixed newlines",
        lambda t: _file(
            t,
            "odd.csv",
            BOM
            + _crlf("anchor,positive\n" + "".join(f"question {i},passage {i}\n" for i in range(N))).encode(),
        ),
    ),
    (
        "retrieval folder with BOMs and mixed newlines",
        lambda t: _folder(
            t, BOM + _crlf(CORPUS).encode(), BOM + _crlf(QUERIES).encode(), BOM + _crlf(QRELS).encode(), "odd"
        ),
    ),
]


@pytest.mark.parametrize("case, odd", READ_AS_PLAIN, ids=[case[0] for case in READ_AS_PLAIN])
def test_byte_order_marks_and_mixed_newlines_read_as_the_plain_file(make_cfg, tmp_path, case, odd):
    plain = _file(tmp_path, "plain.jsonl", PAIRS)
    assert _training_rows(make_cfg, *_train_on(odd(tmp_path))) == _training_rows(make_cfg, *_train_on(plain))


def test_an_id_repeated_with_the_same_text_is_kept_once_and_said(make_cfg, tmp_path, caplog):
    repeated = _folder(
        tmp_path, corpus=CORPUS + _lines([{"_id": "d3", "title": "", "text": "passage 3"}] * 2)
    )
    with caplog.at_level(logging.INFO):
        rows = _training_rows(make_cfg, *_train_on(repeated))
    assert rows == _training_rows(make_cfg, *_train_on(_folder(tmp_path, name="plain")))
    assert (
        "corpus.jsonl: 2 lines repeat an _id with the same text; kept one line per id (8 ids)" in caplog.text
    )


def test_queries_with_no_relevant_document_are_left_out_and_said(make_cfg, tmp_path, caplog):
    judged_irrelevant = QRELS + "q8\td0\t0\nq9\td1\t-1\n"
    queries = QUERIES + _lines([{"_id": "q8", "text": "q8"}, {"_id": "q9", "text": "q9"}])
    with caplog.at_level(logging.INFO):
        rows = _training_rows(
            make_cfg, *_train_on(_folder(tmp_path, queries=queries, qrels=judged_irrelevant))
        )
    assert rows == _training_rows(make_cfg, *_train_on(_folder(tmp_path, name="plain")))
    assert (
        "2 of its 10 queries have no relevant document (every score 0 or below) and are left out"
        in caplog.text
    )


def test_a_hub_model_that_is_not_here_offline_names_the_setting(make_cfg, tmp_path):
    """HF_HUB_OFFLINE=1 (conftest): an id that is in no cache ends in one ModelLoadError saying so."""
    cfg = make_cfg(*TINY, "model=hf", "model.name_or_path=nobody-here/no-such-model", "model.dimension=32")
    with pytest.raises(ModelLoadError) as caught:
        train(cfg)
    message = str(caught.value)
    assert "'nobody-here/no-such-model'" in message and "not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE" in message and "model.encoder.name_or_path=" in message


def _disk_full(path: Path) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def test_a_full_disk_ends_in_one_line_naming_the_path_and_what_was_kept(make_cfg, monkeypatch, caplog):
    """The data rows are the first large write of a run: ENOSPC there exits 2 with one line, no traceback."""
    from embedding_trainer.data import datamodule

    def disk_full(folder, *args):
        raise _disk_full(folder / "train.jsonl")

    monkeypatch.setattr(datamodule, "write_prepared_rows", disk_full)
    cfg = make_cfg(*TINY)
    with pytest.raises(SystemExit) as caught, caplog.at_level(logging.ERROR):
        run_command(lambda: train(cfg))
    assert caught.value.code == 2
    [line] = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    folder = Path(cfg.paths.output_dir)
    assert line.startswith(
        f"DiskFullError: The disk is full: writing {folder / 'data' / 'train.jsonl'} failed"
    )
    assert f"Kept in {folder}:" in line and "run again" in line and "\n" not in line
    [run] = RunRegistry(Path(cfg.registry.path)).list()
    assert run["status"] == "failed" and line.split("registry row ")[1].startswith(run["run_id"])


PATCHED_CLI = """
import errno, sys
from embedding_trainer.phases import report
def disk_full(output_dir, *args):
    raise OSError(errno.ENOSPC, "No space left on device", str(output_dir / "results.json"))
report.write_results = disk_full
sys.argv = ["train.py", *sys.argv[1:]]
from embedding_trainer.cli import train_main
train_main()
"""


@pytest.mark.slow
def test_a_full_disk_after_training_keeps_the_model_and_says_so_on_the_command_line(tmp_path, model_cache):
    """`train.py` (its entry point, with results.json's write failing for lack of space): exit 2, one line
    naming results.json and the model folder kept, no traceback, the registry row failed."""
    run = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PATCHED_CLI,
            *FAST,
            f"hydra.run.dir={run}",
            f"paths.log_dir={tmp_path / 'outputs'}",
            f"paths.cache_dir={model_cache}",
            "checkpoints.keep=last",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    assert f"DiskFullError: The disk is full: writing {run / 'results.json'} failed" in output
    assert "model/" in output and (run / "model").is_dir() and not (run / "results.json").exists()
    [row] = RunRegistry(tmp_path / "outputs" / "runs.db").list()
    assert row["status"] == "failed"
