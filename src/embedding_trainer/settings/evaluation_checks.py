"""Checks of the evaluation settings and of embedding dimensions: they run before anything loads."""

import itertools
import math

from omegaconf import DictConfig, OmegaConf

from embedding_trainer.utils.errors import ConfigError


def check_model_dimension(cfg: DictConfig) -> None:
    """`model.dimension` is known (model=local reads it from the saved model: conf/model/local.yaml)."""
    if cfg.model.dimension is None:
        raise ConfigError(
            f"model.dimension is null: it is read from the saved model at model.name_or_path="
            f"{cfg.model.get('name_or_path')}, which is no local folder (or hub model in the local cache) whose "
            "module configs say it. Point model.name_or_path at a model folder, or set model.dimension=<its dimension>."
        )


def check_dims(dims: list[int], model_dimension: int, key: str) -> None:
    """Matryoshka dims are positive, strictly descending and at most the model's dimension."""
    dims = list(dims)
    if not dims or any(not isinstance(d, int) or d <= 0 for d in dims):
        raise ConfigError(f"{key} must be a non-empty list of positive integers, got {dims}.")
    if any(a <= b for a, b in itertools.pairwise(dims)):
        raise ConfigError(
            f"{key} must be strictly descending, got {dims}; for example {sorted(set(dims), reverse=True)}."
        )
    if dims[0] > model_dimension:
        raise ConfigError(
            f"{key}={dims} has {dims[0]}, larger than the model's embedding dimension {model_dimension}; "
            f"use dimensions of at most {model_dimension}."
        )


def check_evaluation_dims(cfg: DictConfig) -> None:
    """`evaluation.dims` pass `check_dims`; `evaluation.objective` names a metric (or null) and, when
    set, a selection of those dims."""
    check_model_dimension(cfg)
    check_dims(cfg.evaluation.dims, cfg.model.dimension, "evaluation.dims")
    metric = OmegaConf.select(cfg, "evaluation.objective.metric")
    if metric is not None and not isinstance(metric, str):
        raise ConfigError(
            f"evaluation.objective.metric must be a metric name such as ndcg@10 (or null: the evaluator's "
            f"primary metric), got {metric!r}."
        )
    objective_dims = OmegaConf.select(cfg, "evaluation.objective.dims")
    if objective_dims is None:
        return
    evaluated = list(cfg.evaluation.dims)
    if (
        not OmegaConf.is_list(objective_dims)
        or not objective_dims
        or any(d not in evaluated for d in objective_dims)
    ):
        shown = list(objective_dims) if OmegaConf.is_list(objective_dims) else objective_dims
        raise ConfigError(
            f"evaluation.objective.dims={shown} must be a non-empty list of evaluated dimensions, some of "
            f"evaluation.dims={evaluated} (or null: all of them); for example evaluation.objective.dims=[{evaluated[-1]}]."
        )


def check_bootstrap_confidence(cfg: DictConfig) -> None:
    """`evaluation.bootstrap.confidence` is a number strictly between 0 and 1."""
    confidence = OmegaConf.select(cfg, "evaluation.bootstrap.confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ConfigError(
            f"evaluation.bootstrap.confidence must be a number between 0 and 1 (exclusive), got {confidence!r}; "
            "for example 0.95."
        )


def check_guards(cfg: DictConfig) -> None:
    """`evaluation.general` is null or a `_target_` config with a finite number `general_max_drop`;
    `evaluation.health` is null or has a whole `probe_size` of at least 2 and `min_fraction` in [0, 1]."""
    general = OmegaConf.select(cfg, "evaluation.general")
    if general is not None:
        if not OmegaConf.is_dict(general) or "_target_" not in general:
            raise ConfigError(
                f"evaluation.general must be an evaluator config with a _target_ (default ${{sts_benchmark_evaluator}}) "
                f"or null (off), got {general!r}."
            )
        max_drop = OmegaConf.select(cfg, "evaluation.general_max_drop")
        if (
            isinstance(max_drop, bool)
            or not isinstance(max_drop, (int, float))
            or not math.isfinite(max_drop)
        ):
            raise ConfigError(
                f"evaluation.general_max_drop must be a number (the largest drop of the general evaluation's primary "
                f"metric that does not warn), got {max_drop!r}; for example 0.02."
            )
    health = OmegaConf.select(cfg, "evaluation.health")
    if health is None:
        return
    if not OmegaConf.is_dict(health):
        raise ConfigError(
            f"evaluation.health must be settings (probe_size, min_fraction) or null (off), got {health!r}."
        )
    size = OmegaConf.select(health, "probe_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ConfigError(
            f"evaluation.health.probe_size must be a whole number of at least 2 (texts to measure), got {size!r}; "
            "for example 512, or evaluation.health=null for no health metrics."
        )
    fraction = OmegaConf.select(health, "min_fraction")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ConfigError(
            f"evaluation.health.min_fraction must be a number in [0, 1], got {fraction!r}; for example 0.5."
        )
