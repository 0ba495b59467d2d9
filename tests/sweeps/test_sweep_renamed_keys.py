"""Sweeps and the renamed selection-score key: the sweeper refuses to search `evaluation.selection_score`
under either name (or with a `+` prefix), and a fixed old key reaches each trial, which reads it as the
new key."""

import pytest

from conftest import FAST
from embedding_trainer.settings.checks import validate_config
from embedding_trainer.sweeps.search_space import parse_search_space
from embedding_trainer.utils.errors import ConfigError
from hydra_plugins.embedding_trainer_optuna_sweeper.optuna_sweeper import OptunaSweeper


@pytest.mark.parametrize(
    "searched",
    ["evaluation.objective.dims", "evaluation.selection_score.metric", "+evaluation.objective.metric"],
)
def test_the_sweeper_refuses_to_search_the_selection_score_under_any_name(tmp_path, searched):
    values = "choice([16],[8])" if searched.endswith("dims") else "choice(a,b)"
    sweeper = OptunaSweeper("maximize", 1, 1, None, None, "s", f"sqlite:///{tmp_path / 's.db'}", {})
    with pytest.raises(ConfigError, match=f"searches {searched.replace('+', '[+]')}, which define val/score"):
        sweeper.sweep([f"{searched}={values}", "model.lr=choice(0.1,0.2)"])
    assert not (tmp_path / "s.db").exists()


def test_a_fixed_old_key_in_a_sweep_reaches_each_trial_as_the_new_key(make_cfg):
    space = parse_search_space({"model.lr": "choice(0.1,0.2)"}, ["evaluation.objective.dims=[16]"])
    assert list(space.distributions) == ["model.lr"]
    cfg = make_cfg(*FAST, "dataset_type=score", "loss=cosent", *space.overrides({"model.lr": 0.1}))
    validate_config(cfg)
    assert list(cfg.evaluation.selection_score.dims) == [16] and cfg.model.lr == 0.1
