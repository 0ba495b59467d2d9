"""Data preparation for every format: sources, column normalization, n-tuples, splits, labels,
and wrong combinations rejected before anything loads."""

import json
import logging

import pandas as pd
import pytest

from embedding_trainer.data.build import build_datamodule
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError, DataError

TINY = ["model=tiny", "logger=none", "evaluation.show_progress_bar=false"]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _load(make_cfg, *overrides):
    datamodule = build_datamodule(make_cfg(*TINY, *overrides))
    datamodule.load()
    return datamodule


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["dataset_type=n_tuple", "loss=gist"],
            "Losses for dataset_type=n_tuple: cached_mnrl, distill_kl, infonce, margin_mse, mnrl, mse",
        ),
        (
            ["dataset_type=pair_class", "loss=softmax", "modifier=matryoshka"],
            "SoftmaxLoss reads full-dimension",
        ),
        (
            ["dataset_type=single", "loss=contrastive_tension", "modifier=matryoshka_2d"],
            "Matryoshka2dLoss truncates",
        ),
        (
            ["dataset_type=single", "loss=denoising_autoencoder", "modifier=matryoshka"],
            "DenoisingAutoEncoderLoss",
        ),
        (["loss=cached_mnsrl", "modifier=adaptive_layer"], "cannot wrap a cached"),
        (["loss=megabatch_margin", "modifier=matryoshka_2d"], "cannot wrap a cached"),
        (["dataset_type=pair_class", "loss=softmax", "data.class_names=null"], "data.class_names"),
        (["dataset_type=single_class", "loss=mnrl"], "batch_all_triplet, batch_hard_soft_margin_triplet"),
        (["dataset_type=anchor_anchor", "loss=contrastive_tension"], "contrastive_tension_in_batch"),
    ],
)
def test_wrong_combination_fails_before_loading(make_cfg, no_model_loading, overrides, message):
    with pytest.raises(ConfigError) as caught:
        train(make_cfg(*TINY, *overrides))
    assert message in str(caught.value)


def test_columns_taken_by_position_and_extras_dropped(make_cfg, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    data = _jsonl(tmp_path / "pairs.jsonl", [{"q": f"q{i}", "p": f"p{i}", "note": "x"} for i in range(10)])
    datamodule = _load(make_cfg, f"data.train_path={data}", f"data.eval_path={data}")
    assert datamodule.train_dataset.column_names == ["anchor", "positive"]
    assert sorted(datamodule.train_dataset["anchor"]) == sorted(f"q{i}" for i in range(10))
    assert "columns taken by position" in caplog.text


def test_too_few_columns_names_what_was_found(make_cfg, tmp_path, no_model_loading):
    data = _jsonl(tmp_path / "one.jsonl", [{"question": "q"}])
    with pytest.raises(DataError) as caught:
        train(make_cfg(*TINY, f"data.train_path={data}", f"data.eval_path={data}"))
    assert "its columns are ['question']" in str(caught.value)


@pytest.mark.parametrize("suffix", ["json", "csv", "tsv", "parquet"])
def test_every_file_format_loads(make_cfg, tmp_path, suffix):
    frame = pd.DataFrame(
        {"sentence_A": ["a", "b", "c"], "sentence_B": ["d", "e", "f"], "score": [0.1, 0.5, 0.9]}
    )
    path = tmp_path / f"scores.{suffix}"
    if suffix == "json":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="," if suffix == "csv" else "\t", index=False)
    datamodule = _load(
        make_cfg, "dataset_type=score", "loss=cosent", f"data.train_path={path}", f"data.eval_path={path}"
    )
    assert datamodule.train_dataset.column_names == ["sentence_A", "sentence_B", "score"]
    assert datamodule.train_dataset["score"] == pytest.approx([0.1, 0.5, 0.9])


def test_n_tuple_from_pairs_samples_negatives_and_keeps_them(make_cfg, tmp_path):
    run = tmp_path / "run"
    datamodule = _load(
        make_cfg,
        "dataset_type=n_tuple",
        "loss=mnrl",
        "data.negatives_per_anchor=4",
        "data.max_samples=50",
        "data.max_eval_samples=20",
    )
    rows = datamodule.train_dataset
    assert rows.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3", "negative_4"]
    for row in rows:
        negatives = [row[f"negative_{i}"] for i in range(1, 5)]
        assert row["positive"] not in negatives and len(set(negatives)) == 4
    assert not run.exists()  # loading writes nothing: a run that its checks refuse leaves no files
    datamodule.write_prepared()
    written = [json.loads(line) for line in (run / "data" / "train.jsonl").read_text().splitlines()]
    assert [row["id"] for row in written] == list(range(50))
    assert written[0]["negative_4"] == rows[0]["negative_4"]
    assert (run / "data" / "eval.jsonl").is_file()


def test_n_tuple_file_with_any_number_of_negatives(make_cfg, tmp_path):
    rows = [
        {"anchor": f"a{i}", "positive": f"p{i}", **{f"negative_{j}": f"n{i}{j}" for j in range(1, 6)}}
        for i in range(8)
    ]
    data = _jsonl(tmp_path / "tuples.jsonl", rows)
    datamodule = _load(
        make_cfg,
        "dataset_type=n_tuple",
        "loss=mnrl",
        f"data.train_path={data}",
        f"data.eval_path={data}",
        "data.negatives_per_anchor=null",
        "data.train_split=null",
        "data.eval_split=null",
    )
    assert datamodule.train_dataset.column_names[-1] == "negative_5"


def test_n_tuple_rows_with_a_different_count_are_an_error(make_cfg, tmp_path, no_model_loading):
    rows = [
        {"anchor": "a1", "positive": "p1", "negative_1": "n1", "negative_2": "n2"},
        {"anchor": "a2", "positive": "p2", "negative_1": "n3", "negative_2": None},
    ]
    data = _jsonl(tmp_path / "tuples.jsonl", rows)
    with pytest.raises(DataError) as caught:
        train(
            make_cfg(
                *TINY,
                "dataset_type=n_tuple",
                "loss=mnrl",
                f"data.train_path={data}",
                f"data.eval_path={data}",
                "data.negatives_per_anchor=null",
            )
        )
    assert "row 1: ['negative_2']" in str(caught.value) and "same number of negatives" in str(caught.value)


def test_seeded_test_size_split(make_cfg, tmp_path):
    data = _jsonl(
        tmp_path / "s.jsonl", [{"sentence": f"s{i}", "class": "A" if i % 2 else "B"} for i in range(100)]
    )
    first = _load(
        make_cfg,
        "dataset_type=single_class",
        "loss=batch_hard_triplet",
        f"data.train_path={data}",
        "data.eval_path=null",
        "data.test_size=0.2",
    )
    second = _load(
        make_cfg,
        "dataset_type=single_class",
        "loss=batch_hard_triplet",
        f"data.train_path={data}",
        "data.eval_path=null",
        "data.test_size=0.2",
    )
    assert len(first.train_dataset) == 80 and len(first.eval_data.rows) == 20
    assert first.eval_data.rows["sentence"] == second.eval_data.rows["sentence"]
    assert not set(first.eval_data.rows["sentence"]) & set(first.train_dataset["sentence"])
    assert first.class_names == ["A", "B"]


def test_unknown_class_in_eval_data(make_cfg, tmp_path, no_model_loading):
    train_file = _jsonl(
        tmp_path / "t.jsonl", [{"sentence": "s", "class": "A"}, {"sentence": "t", "class": "B"}]
    )
    eval_file = _jsonl(tmp_path / "e.jsonl", [{"sentence": "u", "class": "C"}])
    with pytest.raises(DataError) as caught:
        train(
            make_cfg(
                *TINY,
                "dataset_type=single_class",
                "loss=batch_hard_triplet",
                f"data.train_path={train_file}",
                f"data.eval_path={eval_file}",
            )
        )
    assert "classes ['C'] not among the known classes ['A', 'B']" in str(caught.value)


def test_binary_labels_must_be_zero_or_one(make_cfg, tmp_path, no_model_loading):
    data = _jsonl(tmp_path / "b.jsonl", [{"sentence_A": "a", "sentence_B": "b", "label": 2}])
    with pytest.raises(DataError) as caught:
        train(
            make_cfg(
                *TINY,
                "dataset_type=pair_binary",
                "loss=contrastive",
                f"data.train_path={data}",
                f"data.eval_path={data}",
            )
        )
    assert "must be 0 or 1" in str(caught.value) and "row 0: 2" in str(caught.value)


def test_hub_dataset_that_cannot_be_downloaded_says_so(make_cfg, no_model_loading):
    with pytest.raises(DataError) as caught:
        train(
            make_cfg(
                *TINY,
                "data.train_path=sentence-transformers/all-nli",
                "data.hub_config=pair",
                "data.train_split=train",
                "data.eval_path=null",
            )
        )
    assert "Cannot load dataset 'sentence-transformers/all-nli'" in str(caught.value)


def test_single_sentence_formats_build_their_pairs_per_batch(make_cfg):
    from embedding_trainer.data.transforms import ContrastiveTensionPairs, DeleteWordsNoise

    rows = [{"sentence": f"word{i} is here now"} for i in range(16)]
    pairs = ContrastiveTensionPairs(positive_every=8, seed=0)(rows)
    assert [p["label"] for p in pairs].count(1.0) == 2
    assert all(p["sentence_a"] == p["sentence_b"] for p in pairs if p["label"] == 1.0)
    damaged = DeleteWordsNoise(deletion_ratio=0.6, seed=0)(rows)
    kept = sum(len(d["damaged_sentence"].split()) for d in damaged) / sum(
        len(r["sentence"].split()) for r in rows
    )
    assert 0.25 < kept < 0.55  # about 40% of words survive a deletion ratio of 0.6
    assert all(d["damaged_sentence"] for d in damaged)
    assert all(set(d["damaged_sentence"].split()) <= set(d["original_sentence"].split()) for d in damaged)
