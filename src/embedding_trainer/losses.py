"""Building the training loss from the `loss` and `modifier` config groups.

A loss or modifier config holds its class (`_target_`, `_partial_: true`) and constructor
arguments, plus keys the harness reads itself (`HARNESS_KEYS`), which are not passed on.
"""

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sentence_transformers import SentenceTransformer

HARNESS_KEYS = (
    "accepts",
    "gradient_cache",
    "fixed_dimension",
    "batch_sampler",
    "batch_transform",
    "wraps_gradient_cache",
    "truncates_embeddings",
)


def constructor_config(cfg: DictConfig) -> DictConfig:
    """`cfg` without the harness's own keys: what goes to the class's constructor."""
    values = OmegaConf.to_container(cfg, resolve=True)
    return OmegaConf.create({key: value for key, value in values.items() if key not in HARNESS_KEYS})


def build_loss(loss_cfg: DictConfig, modifier_cfg: DictConfig, model: SentenceTransformer) -> torch.nn.Module:
    """The loss around `model`, wrapped by the modifier when it names a class."""
    loss = instantiate(constructor_config(loss_cfg))(model=model)
    if modifier_cfg.get("_target_") is None:
        return loss
    return instantiate(constructor_config(modifier_cfg))(model=model, loss=loss)
