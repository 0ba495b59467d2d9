"""Each run leaves report.md with valid PNG plots, and a model card in the saved model folder that
states what ran (epochs, steps, the data that chose and the data that scored) without local paths;
the smoke run (debug=fdr) moves the weights and skips the slow guards; pushing to the hub fails
clearly here and leaves the local model intact."""

import json
import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import torch
import yaml
from hydra.utils import instantiate
from sentence_transformers import SentenceTransformer

from embedding_trainer.evaluation.significance import ChangeTest, Significance
from embedding_trainer.reporting.history import TrainingHistory, validation_scores
from embedding_trainer.reporting.plots import plot_matryoshka_curve
from embedding_trainer.reporting.run_report import data_name, smoke_run_note
from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.settings.reporting import RunDescription
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ModelPushError

RUN = [
    "model=tiny",
    "logger=none",
    "evaluation.show_progress_bar=false",
    "data.max_samples=64",
    "data.max_eval_samples=16",
    "data.batch_size=8",
    "trainer.max_steps=6",
    "callbacks=none",
]
SQUAD_PAIRS = PROJECT_ROOT / "data" / "squad_pairs"


@pytest.mark.slow
def test_report_and_plots(make_cfg, tmp_path):
    run = tmp_path / "run"
    metrics, objects = train(make_cfg(*RUN, "evaluation.every_n_steps=3", output_dir=run))
    report = (run / "report.md").read_text()
    assert "![Matryoshka curve](plots/matryoshka.png)" in report
    assert "Bottom: the change (fine-tuned minus baseline), with its 95% paired bootstrap interval" in report
    assert "![Training loss, learning rate and validation score (val/score)" in report
    assert "| 32 |" in report and "| 8 |" in report and "MultipleNegativesRankingLoss" in report
    assert "\nTrained 6 optimizer steps over 1 epoch in " in report
    assert "| optimizer steps trained | 6 (model kept: step 6) |" in report
    assert "| epoch and step limits | trainer.max_epochs=1, trainer.max_steps=6 |" in report
    # The local report names the data that chose and the data that scored by their full paths.
    assert f"| checkpoint chosen on | {SQUAD_PAIRS} (" in report
    assert f"| evaluation data | {SQUAD_PAIRS} (split test) |" in report
    for name in ("matryoshka.png", "training.png"):
        image = matplotlib.image.imread(run / "plots" / name)
        assert image.shape[:2] == (500, 800), name
        assert image.std() > 0.01, f"{name} is blank"
    # The learning rate each step trained at: a one-step warm-up (0.1 of 6, rounded up) from 0, then
    # linear decay from model.lr (1e-3) over the other 5.
    (history,) = [c for c in objects["trainer"].callbacks if isinstance(c, TrainingHistory)]
    assert [step for step, _, _ in history.rows] == [1, 2, 3, 4, 5, 6]
    assert [lr for _, _, lr in history.rows] == pytest.approx([0, 1e-3, 8e-4, 6e-4, 4e-4, 2e-4])
    # The validation-score panel: the baseline's and each evaluation's val/score, the last one kept.
    scores = validation_scores(objects["evaluation"])
    assert [step for step, _ in scores] == [0, 3, 6]
    assert scores[-1][1] == pytest.approx(metrics["val/score"])
    assert scores[0][1] == pytest.approx(objects["evaluation"].score(objects["evaluation"].baseline))


def test_the_matryoshka_plot_draws_the_interval_of_the_change(tmp_path):
    baseline = {32: {"ndcg@10": 0.5}, 16: {"ndcg@10": 0.4}, 8: {"ndcg@10": 0.3}}
    finetuned = {32: {"ndcg@10": 0.6}, 16: {"ndcg@10": 0.45}, 8: {"ndcg@10": 0.3}}
    tests = Significance(
        1000,
        0.95,
        0,
        100,
        changes={
            32: {"ndcg@10": ChangeTest(0.1, 0.02, 0.18, 0.01)},
            16: {"ndcg@10": ChangeTest(0.05, -0.03, 0.13, 0.2)},
        },
    )
    plain = plot_matryoshka_curve(baseline, finetuned, "ndcg@10", tmp_path / "plain.png")
    bars = plot_matryoshka_curve(baseline, finetuned, "ndcg@10", tmp_path / "bars.png", significance=tests)
    plain, bars = matplotlib.image.imread(plain), matplotlib.image.imread(bars)
    assert plain.shape == bars.shape and plain.shape[:2] == (500, 800)
    assert not np.array_equal(plain, bars)  # the error bars (and their legend entry) are drawn


def test_data_is_named_by_its_hub_id_or_its_own_name(tmp_path):
    (tmp_path / "pairs.jsonl").write_text("{}\n")
    assert data_name(str(tmp_path / "pairs.jsonl")) == "pairs.jsonl"
    assert data_name(str(SQUAD_PAIRS)) == "squad_pairs"
    assert data_name("sentence-transformers/stsb") == "sentence-transformers/stsb"


@pytest.mark.slow
def test_model_card(make_cfg, tmp_path):
    run = tmp_path / "run"
    train(make_cfg(*RUN, output_dir=run))
    card = (run / "model" / "README.md").read_text()
    assert card.startswith("---\n") and "\nlibrary_name: sentence-transformers\n" in card.split("\n---\n")[0]
    for expected in (
        "MultipleNegativesRankingLoss",
        "MatryoshkaLoss",
        "| training data | squad_pairs (split train) |",
        "| evaluation data | squad_pairs (split test) |",
        "| checkpoint chosen on | squad_pairs (",
        "| dimension | baseline | fine-tuned | change | 95% CI low | 95% CI high | p-value |",
        "learning rate",
        'SentenceTransformer("path/to/model")  # this folder, or its hub id once uploaded',
        "truncate_dim=8",
    ):
        assert expected in card, expected
    assert str(tmp_path) not in card and str(PROJECT_ROOT) not in card
    # The hub's evaluation results: on the evaluated data, one metric per metric and dimension.
    results = json.loads((run / "results.json").read_text())
    [index] = yaml.safe_load(card.split("---\n", 2)[1])["model-index"]
    [result] = index["results"]
    assert result["dataset"] == {"name": "squad pairs test", "type": "squad_pairs-test"}
    assert result["task"]["type"] == "information-retrieval"
    logged = {metric["type"]: metric["value"] for metric in result["metrics"]}
    assert logged == {
        f"{name}_dim{dim}": value
        for dim, values in results["finetuned"].items()
        for name, value in values.items()
    }
    # The change's interval, p-value and mark per dimension, as the run tested them (results.json)
    # and as results.md shows them, legend included.
    metric, tests = results["primary_metric"], results["significance"]
    assert tests["skipped"] is None and set(tests["by_dimension"]) == {"32", "16", "8"}
    for dim, by_metric in tests["by_dimension"].items():
        test = by_metric[metric]
        before, after = results["baseline"][dim][metric], results["finetuned"][dim][metric]
        p_value = "-" if test["p_value"] is None else f"{test['p_value']:.4f}"
        p_value = "<0.0001" if test["p_value"] is not None and test["p_value"] < 1e-4 else p_value
        mark = "*" if test["excludes_zero"] else ""
        row = (
            f"| {dim} | {before:.4f} | {after:.4f} | {after - before:+.4f}{mark} | {test['ci_low']:+.4f} "
            f"| {test['ci_high']:+.4f} | {p_value} |"
        )
        assert row in card, row
    # The training steps moved some rankings: at least one interval is a real one.
    assert any(t[metric]["ci_low"] < t[metric]["ci_high"] for t in tests["by_dimension"].values())
    legend = f"percentile paired bootstrap of the mean change over {tests['n_examples']:,} queries"
    assert legend in card and "`*`: the interval excludes zero." in card
    in_results = (
        (run / "results.md").read_text().split(f"## {metric} by dimension\n\n")[1].split("\n\n## ")[0]
    )
    assert in_results.strip() in card
    assert SentenceTransformer(str(run / "model")).encode(["x"]).shape == (1, 32)


@pytest.mark.slow
def test_the_card_and_report_state_the_epochs_data_min_steps_trained(make_cfg, tmp_path):
    # 64 rows in batches of 16: 4 steps an epoch; data.min_steps=10 raises 1 epoch to 3 (12 steps).
    run = tmp_path / "run"
    _, objects = train(
        make_cfg(
            *[o for o in RUN if not o.startswith(("trainer.max_steps", "data.batch_size"))],
            "data.batch_size=16",
            "data.min_steps=10",
            "hub.repo_id=someone/my-embedder",
            output_dir=run,
        )
    )
    trainer = objects["trainer"]
    assert (trainer.current_epoch, trainer.global_step) == (3, 12)
    training = json.loads((run / "results.json").read_text())["training"]
    assert training["epochs"] == 3 and training["steps"] == 12 and training["configured_epochs"] == 1
    card = (run / "model" / "README.md").read_text()
    report = (run / "report.md").read_text()
    for text in (card, report):
        assert (
            "| epochs trained | 3 |" in text
            and "| optimizer steps trained | 12 (model kept: step 12) |" in text
        )
        assert "trainer.max_epochs=3 (raised from 1 by data.min_steps=10), trainer.max_steps=-1" in text
        assert "epochs / max steps" not in text
    assert "Trained 12 optimizer steps over 3 epochs" in report
    assert str(tmp_path) not in card and str(PROJECT_ROOT) not in card and "/tmp/" not in card
    assert 'SentenceTransformer("someone/my-embedder")' in card
    assert 'SentenceTransformer("someone/my-embedder", truncate_dim=8)' in card


def test_a_guard_named_on_the_command_line_still_runs_in_the_smoke_run(make_cfg):
    smoke = make_cfg("debug=fdr")
    assert smoke.scheduler.warmup_ratio == 0
    assert smoke.evaluation.forgetting_guard is None and smoke.evaluation.health is None
    assert (
        "skipped: the forgetting guard (evaluation.forgetting_guard=null), the embedding-health probe"
        in smoke_run_note(RunDescription.from_config(smoke))
    )
    named = make_cfg(
        "debug=fdr",
        "evaluation.forgetting_guard=${sts_benchmark_evaluator}",
        "evaluation.health={probe_size: 16, min_fraction: 0.5}",
        "scheduler.warmup_ratio=0.1",
    )
    assert named.evaluation.forgetting_guard.path.endswith("stsb_test.jsonl")
    assert named.evaluation.health.probe_size == 16 and named.scheduler.warmup_ratio == 0.1
    assert "skipped" not in smoke_run_note(RunDescription.from_config(named))
    assert smoke_run_note(RunDescription.from_config(make_cfg("model=tiny"))) is None


@pytest.mark.slow
def test_the_smoke_run_moves_the_weights_and_says_what_it_skipped(make_cfg, tmp_path, model_cache):
    run = tmp_path / "smoke"
    command = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        "model=tiny",
        "debug=fdr",
        "logger=none",
        "evaluation.show_progress_bar=false",
        f"hydra.run.dir={run}",
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"paths.cache_dir={model_cache}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "debug=fdr: a smoke run" in result.stdout + result.stderr
    report = (run / "report.md").read_text()
    assert "> **Note:** debug=fdr: a smoke run" in report and "skipped: the forgetting guard" in report
    results = json.loads((run / "results.json").read_text())
    assert results["general"] is None and results["health"] is None
    assert results["training"]["steps"] == 1 and results["training"]["smoke_run"]
    # One step at the full learning rate (no warm-up): the weights and the scores moved.
    base = instantiate(make_cfg("model=tiny").model.encoder).state_dict()
    tuned = SentenceTransformer(str(run / "model")).state_dict()
    assert set(base) <= set(tuned)  # loading the saved folder adds the BERT pooler it never uses
    assert any(not torch.equal(base[key], tuned[key]) for key in base)
    assert results["finetuned"] != results["baseline"]


@pytest.mark.slow
def test_push_to_hub_fails_clearly_and_keeps_the_model(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = tmp_path / "run"
    cfg = make_cfg(*RUN, "hub.push=true", "hub.repo_id=someone/my-embedder", output_dir=run)
    with pytest.raises(ModelPushError) as caught:
        train(cfg)
    message = str(caught.value)
    assert "'someone/my-embedder'" in message and str(run / "model") in message and "HF_TOKEN" in message
    assert SentenceTransformer(str(run / "model")).encode(["x"]).shape == (1, 32)
    assert (run / "model" / "README.md").is_file() and (run / "report.md").is_file()
    (row,) = RunRegistry(cfg.registry.path).list()
    assert row["status"] == "failed" and row["error_type"] == "ModelPushError"


@pytest.mark.slow
def test_push_needs_a_repository_id(make_cfg, tmp_path):
    with pytest.raises(ModelPushError, match="hub.repo_id"):
        train(make_cfg(*RUN, "hub.push=true", output_dir=tmp_path / "run"))


@pytest.mark.slow
def test_sweep_report_from_a_real_study(make_cfg, tmp_path):
    import optuna

    from embedding_trainer.reporting.sweep import write_sweep_report

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("model.lr", 1e-4, 1e-2, log=True)
        modifier = trial.suggest_categorical("modifier", ["matryoshka", "none"])
        cfg = make_cfg(
            "model=tiny",
            "debug=fdr",
            "logger=none",
            "evaluation.show_progress_bar=false",
            f"model.lr={lr}",
            f"modifier={modifier}",
            output_dir=tmp_path / f"trial{trial.number}",
        )
        metrics, objects = train(cfg)
        trial.set_user_attr("model_path", objects["model_path"])
        return metrics["val/score"]

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(
        study_name="tiny",
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.optimize(objective, n_trials=3)
    report = write_sweep_report(optuna.load_study(study_name="tiny", storage=storage), tmp_path / "sweep")
    text = report.read_text()
    assert (
        f"Best trial #{study.best_trial.number}" in text and study.best_trial.user_attrs["model_path"] in text
    )
    assert text.count("| complete |") == 3 and "model.lr" in text and "modifier" in text
    image = matplotlib.image.imread(tmp_path / "sweep" / "plots" / "sweep.png")
    assert image.shape[:2] == (500, 800) and image.std() > 0.01
