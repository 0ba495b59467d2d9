"""Checks of the composed config that run before any model or data loads."""

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embedding_trainer.errors import ConfigError
from embedding_trainer.resolvers import CONFIG_DIR


def option_names(group: str, where: Callable[[DictConfig], bool]) -> list[str]:
    """Options of config group `group` (file names under conf/<group>) whose raw YAML satisfies `where`."""
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml") if where(OmegaConf.load(path)))


def check_loss_accepts_dataset_type(cfg: DictConfig) -> None:
    """The loss declares the dataset type in `accepts`; else list the losses that do."""
    dataset_type = cfg.dataset_type.name
    if dataset_type not in cfg.loss.accepts:
        fitting = option_names("loss", lambda loss: dataset_type in loss.get("accepts", []))
        raise ConfigError(
            f"loss {cfg.loss._target_.rsplit('.', 1)[-1]} cannot train on dataset_type={dataset_type}: it "
            f"accepts {list(cfg.loss.accepts)}. Losses for dataset_type={dataset_type}: {', '.join(fitting)} "
            f"(choose with loss=<name>)."
        )


def check_modifier_wraps_loss(cfg: DictConfig) -> None:
    """Modifiers that change the forward pass per layer cannot wrap a gradient-cache loss."""
    if cfg.loss.gradient_cache and not cfg.modifier.wraps_gradient_cache:
        modifier = cfg.modifier._target_.rsplit(".", 1)[-1]
        working = option_names("modifier", lambda modifier_cfg: modifier_cfg.get("wraps_gradient_cache", False))
        raise ConfigError(
            f"{modifier} cannot wrap a cached (GradCache) loss such as "
            f"{cfg.loss._target_.rsplit('.', 1)[-1]}: sentence-transformers runs its per-layer passes outside "
            f"the cache. Use modifier={' or modifier='.join(working)}, or the loss's non-cached form."
        )


def check_modifier_keeps_dimension(cfg: DictConfig) -> None:
    """Losses with a head over the full embedding cannot be trained on truncated embeddings."""
    if cfg.loss.get("fixed_dimension") and cfg.modifier.get("truncates_embeddings"):
        loss = cfg.loss._target_.rsplit(".", 1)[-1]
        working = option_names("modifier", lambda modifier_cfg: not modifier_cfg.get("truncates_embeddings", False))
        raise ConfigError(
            f"{cfg.modifier._target_.rsplit('.', 1)[-1]} truncates embeddings, but {loss} reads full-dimension "
            f"embeddings (a classifier or decoder over all {cfg.model.dimension} dims). "
            f"Use modifier={' or modifier='.join(working)}."
        )


def check_class_names(cfg: DictConfig) -> None:
    """A loss with a classifier head (num_labels) needs the class names, in label order."""
    if "num_labels" in cfg.loss and not OmegaConf.select(cfg, "data.class_names"):
        raise ConfigError(
            f"loss {cfg.loss._target_.rsplit('.', 1)[-1]} trains a classifier over data.class_names, which is "
            "not set: list the classes in label order, for example 'data.class_names=[negative,positive]'."
        )


def check_dims(dims: list[int], model_dimension: int, key: str) -> None:
    """Matryoshka dims are positive, strictly descending and at most the model's dimension."""
    dims = list(dims)
    if not dims or any(not isinstance(d, int) or d <= 0 for d in dims):
        raise ConfigError(f"{key} must be a non-empty list of positive integers, got {dims}.")
    if any(a <= b for a, b in zip(dims, dims[1:])):
        raise ConfigError(f"{key} must be strictly descending, got {dims}; for example {sorted(set(dims), reverse=True)}.")
    if dims[0] > model_dimension:
        raise ConfigError(
            f"{key}={dims} has {dims[0]}, larger than the model's embedding dimension {model_dimension}; "
            f"use dimensions of at most {model_dimension}."
        )


def check_resume(ckpt_path: str | None) -> None:
    """A checkpoint to resume from must exist."""
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist; give the path of a .ckpt file or ckpt_path=null.")


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError for a config that cannot work, before anything expensive happens."""
    check_loss_accepts_dataset_type(cfg)
    check_modifier_wraps_loss(cfg)
    check_modifier_keeps_dimension(cfg)
    check_class_names(cfg)
    dims_key = "modifier.matryoshka_dims" if "matryoshka_dims" in cfg.modifier else "model.matryoshka_dims"
    check_dims(cfg.matryoshka_dims, cfg.model.dimension, dims_key)
    if cfg.data.batch_size < 1:
        raise ConfigError(f"data.batch_size must be at least 1, got {cfg.data.batch_size}.")
    check_resume(cfg.ckpt_path)
