"""A user's own file is read with neutral settings (by extension, a header row, comma for .csv, tab for
.tsv, UTF-8), never with the reader quirks of the shipped data; a file that cannot be decoded or is
misread says which settings were in force and what to set."""

import json

import pytest
from omegaconf import OmegaConf

from embedding_trainer.data.build import build_datamodule
from embedding_trainer.data.sources import reader_options
from embedding_trainer.train import train
from embedding_trainer.utils.errors import DataError

FAST = ["model=tiny", "logger=none", "evaluation.show_progress_bar=false", "debug=fdr"]
CLASSES = ["ENTAILMENT", "NEUTRAL", "CONTRADICTION"]


def _table(path, header: list[str], rows: list[tuple], sep: str = ",", encoding: str = "utf-8"):
    """Write a headed csv/tsv file of `rows` and return its path."""
    lines = [sep.join(header)] + [sep.join(str(value) for value in row) for row in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def _pairs(count: int, label) -> list[tuple]:
    """`count` (sentence_A, sentence_B, label(i)) rows of distinct sentences."""
    return [(f"a cat sat on mat {i}", f"the dog ran home {i}", label(i)) for i in range(count)]


def _runs(make_cfg, path, *overrides: str) -> dict:
    """Train on `path` (train and eval) with the given dataset type and loss, and nothing else set."""
    metrics, objects = train(make_cfg(*FAST, *overrides, f"data.train_path={path}", f"data.eval_path={path}"))
    assert "val/score" in metrics
    return objects


@pytest.mark.parametrize("dataset_type", ["score", "pair_binary", "pair_class"])
def test_shipped_data_options_set_no_reader_quirks(make_cfg, dataset_type):
    data = make_cfg(f"dataset_type={dataset_type}").data
    assert (
        data.format is None
        and data.read_options is None
        and data.column_map is None
        and data.score_range is None
    )
    assert data.encoding == "utf-8" and data.train_path.endswith(".jsonl")


def test_the_sts_benchmark_evaluator_reads_a_plain_file(make_cfg):
    block = OmegaConf.to_container(make_cfg().sts_benchmark_evaluator, resolve=True)
    assert set(block) == {"_target_", "_partial_", "path"} and block["path"].endswith(
        "derived/stsb_test.jsonl"
    )


def test_neutral_reader_options():
    assert reader_options("csv", {}, "utf-8") == ("csv", {"sep": ",", "encoding": "utf-8"})
    assert reader_options("tsv", {}, "latin-1") == ("csv", {"sep": "\t", "encoding": "latin-1"})
    assert reader_options("json", {}, "utf-8") == ("json", {"encoding": "utf-8"})
    assert reader_options("parquet", {}, "utf-8") == ("parquet", {})
    assert reader_options("tsv", {"sep": ";", "header": None}, "utf-8")[1] == {
        "sep": ";",
        "header": None,
        "encoding": "utf-8",
    }


def test_headed_csv_of_scores_trains_as_typed(make_cfg, tmp_path):
    scores = [round(i / 19, 4) for i in range(20)]
    path = _table(tmp_path / "my.csv", ["sentence_A", "sentence_B", "score"], _pairs(20, lambda i: scores[i]))
    objects = _runs(make_cfg, path, "dataset_type=score", "loss=cosent")
    assert sorted(objects["datamodule"].eval_data.rows["score"]) == pytest.approx(scores)


@pytest.mark.slow
def test_headed_tsv_of_binary_labels_trains_as_typed(make_cfg, tmp_path):
    path = _table(
        tmp_path / "my.tsv", ["sentence_A", "sentence_B", "label"], _pairs(20, lambda i: i % 2), sep="\t"
    )
    objects = _runs(make_cfg, path, "dataset_type=pair_binary", "loss=contrastive")
    assert sorted(objects["datamodule"].eval_data.rows["label"]) == [0] * 10 + [1] * 10


@pytest.mark.slow
def test_headed_csv_of_the_shipped_classes_trains_as_typed(make_cfg, tmp_path):
    path = _table(
        tmp_path / "my.csv", ["sentence_A", "sentence_B", "class"], _pairs(21, lambda i: CLASSES[i % 3])
    )
    objects = _runs(make_cfg, path, "dataset_type=pair_class", "loss=softmax")
    assert objects["datamodule"].class_names == ["CONTRADICTION", "ENTAILMENT", "NEUTRAL"]


def test_other_classes_say_to_set_the_class_names(make_cfg, tmp_path, no_model_loading):
    path = _table(
        tmp_path / "my.csv",
        ["sentence_A", "sentence_B", "class"],
        _pairs(9, lambda i: ["yes", "no", "maybe"][i % 3]),
    )
    with pytest.raises(DataError) as caught:
        _runs(make_cfg, path, "dataset_type=pair_class", "loss=softmax")
    message = str(caught.value)
    assert "classes ['maybe', 'no', 'yes'] not among the known classes" in message
    assert "'data.class_names=[maybe,no,yes]'" in message


@pytest.mark.slow
def test_other_classes_train_with_their_class_names(make_cfg, tmp_path):
    path = _table(
        tmp_path / "my.csv",
        ["sentence_A", "sentence_B", "class"],
        _pairs(9, lambda i: ["yes", "no", "maybe"][i % 3]),
    )
    objects = _runs(
        make_cfg, path, "dataset_type=pair_class", "loss=softmax", "data.class_names=[maybe,no,yes]"
    )
    assert objects["datamodule"].class_names == ["maybe", "no", "yes"]


def _latin1_retrieval_folder(folder):
    """A retrieval-layout folder whose corpus is Latin-1 encoded (its qrels split: train)."""
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": "", "text": f"café number {i}"} for i in range(8)]
    (folder / "corpus.jsonl").write_bytes(
        "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("latin-1")
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": f"where {i}"}) + "\n" for i in range(8))
    )
    (folder / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(8))
    )
    return folder


def _latin1_source(tmp_path, kind: str):
    """(path, overrides) of a Latin-1 file or folder of `kind` holding 'café'."""
    if kind == "folder":
        return _latin1_retrieval_folder(tmp_path / "pairs"), ["data.train_split=train", "data.eval_path=null"]
    sep = "\t" if kind == "tsv" else ","
    rows = _pairs(20, lambda i: i % 2)
    rows[0] = ("un café au lait", "a coffee", 1)
    if kind == "jsonl":
        path = tmp_path / "my.jsonl"
        text = "".join(
            json.dumps(dict(zip(["sentence_A", "sentence_B", "label"], row)), ensure_ascii=False) + "\n"
            for row in rows
        )
        path.write_bytes(text.encode("latin-1"))
    else:
        path = _table(
            tmp_path / f"my.{kind}", ["sentence_A", "sentence_B", "label"], rows, sep=sep, encoding="latin-1"
        )
    return path, ["dataset_type=pair_binary", "loss=contrastive", f"data.eval_path={path}"]


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "folder"])
def test_undecodable_file_says_to_set_the_encoding(make_cfg, tmp_path, no_model_loading, kind):
    path, overrides = _latin1_source(tmp_path, kind)
    with pytest.raises(DataError) as caught:
        train(make_cfg(*FAST, f"data.train_path={path}", *overrides))
    message = str(caught.value)
    assert f"Cannot decode {path}" in message and "as utf-8" in message
    assert "data.encoding=<the file's encoding>" in message and "data.encoding=latin-1" in message


@pytest.mark.slow
def test_latin1_file_trains_with_its_encoding(make_cfg, tmp_path):
    path, overrides = _latin1_source(tmp_path, "csv")
    objects = _runs(make_cfg, path, *overrides, "data.encoding=latin-1")
    assert "un café au lait" in objects["datamodule"].eval_data.rows["sentence_A"]


@pytest.mark.parametrize("kind", ["jsonl", "folder"])
def test_latin1_sources_read_with_their_encoding(make_cfg, tmp_path, kind):
    path, overrides = _latin1_source(tmp_path, kind)
    datamodule = build_datamodule(
        make_cfg(*FAST, f"data.train_path={path}", *overrides, "data.encoding=latin-1")
    )
    datamodule.load()
    assert any(
        "café" in text
        for column in datamodule.train_dataset.column_names
        for text in datamodule.train_dataset[column]
    )


def test_misread_file_shows_the_first_row_and_the_reader_settings(make_cfg, tmp_path, no_model_loading):
    long_sentence = "a sentence much longer than anything a message should repeat in full " * 3
    path = _table(
        tmp_path / "tabs.csv",
        ["sentence_A", "sentence_B", "score"],
        [(long_sentence, "b", 0.5)] * 4,
        sep="\t",
    )
    with pytest.raises(DataError) as caught:
        train(
            make_cfg(
                *FAST,
                "dataset_type=score",
                "loss=cosent",
                f"data.train_path={path}",
                f"data.eval_path={path}",
            )
        )
    message = str(caught.value)
    assert "needs columns ['sentence_A', 'sentence_B', 'score']" in message
    assert (
        "Read as csv with options {'sep': ','} (encoding utf-8); first row as read: {'sentence_A\\tsentence_B\\tscore': "
        in message
    )
    assert "..." in message and long_sentence not in message
    assert message.endswith("If that is not how the file looks, set data.format / data.read_options.")


def test_misread_rows_show_the_settings_in_force(make_cfg, tmp_path, no_model_loading):
    path = _table(
        tmp_path / "scores.tsv",
        ["sentence_A", "sentence_B", "score"],
        [("a", "b", "high"), ("c", "d", 0.1)],
        sep="\t",
    )
    with pytest.raises(DataError) as caught:
        train(
            make_cfg(
                *FAST,
                "dataset_type=score",
                "loss=cosent",
                f"data.train_path={path}",
                "data.read_options={header: null}",
            )
        )
    message = str(caught.value)
    assert "must hold finite numbers" in message
    assert "Read as tsv with options {'sep': '\\t', 'header': None} (encoding utf-8)" in message
    assert "first row as read: {'0': 'sentence_A', '1': 'sentence_B', '2': 'score'}" in message
