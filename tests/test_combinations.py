"""Every supported (dataset_type, loss, modifier) combination trains one batch and evaluates,
through the real train(cfg) on the tiny offline model; every row of the compatibility table is there."""

import math

import pytest
from omegaconf import OmegaConf

from conftest import FAST
from embedding_trainer.settings.resolvers import CONFIG_DIR
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
                if loss.get("fixed_dimension") and modifier.truncates_embeddings:
                    continue
                combinations.append((dataset_type, loss_path.stem, modifier_name))
    return combinations


COMBINATIONS = _supported_combinations()
TEACHER = ["teacher=tiny", "teacher.encoder.seed=1"]  # the tiny model with other weights

# The compatibility table users expect (GIST in sentence-transformers takes 2 or 3 columns, so no n_tuple).
EXPECTED_TABLE = {
    *(
        ("pair", loss)
        for loss in [
            "mnrl",
            "cached_mnrl",
            "mnsrl",
            "cached_mnsrl",
            "megabatch_margin",
            "gist",
            "cached_gist",
            "infonce",
        ]
    ),
    *(("triplet", loss) for loss in ["mnrl", "cached_mnrl", "triplet", "gist", "cached_gist", "infonce"]),
    *(("n_tuple", loss) for loss in ["mnrl", "cached_mnrl", "infonce"]),
    # Distillation: learn from a teacher's outputs (a teacher option is added to these runs).
    *(("single", "mse"), ("pair", "mse")),
    *(
        (dataset_type, loss)
        for dataset_type in ["triplet", "n_tuple"]
        for loss in ["mse", "margin_mse", "distill_kl"]
    ),
    *(("score", loss) for loss in ["cosent", "angle", "cosine_similarity"]),
    ("pair_class", "softmax"),
    ("pair_binary", "contrastive"),
    ("pair_binary", "online_contrastive"),
    ("single", "contrastive_tension"),
    ("single", "denoising_autoencoder"),
    *(
        ("single_class", loss)
        for loss in [
            "batch_all_triplet",
            "batch_hard_soft_margin_triplet",
            "batch_hard_triplet",
            "batch_semi_hard_triplet",
            "arcface",
        ]
    ),
    ("anchor_anchor", "contrastive_tension_in_batch"),
    ("denoising", "denoising_autoencoder"),
}


def test_the_table_covers_this_issues_losses():
    rows = {(dataset_type, loss) for dataset_type, loss, _ in COMBINATIONS}
    assert rows == EXPECTED_TABLE


@pytest.mark.parametrize(
    ("dataset_type", "loss", "modifier"), COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS]
)
@pytest.mark.slow
def test_combination_trains_and_evaluates(make_cfg, dataset_type, loss, modifier):
    teacher = TEACHER if OmegaConf.load(CONFIG_DIR / "loss" / f"{loss}.yaml").get("teacher_targets") else []
    cfg = make_cfg(*FAST, f"dataset_type={dataset_type}", f"loss={loss}", f"modifier={modifier}", *teacher)
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 1
    assert math.isfinite(metrics["val/score"])
    dims = list(cfg.matryoshka_dims)
    evaluator = objects["evaluation"].evaluator
    evaluated = set(objects["evaluation"].baseline)
    # The softmax classifier reads full-dimension embeddings only; every other evaluator scores each dim.
    assert evaluated == ({dims[0]} if evaluator.name == "softmax" else set(dims))
    for dim in evaluated:
        assert f"val/{evaluator.name}_{evaluator.primary_metric}_dim{dim}" in metrics
