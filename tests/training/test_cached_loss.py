"""GradCache (cached_mnrl) gives the same loss and gradients as plain MNRL on the same batch."""

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)

from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.models import loading as models
from embedding_trainer.settings.resolvers import PROJECT_ROOT

pytestmark = pytest.mark.slow  # two tiny-model forward and backward passes per loss: ~13 s under load


def _loss_and_gradients(loss_class, batch, **kwargs):
    model = models.build_tiny_model(str(batch["cache"]), seed=5)
    model.eval()  # no dropout: both losses must see the same deterministic forward passes
    loss = loss_class(model, **kwargs)
    features = [model.preprocess(batch["anchor"]), model.preprocess(batch["positive"])]
    value = loss(features, torch.zeros(len(batch["anchor"])))
    value.backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return float(value.detach()), gradients


def test_cached_mnrl_equals_plain_mnrl(tmp_path):
    pairs = read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "train").pairs().select(range(48))
    batch = {"anchor": pairs["anchor"], "positive": pairs["positive"], "cache": tmp_path}
    plain_loss, plain_grads = _loss_and_gradients(MultipleNegativesRankingLoss, batch)
    cached_loss, cached_grads = _loss_and_gradients(
        CachedMultipleNegativesRankingLoss, batch, mini_batch_size=8
    )
    assert abs(plain_loss - cached_loss) < 1e-5
    assert plain_grads.keys() == cached_grads.keys() and len(plain_grads) > 10
    # Summation order differs (mini-batches), so compare by relative norm: over all parameters, and per
    # tensor against the overall scale (some, like attention key biases, have gradients that are ~0).
    plain = torch.cat([g.flatten() for g in plain_grads.values()])
    cached = torch.cat([cached_grads[name].flatten() for name in plain_grads])
    assert (plain - cached).norm() / plain.norm() < 1e-5
    scale = plain.abs().max()
    for name, gradient in plain_grads.items():
        assert (gradient - cached_grads[name]).abs().max() < 1e-4 * scale, name
