"""Several objectives in one run: `objectives.<name>` composes a dataset type, data, loss and modifier
of its own (conf/objectives/), with its loss's `weight` in the total and its primary metric's
`score_weight` in `val/score`. Without `objectives` a run is the one objective of the top-level groups.

Each objective is handled as the one-objective run it would be alone (`objective_view`): the same
checks, data module, evaluator and loss, built from that view."""

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, open_dict

from embedding_trainer.adapters.training import adapter_kind
from embedding_trainer.data.datamodule import EmbeddingDataModule
from embedding_trainer.data.hard_negatives import hard_negative_settings
from embedding_trainer.data.objectives import OBJECTIVE_SAMPLERS
from embedding_trainer.settings.family import EMBEDDING, loss_family
from embedding_trainer.training.declared import LoggedTerms, terms_of
from embedding_trainer.training.losses import class_name
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

OBJECTIVE_GROUPS = ("dataset_type", "data", "loss", "modifier")
SAMPLINGS = tuple(OBJECTIVE_SAMPLERS)


def objective_names(cfg: DictConfig) -> list[str]:
    """The run's objectives in config order (empty: a one-objective run of the top-level groups)."""
    return list(cfg.get("objectives") or {})


def objective_view(cfg: DictConfig, name: str) -> DictConfig:
    """`cfg` as the one-objective run of objective `name`: its dataset_type, data, loss and modifier
    in place of the top-level ones (interpolations such as `${model.matryoshka_dims}` resolve as there)."""
    view = copy.deepcopy(cfg)
    with open_dict(view):
        for group in OBJECTIVE_GROUPS:
            view[group] = cfg.objectives[name][group]
        view.objectives = None
    return view


def objective_weights(cfg: DictConfig, key: str) -> dict[str, float]:
    """Each objective's `key` (`weight` or `score_weight`; 1 when the objective does not set it)."""
    return {name: float(cfg.objectives[name].get(key, 1.0)) for name in objective_names(cfg)}


def check_objectives(cfg: DictConfig, validate: Callable[[DictConfig], None]) -> None:
    """Check the objectives' own settings, then run `validate` (the one-objective checks) on each
    objective's view; every ConfigError names the objective and where its keys live."""
    names = objective_names(cfg)
    if cfg.objective_sampling not in SAMPLINGS:
        raise ConfigError(
            f"objective_sampling must be one of {', '.join(SAMPLINGS)}, got {cfg.objective_sampling!r}."
        )
    single_objective_features = {  # key: (what it is, whether the run sets it)
        "teacher": ("knowledge distillation (teacher=...)", cfg.get("teacher") is not None),
        "adapter": ("a query adapter (adapter=...)", adapter_kind(cfg) is not None),
    }
    for key, (feature, used) in single_objective_features.items():
        if used:
            raise ConfigError(
                f"{feature} trains one objective: with objectives={names} leave {key} at its "
                "default, or train that objective alone."
            )
    for name in names:
        spec = cfg.objectives[name]
        where = f"objectives.{name}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{where}: an objective's name is a word of letters, digits and _; rename it.")
        missing = [group for group in OBJECTIVE_GROUPS if spec.get(group) is None]
        if missing:
            raise ConfigError(
                f"{where} lacks {', '.join(missing)}: an objective composes all of {', '.join(OBJECTIVE_GROUPS)} "
                "(see conf/objectives/retrieval.yaml)."
            )
        for key, least in (("weight", "above 0"), ("score_weight", "0 or more")):
            value = spec.get(key, 1.0)
            if not isinstance(value, (int, float)) or value < 0 or (key == "weight" and value == 0):
                raise ConfigError(f"{where}.{key} must be a number {least}, got {value!r}.")
        if hard_negative_settings(spec.data) is not None:
            raise ConfigError(
                f"{where}.data.hard_negatives: mined negatives are for one-objective runs; set "
                f"{where}.data.hard_negatives=null, or give that objective n-tuples (dataset_type n_tuple)."
            )
        try:
            validate(objective_view(cfg, name))
        except ConfigError as error:
            raise ConfigError(
                f"In objective {name!r} (its settings are {where}.<key>, e.g. {where}.data.batch_size): {error}"
            ) from None
    if sum(objective_weights(cfg, "score_weight").values()) == 0:
        raise ConfigError(
            "Every objective's score_weight is 0: give at least one a weight above 0 (val/score)."
        )
    weights = objective_weights(cfg, "weight")
    clip = cfg.trainer.get("gradient_clip_val")
    if clip and len(set(weights.values())) > 1:
        log.warning(
            f"Loss weights {weights} with trainer.gradient_clip_val={clip}: clipping scales each step's gradient "
            f"to a norm of at most {clip}, which undoes an objective's weight whenever its gradient is larger "
            "(every batch is one objective's). Set trainer.gradient_clip_val=null for the weights to act fully."
        )


@dataclass(frozen=True)
class ObjectiveSettings:
    """What training reads of one objective (the run's own when it has one objective; `name` None):

    - `loss`, `modifier`, `regularizer`: the Hydra nodes `build_loss` and `regularized` instantiate;
    - `penalized_dims`: the dimensions the regularizer penalises (the run's `matryoshka_dims` when the
      modifier truncates embeddings, else the model's full dimension);
    - `batch_size` (`data.batch_size`) and `weight` (its loss's weight in the total; 1 alone);
    - the loss's harness keys: `mask_known_relevance`, `in_batch_negatives`, `tie_encoder_decoder`, and
      the `model_family` it trains (`settings.family`: a cross-encoder's batches carry texts)."""

    name: str | None
    loss: DictConfig
    modifier: DictConfig
    regularizer: DictConfig
    penalized_dims: tuple[int, ...]
    batch_size: int
    weight: float = 1.0
    mask_known_relevance: bool = False
    in_batch_negatives: bool = False
    tie_encoder_decoder: bool = False
    model_family: str = EMBEDDING

    @property
    def loss_name(self) -> str:
        """The loss's class name (`MultipleNegativesRankingLoss`)."""
        return class_name(self.loss._target_)

    @classmethod
    def from_config(cls, cfg: DictConfig, name: str | None = None) -> "ObjectiveSettings":
        """Objective `name`'s settings in the composed (and checked) `cfg` (None: the run's one objective)."""
        view = cfg if name is None else objective_view(cfg, name)
        truncates = view.modifier.get("truncates_embeddings")
        return cls(
            name=name,
            loss=view.loss,
            modifier=view.modifier,
            regularizer=view.regularizer,
            penalized_dims=tuple(view.matryoshka_dims) if truncates else (int(view.model.dimension),),
            batch_size=int(view.data.batch_size),
            weight=1.0 if name is None else objective_weights(cfg, "weight")[name],
            mask_known_relevance=bool(view.loss.get("mask_known_relevance")),
            in_batch_negatives=bool(view.loss.get("in_batch_negatives")),
            tie_encoder_decoder=bool(view.loss.get("tie_encoder_decoder")),
            model_family=loss_family(view.loss),
        )


@dataclass
class ObjectivePart:
    """One objective's `settings` and the data module of its training rows (`data`)."""

    settings: ObjectiveSettings
    data: EmbeddingDataModule


class WeightedObjectiveLoss(torch.nn.Module, LoggedTerms):
    """The losses of several objectives. Every batch comes from one objective: its value is that
    objective's loss times its weight. `logged_terms()` holds the last batch's unweighted loss as
    `loss/<objective>` and NaN as the others' (logged at every step: a logger would otherwise repeat a
    key's last value at steps that did not log it), and the terms of the objective's loss that computed
    that batch (a regularizer's, the relevance mask's)."""

    def __init__(self, losses: dict[str, torch.nn.Module], weights: dict[str, float]) -> None:
        super().__init__()
        self.losses = torch.nn.ModuleDict(losses)
        self.weights = dict(weights)
        self.objective_losses: dict[str, torch.Tensor] = {}
        self.last_objective: str | None = None

    def forward(
        self, features: list[dict[str, torch.Tensor]], labels: torch.Tensor, objective: str
    ) -> torch.Tensor:
        loss_fn = self.losses[objective]
        loss = loss_fn(features, labels)
        nan = torch.full_like(loss.detach(), math.nan)
        self.objective_losses = {name: loss.detach() if name == objective else nan for name in self.losses}
        self.last_objective = objective
        return self.weights[objective] * loss

    def logged_terms(self) -> dict[str, torch.Tensor]:
        losses = {f"loss/{name}": value for name, value in self.objective_losses.items()}
        if self.last_objective is None:
            return losses
        return {**losses, **terms_of(self.losses[self.last_objective])}
