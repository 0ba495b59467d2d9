"""Every option of every config group composes and resolves."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_object
from omegaconf import OmegaConf

from embedding_trainer.settings.resolvers import CONFIG_DIR

GROUPS = [
    "model",
    "model/lora",
    "dataset_type",
    "data",
    "loss",
    "modifier",
    "regularizer",
    "trainer",
    "callbacks",
    "logger",
    "paths",
    "debug",
    "experiment",
    "batch_sampler",
]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONFIG_DIR / group).glob("*.yaml"))]
# Options that only make sense with a matching dataset type, or that leave values to the user.
NEEDS = {
    ("data", "triplet"): ["dataset_type=triplet"],
    ("data", "score"): ["dataset_type=score"],
    ("model", "local"): ["model.name_or_path=some/model", "model.dimension=384"],
    ("model", "hf"): ["model.name_or_path=some/model", "model.dimension=384"],
}


def test_every_listed_group_has_options():
    assert {group for group, _ in OPTIONS} == set(GROUPS)


@pytest.mark.slow  # every option of every group: exhaustive, like the loss x format combinations
@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_resolves(group, option, tmp_path, model_cache):
    override = (
        f"batch_sampler@loss.batch_sampler={option}" if group == "batch_sampler" else f"{group}={option}"
    )
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[override, *NEEDS.get((group, option), []), f"paths.output_dir={tmp_path}"],
        )
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["paths"]["output_dir"] == str(tmp_path)
    assert (
        resolved["matryoshka_dims"] == resolved["model"]["matryoshka_dims"]
        or "matryoshka_dims" in resolved["modifier"]
    )
    if group == "batch_sampler":
        assert callable(get_object(resolved["loss"]["batch_sampler"]["_target_"]))


def test_hydra_run_dir_uses_the_output_name(tmp_path):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["name=my_run"], return_hydra_config=True)
    assert "/my_run/runs/" in cfg.hydra.run.dir
    assert "/my_run/multiruns/" in cfg.hydra.sweep.dir


def test_data_follows_the_dataset_type(tmp_path):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["dataset_type=score", "loss=cosent"])
    assert cfg.data.train_path.endswith("derived/stsb_train.jsonl")
    assert cfg.dataset_type.columns == ["sentence_A", "sentence_B", "score"]
