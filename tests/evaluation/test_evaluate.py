"""`evaluate(cfg)` and `python evaluate.py`: a model scored without training, at every dimension, with
the same results, report, registry row and loggers as a training run; models side by side with -m."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAST, assert_same_metrics, files_of
from embedding_trainer.evaluate import evaluate
from embedding_trainer.runs.__main__ import main as runs_cli
from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError

# the training run's guards: not compared here
QUIET = ["evaluation.forgetting_guard=null", "evaluation.health=null"]


@pytest.mark.slow  # trains once and evaluates twice
def test_evaluation_equals_training_baseline_and_a_saved_model_its_finetuned_metrics(make_cfg, tmp_path):
    """The tiny model scores as train()'s baseline did; the model folder that run saved scores as its
    fine-tuned model did; both evaluations write their results, report and registry row."""
    _, trained = train(
        make_cfg(*FAST, *QUIET, "model.lr=0.01", "scheduler.warmup_ratio=0", output_dir=tmp_path / "train")
    )
    trained_results = json.loads((tmp_path / "train" / "results.json").read_text())
    assert trained_results["baseline"] != trained_results["finetuned"]  # one step moved the model

    metrics, objects = evaluate(make_cfg(*FAST, output_dir=tmp_path / "base", config_name="evaluate"))
    results = json.loads((tmp_path / "base" / "results.json").read_text())
    assert_same_metrics(results["evaluated"], trained_results["baseline"])
    assert results["evaluator"] == "retrieval" and results["primary_metric"] == "ndcg@10"
    assert (
        results["provenance"]["base_model"]["fingerprint"]
        == trained_results["provenance"]["base_model"]["fingerprint"]
    )
    assert metrics["val/retrieval_ndcg@10_dim32"] == results["evaluated"]["32"]["ndcg@10"]
    assert metrics["val/score"] == pytest.approx(results["score"])
    report = (tmp_path / "base" / "report.md").read_text()
    assert "without training" in report and "| 16 |" in report
    assert "## Every metric" in (tmp_path / "base" / "results.md").read_text()
    assert (tmp_path / "base" / "per_example" / "evaluated.npz").is_file()
    row = RunRegistry(tmp_path / "outputs" / "runs.db").get(objects["run_id"])
    assert row["task"] == "default-evaluation" and row["status"] == "success"
    assert row["metrics"]["evaluated"] == results["evaluated"]

    saved = make_cfg(
        "model=local",
        f"model.name_or_path={trained['model_path']}",
        "model.dimension=32",
        "evaluation.dims=[32,16,8]",
        "debug=fdr",
        "logger=none",
        "evaluation.show_progress_bar=false",
        output_dir=tmp_path / "saved",
        config_name="evaluate",
    )
    evaluate(saved)
    results = json.loads((tmp_path / "saved" / "results.json").read_text())
    assert_same_metrics(results["evaluated"], trained_results["finetuned"])
    assert results["model"] == trained["model_path"]


def test_missing_model_settings_are_named_before_anything_loads(make_cfg, tmp_path, no_model_loading):
    cfg = make_cfg(
        "model=local", "model.name_or_path=somewhere", "debug=fdr", "logger=none", config_name="evaluate"
    )
    with pytest.raises(
        ConfigError,
        match=r"model\.dimension is null: it is read from the saved model at model\.name_or_path=somewhere",
    ):
        evaluate(cfg)
    assert not (tmp_path / "run").exists()


def test_a_classifier_trained_with_the_loss_cannot_be_evaluated_alone(make_cfg, no_model_loading):
    cfg = make_cfg("dataset_type=pair_class", *FAST, config_name="evaluate")
    with pytest.raises(ConfigError, match="a saved model does not hold"):
        evaluate(cfg)


def _evaluate_command(tmp_path, model_cache, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("WANDB_API_KEY", None)
    command = [
        sys.executable,
        str(PROJECT_ROOT / "evaluate.py"),
        *args,
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"paths.cache_dir={model_cache}",
    ]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow
def test_multirun_puts_the_models_side_by_side(tmp_path, model_cache, capsys):
    """Two tiny models (two seeds) in one table, one column each, in comparison.md and in `runs compare
    --group`; W&B (offline) gets each run's metrics and its table of every metric."""
    result = _evaluate_command(
        tmp_path,
        model_cache,
        "-m",
        "model=tiny",
        "model.encoder.seed=0,1",
        "debug=fdr",
        "logger=wandb",
        "evaluation.show_progress_bar=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [folder] = (tmp_path / "outputs" / "default" / "evaluation_multiruns").iterdir()
    comparison = json.loads((folder / "comparison.json").read_text())
    assert [column["label"] for column in comparison["columns"]] == [
        "model.encoder.seed=0",
        "model.encoder.seed=1",
    ]
    assert list(comparison["dimensions"]) == ["32", "16", "8"]
    for column in comparison["columns"]:
        results = json.loads((folder / column["run"] / "results.json").read_text())
        for dim, values in comparison["dimensions"].items():
            assert values[column["label"]] == results["evaluated"][dim]["ndcg@10"]
        [run] = (folder / column["run"] / "wandb").glob("offline-run-*")
        assert list(run.glob("files/media/table/results/evaluated_*.table.json"))
    markdown = (folder / "comparison.md").read_text()
    assert "| dimension | model.encoder.seed=0 | model.encoder.seed=1 |" in markdown
    assert "| dimension | model.encoder.seed=0 | model.encoder.seed=1 |" in result.stdout + result.stderr

    # `python -m embedding_trainer.runs compare --group` on it (no baseline, no fine-tuned model: no seed
    # statistics) prints the same table from the registry, and which run each column is.
    db = str(tmp_path / "outputs" / "runs.db")

    assert runs_cli(["--db", db, "compare", "--group", str(folder)]) == 0
    compared = capsys.readouterr().out
    assert runs_cli(["--db", db, "compare", "--group", folder.name]) == 0
    assert capsys.readouterr().out == compared  # the folder by name selects the same group
    lines = compared.splitlines()
    assert lines[0] == "Models side by side: 2 evaluations without training, ndcg@10 (retrieval)"
    assert lines[1].split() == ["dimension", "model.encoder.seed=0", "model.encoder.seed=1"]
    assert "fine-tuned mean" not in compared  # no seed statistics of training runs
    labels = [column["label"] for column in comparison["columns"]]
    rows = [line.split() for line in lines[3:6]]
    assert rows == [
        [dim, *(f"{values[label]:.4f}" for label in labels)]
        for dim, values in comparison["dimensions"].items()
    ]
    assert len({row[1] for row in rows} | {row[2] for row in rows}) > 1  # real, differing scores
    registry = {Path(run["output_dir"]).name: run for run in RunRegistry(db).list()}
    for column in comparison["columns"]:
        run = registry[column["run"]]
        assert run["task"] == "default-evaluation" and run["status"] == "success"
        assert f"{column['label']}: {run['run_id']} ({column['run']}/)" in lines


@pytest.mark.parametrize("model", ["model", "no_such_folder"])
@pytest.mark.slow
def test_a_bad_model_path_exits_2_and_changes_no_other_run(tmp_path, model_cache, earlier_run, model):
    """An earlier run's folder whose `model/` holds no loadable model, or a path that does not exist."""
    before = files_of(earlier_run)
    result = _evaluate_command(
        tmp_path,
        model_cache,
        "model=local",
        f"model.name_or_path={earlier_run / model}",
        "model.dimension=32",
        "debug=fdr",
        "logger=none",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert (
        f"ModelLoadError: Cannot load model '{earlier_run / model}'" in output and "Traceback" not in output
    )
    assert files_of(earlier_run) == before
    [folder] = (tmp_path / "outputs" / "default" / "evaluations").iterdir()
    assert sorted(path.name for path in folder.iterdir()) == [
        ".hydra",
        "evaluate.log",
    ]  # Hydra's own files only
    [row] = [
        run
        for run in RunRegistry(tmp_path / "outputs" / "runs.db").list()
        if run["task"] == "default-evaluation"
    ]
    assert row["status"] == "failed" and row["error_type"] == "ModelLoadError"
