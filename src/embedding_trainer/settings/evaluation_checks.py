"""Checks of the evaluation settings and of embedding dimensions: they run before anything loads."""

import itertools
import math

from omegaconf import DictConfig, OmegaConf

from embedding_trainer.settings.renamed_keys import fold_renamed_keys
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
    """`evaluation.dims` pass `check_dims`; `evaluation.selection_score` names a metric (or null) and, when
    set, a selection of those dims. The renamed keys are folded first (`fold_renamed_keys`)."""
    fold_renamed_keys(cfg)
    check_model_dimension(cfg)
    check_dims(cfg.evaluation.dims, cfg.model.dimension, "evaluation.dims")
    metric = OmegaConf.select(cfg, "evaluation.selection_score.metric")
    if metric is not None and not isinstance(metric, str):
        raise ConfigError(
            f"evaluation.selection_score.metric must be a metric name such as ndcg@10 (or null: the evaluator's "
            f"primary metric), got {metric!r}."
        )
    score_dims = OmegaConf.select(cfg, "evaluation.selection_score.dims")
    if score_dims is None:
        return
    evaluated = list(cfg.evaluation.dims)
    if not OmegaConf.is_list(score_dims) or not score_dims or any(d not in evaluated for d in score_dims):
        shown = list(score_dims) if OmegaConf.is_list(score_dims) else score_dims
        raise ConfigError(
            f"evaluation.selection_score.dims={shown} must be a non-empty list of evaluated dimensions, some of "
            f"evaluation.dims={evaluated} (or null: all of them); for example evaluation.selection_score.dims=[{evaluated[-1]}]."
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
    """`evaluation.forgetting_guard` is null or a `_target_` config with a finite number `forgetting_max_drop`;
    `evaluation.health` is null or has a whole `probe_size` of at least 2 and `min_fraction` in [0, 1]."""
    guard = OmegaConf.select(cfg, "evaluation.forgetting_guard")
    if guard is not None:
        if not OmegaConf.is_dict(guard) or "_target_" not in guard:
            raise ConfigError(
                f"evaluation.forgetting_guard must be an evaluator config with a _target_ (default ${{sts_benchmark_evaluator}}) "
                f"or null (off), got {guard!r}."
            )
        max_drop = OmegaConf.select(cfg, "evaluation.forgetting_max_drop")
        if (
            isinstance(max_drop, bool)
            or not isinstance(max_drop, (int, float))
            or not math.isfinite(max_drop)
        ):
            raise ConfigError(
                f"evaluation.forgetting_max_drop must be a number (the largest drop of the forgetting guard's primary "
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
