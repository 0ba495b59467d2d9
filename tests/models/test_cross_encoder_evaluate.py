"""`evaluate.py` on a saved cross-encoder: `model=cross_encoder` with the run's folder scores it with the
dataset type's cross-encoder evaluator exactly as the training run's final evaluation did; `model=local`,
which loads embedding models, refuses the folder before anything loads."""

import json

import pytest

from conftest import FAST, assert_same_metrics
from embedding_trainer.evaluate import evaluate
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError

QUIET = [o for o in FAST if not o.startswith("model=")]


@pytest.mark.slow  # trains the tiny cross-encoder 3 steps, then evaluates its folder
def test_evaluate_scores_a_saved_cross_encoder_as_its_training_run_did(make_cfg, tmp_path):
    data = [
        "data.max_samples=48",
        "data.validation_size=null",
        "data.max_eval_samples=16",
        "data.min_steps=null",
    ]
    _, trained = train(
        make_cfg(
            *QUIET,
            *data,
            "model=tiny_cross_encoder",
            "loss=ce_mnrl",
            "trainer.fast_dev_run=false",
            "trainer.max_steps=3",
            "data.batch_size=16",
            output_dir=tmp_path / "train",
        )
    )
    folder = trained["model_path"]
    finetuned = json.loads((tmp_path / "train" / "results.json").read_text())["finetuned"]

    local = make_cfg(*QUIET, *data, "model=local", f"model.name_or_path={folder}", config_name="evaluate")
    with pytest.raises(ConfigError, match="is a saved cross-encoder.*model=cross_encoder"):
        evaluate(local)
    assert not (tmp_path / "run").exists()  # refused before the run folder is written

    saved = make_cfg(
        *QUIET,
        *data,
        "model=cross_encoder",
        f"model.encoder.name_or_path={folder}",
        "model.encoder.max_seq_length=null",
        output_dir=tmp_path / "evaluated",
        config_name="evaluate",
    )
    metrics, _ = evaluate(saved)
    results = json.loads((tmp_path / "evaluated" / "results.json").read_text())
    assert results["evaluator"] == "reranking"
    assert_same_metrics(results["evaluated"], finetuned)
    assert metrics["val/score"] == pytest.approx(finetuned["1"]["ndcg@10"], abs=1e-6)
