"""Query adapters over frozen embeddings (adapter=linear, adapter=two_layer) through the real
train(cfg) on the tiny model: bad settings stop before any model loads; only the adapter trains, on
embeddings computed once (no transformer runs with gradients), the eval corpus encoded once for both
the training vectors and the baseline; the saved folder routes queries through the adapter while
`encode_document` returns exactly the frozen model's embeddings; evaluate.py scores it as training did."""

import json

import datasets
import pytest
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Router, Transformer

from conftest import FAST, assert_same_metrics
from embedding_trainer.adapters.loss import QueryAdapterLoss
from embedding_trainer.adapters.modules import linear_adapter
from embedding_trainer.adapters.router import query_adapter
from embedding_trainer.adapters.training import AdapterSettings, adapted_model, adapter_settings
from embedding_trainer.adapters.vectors import TrainingDocuments, VectorBatchCollator
from embedding_trainer.data.build import build_datamodule
from embedding_trainer.data.relevance import RelevanceSets
from embedding_trainer.evaluate import evaluate
from embedding_trainer.models.loading import build_tiny_model
from embedding_trainer.train import train
from embedding_trainer.training.declared import BatchNeeds
from embedding_trainer.utils.errors import ConfigError, ModelLoadError
from embedding_trainer.utils.fingerprints import encoder_fingerprint
from embedding_trainer.utils.text_vectors import TextVectors

TEXTS = ["what is the capital of france", "Paris is the capital of France.", "a cat sat on the mat"]
# Two epochs of 4 batches, a rate that moves a linear adapter visibly in 8 steps.
ADAPTER_RUN = [
    "model=tiny",
    "logger=none",
    "evaluation.show_progress_bar=false",
    "data.max_samples=64",
    "data.max_eval_samples=32",
    "data.batch_size=16",
    "trainer.max_epochs=2",
    "model.normalize=true",
    "model.lr=0.05",
]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["adapter.kind=mlp"], "adapter.kind='mlp' is not an adapter"),
        (["dataset_type=score", "loss=cosent"], "dataset_type=score has none"),
        (["loss=cached_mnrl"], "use loss=mnrl"),
        (["modifier=adaptive_layer"], "modifier AdaptiveLayerLoss works on the encoder's layers"),
        (["model/lora=default"], "adapter and model.lora both choose what trains"),
        (["adapter=two_layer", "adapter.hidden_dimension=0"], "adapter.hidden_dimension=0"),
        (["adapter.negatives=mined"], "adapter.negatives='mined': use batch"),
        (["regularizer=variance"], "use regularizer=none"),
    ],
    ids=["kind", "dataset_type", "loss", "modifier", "lora", "hidden", "negatives", "regularizer"],
)
def test_bad_adapter_settings_fail_before_any_model_loads(make_cfg, no_model_loading, overrides, fragment):
    with pytest.raises(ConfigError) as caught:
        train(make_cfg(*FAST, "adapter=linear", *overrides))
    assert fragment in str(caught.value)


def test_the_adapter_settings_are_read_once_into_typed_settings(make_cfg, model_cache):
    assert adapter_settings(make_cfg(*FAST)) is None
    assert adapter_settings(make_cfg(*FAST, "adapter=linear")) == AdapterSettings("linear", None, "corpus")
    settings = adapter_settings(make_cfg(*FAST, "adapter=two_layer", "adapter.hidden_dimension=8"))
    assert settings == AdapterSettings("two_layer", 8, "corpus")
    model = adapted_model(build_tiny_model(str(model_cache)), settings)
    trained = {id(parameter) for parameter in model.parameters() if parameter.requires_grad}
    assert trained == {id(parameter) for parameter in query_adapter(model).parameters()}
    assert query_adapter(model).hidden_dimension == 8


def test_the_data_module_batches_frozen_vectors_given_through_its_contract(make_cfg):
    """The adapter's collator is given through `use_collator`, and no other labels may be asked of it."""
    datamodule = build_datamodule(make_cfg(*FAST))
    datamodule.load()
    collator = VectorBatchCollator({}, ["anchor", "positive"])
    datamodule.use_collator(collator)
    assert datamodule.global_batches(world_size=1)[1] is collator
    other = build_datamodule(make_cfg(*FAST))
    other.load()
    other.use_batch_needs(BatchNeeds(text_ids=RelevanceSets.of_pairs([], ["anchor", "positive"])))
    with pytest.raises(RuntimeError, match="already another loss input"):
        other.use_collator(collator)


def test_the_loss_is_in_batch_ranking_of_adapted_queries_summed_over_dims():
    """QueryAdapterLoss equals cross-entropy over cosine x scale of adapted queries against the
    batch's documents (positives, then negatives), summed over the truncated dimensions."""
    generator = torch.Generator().manual_seed(0)
    queries, positives, negatives = (torch.randn(4, 8, generator=generator) for _ in range(3))
    adapter = linear_adapter(8)
    with torch.no_grad():
        adapter.linear.weight.add_(0.3 * torch.randn(8, 8, generator=generator))
    adapted = queries @ adapter.linear.weight.T + adapter.linear.bias
    expected = 0.0
    for dim in (8, 4):
        q = torch.nn.functional.normalize(adapted[:, :dim], dim=-1)
        d = torch.nn.functional.normalize(torch.cat([positives, negatives])[:, :dim], dim=-1)
        expected = expected + torch.nn.functional.cross_entropy(20.0 * q @ d.T, torch.arange(4))
    found = QueryAdapterLoss(adapter, 20.0, [8, 4])([queries, positives, negatives], torch.zeros(4))
    torch.testing.assert_close(found, expected)


def test_ranking_against_every_training_document_leaves_out_other_known_positives():
    """With the training documents as candidates, each query's cross-entropy picks its positive among
    all of them except its anchor's other positives (a second positive is not a negative); the
    collator's labels say which."""
    rows = [
        {"anchor": "q1", "positive": "d1"},
        {"anchor": "q1", "positive": "d2"},
        {"anchor": "q2", "positive": "d3"},
    ]
    table = datasets.Dataset.from_list(rows)
    generator = torch.Generator().manual_seed(0)
    vectors = TextVectors(torch.randn(3, 8, generator=generator), {"d1": 0, "d2": 1, "d3": 2})
    documents = TrainingDocuments.of(table, ["anchor", "positive"], vectors)
    labels = documents.labels(rows, "anchor", "positive")
    assert labels.tolist() == [[0, 1], [1, 0], [2, -1]]
    queries = torch.randn(3, 8, generator=generator)
    adapter = linear_adapter(8)
    found = QueryAdapterLoss(adapter, 20.0, None, documents.embeddings)([queries], labels)
    logits = 20.0 * F.normalize(queries, dim=-1) @ F.normalize(vectors.embeddings, dim=-1).T
    expected = [
        F.cross_entropy(logits[0, [0, 2]], torch.tensor(0)),  # d2 left out for q1 -> d1
        F.cross_entropy(logits[1, [1, 2]], torch.tensor(0)),  # d1 left out for q1 -> d2
        F.cross_entropy(logits[2], torch.tensor(2)),
    ]
    torch.testing.assert_close(found, torch.stack(expected).mean())


@pytest.mark.parametrize("kind", ["linear", "two_layer"])
@pytest.mark.slow
def test_only_the_adapter_trains_on_cached_embeddings_and_the_saved_model_keeps_documents_frozen(
    make_cfg, tmp_path, monkeypatch, kind
):
    base = build_tiny_model(str(tmp_path / "cache"), normalize=True)
    with_gradients = []
    transformer_forward = Transformer.forward

    def recording(self, *args, **kwargs):
        with_gradients.append(torch.is_grad_enabled())
        return transformer_forward(self, *args, **kwargs)

    monkeypatch.setattr(Transformer, "forward", recording)
    run = make_cfg(
        *ADAPTER_RUN, f"adapter={kind}", f"paths.cache_dir={tmp_path / 'cache'}", output_dir=tmp_path / "run"
    )
    _, objects = train(run)
    assert with_gradients and not any(with_gradients), "the transformer ran in a training step"

    module, model = objects["module"], objects["model"]
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert trainable and all(".query.3." in name for name in trainable), sorted(trainable)
    optimized = {id(p) for group in objects["trainer"].optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.parameters() if p.requires_grad}
    # The frozen model encoded each text set once, all through one cache: the training queries, the
    # eval queries and the corpus (which holds every training document: the training vectors read it,
    # and so did the baseline); every evaluation ran the adapter alone on them (no other entries).
    assert encoder_fingerprint(model, "document") == encoder_fingerprint(base)  # the encoder never changed
    embeddings = tmp_path / "cache" / "embeddings"
    assert [folder.name for folder in embeddings.iterdir()] == [encoder_fingerprint(base)]
    assert len(list((embeddings / encoder_fingerprint(base)).glob("*.npy"))) == 3
    if kind == "linear":  # the same run again: every text is stored, the transformer never runs
        with_gradients.clear()
        again = [*ADAPTER_RUN, "adapter=linear", f"paths.cache_dir={tmp_path / 'cache'}"]
        train(make_cfg(*again, output_dir=tmp_path / "again"))
        assert with_gradients == []

    saved = SentenceTransformer(objects["model_path"], trust_remote_code=kind == "two_layer")
    assert isinstance(saved[0], Router)
    torch.testing.assert_close(saved.encode_document(TEXTS), base.encode_document(TEXTS), atol=1e-6, rtol=0)
    moved = saved.encode_query(TEXTS, convert_to_tensor=True) - base.encode_query(
        TEXTS, convert_to_tensor=True
    )
    assert moved.abs().max() > 1e-3  # the adapter trained and the query route applies it
    torch.testing.assert_close(
        saved.encode(TEXTS), base.encode(TEXTS), atol=1e-6, rtol=0
    )  # default: documents
    finetuned = json.loads((tmp_path / "run" / "results.json").read_text())["finetuned"]
    assert finetuned != json.loads((tmp_path / "run" / "results.json").read_text())["baseline"]
    # evaluate.py scores the saved model as training did; a two-layer adapter is this package's code,
    # which loads only when trusted (a linear one is sentence-transformers' own Dense: it always loads)
    local = [
        "model=local",
        f"model.name_or_path={objects['model_path']}",
        "model.dimension=32",
        "evaluation.dims=[32,16,8]",
    ]
    if kind == "two_layer":
        with pytest.raises(ModelLoadError, match="set model.encoder.trust_remote_code=true"):
            evaluate(make_cfg(*FAST, *local, output_dir=tmp_path / "refused", config_name="evaluate"))
        local.append("model.encoder.trust_remote_code=true")
    evaluate(make_cfg(*FAST, *local, output_dir=tmp_path / "saved", config_name="evaluate"))
    evaluated = json.loads((tmp_path / "saved" / "results.json").read_text())["evaluated"]
    assert_same_metrics(evaluated, finetuned)
