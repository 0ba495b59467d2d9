"""How the known-relevance mask enters a loss (embedding_trainer.training.relevance_mask.masked_copy): the loss
is built anew through its public constructor with a masking similarity (GIST, whose constructor takes none:
masked by a hook during the forward only), the given loss is left as it was, modifiers are rebuilt with the same settings, the state-dict keys are those a
checkpoint saved before holds, and a wrapper it cannot rebuild is refused."""

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import (
    AdaptiveLayerLoss,
    CachedMultipleNegativesRankingLoss,
    GISTEmbedLoss,
    Matryoshka2dLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.util import cos_sim

from embedding_trainer.data.relevance import RelevanceSets
from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.training.loss_modules import InfoNCELoss
from embedding_trainer.training.regularizers import VarianceRegularizer
from embedding_trainer.training.relevance_mask import (
    KnownRelevanceLoss,
    MaskedSimilarity,
)

ROWS = [("q1 capital of france", "d1 paris"), ("q2 french capital", "d1 paris"), ("q3 a cat", "d2 cats purr")]
COLUMNS = ["anchor", "positive"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = build_tiny_model(str(tmp_path_factory.mktemp("tiny")), seed=3)
    return model.eval()


def sets() -> RelevanceSets:
    return RelevanceSets.of_pairs(ROWS, COLUMNS)


def scorer_of(loss: torch.nn.Module) -> torch.nn.Module:
    while isinstance(loss, (MatryoshkaLoss, AdaptiveLayerLoss)):
        loss = loss.loss
    return loss


LOSSES = {
    "mnrl": lambda model: MultipleNegativesRankingLoss(model, scale=30.0),
    "cached_mnrl": lambda model: CachedMultipleNegativesRankingLoss(model, mini_batch_size=2),
    "infonce": lambda model: InfoNCELoss(model, temperature=0.1),
    "matryoshka": lambda model: MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), [32, 8], [2, 1]),
    "adaptive_layer": lambda model: AdaptiveLayerLoss(
        model, MultipleNegativesRankingLoss(model), kl_div_weight=0.5
    ),
    "matryoshka_2d": lambda model: Matryoshka2dLoss(model, MultipleNegativesRankingLoss(model), [32, 16]),
}


@pytest.mark.parametrize("name", LOSSES)
def test_the_mask_enters_a_new_loss_through_its_constructor_and_the_given_one_is_left_as_it_was(tiny, name):
    given = LOSSES[name](tiny)
    masked = KnownRelevanceLoss(given, sets()).loss
    assert masked is not given and type(masked) is type(given)
    assert scorer_of(given).similarity_fct is cos_sim  # nothing of the given loss was changed
    assert isinstance(scorer_of(masked).similarity_fct, MaskedSimilarity)
    assert scorer_of(masked).similarity_fct.similarity_fct is cos_sim
    settings = {key: value for key, value in given.get_config_dict().items() if key != "similarity_fct"}
    assert settings.items() <= masked.get_config_dict().items()
    if isinstance(given, MatryoshkaLoss):
        assert (masked.matryoshka_dims, masked.matryoshka_weights) == ((32, 8), (2, 1))
    if isinstance(given, Matryoshka2dLoss):
        assert masked.loss.matryoshka_dims == given.loss.matryoshka_dims == (32, 16)
        assert type(masked.loss) is MatryoshkaLoss


def test_the_masked_copy_keeps_every_constructor_argument(tiny):
    given = MultipleNegativesRankingLoss(tiny, scale=30.0, directions=("query_to_doc", "doc_to_query"))
    masked = KnownRelevanceLoss(given, sets()).loss
    assert (masked.scale, masked.directions, masked.model) == (30.0, given.directions, tiny)


def test_gist_is_masked_only_during_the_wrapping_loss_forward(tiny):
    given = GISTEmbedLoss(tiny, tiny, temperature=0.05)
    wrapped = KnownRelevanceLoss(given, sets())
    assert wrapped.loss is given  # its constructor takes no similarity: wrapped itself
    rows = [{"anchor": anchor, "positive": positive} for anchor, positive in ROWS]
    features = [tiny.preprocess([row[column] for row in rows]) for column in COLUMNS]
    with torch.no_grad():
        wrapped(features, sets()(rows))
        assert wrapped.logged_terms()["masked_pairs"].item() == 2  # q1 and q2 x the other row's d1
        assert not given.similarity_fct._forward_hooks  # the masking hook is gone after the forward
        plain = GISTEmbedLoss(tiny, tiny, temperature=0.05)(features, torch.zeros(3))
        assert given(features, torch.zeros(3)).item() == plain.item()


@pytest.mark.parametrize("name", ["mnrl", "matryoshka", "matryoshka_2d"])
def test_state_dict_keys_are_those_of_a_checkpoint_saved_before(tiny, name):
    # Before, the mask wrapped the given loss itself (as `loss`), whose masked similarity holds no weights:
    # a checkpoint's keys were `loss.` + the loss's own keys.
    given = LOSSES[name](tiny)
    saved_before = {f"loss.{key}": value for key, value in given.state_dict().items()}
    wrapped = KnownRelevanceLoss(LOSSES[name](tiny), sets())
    assert set(wrapped.state_dict()) == set(saved_before)
    wrapped.load_state_dict(saved_before, strict=True)


def test_a_wrapper_it_cannot_build_anew_is_refused(tiny):
    regularized = VarianceRegularizer(tiny, MultipleNegativesRankingLoss(tiny), [32])
    with pytest.raises(ValueError, match="cannot build VarianceRegularizer anew"):
        KnownRelevanceLoss(regularized, sets())
