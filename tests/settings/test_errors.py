"""Bad input fails with a clear message before any model loads, and loses nothing already written."""

from pathlib import Path

import pytest

from conftest import files_of
from embedding_trainer.models import loading as models
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError, DataError, ModelLoadError

TINY = ["model=tiny", "logger=none", "evaluation.show_progress_bar=false"]


@pytest.fixture
def existing_output(earlier_run):
    """A finished run's folder beside the failing run's, which the failing run must leave alone."""
    return earlier_run


def _fails(make_cfg, existing_output, error_type, *overrides) -> str:
    before = files_of(existing_output)
    cfg = make_cfg(*TINY, *overrides)
    with pytest.raises(error_type) as caught:
        train(cfg)
    assert files_of(existing_output) == before
    assert not Path(cfg.paths.output_dir).exists()  # a rejected run leaves no folder behind
    return str(caught.value)


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loss_that_does_not_accept_the_dataset_type(make_cfg, existing_output, no_model_loading):
    message = _fails(make_cfg, existing_output, ConfigError, "dataset_type=score", "loss=mnrl")
    assert "MultipleNegativesRankingLoss cannot train on dataset_type=score" in message
    assert "Losses for dataset_type=score: angle, cosent, cosine_similarity" in message


def test_triplet_loss_on_pairs_lists_the_pair_losses(make_cfg, existing_output, no_model_loading):
    message = _fails(make_cfg, existing_output, ConfigError, "dataset_type=pair", "loss=triplet")
    for name in ("mnrl", "cached_mnrl", "mnsrl"):
        assert name in message
    assert "cosent" not in message


def test_cached_loss_inside_adaptive_layer(make_cfg, existing_output, no_model_loading):
    message = _fails(make_cfg, existing_output, ConfigError, "loss=cached_mnrl", "modifier=adaptive_layer")
    assert "AdaptiveLayerLoss cannot wrap a cached" in message
    assert "modifier=matryoshka" in message


def test_matryoshka_dims_not_descending(make_cfg, existing_output, no_model_loading):
    message = _fails(make_cfg, existing_output, ConfigError, "modifier.matryoshka_dims=[8,16,32]")
    assert "strictly descending" in message and "[32, 16, 8]" in message


def test_matryoshka_dims_repeated(make_cfg, existing_output, no_model_loading):
    assert "strictly descending" in _fails(
        make_cfg, existing_output, ConfigError, "modifier.matryoshka_dims=[32,16,16]"
    )


def test_matryoshka_dims_larger_than_the_model(make_cfg, existing_output, no_model_loading):
    message = _fails(make_cfg, existing_output, ConfigError, "modifier.matryoshka_dims=[64,32]")
    assert "larger than the model's embedding dimension 32" in message


def test_model_dims_checked_without_a_matryoshka_modifier(make_cfg, existing_output, no_model_loading):
    message = _fails(make_cfg, existing_output, ConfigError, "modifier=none", "model.matryoshka_dims=[48,16]")
    assert "model.matryoshka_dims" in message


def test_data_file_that_does_not_exist(make_cfg, existing_output, no_model_loading, tmp_path):
    message = _fails(
        make_cfg,
        existing_output,
        DataError,
        "dataset_type=score",
        "loss=cosent",
        f"data.train_path={tmp_path / 'missing.csv'}",
    )
    assert "missing.csv does not exist" in message


def test_missing_column_names_what_was_found_and_the_mapping(
    make_cfg, existing_output, no_model_loading, tmp_path
):
    data = _write(
        tmp_path, "pairs.jsonl", '{"question": "q1", "passage": "p1"}\n{"question": "q2", "passage": "p2"}\n'
    )
    message = _fails(
        make_cfg,
        existing_output,
        DataError,
        "dataset_type=triplet",
        "loss=mnrl",
        f"data.train_path={data}",
        f"data.eval_path={data}",
        "data.format=null",
    )
    assert "needs columns ['anchor', 'positive', 'negative']" in message
    assert "its columns are ['question', 'passage']" in message
    assert "data.column_map={question: anchor, passage: positive}" in message


@pytest.mark.slow
def test_column_map_fixes_the_missing_column(make_cfg, tmp_path):
    data = _write(
        tmp_path, "pairs.jsonl", "".join(f'{{"question": "q{i}", "passage": "p{i}"}}\n' for i in range(40))
    )
    cfg = make_cfg(
        *TINY,
        "debug=fdr",
        f"data.train_path={data}",
        f"data.eval_path={data}",
        "data.column_map={question: anchor, passage: positive}",
    )
    metrics, objects = train(cfg)
    assert objects["datamodule"].train_dataset.column_names == ["anchor", "positive"]
    assert "val/score" in metrics


def test_empty_dataset(make_cfg, existing_output, no_model_loading, tmp_path):
    data = _write(tmp_path, "empty.csv", "sentence_A,sentence_B,score\n")
    message = _fails(
        make_cfg, existing_output, DataError, "dataset_type=score", "loss=cosent", f"data.train_path={data}"
    )
    assert "has no rows" in message


def test_non_numeric_scores(make_cfg, existing_output, no_model_loading, tmp_path):
    data = _write(tmp_path, "scores.csv", "sentence_A,sentence_B,score\na,b,0.5\nc,d,high\ne,f,0.1\n")
    message = _fails(
        make_cfg, existing_output, DataError, "dataset_type=score", "loss=cosent", f"data.train_path={data}"
    )
    assert "row 1: 'high'" in message


def test_non_finite_scores(make_cfg, existing_output, no_model_loading, tmp_path):
    data = _write(tmp_path, "scores.csv", "sentence_A,sentence_B,score\na,b,0.5\nc,d,inf\ne,f,nan\n")
    message = _fails(
        make_cfg, existing_output, DataError, "dataset_type=score", "loss=cosent", f"data.train_path={data}"
    )
    assert "finite numbers" in message and "row 1" in message and "row 2" in message


def test_resume_from_a_missing_checkpoint(make_cfg, existing_output, no_model_loading, tmp_path):
    message = _fails(make_cfg, existing_output, ConfigError, f"ckpt_path={tmp_path / 'nope.ckpt'}")
    assert "does not exist" in message


def test_hub_model_that_cannot_be_downloaded_says_so():
    with pytest.raises(ModelLoadError) as caught:
        models.load_pretrained("BAAI/bge-base-en-v1.5")
    message = str(caught.value)
    assert "'BAAI/bge-base-en-v1.5'" in message
    assert "not in the Hugging Face cache" in message and "model.encoder.name_or_path=" in message


def test_model_folder_that_does_not_exist_says_so(tmp_path):
    with pytest.raises(ModelLoadError) as caught:
        models.load_pretrained(str(tmp_path / "no_such_model"))
    assert "neither a local folder nor a Hugging Face Hub id" in str(caught.value)
