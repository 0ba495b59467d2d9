"""`data.min_steps`: a small training set trains at least that many optimizer steps (epochs raised from
the data size, stated in the log), and nothing changes where a step limit or enough steps are set."""

import logging

import pytest
from hydra import compose, initialize_config_dir

from embedding_trainer.settings.resolvers import CONFIG_DIR
from embedding_trainer.train import train
from embedding_trainer.training.step_plan import TrainingPlan, epochs_for_min_steps
from embedding_trainer.utils.errors import ConfigError

TINY = ["model=tiny", "logger=none", "evaluation.show_progress_bar=false", "debug=none"]
# The cheapest evaluation (a few STS pairs), no checkpoints.
SCORE_RUN = [*TINY, "dataset_type=score", "loss=cosent", "callbacks=none", "data.max_eval_samples=20"]


def _plan(rows: int, **changes) -> TrainingPlan:
    settings = {
        "batch_size": 32,
        "world_size": 1,
        "accumulate": 1,
        "max_epochs": 1,
        "max_steps": None,
        "batch_limit": None,
    }
    return TrainingPlan(rows=rows, **{**settings, **changes})


@pytest.mark.parametrize(
    "plan, min_steps, epochs",
    [
        (_plan(900), 100, 4),  # 29 steps per epoch
        (_plan(2048), 100, 2),
        (_plan(2048, accumulate=2), 100, 4),  # 32 optimizer steps per epoch
        (_plan(2048, world_size=2), 100, 4),  # global batches of 64
        (_plan(900, max_epochs=5), 100, None),  # 145 steps already
        (_plan(900, max_steps=20), 100, None),  # a step limit is the user's word
        (_plan(900, max_epochs=None), 100, None),
        (_plan(900), None, None),
        (_plan(0), 100, None),  # no step at all: check_steps says so
    ],
)
def test_the_epochs_are_raised_to_reach_the_minimum(plan, min_steps, epochs):
    assert epochs_for_min_steps(plan, min_steps) == epochs


@pytest.mark.slow
def test_a_run_trains_the_raised_epochs_and_says_so(make_cfg, caplog):
    cfg = make_cfg(
        *SCORE_RUN, "data.max_samples=64", "data.batch_size=32", "trainer.max_epochs=1", "data.min_steps=5"
    )
    with caplog.at_level(logging.INFO):
        _, objects = train(cfg)
    assert objects["trainer"].global_step == 6 and objects["trainer"].current_epoch == 3
    assert "Training 3 epochs, not 1: 2 optimizer steps per epoch and data.min_steps=5" in caplog.text


def test_a_minimum_that_is_no_whole_number_is_refused(make_cfg, no_model_loading):
    with pytest.raises(ConfigError, match="data.min_steps must be a whole number of at least 1 or null"):
        train(make_cfg(*TINY, "data.min_steps=0.5"))


def _composed_data(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides)).data


@pytest.mark.parametrize(
    "overrides, min_steps, grouped",
    [
        ([], 100, True),  # the default job: pair data
        (["dataset_type=n_tuple"], 100, True),
        (["experiment=quora_retrieval"], 100, True),
        (["dataset_type=score", "loss=cosent"], None, False),  # not a retrieval fine-tune
        (["experiment=squad_cropping"], None, False),  # measured with one ungrouped epoch
    ],
)
def test_retrieval_data_trains_at_least_100_steps_in_grouped_batches_by_default(
    overrides, min_steps, grouped
):
    data = _composed_data(*overrides)
    assert (data.min_steps, data.group_by_length) == (min_steps, grouped)


def test_measured_objectives_keep_their_ungrouped_batches():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=retrieval_and_sts"])
    assert cfg.objectives.retrieval.data.group_by_length is False
