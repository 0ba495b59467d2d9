"""The variance penalty (`regularizer=variance`): VICReg's variance and covariance terms added to any
loss, on the embeddings the loss itself computes.

The embeddings are captured with a forward hook on the SentenceTransformer's last module while the
wrapped loss runs, so nothing is encoded twice and the penalty's gradient flows through the same
graph as the loss's. That module runs once per real forward pass: under MatryoshkaLoss, which reuses
its first pass for the smaller dimensions, once per input column (or group of merged columns); under
AdaptiveLayerLoss, also once per earlier layer it trains, and those layers' embeddings are penalised too.
"""

import math

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sentence_transformers import SentenceTransformer

from embedding_trainer.training.declared import (
    BatchNeeds,
    DeclaresBatchNeeds,
    LoggedTerms,
    needs_of,
    terms_of,
)
from embedding_trainer.training.losses import class_name, constructor_config
from embedding_trainer.utils.errors import ConfigError


def variance_penalty(embeddings: torch.Tensor, target: float, eps: float) -> torch.Tensor:
    """Mean over dimensions of relu(target - sqrt(var + eps)), var each dimension's unbiased variance
    over the rows of `embeddings` (n >= 2 rows, d columns): zero when every dimension's spread reaches
    `target`."""
    std = torch.sqrt(embeddings.var(dim=0) + eps)
    return F.relu(target - std).mean()


def covariance_penalty(embeddings: torch.Tensor) -> torch.Tensor:
    """Sum of the squared off-diagonal entries of the (unbiased) covariance matrix of `embeddings`
    (n >= 2 rows, d columns), divided by d: zero when the dimensions are uncorrelated."""
    centered = embeddings - embeddings.mean(dim=0)
    covariance = centered.T @ centered / (len(embeddings) - 1)
    off_diagonal = covariance - torch.diag(covariance.diagonal())
    return off_diagonal.pow(2).sum() / embeddings.shape[1]


def at_dimension(embeddings: torch.Tensor, dim: int, normalize: bool) -> torch.Tensor:
    """The first `dim` components of each row; with `normalize`, scaled to length sqrt(dim) (unit
    root-mean-square coordinates, so an isotropic spread has a standard deviation of about 1 per
    dimension whatever `dim` is)."""
    truncated = embeddings[:, :dim]
    return F.normalize(truncated, dim=-1) * math.sqrt(dim) if normalize else truncated


class VarianceRegularizer(torch.nn.Module, LoggedTerms, DeclaresBatchNeeds):
    """`loss` plus `weight` x the variance penalty plus `covariance_weight` x the covariance penalty
    of every batch of embeddings `model` computes during `loss`'s forward (batches of fewer than two
    rows are skipped), each summed over `dims` (the embeddings truncated to each, as MatryoshkaLoss
    sums its loss over them) and averaged over the batches.

    After each forward, `logged_terms()` holds the unweighted penalties (detached) as `reg/variance` and,
    when `covariance_weight` is set, `reg/covariance`, with the wrapped loss's own terms; its batches
    carry what the wrapped loss needs.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        loss: torch.nn.Module,
        dims: list[int],
        weight: float = 1.0,
        target: float = 1.0,
        eps: float = 1e-4,
        covariance_weight: float = 0.0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.dims = list(dims)
        self.weight = weight
        self.target = target
        self.eps = eps
        self.covariance_weight = covariance_weight
        self.normalize = normalize
        self.penalties_logged: dict[str, torch.Tensor] = {}

    def forward(self, sentence_features, labels: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        last_module = list(self.model.children())[-1]
        handle = last_module.register_forward_hook(
            lambda module, inputs, output: captured.append(output["sentence_embedding"])
        )
        try:
            loss = self.loss(sentence_features, labels)
        finally:
            handle.remove()
        terms = self.penalties([batch for batch in captured if len(batch) >= 2])
        self.penalties_logged = {f"reg/{name}": value.detach() for name, value in terms.items()}
        total = loss + self.weight * terms["variance"]
        if "covariance" in terms:
            total = total + self.covariance_weight * terms["covariance"]
        return total

    def logged_terms(self) -> dict[str, torch.Tensor]:
        return {**terms_of(self.loss), **self.penalties_logged}

    def batch_needs(self) -> BatchNeeds:
        return needs_of(self.loss)

    def penalties(self, batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The unweighted penalties of `batches` (full-dimension embeddings, each of >= 2 rows):
        `variance`, and `covariance` when its weight is set."""
        if not batches or not all(batch.requires_grad for batch in batches):
            raise RuntimeError(
                f"{type(self.loss).__name__} computed no embeddings with gradients in its forward pass, so "
                "the variance penalty has nothing to act on; use regularizer=none with this loss."
            )
        names = ["variance", *(["covariance"] if self.covariance_weight else [])]
        sums = dict.fromkeys(names, 0.0)
        for batch in batches:
            for dim in self.dims:
                scaled = at_dimension(batch.float(), dim, self.normalize)
                sums["variance"] = sums["variance"] + variance_penalty(scaled, self.target, self.eps)
                if "covariance" in sums:
                    sums["covariance"] = sums["covariance"] + covariance_penalty(scaled)
        return {name: value / len(batches) for name, value in sums.items()}


def regularized(
    loss: torch.nn.Module, regularizer: DictConfig, dims: list[int], model: SentenceTransformer
) -> torch.nn.Module:
    """`loss` wrapped by the regularizer the `regularizer` node names (`regularizer=none`: `loss` itself),
    penalising `model`'s embeddings at `dims` (`ObjectiveSettings.penalized_dims`)."""
    if regularizer.get("_target_") is None:
        return loss
    return instantiate(constructor_config(regularizer))(model=model, loss=loss, dims=list(dims))


# Numeric settings of a regularizer: (key, whether zero is allowed).
SETTINGS = (("weight", True), ("covariance_weight", True), ("target", False), ("eps", False))


def check_regularizer(cfg: DictConfig) -> None:
    """A regularizer's weights are finite numbers >= 0 (not both 0), its `target` and `eps` > 0, and its
    loss computes embeddings with gradients in its forward pass (not a cached, GradCache loss)."""
    regularizer = cfg.regularizer
    if regularizer.get("_target_") is None:
        return
    values = OmegaConf.to_container(regularizer, resolve=True)
    for key, zero_allowed in SETTINGS:
        value = values.get(key)
        if value is None:
            continue
        number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if not number or value < 0 or (value == 0 and not zero_allowed):
            bound = "at least 0" if zero_allowed else "greater than 0"
            raise ConfigError(f"regularizer.{key} must be a number {bound}, got {value!r}.")
    if not values.get("weight", 1.0) and not values.get("covariance_weight", 0.0):
        raise ConfigError(
            "regularizer.weight and regularizer.covariance_weight are both 0, so the regularizer adds "
            "nothing: set one of them above 0, or use regularizer=none."
        )
    if cfg.loss.get("gradient_cache"):
        raise ConfigError(
            "The regularizer needs the embeddings the loss computes with gradients, but the cached loss "
            f"{class_name(cfg.loss._target_)} embeds without them and re-embeds during the backward "
            "pass: use the loss's non-cached form (e.g. loss=mnrl for loss=cached_mnrl), or regularizer=none."
        )
