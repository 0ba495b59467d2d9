"""Training rows larger than memory (issue 29): a data file's finished rows stay memory-mapped Arrow, and
the checks and splits read them a chunk at a time (tiny chunks here) and find what whole-column reads found."""

import json

import datasets
import numpy as np
import pytest

from embedding_trainer.data import chunked
from embedding_trainer.data.build import build_datamodule
from embedding_trainer.data.chunked import KeyGroups, row_keys
from embedding_trainer.data.holdout import hold_out
from embedding_trainer.data.leakage import find_leakage
from embedding_trainer.data.schema import binary_labels, check_complete_rows, class_labels, numeric_labels
from embedding_trainer.data.splits import train_and_validation
from embedding_trainer.utils.errors import DataError


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Read 3 rows at a time, so a few rows span several chunks."""
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 3)


def _rows(**columns) -> datasets.Dataset:
    return datasets.Dataset.from_dict(columns)


def _write_jsonl(path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _memory_mapped(rows: datasets.Dataset) -> bool:
    """Whether the rows and their indices mapping (if any) are read from cache files, not held in memory."""
    tables = [rows.data] + ([rows._indices] if rows._indices is not None else [])
    return bool(rows.cache_files) and all(isinstance(t, datasets.table.MemoryMappedTable) for t in tables)


def test_a_data_files_rows_stay_memory_mapped_through_labels_and_splits(make_cfg, tmp_path, tiny_chunks):
    rows = [{"sentence1": f"first {i}", "sentence2": f"second {i}", "score": i % 6} for i in range(60)]
    cfg = make_cfg(
        "model=tiny",
        "dataset_type=score",
        "loss=cosent",
        f"data.train_path={_write_jsonl(tmp_path / 'scores.jsonl', rows)}",
        "data.score_range=[0,5]",
        "data.validation_size=0.1",
        "data.max_samples=null",
    )
    data = build_datamodule(cfg)
    data.load()
    splits = (data.train_dataset, data.eval_data.rows, data.validation_data.rows)
    assert all(_memory_mapped(split) for split in splits)
    assert sum(len(split) for split in splits) == 60 and len(data.validation_data.rows) == 5
    assert all(split.features["score"].dtype == "float32" for split in splits)
    scores = {row["sentence_A"]: row["score"] for split in splits for row in split}
    assert scores["first 7"] == pytest.approx(1 / 5)


def test_missing_values_are_found_across_chunks(tiny_chunks):
    rows = _rows(
        anchor=[f"q{i}" for i in range(10)], positive=["p", "p", " ", "p", "p", "p", "p", None, "p", "p"]
    )
    with pytest.raises(DataError, match=r"row 2: \['positive'\]; row 7: \['positive'\]"):
        check_complete_rows(rows, "the data")


def test_label_checks_count_and_name_rows_across_chunks(tiny_chunks):
    scores = _rows(score=["1", "x", "2", "3", "nan", "4", "5", "9", "-2"])
    with pytest.raises(DataError, match=r"2 rows do not \(row 1: 'x', row 4: 'nan'\)"):
        numeric_labels(scores, "score", "the data", [0, 5])
    scores = _rows(score=[1, 2, 3, 4, 5, 9, 0, -2])
    with pytest.raises(DataError, match=r"2 scores outside .*\(row 5: 9, row 7: -2\).*=\[-2,9\]"):
        numeric_labels(scores, "score", "the data", [0, 5])
    rescaled = numeric_labels(_rows(score=[0, 5, 2.5, 1]), "score", "s", [0, 5])["score"]
    assert list(rescaled) == pytest.approx([0, 1, 0.5, 0.2])
    with pytest.raises(DataError, match=r"1 rows are not \(row 4: '2'\)"):
        binary_labels(_rows(label=["0", "1", "1", " 0", "2"]), "label", "the data")
    assert binary_labels(_rows(label=["0", "1", " 1", "0"]), "label", "s")["label"][:] == [0, 1, 1, 0]
    with pytest.raises(DataError, match=r"classes \['d'\]"):
        class_labels(_rows(label=["a", "b", "c", "a", "d"]), "label", "the data", ["a", "b", "c"])
    assert class_labels(_rows(label=["b", "a", "c", "a"]), "label", "s", ["a", "b", "c"])["label"] == [
        1,
        0,
        2,
        0,
    ]


def test_a_held_out_query_spanning_chunks_is_held_out_whole(tiny_chunks):
    queries = ["a", "b", "a", "c", "d", "a", "e", "b", "f", "g", "h", "a"]
    rows = _rows(anchor=queries, positive=[f"p{i}" for i in range(len(queries))])
    for seed in range(6):
        kept, held = hold_out(rows, 3, seed)
        assert len(set(held["anchor"])) == 3 and not set(held["anchor"]) & set(kept["anchor"])
        assert sorted([*held["positive"], *kept["positive"]]) == sorted(rows["positive"])
    split = train_and_validation(rows, 5, 2, seed=1)
    assert len(set(split.held["anchor"])) == 2 and not set(split.held["anchor"]) & set(split.kept["anchor"])


def test_the_chunk_size_does_not_change_the_split(monkeypatch):
    queries = [f"q{i % 17}" for i in range(80)]
    rows = _rows(anchor=queries, positive=[f"p{i}" for i in range(80)])
    whole = list(hold_out(rows, 0.3, seed=5)[1]["positive"])
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 7)
    assert list(hold_out(rows, 0.3, seed=5)[1]["positive"]) == whole


def test_keys_sharing_their_first_eight_bytes_stay_apart():
    keys = np.array([[1, 1, 2, 1], [5, 6, 7, 5]], dtype=np.uint64)
    groups = KeyGroups(keys)
    assert groups.of_row.tolist() == [0, 1, 2, 0] and groups.count == 3
    assert groups.groups_of(np.array([[1, 1, 9], [6, 5, 9]], dtype=np.uint64)).tolist() == [1, 0, -1]
    apart = KeyGroups(
        np.array([[1, 2, 1], [5, 7, 5]], dtype=np.uint64)
    )  # their first 8 bytes tell them apart
    assert apart.groups_of(np.array([[2, 2, 1], [7, 8, 5]], dtype=np.uint64)).tolist() == [1, -1, 0]


def test_equal_texts_get_equal_keys_in_any_chunk(tiny_chunks):
    keys = row_keys(_rows(text=["x", "y", "z", "x", "é", "y", "é"]), ["text"])
    assert KeyGroups(keys).of_row.tolist() == [0, 1, 2, 0, 3, 1, 3]


def test_leakage_is_found_in_a_later_chunk(tiny_chunks):
    train = _rows(
        anchor=[f"train {i}" for i in range(8)] + ["The  Query"],
        positive=[f"doc {i}" for i in range(8)] + ["its answer"],
    )
    evaluation = _rows(anchor=["the query", "other"], positive=["x", "DOC 5"])
    leakage = find_leakage(train, ["anchor", "positive"], evaluation)
    assert (leakage.queries, leakage.query_total) == (1, 2)
    assert leakage.pairs == 0
    reversed_pair = _rows(anchor=["its ANSWER"], positive=["the query"])
    assert find_leakage(train, ["anchor", "positive"], reversed_pair).pairs == 1


def test_leakage_examples_are_the_first_distinct_leaked_texts(tiny_chunks):
    train = _rows(anchor=[f"q{i}" for i in range(9)], positive=[f"d{i}" for i in range(9)])
    evaluation = _rows(anchor=["none", "Q7", "q7", "Q7", "q1", "q8", "q2"], positive=["d7", *["x"] * 6])
    leakage = find_leakage(train, ["anchor", "positive"], evaluation)
    assert (leakage.queries, leakage.pairs) == (6, 0) and leakage.examples == ["Q7", "q7", "q1"]
