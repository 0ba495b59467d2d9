"""Hard-negative mining as a data stage: output shape, the false-negative filters, the cache, the
run end to end on the tiny model, and the settings refused before anything loads."""

import json
import logging

import pytest

from embedding_trainer.data.hard_negatives import HardNegativeSettings, mine_cached, mining_key
from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError, DataError

TINY = ["model=tiny", "logger=none", "evaluation.show_progress_bar=false", "debug=fdr"]


@pytest.fixture(scope="module")
def pairs():
    return read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "train").pairs().select(range(200))


@pytest.fixture(scope="module")
def miner(tmp_path_factory):
    return build_tiny_model(str(tmp_path_factory.mktemp("tiny")))


def _settings(**changes) -> HardNegativeSettings:
    return HardNegativeSettings(
        **{"num_negatives": 2, "range_min": 0, "range_max": 20, "relative_margin": None, **changes}
    )


def test_mined_rows_are_n_tuples_of_other_positives(pairs, miner, tmp_path):
    mined = mine_cached(pairs, miner, _settings(), None, tmp_path, seed=0)
    assert mined.rows.column_names == ["anchor", "positive", "negative_1", "negative_2"]
    assert 0 < len(mined.rows) <= len(pairs) and mined.anchors == len(pairs)
    corpus = set(pairs["positive"])
    for row, scores in zip(mined.rows, mined.scores):
        negatives = [row["negative_1"], row["negative_2"]]
        assert row["positive"] not in negatives and set(negatives) <= corpus and len(scores) == 3
        assert scores[1] >= scores[2]  # `top` sampling keeps the ranking


def test_relative_margin_drops_candidates_too_close_to_the_positive(pairs, miner, tmp_path):
    # The tiny random model scores every text near 0.97, so a small margin already filters.
    unfiltered = mine_cached(pairs, miner, _settings(range_max=None), None, tmp_path, seed=0)
    mined = mine_cached(
        pairs, miner, _settings(relative_margin=0.005, range_max=None), None, tmp_path, seed=0
    )
    assert any(
        negative > positive * 0.995 for positive, *negatives in unfiltered.scores for negative in negatives
    )
    assert len(mined.rows) > 0
    for positive, *negatives in mined.scores:
        assert all(negative <= positive * 0.995 + 1e-6 for negative in negatives)


def test_rows_without_mined_negatives_are_kept_with_sampled_ones_or_dropped(pairs, miner, tmp_path):
    strict = {"relative_margin": 0.002}  # the tiny model's near-equal scores leave some anchors too few
    kept = mine_cached(pairs, miner, _settings(**strict), None, tmp_path, seed=0)
    dropped = mine_cached(
        pairs, miner, _settings(**strict, rows_without_negatives="drop"), None, tmp_path, seed=0
    )
    distinct = len(set(zip(pairs["anchor"], pairs["positive"])))
    assert kept.cached != dropped.cached and kept.mined == dropped.mined == len(dropped.rows) > 0
    assert kept.sampled == dropped.dropped > 0 and kept.dropped == dropped.sampled == 0
    assert kept.mined + kept.sampled == len(kept.rows) == distinct and len(kept.scores) == kept.mined
    assert kept.merged == len(pairs) - distinct and kept.to_json()["sampled"] == kept.sampled
    assert f"{kept.sampled} got sampled ones" in kept.describe()
    mined_pairs = {(row["anchor"], row["positive"]) for row in dropped.rows}
    positives_of: dict[str, set[str]] = {}
    for anchor, positive in zip(pairs["anchor"], pairs["positive"]):
        positives_of.setdefault(anchor, set()).add(positive)
    sampled = kept.rows.select(range(kept.mined, len(kept.rows)))
    assert kept.rows.select(range(kept.mined)).to_list() == dropped.rows.to_list()
    for row in sampled:
        negatives = {row["negative_1"], row["negative_2"]}
        assert (row["anchor"], row["positive"]) not in mined_pairs and len(negatives) == 2
        assert not negatives & positives_of[row["anchor"]] and negatives <= set(pairs["positive"])
    keys = {
        mining_key(pairs, miner, _settings(rows_without_negatives=choice), None, 0)
        for choice in ("sampled", "drop")
    }
    assert len(keys) == 2


def test_a_filter_that_drops_everything_says_what_to_relax(pairs, miner, tmp_path):
    with pytest.raises(DataError, match="kept none of the 200 training rows"):
        mine_cached(pairs, miner, _settings(max_score=-1.0), None, tmp_path, seed=0)


@pytest.mark.slow
def test_the_second_mining_with_the_same_settings_reads_the_cache(pairs, miner, tmp_path, caplog):
    first = mine_cached(pairs, miner, _settings(sampling="random"), None, tmp_path, seed=3)
    with caplog.at_level(logging.INFO):
        second = mine_cached(pairs, miner, _settings(sampling="random"), None, tmp_path, seed=3)
    assert not first.from_cache and second.from_cache and second.cached == first.cached
    assert second.rows.to_list() == first.rows.to_list() and second.summary == first.summary
    assert any("reusing" in record.getMessage() for record in caplog.records)
    other = mine_cached(pairs, miner, _settings(sampling="random", num_negatives=3), None, tmp_path, seed=3)
    assert other.cached != first.cached and len(other.rows.column_names) == 5


@pytest.mark.slow
def test_a_miner_with_another_maximum_length_mines_again(pairs, model_cache, tmp_path):
    miner = build_tiny_model(str(model_cache))
    first = mine_cached(pairs, miner, _settings(), None, tmp_path, seed=0)
    miner.max_seq_length = 8  # same weights, other embeddings
    shorter = mine_cached(pairs, miner, _settings(), None, tmp_path, seed=0)
    assert not shorter.from_cache and shorter.cached != first.cached


def test_negatives_from_a_corpus_of_their_own(pairs, miner, tmp_path):
    documents = [f"an unrelated document number {i} about nothing in particular" for i in range(30)]
    corpus_file = tmp_path / "corpus.jsonl"
    corpus_file.write_text("".join(json.dumps({"text": text}) + "\n" for text in documents))
    from embedding_trainer.data.sources import read_corpus

    mined = mine_cached(pairs, miner, _settings(), read_corpus(corpus_file), tmp_path, seed=0)
    negatives = {row[f"negative_{i}"] for row in mined.rows for i in (1, 2)}
    assert negatives & set(documents) and negatives <= set(documents) | set(
        pairs["positive"]
    )  # the miner adds the positives


@pytest.mark.slow
def test_a_run_trains_on_mined_rows_and_reports_them(make_cfg, tmp_path):
    overrides = [
        *TINY,
        "data.max_samples=48",
        "data.hard_negatives.num_negatives=2",
        "data.hard_negatives.range_min=0",
        "data.hard_negatives.range_max=16",
        "data.hard_negatives.relative_margin=null",
    ]
    train(make_cfg(*overrides))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["hard_negatives"]["training_rows"] == 48 and results["hard_negatives"]["mined"] > 0
    written = [
        json.loads(line) for line in (tmp_path / "run" / "data" / "train.jsonl").read_text().splitlines()
    ]
    assert set(written[0]) == {"id", "anchor", "positive", "negative_1", "negative_2"}
    report = (tmp_path / "run" / "report.md").read_text()
    assert (
        "Hard negatives (mined in" in report and (tmp_path / "run" / "plots" / "hard_negatives.png").is_file()
    )
    train(make_cfg(*overrides, output_dir=tmp_path / "again"))
    assert "Hard negatives (read from the cache" in (tmp_path / "again" / "report.md").read_text()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset_type=score", "loss=cosent"], "use dataset_type=pair"),
        (["loss=gist"], "losses that can: cached_mnrl, distill_kl, infonce, margin_mse, mnrl, mse"),
        (["data.negatives_per_anchor=2"], "set one of them to null"),
        (["data.hard_negatives.range_min=10", "data.hard_negatives.range_max=11"], "raise range_max"),
        (["data.hard_negatives.sampling=best"], "one of top, random"),
        (["+data.hard_negatives.window=5"], "its keys are num_negatives"),
        (["data.hard_negatives.corpus=/no/such/corpus.jsonl"], "does not exist"),
        (["data.hard_negatives.corpus_on_disk_from=-1"], "corpus_on_disk_from must be a number of documents"),
        (
            ["data.hard_negatives.rows_without_negatives=in_batch"],
            "rows_without_negatives must be one of sampled, drop",
        ),
    ],
)
def test_settings_that_cannot_mine_are_refused_before_anything_loads(
    make_cfg, no_model_loading, overrides, message
):
    with pytest.raises(ConfigError, match=message):
        train(make_cfg(*TINY, "data.hard_negatives.num_negatives=2", *overrides))
