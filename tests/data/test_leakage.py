"""The leakage guard: evaluation queries and (query, relevant text) pairs found in the training data,
compared after whitespace and case normalisation, in each mode (error, warn, off)."""

import json
import logging

import datasets
import pytest

from embedding_trainer.data.leakage import find_leakage
from embedding_trainer.data.sources import RetrievalSplit
from embedding_trainer.train import train
from embedding_trainer.utils.errors import DataError

TINY = ["model=tiny", "logger=none", "evaluation.show_progress_bar=false", "debug=fdr"]
TRAIN = [{"anchor": f"what is item {i}?", "positive": f"item {i} is a thing."} for i in range(40)]


def _rows(rows: list[dict]) -> datasets.Dataset:
    return datasets.Dataset.from_list(rows)


def test_queries_and_pairs_match_after_normalising_whitespace_and_case():
    evaluation = _rows(
        [
            {"anchor": "  WHAT is   item 3? ", "positive": "item 3 is a thing."},  # query and pair leak
            {"anchor": "what is item 4?", "positive": "another text"},  # query only
            {"anchor": "item 5 is a thing.", "positive": "what is item 5?"},  # the pair, reversed
            {"anchor": "a new question", "positive": "a new passage"},  # nothing
        ]
    )
    leakage = find_leakage(_rows(TRAIN), ["anchor", "positive"], evaluation)
    assert (leakage.queries, leakage.query_total, leakage.pairs, leakage.pair_total) == (2, 4, 2, 4)
    assert leakage.examples == ["  WHAT is   item 3? ", "what is item 4?", "item 5 is a thing."]
    assert (
        "2 of 4 evaluation queries" in leakage.describe()
        and "2 of 4 evaluation (query, relevant text) pairs" in leakage.describe()
    )


def test_retrieval_splits_compare_their_queries_and_relevance_sets():
    split = RetrievalSplit(
        queries={"q1": "what is item 1?", "q2": "unseen question"},
        corpus={"d1": "item 1 is a thing.", "d2": "item 2 is a thing.", "d3": "other"},
        relevant_docs={"q1": {"d1", "d3"}, "q2": {"d2"}},
    )
    leakage = find_leakage(_rows(TRAIN), ["anchor", "positive"], None, split)
    assert (leakage.queries, leakage.query_total, leakage.pairs, leakage.pair_total) == (1, 2, 1, 3)


def test_an_evaluation_answer_used_as_a_training_negative_is_leakage():
    train_rows = _rows(
        [{**row, "negative_1": f"item {(i + 1) % 40} is a thing."} for i, row in enumerate(TRAIN)]
    )
    split = RetrievalSplit(
        queries={"q": "what is item 7?"}, corpus={"d": "item 8 is a thing."}, relevant_docs={"q": {"d"}}
    )
    columns = ["anchor", "positive", "negative_1"]
    assert (
        find_leakage(train_rows, columns, None, split).pairs,
        find_leakage(_rows(TRAIN), columns[:2], None, split).pairs,
    ) == (1, 0)


def test_single_sentences_compare_the_sentences():
    train_rows = _rows([{"sentence": "a b", "class": 0}, {"sentence": "c d", "class": 1}])
    evaluation = _rows([{"sentence": "A  B", "class": 0}, {"sentence": "e f", "class": 1}])
    leakage = find_leakage(train_rows, ["sentence"], evaluation)
    assert (leakage.queries, leakage.query_total, leakage.pair_total) == (1, 2, 0)


def test_no_evaluation_rows_of_its_own():
    assert (
        "no evaluation rows of its own" in find_leakage(_rows(TRAIN), ["anchor", "positive"], None).describe()
    )


@pytest.fixture
def leaky_files(tmp_path):
    """Training pairs, and evaluation pairs of which 5 are training pairs too."""
    train_path, eval_path = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    fresh = [{"anchor": f"new question {i}", "positive": f"new passage {i}"} for i in range(15)]
    train_path.write_text("".join(json.dumps(row) + "\n" for row in TRAIN))
    eval_path.write_text("".join(json.dumps(row) + "\n" for row in TRAIN[:5] + fresh))
    return [f"data.train_path={train_path}", f"data.eval_path={eval_path}"]


def test_error_mode_stops_before_the_model_loads(make_cfg, leaky_files, no_model_loading):
    with pytest.raises(DataError) as caught:
        train(make_cfg(*TINY, *leaky_files, "data.leakage=error"))
    message = str(caught.value)
    assert (
        "5 of 20 evaluation queries" in message
        and "5 of 20 evaluation (query, relevant text) pairs" in message
    )
    assert "'what is item 0?'" in message and "data.leakage=warn" in message


@pytest.mark.slow
def test_warn_mode_trains_and_the_report_states_the_counts(make_cfg, leaky_files, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        train(make_cfg(*TINY, *leaky_files))
    assert any("5 of 20 evaluation queries" in record.getMessage() for record in caplog.records)
    assert (
        "5 of 20 evaluation queries appear among the training queries"
        in (tmp_path / "run" / "report.md").read_text()
    )


@pytest.mark.slow
def test_off_mode_says_nothing(make_cfg, leaky_files, caplog):
    with caplog.at_level(logging.WARNING):
        train(make_cfg(*TINY, *leaky_files, "data.leakage=off"))
    assert not any("Leakage check" in record.getMessage() for record in caplog.records)


def test_unknown_mode_is_refused(make_cfg, leaky_files, no_model_loading):
    with pytest.raises(DataError, match="data.leakage must be one of error, warn, off, got 'maybe'"):
        train(make_cfg(*TINY, *leaky_files, "data.leakage=maybe"))
