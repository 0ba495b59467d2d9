"""Building the training loss from the `loss` and `modifier` config groups.

A loss or modifier config holds its class (`_target_`, `_partial_: true`) and constructor
arguments, plus keys the harness reads itself (`HARNESS_KEYS`), which are not passed on.
"""

import functools
import inspect

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sentence_transformers import SentenceTransformer

from embedding_trainer.utils.errors import ConfigError

HARNESS_KEYS = (
    "accepts",
    "gradient_cache",
    "in_batch_negatives",
    "fixed_dimension",
    "batch_sampler",
    "batch_transform",
    "wraps_gradient_cache",
    "truncates_embeddings",
    "teacher_targets",
    "mask_known_relevance",
    "model_family",
)
GATHER_ARGUMENT = "gather_across_devices"


def class_name(target: str | None) -> str | None:
    """The class name of a config's `_target_` (`MultipleNegativesRankingLoss` for
    `sentence_transformers...losses.MultipleNegativesRankingLoss`; None: none)."""
    return None if target is None else str(target).rsplit(".", 1)[-1]


def constructor_config(cfg: DictConfig) -> DictConfig:
    """`cfg` without the harness's own keys: what goes to the class's constructor."""
    values = OmegaConf.to_container(cfg, resolve=True)
    return OmegaConf.create({key: value for key, value in values.items() if key not in HARNESS_KEYS})


def build_loss(
    loss_cfg: DictConfig,
    modifier_cfg: DictConfig,
    model: SentenceTransformer,
    world_size: int = 1,
    num_classes: int | None = None,
) -> torch.nn.Module:
    """The loss around `model`, wrapped by the modifier when it names a class.

    A loss whose constructor takes `num_labels` and whose config leaves it null gets `num_classes`,
    the number of classes of the loaded data.

    With `world_size` > 1 data-parallel processes, a loss whose constructor takes
    `gather_across_devices` (the in-batch-negative losses: MNRL, MNSRL, GIST and their cached
    forms) gathers embeddings across processes, so each anchor's negatives are the whole global
    batch, unless the loss config sets `gather_across_devices` itself.
    """
    partial = instantiate(constructor_config(loss_cfg))
    loss = partial(model=model, **gather_options(partial, world_size), **class_options(partial, num_classes))
    if modifier_cfg.get("_target_") is None:
        return loss
    return instantiate(constructor_config(modifier_cfg))(model=model, loss=loss)


def class_options(partial: functools.partial, num_classes: int | None) -> dict[str, int]:
    """`{"num_labels": num_classes}` for a loss that takes `num_labels` and whose config leaves it null."""
    if "num_labels" in partial.keywords and partial.keywords["num_labels"] is None:
        if not num_classes:
            raise ConfigError(
                "This loss sizes its classes by the data's class labels, and the data has none."
            )
        return {"num_labels": num_classes}
    return {}


def gather_options(partial: functools.partial, world_size: int) -> dict[str, bool]:
    """`{"gather_across_devices": True}` when several processes train and the loss class takes
    that argument and its config leaves it unset; otherwise no extra arguments."""
    takes_it = GATHER_ARGUMENT in inspect.signature(partial.func).parameters
    if world_size > 1 and takes_it and GATHER_ARGUMENT not in partial.keywords:
        return {GATHER_ARGUMENT: True}
    return {}
