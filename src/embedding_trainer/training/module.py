"""The LightningModule: a SentenceTransformer trained with a sentence-transformers loss."""

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from sentence_transformers import SentenceTransformer

NO_DECAY_MARKERS = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


class EmbeddingModule(pl.LightningModule):
    """Holds the model and its (possibly modified) loss; each training step feeds one batch of
    `(features, labels)` from `LossBatchCollator` to the loss, or with several objectives one batch of
    `(features, labels, objective)` to a `WeightedObjectiveLoss`.

    Args:
        model: the SentenceTransformer being trained (saved at the end as a plain folder).
        loss: a sentence-transformers loss built around `model`; its own parameters train too. A loss
            with a `logged_terms` dict (a regularizer) has each term logged as `train/reg/<name>`;
            `train/loss` is the total. One with an `objective_losses` dict (several objectives) has
            each logged as `train/loss/<objective>` (unweighted; `train/loss` is weighted). A part of the
            loss with `step_metrics` (the relevance mask's `masked_pairs`) has each of the batch it just
            computed logged as `train/<name>`.
        optimizer: partial optimizer taking parameter groups (bias and norm weights get no decay).
        scheduler: partial taking (optimizer, total_steps), or None for a constant learning rate.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        loss: torch.nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def on_train_epoch_start(self) -> None:
        # Hugging Face submodules load in eval mode and Lightning keeps modes as found:
        # without this, dropout stays off during training.
        self.train()

    def on_train_start(self) -> None:
        # A run resumed mid-epoch does not call on_train_epoch_start for that epoch.
        self.train()

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        features, labels, *objective = batch  # several objectives: the name of the batch's, last
        loss = self.loss(features, labels, *objective)
        # The mean over ranks: each rank holds the loss of its own slice of the global batch.
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels), sync_dist=True)
        for name, value in getattr(self.loss, "objective_losses", {}).items():  # several objectives' losses
            self.log(f"train/loss/{name}", value, batch_size=len(labels), sync_dist=True)
        for name, value in getattr(self.loss, "logged_terms", {}).items():  # a regularizer's penalties
            self.log(f"train/reg/{name}", value, batch_size=len(labels), sync_dist=True)
        for name, value in step_metrics(self.loss).items():  # e.g. the relevance mask's masked_pairs
            self.log(f"train/{name}", value, batch_size=len(labels), sync_dist=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=len(labels))
        return loss

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                (no_decay if any(marker in name for marker in NO_DECAY_MARKERS) else decay).append(parameter)
        optimizer = self.optimizer_factory([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, total_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def step_metrics(loss: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The `step_metrics` of the parts of `loss` that computed the current batch, emptied once taken
    (with several objectives only the batch's objective's loss ran)."""
    taken = {}
    for part in loss.modules():
        taken.update(getattr(part, "step_metrics", {}))
        if hasattr(part, "step_metrics"):
            part.step_metrics = {}
    return taken
