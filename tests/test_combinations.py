"""Every supported (dataset_type, loss, modifier) combination trains one batch and evaluates,
through the real train(cfg) on the tiny offline model."""

import math

import pytest
from omegaconf import OmegaConf

from conftest import FAST
from embedding_trainer.resolvers import CONFIG_DIR
from embedding_trainer.train import train


def _supported_combinations() -> list[tuple[str, str, str]]:
    modifiers = {p.stem: OmegaConf.load(p) for p in sorted((CONFIG_DIR / "modifier").glob("*.yaml"))}
    combinations = []
    for loss_path in sorted((CONFIG_DIR / "loss").glob("*.yaml")):
        loss = OmegaConf.load(loss_path)
        for dataset_type in loss.accepts:
            for modifier_name, modifier in modifiers.items():
                if loss.gradient_cache and not modifier.wraps_gradient_cache:
                    continue
                combinations.append((dataset_type, loss_path.stem, modifier_name))
    return combinations


COMBINATIONS = _supported_combinations()


def test_the_table_covers_this_issues_losses():
    losses = {loss for _, loss, _ in COMBINATIONS}
    assert {"mnrl", "cached_mnrl", "mnsrl", "triplet", "cosent", "angle", "cosine_similarity"} <= losses
    assert {d for d, _, _ in COMBINATIONS} >= {"pair", "triplet", "score"}


@pytest.mark.parametrize(("dataset_type", "loss", "modifier"), COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS])
def test_combination_trains_and_evaluates(make_cfg, dataset_type, loss, modifier):
    cfg = make_cfg(*FAST, f"dataset_type={dataset_type}", f"loss={loss}", f"modifier={modifier}")
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 1
    assert math.isfinite(metrics["val/score"])
    dims = list(cfg.matryoshka_dims)
    evaluator = objects["evaluation"].evaluator
    for dim in dims:
        assert f"val/{evaluator.name}_{evaluator.primary_metric}_dim{dim}" in metrics
    assert (objects["evaluation"].baseline.keys()) == set(dims)
