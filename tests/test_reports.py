"""Each run leaves report.md with valid PNG plots, and a model card in the saved model folder;
pushing to the hub fails clearly here and leaves the local model intact."""

import json

import matplotlib.image
import pytest
from sentence_transformers import SentenceTransformer

from embedding_trainer.errors import ModelPushError
from embedding_trainer.runs.registry import RunRegistry
from embedding_trainer.train import train

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


def test_report_and_plots(make_cfg, tmp_path):
    run = tmp_path / "run"
    train(make_cfg(*RUN, output_dir=run))
    report = (run / "report.md").read_text()
    assert "![Matryoshka curve](plots/matryoshka.png)" in report
    assert "![Training loss and learning rate](plots/training.png)" in report
    assert "| 32 |" in report and "| 8 |" in report and "MultipleNegativesRankingLoss" in report
    for name in ("matryoshka.png", "training.png"):
        image = matplotlib.image.imread(run / "plots" / name)
        assert image.shape[:2] == (500, 800), name
        assert image.std() > 0.01, f"{name} is blank"


def test_model_card(make_cfg, tmp_path):
    run = tmp_path / "run"
    train(make_cfg(*RUN, output_dir=run))
    card = (run / "model" / "README.md").read_text()
    assert card.startswith("---\n") and "\nlibrary_name: sentence-transformers\n" in card.split("\n---\n")[0]
    for expected in (
        "MultipleNegativesRankingLoss",
        "MatryoshkaLoss",
        "squad_pairs",
        "| dimension | baseline | fine-tuned | change | 95% CI low | 95% CI high | p-value |",
        "learning rate",
        f'SentenceTransformer("{run / "model"}")',
        "truncate_dim=8",
    ):
        assert expected in card, expected
    # The change's interval, p-value and mark per dimension, as the run tested them (results.json)
    # and as results.md shows them, legend included.
    results = json.loads((run / "results.json").read_text())
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


def test_push_needs_a_repository_id(make_cfg, tmp_path):
    with pytest.raises(ModelPushError, match="hub.repo_id"):
        train(make_cfg(*RUN, "hub.push=true", output_dir=tmp_path / "run"))


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
