"""InfoNCE with a temperature and label smoothing (open-retrievals' InfoNCE with a smoothed criterion).

What sentence-transformers already expresses: `MultipleNegativesRankingLoss` (MNRL) with its default
`directions=("query_to_doc",)` is InfoNCE over in-batch negatives (plus the negative columns): it
multiplies the cosine similarities by `scale` and takes the cross-entropy against each anchor's own
positive. Its `scale` is the inverse temperature (`scale = 1 / temperature`; `loss=mnrl
loss.scale=20` is InfoNCE at temperature 0.05), so a temperature alone needs no new loss.

What it cannot express: label smoothing. MNRL computes `-(positive_score - logsumexp(scores))`
with a one-hot target and has no argument that changes the target distribution (read in
sentence-transformers 6.2's `multiple_negatives_ranking.py`: its arguments are scale,
similarity_fct, gather_across_devices, directions, partition_mode, hardness_mode and
hardness_strength). `InfoNCELoss` adds it; with `label_smoothing=0` it is MNRL with
`scale=1/temperature` (tested to 1e-6).
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.util import all_gather_with_grad, cos_sim, get_rank
from torch import Tensor, nn


def info_nce_loss(
    anchors: Tensor,
    documents: Tensor,
    targets: Tensor,
    temperature: float = 0.05,
    label_smoothing: float = 0.0,
    similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
) -> Tensor:
    """Mean cross-entropy of each anchor's softmax over all documents, at `temperature`, against
    its own document smoothed by `label_smoothing`.

    Args:
        anchors: (B, d) anchor embeddings (any norm: cosine similarity is taken).
        documents: (M, d) candidate embeddings, every anchor scored against all of them.
        targets: (B,) int64: the row of `documents` that is anchor i's positive.
        temperature: logits are cosine similarity / temperature (> 0).
        label_smoothing: in [0, 1): the target puts 1 - label_smoothing + label_smoothing / M on
            the positive and label_smoothing / M on each other document (PyTorch's
            `cross_entropy(label_smoothing=...)`); documents scored -inf get none (M counts the others).
        similarity_fct: (B, d) x (M, d) -> (B, M) similarities (cosine; a masking wrapper may set scores
            to -inf to leave those documents out).

    Returns:
        The scalar loss.
    """
    logits = similarity_fct(anchors, documents) * (1.0 / temperature)
    if label_smoothing == 0 or torch.isfinite(logits).all():
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    # Documents scored -inf are left out: the smoothing mass goes to each row's other documents only.
    log_probs = torch.log_softmax(logits, dim=1)
    kept = torch.isfinite(logits)
    smooth = -log_probs.masked_fill(~kept, 0.0).sum(dim=1) / kept.sum(dim=1)
    nll = -log_probs.gather(1, targets[:, None]).squeeze(1)
    return ((1 - label_smoothing) * nll + label_smoothing * smooth).mean()


class InfoNCELoss(nn.Module):
    """InfoNCE over in-batch negatives with a temperature and label smoothing.

    Each anchor (first column) is scored by cosine similarity against every positive (second
    column) and every negative (further columns) of the batch; its target is its own positive,
    smoothed: `label_smoothing / M` of the target mass goes to each of the M candidates (in-batch
    positives of the other anchors and all negatives), so the loss stops pushing an anchor's
    similarity to a likely false negative towards -1. With `label_smoothing=0` this is
    sentence-transformers' `MultipleNegativesRankingLoss(scale=1 / temperature)`.

    Inputs: (anchor, positive), (anchor, positive, negative) or (anchor, positive, negative_1..n)
    rows; labels are ignored. Wrapped by `MatryoshkaLoss` it trains every truncation dimension
    (the embeddings it receives are truncated and re-normalized by the modifier).

    Args:
        model: the SentenceTransformer being trained.
        temperature: softmax temperature (> 0); `scale = 1 / temperature` in MNRL's terms.
        label_smoothing: in [0, 1), see `info_nce_loss`.
        gather_across_devices: under data-parallel training, score each anchor against the
            candidates of every process (as MNRL does); the harness sets it when several train.
        similarity_fct: (B, d) x (M, d) -> (B, M) similarities (default: cosine), as MNRL's.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        temperature: float = 0.05,
        label_smoothing: float = 0.0,
        gather_across_devices: bool = False,
        similarity_fct: Callable[[Tensor, Tensor], Tensor] = cos_sim,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"InfoNCELoss: temperature must be positive, got {temperature!r} (e.g. 0.05).")
        if not 0 <= label_smoothing < 1:
            raise ValueError(
                f"InfoNCELoss: label_smoothing must be in [0, 1), got {label_smoothing!r} (0: none; e.g. 0.1)."
            )
        self.model = model
        self.temperature = float(temperature)
        self.label_smoothing = float(label_smoothing)
        self.gather_across_devices = gather_across_devices
        self.similarity_fct = similarity_fct

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """The loss of per-column embeddings [anchors, positives, negatives_1, ...], each (B, d)."""
        if len(embeddings) < 2:
            raise ValueError(
                f"InfoNCELoss needs (anchor, positive, ...) columns, got {len(embeddings)} column."
            )
        anchors, candidates = embeddings[0], embeddings[1:]
        offset = 0
        if self.gather_across_devices:
            # Every process's candidates, with gradients flowing back to their own process; this
            # process's anchors' positives sit at its rank's slice of the gathered positives.
            candidates = [all_gather_with_grad(column) for column in candidates]
            offset = get_rank() * anchors.size(0)
        targets = torch.arange(offset, offset + anchors.size(0), device=anchors.device)
        return info_nce_loss(
            anchors,
            torch.cat(candidates),
            targets,
            self.temperature,
            self.label_smoothing,
            self.similarity_fct,
        )

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "label_smoothing": self.label_smoothing,
            "gather_across_devices": self.gather_across_devices,
        }

    @property
    def citation(self) -> str:
        return """
@misc{oord2019representationlearningcontrastivepredictive,
      title={Representation Learning with Contrastive Predictive Coding},
      author={Aaron van den Oord and Yazhe Li and Oriol Vinyals},
      year={2019},
      eprint={1807.03748},
      archivePrefix={arXiv},
      primaryClass={cs.LG},
      url={https://arxiv.org/abs/1807.03748},
}
@inproceedings{szegedy2016rethinking,
      title={Rethinking the Inception Architecture for Computer Vision},
      author={Christian Szegedy and Vincent Vanhoucke and Sergey Ioffe and Jon Shlens and Zbigniew Wojna},
      booktitle={CVPR},
      year={2016},
}
"""
