"""Early stopping (callbacks=early_stopping): the decision, its state across a resume, real runs that
stop at the expected step and report it, and a stopped sweep trial that is not pruned."""

import json
from types import SimpleNamespace

import optuna
import pytest
import torch

from conftest import FAST
from embedding_trainer.sweeps.pruning import OptunaPruningCallback
from embedding_trainer.train import train
from embedding_trainer.training.early_stopping import EarlyStopping, Patience
from embedding_trainer.utils.errors import ConfigError

# 12 optimizer steps in one epoch, an evaluation every 2; min_delta 1.0: val/score (at most 1) never
# improves, so training stops after `patience` evaluations: at step 2 x patience when the score before
# training is the reference, 2 x (patience + 1) when there is none (the first evaluation is).
NEVER_IMPROVES = [
    "model=tiny",
    "callbacks=early_stopping",
    "callbacks.progress_bar.refresh_rate=0",
    "callbacks.early_stopping.min_delta=1.0",
    "logger=none",
    "evaluation.show_progress_bar=false",
    "evaluation.every_n_steps=2",
    "data.max_samples=96",
    "data.batch_size=8",
    "data.max_eval_samples=16",
    "trainer.max_epochs=1",
]


def fake_evaluation(scores: dict[int, float], baseline: float | None = None) -> SimpleNamespace:
    """An evaluation callback's view for the early-stopping callback: scores by step."""
    return SimpleNamespace(history=dict(scores), baseline=baseline, score=lambda metrics: metrics)


def test_patience_counts_evaluations_without_an_improvement_larger_than_min_delta():
    patience = Patience(patience=2, min_delta=0.01)
    decisions = [
        patience.update(step, score)
        for step, score in [(1, 0.50), (2, 0.55), (3, 0.555), (4, 0.58), (5, 0.585), (6, 0.59)]
    ]
    # 0.555 and 0.585 are within min_delta of the best: one evaluation without improvement each;
    # 0.59 is within min_delta of 0.58 too, the second in a row.
    assert decisions == [False, False, False, False, False, True]
    assert (patience.best, patience.best_step, patience.stopped_step) == (0.58, 4, 6)


def test_patience_starts_from_the_score_before_training():
    patience = Patience(patience=1)
    patience.start(0.7)
    assert patience.update(5, 0.6) and patience.stopped_step == 5 and patience.best_step == 0
    patience = Patience(patience=1)
    patience.start(0.7)
    assert not patience.update(5, 0.71) and patience.best_step == 5


def test_the_callback_stops_the_trainer_once_and_its_counters_survive_a_checkpoint():
    scores = {2: 0.4, 4: 0.5, 6: 0.45, 8: 0.45, 10: 0.3}
    trainer = SimpleNamespace(should_stop=False)
    evaluation = fake_evaluation({step: scores[step] for step in (2, 4, 6)}, baseline=0.3)
    first = EarlyStopping(evaluation, patience=2)
    first.on_train_batch_end(trainer)
    assert not trainer.should_stop and first.state_dict() == {
        "best": 0.5,
        "best_step": 4,
        "waited": 1,
        "last_step": 6,
        "stopped_step": None,
    }

    # A resumed run: a new callback (its own settings) loads the counters; the restored history has
    # the earlier evaluations, which are not counted twice.
    state = first.state_dict()
    resumed_evaluation = fake_evaluation(scores, baseline=0.3)
    resumed = EarlyStopping(resumed_evaluation, patience=2)
    resumed.load_state_dict(state)
    resumed.on_train_batch_end(trainer)
    assert trainer.should_stop and resumed.stopped_step == 8
    assert resumed.to_json(kept_step=4) == {
        "patience": 2,
        "min_delta": 0.0,
        "best": 0.5,
        "best_step": 4,
        "waited": 3,
        "last_step": 10,
        "stopped_step": 8,
        "kept_step": 4,
    }


@pytest.mark.parametrize(("baseline", "stopped"), [("true", 4), ("false", 6)])
@pytest.mark.slow
def test_a_run_stops_at_the_expected_step_and_reports_it(make_cfg, tmp_path, baseline, stopped):
    run = tmp_path / "run"
    cfg = make_cfg(
        *NEVER_IMPROVES,
        "callbacks.early_stopping.patience=2",
        f"evaluation.baseline={baseline}",
        output_dir=run,
    )
    _, objects = train(cfg)

    assert objects["trainer"].global_step == stopped
    evaluation = objects["evaluation"]
    assert sorted(evaluation.history) == list(range(2, stopped + 1, 2))
    # The model kept: the best evaluation's (the first of equal scores), restored from its checkpoint.
    kept = max(sorted(evaluation.history), key=lambda step: evaluation.score(evaluation.history[step]))
    results = json.loads((run / "results.json").read_text())
    assert results["step"] == kept
    assert results["early_stopping"]["stopped_step"] == stopped
    assert results["early_stopping"]["kept_step"] == kept
    report = (run / "report.md").read_text()
    assert f"Trained {stopped} optimizer steps" in report
    assert f"Training stopped early at step {stopped}" in report
    assert f"the model kept is that of step {kept}." in report


@pytest.mark.slow
def test_a_resumed_run_goes_on_counting_where_the_interrupted_one_was(make_cfg, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    # Every evaluation checkpointed: last.ckpt is step 4's whichever scored best.
    common = [
        *NEVER_IMPROVES,
        "callbacks.early_stopping.patience=3",
        "callbacks.model_checkpoint.save_top_k=-1",
        "checkpoints.keep=last",
    ]
    _, objects = train(make_cfg(*common, "trainer.max_steps=4", output_dir=first))
    assert objects["trainer"].global_step == 4  # two evaluations without improvement: not yet stopped
    checkpoint = first / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, weights_only=False)["callbacks"]["EarlyStopping"]
    assert (state["waited"], state["last_step"], state["stopped_step"]) == (2, 4, None)

    _, objects = train(make_cfg(*common, f"ckpt_path={checkpoint}", output_dir=second))
    assert objects["trainer"].global_step == 6
    assert json.loads((second / "results.json").read_text())["early_stopping"]["stopped_step"] == 6


def test_a_trial_stopped_early_is_not_pruned():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    trainer = SimpleNamespace(
        is_global_zero=True,
        estimated_stepping_batches=100,
        should_stop=True,
        strategy=SimpleNamespace(broadcast=lambda value, src: value),
    )
    OptunaPruningCallback(study.ask(), fake_evaluation({2: 0.5})).on_train_batch_end(trainer)

    trainer.should_stop = False
    with pytest.raises(optuna.TrialPruned):
        OptunaPruningCallback(study.ask(), fake_evaluation({2: 0.5})).on_train_batch_end(trainer)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("callbacks.early_stopping.patience=0", "patience must be a whole number of at least 1"),
        ("callbacks.early_stopping.patience=1.5", "patience must be a whole number of at least 1"),
        ("callbacks.early_stopping.min_delta=-0.1", "min_delta must be a number >= 0"),
    ],
)
def test_bad_early_stopping_settings_are_refused_before_the_model_loads(
    make_cfg, no_model_loading, override, message
):
    with pytest.raises(ConfigError, match=message):
        train(make_cfg(*FAST, "callbacks=early_stopping", override))
