"""Checks of the composed config that run before any model or data loads."""

import math
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import SchedulerType

from embedding_trainer.adapters.training import check_adapter
from embedding_trainer.data.settings import check_data_sources, check_validation_data
from embedding_trainer.data.stages import check_stages, trained_dataset_type
from embedding_trainer.models.lora import check_lora
from embedding_trainer.runs.checkpoints import check_keep
from embedding_trainer.settings.evaluation_checks import (
    check_bootstrap_confidence,
    check_dims,
    check_evaluation_dims,
    check_guards,
    check_model_dimension,
)
from embedding_trainer.settings.family import (
    CROSS_ENCODER,
    EMBEDDING_ONLY,
    FAMILY_MODELS,
    FAMILY_NAMES,
    loss_family,
    model_family,
    selected,
)
from embedding_trainer.settings.renamed_keys import fold_renamed_keys
from embedding_trainer.settings.resolvers import CONFIG_DIR
from embedding_trainer.training.early_stopping import check_early_stopping
from embedding_trainer.training.losses import class_name
from embedding_trainer.training.objectives import check_objectives, objective_names
from embedding_trainer.training.regularizers import check_regularizer
from embedding_trainer.training.relevance_mask import check_relevance_mask
from embedding_trainer.utils.errors import ConfigError


def option_names(group: str, where: Callable[[DictConfig], bool]) -> list[str]:
    """Options of config group `group` (file names under conf/<group>) whose raw YAML satisfies `where`."""
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml") if where(OmegaConf.load(path)))


def check_required(cfg: DictConfig) -> None:
    """Every mandatory value (`???`) of the chosen options is set."""
    missing = list(_missing_keys(OmegaConf.to_container(cfg, resolve=False), ""))
    if missing:
        raise ConfigError(
            f"Set {', '.join(missing)} on the command line ({missing[0]}=...): the chosen options leave "
            "them to you (their YAML under conf/ says what each is)."
        )


def _missing_keys(node, prefix: str):
    if node == "???":
        yield prefix
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _missing_keys(value, f"{prefix}.{key}" if prefix else str(key))


def check_loss_accepts_dataset_type(cfg: DictConfig) -> None:
    """The loss declares the dataset type in `accepts`; else list the losses that do. A data stage may
    change the type (pairs with mined negatives are n-tuples by the time the loss sees them): its own
    check (`check_stages`) checks that the loss takes those."""
    dataset_type = cfg.dataset_type.name
    if trained_dataset_type(cfg) != dataset_type:
        return
    if dataset_type not in cfg.loss.accepts:
        family = loss_family(cfg.loss)
        fitting = option_names(
            "loss", lambda loss: dataset_type in loss.get("accepts", []) and loss_family(loss) == family
        )
        raise ConfigError(
            f"loss {class_name(cfg.loss._target_)} cannot train on dataset_type={dataset_type}: it "
            f"accepts {list(cfg.loss.accepts)}. Losses for dataset_type={dataset_type}: {', '.join(fitting)} "
            f"(choose with loss=<name>)."
        )


def check_model_family(cfg: DictConfig) -> None:
    """The loss trains the model's family (`models.cross_encoder`), and a cross-encoder runs on a dataset
    type it has an evaluator for (`reranker_evaluator`) without the embedding-only parts (`EMBEDDING_ONLY`:
    a Matryoshka modifier, a teacher, LoRA, an adapter, a regularizer, several objectives); else a
    ConfigError saying what to change."""
    model, loss = model_family(cfg.model), loss_family(cfg.loss)
    dataset_type = cfg.dataset_type.name
    if model != loss:
        fitting = option_names(
            "loss", lambda option: loss_family(option) == model and dataset_type in option.get("accepts", [])
        )
        raise ConfigError(
            f"The loss {cfg.loss._target_} trains {FAMILY_NAMES[loss]}, but the model is "
            f"{FAMILY_NAMES[model]}: choose a loss for it on dataset_type={dataset_type} "
            f"(loss={', loss='.join(fitting) or '<none fits this dataset type>'}) or {FAMILY_NAMES[loss]} "
            f"({FAMILY_MODELS[loss]})."
        )
    if model != CROSS_ENCODER:
        return
    if cfg.dataset_type.get("reranker_evaluator") is None:
        fitting = option_names("dataset_type", lambda option: "reranker_evaluator" in option)
        raise ConfigError(
            f"dataset_type={dataset_type} has no cross-encoder evaluator (reranker_evaluator): train a "
            f"cross-encoder on dataset_type={' or '.join(fitting)}."
        )
    for part, (key, fix) in EMBEDDING_ONLY.items():
        if selected(cfg, key):
            raise ConfigError(f"A cross-encoder trains without a {part} ({key} is set): add {fix}.")


def check_modifier_wraps_loss(cfg: DictConfig) -> None:
    """Modifiers that change the forward pass per layer cannot wrap a gradient-cache loss."""
    if cfg.loss.gradient_cache and not cfg.modifier.wraps_gradient_cache:
        modifier = class_name(cfg.modifier._target_)
        working = option_names(
            "modifier", lambda modifier_cfg: modifier_cfg.get("wraps_gradient_cache", False)
        )
        raise ConfigError(
            f"{modifier} cannot wrap a cached (GradCache) loss such as "
            f"{class_name(cfg.loss._target_)}: sentence-transformers runs its per-layer passes outside "
            f"the cache. Use modifier={' or modifier='.join(working)}, or the loss's non-cached form."
        )


def check_modifier_keeps_dimension(cfg: DictConfig) -> None:
    """Losses with a head over the full embedding cannot be trained on truncated embeddings."""
    if cfg.loss.get("fixed_dimension") and cfg.modifier.get("truncates_embeddings"):
        loss = class_name(cfg.loss._target_)
        working = option_names(
            "modifier", lambda modifier_cfg: not modifier_cfg.get("truncates_embeddings", False)
        )
        raise ConfigError(
            f"{class_name(cfg.modifier._target_)} truncates embeddings, but {loss} reads full-dimension "
            f"embeddings (a classifier or decoder over all {cfg.model.dimension} dims). "
            f"Use modifier={' or modifier='.join(working)}."
        )


def check_class_names(cfg: DictConfig) -> None:
    """A loss with a classifier head (num_labels) needs the class names, in label order."""
    sized_by_config = OmegaConf.to_container(cfg.loss, resolve=False).get("num_labels") is not None
    if sized_by_config and not OmegaConf.select(cfg, "data.class_names"):
        raise ConfigError(
            f"loss {class_name(cfg.loss._target_)} trains a classifier over data.class_names, which is "
            "not set: list the classes in label order, for example 'data.class_names=[negative,positive]'."
        )


# Integer settings: (key, smallest allowed value, whether null is allowed).
COUNTS = (
    ("data.batch_size", 1, False),
    ("data.max_samples", 1, True),
    ("data.max_eval_samples", 1, True),
    ("data.max_length", 1, True),
    ("data.negatives_per_anchor", 1, True),
    ("data.min_steps", 1, True),
    ("data.num_workers", 0, False),
    ("evaluation.batch_size", 1, False),
    ("evaluation.every_n_steps", 1, True),
    ("evaluation.bootstrap.resamples", 0, False),
    ("evaluation.bootstrap.seed", 0, False),
    ("trainer.accumulate_grad_batches", 1, False),
)


def check_counts(cfg: DictConfig) -> None:
    """Sizes and counts (`COUNTS`) are whole numbers no smaller than their minimum (or null where allowed)."""
    for key, smallest, nullable in COUNTS:
        value = OmegaConf.select(cfg, key)
        if value is None and nullable:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
            allowed = f"a whole number of at least {smallest}" + (" or null" if nullable else "")
            raise ConfigError(f"{key} must be {allowed}, got {value!r}.")


def check_learning_rate(cfg: DictConfig) -> None:
    """The optimizer's learning rate is a positive finite number."""
    lr = OmegaConf.select(cfg, "optimizer.lr")
    if lr is None:
        return
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(
            f"The learning rate must be a positive number, got optimizer.lr={lr!r} (set from model.lr). "
            f"Set model.lr, for example model.lr=2e-5."
        )


def check_scheduler(cfg: DictConfig) -> None:
    """The scheduler's name is a transformers schedule and its warmup ratio is in [0, 1)."""
    name = OmegaConf.select(cfg, "scheduler.name")
    known = [kind.value for kind in SchedulerType]
    if name is not None and name not in known:
        raise ConfigError(
            f"scheduler.name={name!r} is not a transformers schedule; use one of {', '.join(known)}."
        )
    ratio = OmegaConf.select(cfg, "scheduler.warmup_ratio")
    if ratio is not None and (
        isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1
    ):
        raise ConfigError(
            f"scheduler.warmup_ratio is the fraction of training spent warming up and must be in [0, 1), got "
            f"{ratio!r}; for example scheduler.warmup_ratio=0.1."
        )


def checkpoint_state_keys(ckpt_path: str) -> set[str]:
    """The model weights' names in a Lightning checkpoint this harness wrote (memory-mapped: cheap).

    Raises:
        ConfigError: the file is missing, is no PyTorch checkpoint, or not one of an EmbeddingModule.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path} does not exist; give the path of a .ckpt file or ckpt_path=null. (A "
            "finished run keeps checkpoints/last.ckpt only when it ran with checkpoints.keep=last or all.)"
        )
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as error:  # torch.load fails in many ways on files that are not checkpoints
        raise ConfigError(
            f"ckpt_path={ckpt_path} is not a PyTorch checkpoint ({type(error).__name__}: {str(error)[:200]}). "
            "Give a Lightning checkpoint written by this harness, such as <run folder>/checkpoints/last.ckpt."
        ) from None
    state_dict = state.get("state_dict") if isinstance(state, dict) else None
    if (
        not isinstance(state_dict, dict)
        or "pytorch-lightning_version" not in state
        or not any(key.startswith("model.") for key in state_dict)
    ):
        raise ConfigError(
            f"ckpt_path={ckpt_path} is a PyTorch file but not a Lightning checkpoint of this harness (no "
            "Lightning state with the model's weights). Give <run folder>/checkpoints/last.ckpt of a run, or "
            "start a model from saved weights with model.encoder.name_or_path=<model folder>."
        )
    return set(state_dict)


def check_checkpoint_fits(ckpt_path: str, module: torch.nn.Module) -> None:
    """The checkpoint's weights are those of `module` (the same model and loss as the run it came from)."""
    found, expected = checkpoint_state_keys(ckpt_path), set(module.state_dict())
    if found != expected:
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        raise ConfigError(
            f"ckpt_path={ckpt_path} holds the weights of another model or loss than this run's: it lacks "
            f"{len(missing)} of this run's weights (e.g. {missing[:3]}) and has {len(unexpected)} others (e.g. "
            f"{unexpected[:3]}). Use the model= (and model.lora), loss= and modifier= of the run that wrote "
            "it (its config_resolved.yaml or .hydra/overrides.yaml says which)."
        )


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError for a config that cannot work, before anything expensive happens; a renamed
    key's value moves to its new key first (`fold_renamed_keys`)."""
    fold_renamed_keys(cfg)
    if objective_names(cfg):  # several objectives: these checks on each objective's own view
        check_objectives(cfg, validate_config)
        return
    check_required(cfg)
    check_model_family(cfg)
    check_loss_accepts_dataset_type(cfg)
    check_modifier_wraps_loss(cfg)
    check_modifier_keeps_dimension(cfg)
    check_class_names(cfg)
    check_model_dimension(cfg)
    dims_key = "modifier.matryoshka_dims" if "matryoshka_dims" in cfg.modifier else "model.matryoshka_dims"
    check_dims(cfg.matryoshka_dims, cfg.model.dimension, dims_key)
    check_evaluation_dims(cfg)
    check_counts(cfg)
    check_bootstrap_confidence(cfg)
    check_guards(cfg)
    check_learning_rate(cfg)
    check_scheduler(cfg)
    check_stages(cfg)
    check_data_sources(cfg, training=True)
    check_validation_data(cfg)
    check_lora(cfg)
    check_adapter(cfg)
    check_regularizer(cfg)
    check_relevance_mask(cfg)
    check_early_stopping(cfg)
    check_keep(cfg.checkpoints.keep)
    if cfg.ckpt_path is not None:
        checkpoint_state_keys(cfg.ckpt_path)
