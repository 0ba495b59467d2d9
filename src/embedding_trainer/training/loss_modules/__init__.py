"""Losses that sentence-transformers lacks, written as sentence-transformers loss modules.

Each file holds one loss: a pure function of the embeddings (what the loss computes) and an
`nn.Module` with the sentence-transformers loss interface (`__init__(model, ...)`,
`forward(sentence_features, labels)`, `get_config_dict`, `citation`), so sentence-transformers'
modifiers (`MatryoshkaLoss`, `AdaptiveLayerLoss`, `Matryoshka2dLoss`) wrap them like their own.
"""

from embedding_trainer.training.loss_modules.arcface import ArcFaceLoss, arcface_loss
from embedding_trainer.training.loss_modules.infonce import InfoNCELoss, info_nce_loss

__all__ = ["ArcFaceLoss", "InfoNCELoss", "arcface_loss", "info_nce_loss"]
