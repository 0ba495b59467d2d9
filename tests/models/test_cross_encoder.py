"""Cross-encoders (rerankers) as a model family: a run trains the tiny cross-encoder through the phases with
sentence-transformers' cross-encoder losses, evaluates it before and after with sentence-transformers'
cross-encoder evaluators, and saves a folder that plain `CrossEncoder(path)` loads; a loss of the other
family, or an embedding-only part, is refused before anything loads."""

import json

import pytest
import torch
from hydra.utils import instantiate
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.cross_encoder import losses as ce_losses
from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

from conftest import FAST, assert_refused_before_the_model
from embedding_trainer.data.build import build_datamodule
from embedding_trainer.evaluation.cross_encoder import reranking_samples
from embedding_trainer.models import cross_encoder as cross_encoder_module
from embedding_trainer.models.cross_encoder import TextBatchCollator, build_tiny_cross_encoder
from embedding_trainer.train import train
from embedding_trainer.training.losses import build_loss
from embedding_trainer.utils.errors import ConfigError

CROSS = [*(o for o in FAST if not o.startswith("model=")), "model=tiny_cross_encoder"]


@pytest.fixture
def no_cross_encoder_loading(no_model_loading, monkeypatch):
    """Fail the test if anything builds a model, the tiny cross-encoder included."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(cross_encoder_module, "build_tiny_cross_encoder", refuse)


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["model=tiny_cross_encoder"], ["trains an embedding model", "is a cross-encoder", "loss=ce_mnrl"]),
        (
            ["loss=ce_mnrl"],
            ["trains a cross-encoder", "is an embedding model", "loss=mnrl", "model=cross_encoder"],
        ),
        (["model=tiny_cross_encoder", "loss=ce_bce"], ["accepts ['pair_binary', 'score']", "ce_mnrl"]),
        (["model=tiny_cross_encoder", "loss=ce_mnrl", "modifier=matryoshka"], ["modifier=none"]),
        (["model=tiny_cross_encoder", "loss=ce_mnrl", "teacher=tiny"], ["teacher=null"]),
        (
            ["model=tiny_cross_encoder", "loss=ce_mnrl", "data.hard_negatives.num_negatives=1"],
            ["data.hard_negatives.num_negatives=0"],
        ),
        (
            ["model=tiny_cross_encoder", "loss=ce_mnrl", "dataset_type=single"],
            ["dataset_type=single has no cross-encoder evaluator", "pair_binary"],
        ),
    ],
)
def test_family_mismatch_is_refused_before_anything_loads(
    make_cfg, earlier_run, no_cross_encoder_loading, overrides, fragments
):
    cfg = make_cfg(*FAST, *overrides)
    assert_refused_before_the_model(cfg, earlier_run, ConfigError, fragments)


def test_the_compatibility_message_lists_only_the_models_family(
    make_cfg, earlier_run, no_cross_encoder_loading
):
    cfg = make_cfg(*CROSS, "loss=ce_bce", "dataset_type=pair")
    with pytest.raises(ConfigError) as caught:
        train(cfg)
    assert "ce_mnrl" in str(caught.value) and "loss=mnrl" not in str(caught.value)


@pytest.mark.parametrize(
    ("dataset_type", "loss", "expected"),
    [
        ("pair_binary", "ce_bce", ce_losses.BinaryCrossEntropyLoss),
        ("score", "ce_mse", ce_losses.MSELoss),
        ("triplet", "ce_mnrl", ce_losses.MultipleNegativesRankingLoss),
    ],
)
def test_loss_equals_sentence_transformers_on_the_same_batch(make_cfg, dataset_type, loss, expected):
    """The configured loss on the data module's batch equals sentence-transformers' own loss class on the
    rows' columns (the texts in column order, the label column as labels)."""
    cfg = make_cfg(*CROSS, f"dataset_type={dataset_type}", f"loss={loss}", "data.max_samples=16")
    datamodule = build_datamodule(cfg, lambda: None)
    datamodule.load()
    model = build_tiny_cross_encoder(cfg.paths.cache_dir)
    model.eval()  # no dropout: the two passes see the same network
    built = build_loss(cfg.loss, cfg.modifier, model)
    assert type(built) is expected
    rows = [datamodule.train_dataset[i] for i in range(8)]
    collator = TextBatchCollator(datamodule.inputs or datamodule.text_columns, datamodule.label)
    texts, labels = collator(rows)
    reference_inputs = [[row[column] for row in rows] for column in datamodule.text_columns]
    torch.manual_seed(0)
    ours = built(texts, labels)
    torch.manual_seed(0)
    reference = expected(model)(
        reference_inputs, torch.tensor([row.get(datamodule.label, 0) for row in rows])
    )
    assert len(texts) == (3 if dataset_type == "triplet" else 2)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


@pytest.mark.slow  # 4 to 7 s: the tiny model scores 12 queries x 11 candidates twice
def test_reranking_evaluator_equals_sentence_transformers(make_cfg):
    """The run's reranking evaluation is sentence-transformers' CrossEncoderRerankingEvaluator on the eval
    rows' samples (each query's positives, then its negatives and 9 other queries' positives)."""
    cfg = make_cfg(*CROSS, "loss=ce_mnrl", "dataset_type=triplet", "data.max_eval_samples=12")
    datamodule = build_datamodule(cfg, lambda: None)
    datamodule.load()
    evaluator = instantiate(cfg.dataset_type.reranker_evaluator)(
        datamodule.eval_data, batch_size=4, show_progress_bar=False
    )
    model = build_tiny_cross_encoder(cfg.paths.cache_dir)
    samples = reranking_samples(datamodule.eval_data.rows, 9, cfg.seed)
    assert all(len(sample["negative"]) == 10 for sample in samples)  # its own negative and 9 others
    expected = CrossEncoderRerankingEvaluator(samples, at_k=10, write_csv=False)(model)
    assert evaluator(model, [1]) == {1: {name: float(value) for name, value in expected.items()}}


@pytest.mark.slow
def test_cross_encoder_run_trains_saves_and_loads(make_cfg, tmp_path):
    """A cross-encoder run (tiny model, ce_mnrl on pairs) trains, evaluates before and after, reports, and
    saves a folder `CrossEncoder(path)` loads, scoring pairs as the trained module's model does."""
    cfg = make_cfg(
        *CROSS,
        "loss=ce_mnrl",
        "trainer.fast_dev_run=false",
        "trainer.max_steps=3",
        "data.max_samples=48",
        "data.batch_size=16",
        "data.validation_size=null",
        "data.max_eval_samples=16",
        "data.min_steps=null",
    )
    before = build_tiny_cross_encoder(cfg.paths.cache_dir)
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 3
    assert isinstance(objects["module"].loss, ce_losses.MultipleNegativesRankingLoss)
    assert "val/reranking_ndcg@10_dim1" in metrics

    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["evaluator"] == "reranking"
    assert set(results["baseline"]["1"]) == set(results["finetuned"]["1"]) >= {"map", "mrr@10", "ndcg@10"}
    report = (tmp_path / "run" / "report.md").read_text()
    assert "ndcg@10" in report

    pairs = [("what is a cat", "a cat is a small animal"), ("who wrote it", "the river is long")]
    trained = objects["model"]
    trained.eval()
    saved = CrossEncoder(objects["model_path"])
    torch.testing.assert_close(
        torch.tensor(saved.predict(pairs)), torch.tensor(trained.predict(pairs)), rtol=0, atol=1e-6
    )
    assert not torch.allclose(torch.tensor(before.predict(pairs)), torch.tensor(saved.predict(pairs)))
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "CrossEncoder(" in card and "cross-encoder" in card
