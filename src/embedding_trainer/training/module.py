"""The LightningModule: a SentenceTransformer trained with a sentence-transformers loss."""

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from sentence_transformers import SentenceTransformer

from embedding_trainer.training.declared import terms_of

NO_DECAY_MARKERS = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


class EmbeddingModule(pl.LightningModule):
    """Holds the model and its (possibly modified) loss; each training step feeds one batch of
    `(features, labels)` from `LossBatchCollator` to the loss, or with several objectives one batch of
    `(features, labels, objective)` to a `WeightedObjectiveLoss`.

    Args:
        model: the SentenceTransformer being trained (saved at the end as a plain folder).
        loss: a sentence-transformers loss built around `model`; its own parameters train too.
            `train/loss` is its value; a `LoggedTerms` loss has each of its terms logged as
            `train/<name>` (a regularizer's `reg/<penalty>`, several objectives' `loss/<objective>`,
            the relevance mask's `masked_pairs`).
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
        for name, value in terms_of(self.loss).items():
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
