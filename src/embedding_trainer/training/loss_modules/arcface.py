"""Additive angular margin (ArcFace) loss for (sentence, class) data (open-retrievals'
`ArcFaceAdaptiveMarginLoss`, after InsightFace).

sentence-transformers has no classification loss over single sentences with learned class centers:
its single_class losses are the batch triplet losses, which compare the rows of a batch with each
other. ArcFace compares each sentence with one learned center per class instead.
"""

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from torch import Tensor, nn

# Cosines are kept this far inside [-1, 1]: the sine's gradient is infinite at |cos| = 1.
COSINE_EPSILON = 1e-6


def arcface_loss(
    embeddings: Tensor, class_weights: Tensor, labels: Tensor, margin: float = 0.5, scale: float = 30.0
) -> Tensor:
    """Mean cross-entropy over `scale * logits`, where a sentence's logit for class j is cos(theta_j),
    theta_j the angle between the sentence and class j's center, and for its own class
    cos(theta + margin).

    Where theta + margin would pass pi (theta > pi - margin), cos(theta + margin) would rise again
    with theta; there the true-class logit is cos(theta) - margin * sin(margin) instead, as in
    InsightFace's ArcFace (`easy_margin=False`).

    Args:
        embeddings: (B, d) sentence embeddings (any norm: normalized here).
        class_weights: (C, d) one center per class (any norm: normalized here).
        labels: (B,) int64 class indices in [0, C).
        margin: the additive angular margin m in radians (>= 0; 0: normalized softmax, NormFace).
        scale: the radius s of the hypersphere the logits live on (> 0).

    Returns:
        The scalar loss, computed in float32 (float64 if either input is).
    """
    dtype = torch.promote_types(torch.promote_types(embeddings.dtype, class_weights.dtype), torch.float32)
    cosine = F.normalize(embeddings.to(dtype), dim=-1) @ F.normalize(class_weights.to(dtype), dim=-1).T
    cosine = cosine.clamp(-1 + COSINE_EPSILON, 1 - COSINE_EPSILON)
    target = cosine.gather(1, labels.long().view(-1, 1))
    sine = torch.sqrt(1.0 - target * target)
    with_margin = target * math.cos(margin) - sine * math.sin(margin)  # cos(theta + m)
    with_margin = torch.where(
        target > math.cos(math.pi - margin), with_margin, target - margin * math.sin(margin)
    )
    logits = cosine.scatter(1, labels.long().view(-1, 1), with_margin) * scale
    return F.cross_entropy(logits, labels.long())


class ArcFaceLoss(nn.Module):
    """ArcFace: a cross-entropy over the angles between each sentence and learned class centers,
    with an additive angular margin on the sentence's own class.

    Inputs: (sentence, class) rows, the labels class indices in [0, num_labels). The centers are a
    (num_labels, embedding_dimension) parameter that trains with the model (it is not saved with it;
    evaluation uses the embeddings only). Wrapped by `MatryoshkaLoss`, embeddings truncated to d
    dimensions are compared with the first d dimensions of every center (re-normalized), so one set
    of centers serves every truncation dimension.

    The centers start as orthonormal rows: with a fine-tuning learning rate (AdamW, about 5e-5) they
    move little, so they start as spread out as possible.

    Args:
        model: the SentenceTransformer being trained.
        num_labels: the number of classes.
        margin: the additive angular margin m in radians (>= 0, < pi).
        scale: the logit scale s (> 0).
        embedding_dimension: the centers' dimension (null: the model's embedding dimension).
    """

    def __init__(
        self,
        model: SentenceTransformer,
        num_labels: int,
        margin: float = 0.5,
        scale: float = 30.0,
        embedding_dimension: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(
                f"ArcFaceLoss: num_labels must be a whole number of at least 2, got {num_labels!r}."
            )
        if not 0 <= margin < math.pi:
            raise ValueError(f"ArcFaceLoss: margin (radians) must be in [0, pi), got {margin!r} (e.g. 0.5).")
        if not scale > 0:
            raise ValueError(f"ArcFaceLoss: scale must be positive, got {scale!r} (e.g. 30).")
        dimension = embedding_dimension or model.get_embedding_dimension()
        if not dimension:
            raise ValueError(
                "ArcFaceLoss: the model does not report its embedding dimension; set embedding_dimension."
            )
        self.model = model
        self.num_labels = num_labels
        self.margin = float(margin)
        self.scale = float(scale)
        self.embedding_dimension = int(dimension)
        self.weight = nn.Parameter(torch.empty(num_labels, self.embedding_dimension))
        nn.init.orthogonal_(self.weight)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        embeddings = self.model(next(iter(sentence_features)))["sentence_embedding"]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The loss of (B, d) embeddings with d <= embedding_dimension (the centers' first d dims)."""
        dimension = embeddings.size(-1)
        if dimension > self.embedding_dimension:
            raise ValueError(
                f"ArcFaceLoss: embeddings have {dimension} dimensions, its class centers "
                f"{self.embedding_dimension}; set embedding_dimension to the model's dimension."
            )
        return arcface_loss(embeddings, self.weight[:, :dimension], labels, self.margin, self.scale)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "num_labels": self.num_labels,
            "margin": self.margin,
            "scale": self.scale,
            "embedding_dimension": self.embedding_dimension,
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{deng2019arcface,
      title={ArcFace: Additive Angular Margin Loss for Deep Face Recognition},
      author={Jiankang Deng and Jia Guo and Niannan Xue and Stefanos Zafeiriou},
      booktitle={CVPR},
      year={2019},
      eprint={1801.07698},
      archivePrefix={arXiv},
      primaryClass={cs.CV},
      url={https://arxiv.org/abs/1801.07698},
}
"""
