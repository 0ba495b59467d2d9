"""Evaluation dimensions and the objective (`val/score`) are settings of their own: every run and sweep
trial is evaluated at `evaluation.dims` and scored by `evaluation.selection_score`, whatever dims it trains at."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import SCORE_STEP
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError
from hydra_plugins.embedding_trainer_optuna_sweeper.optuna_sweeper import OptunaSweeper

JOB = SCORE_STEP


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["evaluation.dims=[8,16,32]"], "evaluation.dims must be strictly descending"),
        (
            ["evaluation.dims=[64,32]"],
            "evaluation.dims=[64, 32] has 64, larger than the model's embedding dimension 32",
        ),
        (
            ["evaluation.selection_score.dims=[24]"],
            "evaluation.selection_score.dims=[24] must be a non-empty list of evaluated dimensions",
        ),
        (
            ["evaluation.selection_score.dims=16"],
            "evaluation.selection_score.dims=16 must be a non-empty list",
        ),
        (
            ["evaluation.selection_score.metric=[a]"],
            "evaluation.selection_score.metric must be a metric name",
        ),
    ],
)
def test_bad_evaluation_settings_fail_before_anything_loads(make_cfg, no_model_loading, overrides, expected):
    cfg = make_cfg(*JOB, *overrides)
    with pytest.raises(ConfigError) as caught:
        train(cfg)
    assert expected in str(caught.value)
    assert not Path(cfg.paths.output_dir).exists()


@pytest.mark.slow
def test_evaluation_dims_and_objective_do_not_follow_the_modifier(make_cfg):
    cfg = make_cfg(
        *JOB,
        "modifier.matryoshka_dims=[32,8]",
        "evaluation.selection_score.dims=[16,8]",
        "evaluation.selection_score.metric=pearson_cosine",
    )
    metrics, objects = train(cfg)
    assert set(objects["evaluation"].baseline) == set(objects["finetuned"]) == {32, 16, 8}
    expected = (
        metrics["val/similarity_pearson_cosine_dim16"] + metrics["val/similarity_pearson_cosine_dim8"]
    ) / 2
    assert metrics["val/score"] == pytest.approx(expected)


def test_an_objective_metric_the_evaluator_lacks_is_named_with_the_ones_it_has(make_cfg):
    with pytest.raises(ConfigError) as caught:
        train(make_cfg(*JOB, "evaluation.selection_score.metric=ndcg@10"))
    assert "evaluation.selection_score.metric='ndcg@10' is not a metric" in str(caught.value)
    assert "pearson_cosine, spearman_cosine" in str(caught.value)


def test_the_sweeper_refuses_to_search_what_defines_the_objective(tmp_path):
    sweeper = OptunaSweeper(
        "maximize",
        1,
        1,
        None,
        None,
        "s",
        f"sqlite:///{tmp_path / 's.db'}",
        {"evaluation.selection_score.dims": "choice([16],[8])"},
    )
    with pytest.raises(
        ConfigError, match="searches evaluation.selection_score.dims, evaluation.dims, which define"
    ):
        sweeper.sweep(["evaluation.dims=choice([32,16],[32,8])", "evaluation.batch_size=choice(8,16)"])
    assert not (tmp_path / "s.db").exists()


@pytest.mark.slow
def test_sweep_trials_with_other_matryoshka_dims_optimise_the_same_stated_objective(tmp_path, model_cache):
    database = tmp_path / "study.db"
    command = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        "-m",
        "hparams_search=lr",
        *JOB,
        "model.lr=0.001",
        "evaluation.baseline=false",
        "modifier.matryoshka_dims=choice([32,16,8],[32,8])",
        "evaluation.selection_score.dims=[16]",
        # The eval data chooses too, so the trial's value is the table's score (validation data would differ).
        "data.validation_size=null",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage=sqlite:///{database}",
        "hydra.sweeper.sampler=null",
        "hydra.sweeper.sampler={_target_:optuna.samplers.BruteForceSampler,seed:0}",
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"paths.cache_dir={model_cache}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    result = subprocess.run(
        command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]

    study = optuna.load_study(study_name="default-lr", storage=f"sqlite:///{database}")
    assert sorted(t.params["modifier.matryoshka_dims"] for t in study.trials) == ["[32,16,8]", "[32,8]"]
    stated = "spearman_cosine averaged over dimensions [16] (evaluation.dims [32, 16, 8])"
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE and trial.user_attrs["objective"] == stated
        results = json.loads((Path(trial.user_attrs["output_dir"]) / "results.json").read_text())
        assert list(results["finetuned"]) == ["32", "16", "8"]  # not the dims the trial trained at
        assert trial.value == pytest.approx(results["finetuned"]["16"]["spearman_cosine"])
    sweep_dir = tmp_path / "outputs" / "default" / "sweeps" / "default-lr"
    assert f"Objective (maximize): val/score = {stated}." in (sweep_dir / "sweep.md").read_text()
    labels = [group["label"] for group in json.loads((sweep_dir / "summary.json").read_text())["groups"]]
    assert sorted(labels) == ["modifier.matryoshka_dims=[32,16,8]", "modifier.matryoshka_dims=[32,8]"]
