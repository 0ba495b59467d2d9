"""The variance penalty (regularizer=variance): its value and gradient against hand-computed ones, the
embeddings it sees inside MatryoshkaLoss, a real run logging its terms, and bad settings refused."""

import math

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

from conftest import FAST, logged_rows
from embedding_trainer.models.loading import load_model
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.train import train
from embedding_trainer.training.objectives import ObjectiveSettings
from embedding_trainer.training.regularizers import (
    VarianceRegularizer,
    at_dimension,
    covariance_penalty,
    variance_penalty,
)
from embedding_trainer.utils.errors import ConfigError

# Three rows, two dimensions: column 0 is 0, 1, 2 (std 1), column 1 is 0, 0.5, 1 (std 0.5).
BATCH = [[0.0, 0.0], [1.0, 0.5], [2.0, 1.0]]


def test_variance_penalty_and_its_gradient_match_the_hand_computed_ones():
    x = torch.tensor(BATCH, requires_grad=True)
    penalty = variance_penalty(x, target=1.5, eps=0.0)
    # relu(1.5 - 1) and relu(1.5 - 0.5), averaged over the two dimensions.
    assert penalty.item() == pytest.approx((0.5 + 1.0) / 2)
    penalty.backward()
    # d/dx_ij = -(1/d) (x_ij - mean_j) / ((n - 1) std_j): column 0 -(1/2)(x - 1)/2, column 1 -(1/2)(x - 0.5)/1.
    expected = torch.tensor([[0.25, 0.25], [0.0, 0.0], [-0.25, -0.25]])
    assert torch.allclose(x.grad, expected)


def test_variance_penalty_is_zero_with_no_gradient_when_every_spread_reaches_the_target():
    x = torch.tensor(BATCH, requires_grad=True)
    penalty = variance_penalty(x, target=0.4, eps=0.0)
    penalty.backward()
    assert penalty.item() == 0.0 and torch.count_nonzero(x.grad) == 0


def test_covariance_penalty_and_its_gradient_match_the_hand_computed_ones():
    x = torch.tensor(BATCH, requires_grad=True)
    penalty = covariance_penalty(x)
    # cov(0, 1) = ((-1)(-0.5) + 0 + (1)(0.5)) / 2 = 0.5; two off-diagonal entries, squared, over d = 2.
    assert penalty.item() == pytest.approx(2 * 0.5**2 / 2)
    penalty.backward()
    # d/dx_aj = (4 / d) sum_{k != j} cov_jk (x_ak - mean_k) / (n - 1).
    expected = torch.tensor([[-0.25, -0.5], [0.0, 0.0], [0.25, 0.5]])
    assert torch.allclose(x.grad, expected)


def test_normalized_embeddings_are_scaled_to_unit_root_mean_square_per_dimension():
    x = torch.tensor([[3.0, 4.0, 12.0], [1.0, 0.0, 0.0]])
    scaled = at_dimension(x, 2, normalize=True)
    assert torch.allclose(scaled, torch.tensor([[0.6, 0.8], [1.0, 0.0]]) * math.sqrt(2))
    assert torch.equal(at_dimension(x, 2, normalize=False), x[:, :2])


def penalized_dims(cfg) -> list[int]:
    """The dimensions the regularizer penalises in the run of `cfg` (`ObjectiveSettings.penalized_dims`)."""
    return list(ObjectiveSettings.from_config(cfg).penalized_dims)


def _features(model, texts: list[str]) -> dict[str, torch.Tensor]:
    return model.preprocess(texts)


def test_inside_matryoshka_the_penalty_sees_each_column_once_at_full_dimension_summed_over_dims(make_cfg):
    cfg = make_cfg("model=tiny", "regularizer=variance", "regularizer.covariance_weight=0.5")
    # no dropout: the reference below encodes the same embeddings
    model = load_model(ModelSettings.from_config(cfg.model)).eval()
    dims = penalized_dims(cfg)
    assert dims == list(cfg.matryoshka_dims) == [32, 16, 8]
    inner = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model), dims)
    regularizer = VarianceRegularizer(model, inner, dims, weight=2.0, covariance_weight=0.5)
    columns = [
        _features(model, ["a cat", "a dog", "the sea", "blue sky"]),
        _features(model, ["cats purr", "dogs bark", "waves crash", "clouds drift"]),
    ]
    labels = torch.zeros(4)

    total = regularizer(columns, labels)

    with torch.no_grad():
        embeddings = [model(dict(column))["sentence_embedding"] for column in columns]
        loss = inner(columns, labels)
    scaled = [at_dimension(e, d, normalize=True) for e in embeddings for d in dims]
    expected = {  # summed over the dims, averaged over the two columns
        "variance": sum(variance_penalty(x, target=1.0, eps=1e-4) for x in scaled) / 2,
        "covariance": sum(covariance_penalty(x) for x in scaled) / 2,
    }
    assert set(regularizer.logged_terms()) == {"reg/variance", "reg/covariance"}
    for name, value in expected.items():
        assert regularizer.logged_terms()[f"reg/{name}"].item() == pytest.approx(value.item(), rel=1e-5)
    assert total.item() == pytest.approx(
        loss.item() + 2.0 * expected["variance"].item() + 0.5 * expected["covariance"].item(), rel=1e-5
    )
    total.backward()  # the penalty's gradient reaches the encoder through the loss's own forward pass
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_without_a_matryoshka_modifier_the_penalty_is_at_full_dimension(make_cfg):
    assert penalized_dims(make_cfg("model=tiny", "modifier=none", "regularizer=variance")) == [32]
    assert penalized_dims(make_cfg("model=tiny", "modifier=adaptive_layer", "regularizer=variance")) == [32]


@pytest.mark.slow
def test_a_run_with_the_variance_penalty_logs_its_terms_beside_the_total_loss(make_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = make_cfg(
        "model=tiny",
        "regularizer=variance",
        "regularizer.covariance_weight=0.1",
        "logger=csv",
        "callbacks=none",
        "evaluation.show_progress_bar=false",
        "evaluation.baseline=false",
        "data.max_samples=32",
        "data.max_eval_samples=16",
        "data.batch_size=8",
        "trainer.max_steps=3",
        "trainer.log_every_n_steps=1",
        output_dir=run,
    )
    train(cfg)
    rows = [row for row in logged_rows(run) if row.get("train/loss")]
    assert len(rows) == 3
    for row in rows:
        variance, covariance = float(row["train/reg/variance"]), float(row["train/reg/covariance"])
        assert variance > 0 and covariance > 0 and math.isfinite(float(row["train/loss"]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["regularizer.weight=-1"], "regularizer.weight must be a number at least 0"),
        (["regularizer.covariance_weight=-0.5"], "regularizer.covariance_weight must be a number at least 0"),
        (["regularizer.target=0"], "regularizer.target must be a number greater than 0"),
        (["regularizer.eps=nan"], "regularizer.eps must be a number greater than 0"),
        (["regularizer.weight=0"], "both 0"),
        (["loss=cached_mnrl"], "use the loss's non-cached form"),
    ],
)
def test_bad_regularizer_settings_are_refused_before_the_model_loads(
    make_cfg, no_model_loading, overrides, message
):
    cfg = make_cfg(*FAST, "regularizer=variance", *overrides)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        train(cfg)
