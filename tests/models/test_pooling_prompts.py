"""Pooling and prompts: a plain Hugging Face transformer becomes a SentenceTransformer with the chosen
pooling (each mode equal to pooling the transformer's outputs by hand) and normalization; query and
document prompts reach the training columns of their role (tokenized once with the text), every
evaluator, and the saved model (`encode_query`, `encode_document`, evaluate.py)."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
from transformers import AutoModel, AutoTokenizer

from conftest import FAST, assert_same_metrics
from embedding_trainer.data.build import build_datamodule
from embedding_trainer.evaluate import evaluate
from embedding_trainer.evaluation import SimilarityEvaluator, TripletEvaluator
from embedding_trainer.models import loading as models
from embedding_trainer.models.prompts import prompt_text
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ModelLoadError

QUERY, DOCUMENT = "query: ", "passage: "
PROMPTED = [f"model.prompts.query='{QUERY}'", f"model.prompts.document='{DOCUMENT}'"]
TEXTS = ["a short one", "a somewhat longer sentence about the sea and the rain", "cats", "two words"]


def manual_pooling(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """`mode` pooling of right-padded token embeddings [batch, tokens, dim] under `mask` [batch, tokens]."""
    weights = mask.unsqueeze(-1).float()
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(weights == 0, float("-inf")).amax(dim=1)
    if mode == "lasttoken":
        return hidden[torch.arange(len(hidden)), mask.sum(dim=1) - 1]
    if mode == "weightedmean":
        weights = weights * torch.arange(1, hidden.shape[1] + 1).view(1, -1, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1)


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalized"])
@pytest.mark.parametrize("mode", ["mean", "cls", "max", "lasttoken", "weightedmean"])
def test_each_pooling_mode_pools_the_transformer_outputs(model_cache, mode, normalize):
    folder = models.tiny_transformer_folder(str(model_cache))
    model = models.from_transformer(
        str(folder), pooling=mode, normalize=normalize, model_kwargs={"add_pooling_layer": False}
    )
    assert [type(module) for module in model] == [Transformer, Pooling, *([Normalize] if normalize else [])]
    assert model[1].pooling_mode == mode and model.get_embedding_dimension() == 32

    tokenizer, transformer = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    tokens = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = manual_pooling(transformer(**tokens).last_hidden_state, tokens["attention_mask"], mode)
    if normalize:
        expected = F.normalize(expected, dim=-1)
    embeddings = model.encode(TEXTS, convert_to_tensor=True, show_progress_bar=False)
    torch.testing.assert_close(embeddings, expected, atol=1e-5, rtol=1e-5)


def test_an_unknown_pooling_mode_fails_before_anything_loads():
    with pytest.raises(ModelLoadError, match="model.pooling='avg'.*weightedmean, lasttoken"):
        models.from_transformer("no/such-model", pooling="avg")


def test_prompts_go_to_the_model_and_none_keeps_its_own(model_cache):
    model = models.build_tiny_model(str(model_cache), prompts={"query": QUERY, "document": None})
    assert model.prompts["query"] == QUERY and model.prompts["document"] == ""
    models.set_prompts(model, {"query": None, "document": DOCUMENT})
    assert model.prompts["query"] == QUERY and model.prompts["document"] == DOCUMENT
    models.set_prompts(model, {"query": ""})
    assert model.prompts["query"] == ""


# Each training column's prompt: the anchor is a query, positives and negatives are documents; both
# sides of symmetric data are queries; TSDAE's reconstruction target gets none.
TRAINING = [
    ("triplet", "mnrl", {"anchor": QUERY, "positive": DOCUMENT, "negative": DOCUMENT}),
    (
        "n_tuple",
        "mnrl",
        {"anchor": QUERY, "positive": DOCUMENT, **{f"negative_{i}": DOCUMENT for i in (1, 2, 3)}},
    ),
    ("score", "cosent", {"sentence_A": QUERY, "sentence_B": QUERY}),
    ("denoising", "denoising_autoencoder", {"damaged_sentence": QUERY, "original_sentence": None}),
]


@pytest.mark.parametrize("tokenize_once", [True, False], ids=["token_cache", "per_batch"])
@pytest.mark.parametrize(("dataset_type", "loss", "prompts"), TRAINING, ids=[t[0] for t in TRAINING])
@pytest.mark.slow
def test_training_columns_are_tokenized_with_the_prompt_of_their_role(
    make_cfg, model_cache, dataset_type, loss, prompts, tokenize_once
):
    cfg = make_cfg(
        *FAST,
        f"dataset_type={dataset_type}",
        f"loss={loss}",
        f"data.tokenize_once={tokenize_once}",
        "data.group_by_length=false",  # grouping counts tokens through the token cache
    )
    datamodule = build_datamodule(cfg)
    datamodule.load()
    model = models.build_tiny_model(str(model_cache), prompts={"query": QUERY, "document": DOCUMENT})
    datamodule.use_model(model)
    loader = datamodule.train_dataloader()
    assert (datamodule.token_cache is not None) == tokenize_once
    rows = [datamodule.train_dataset[index] for index in range(8)]
    features, _ = loader.collate_fn(rows)
    assert len(features) == len(prompts) == len(datamodule.text_columns)
    max_length = datamodule.settings.batching.max_length
    truncation = {"max_length": max_length} if max_length else {}
    for column, got in zip(datamodule.text_columns, features):
        expected = model.preprocess([row[column] for row in rows], prompt=prompts[column], **truncation)
        assert expected.keys() == got.keys(), column
        for key, value in expected.items():
            assert torch.equal(value, got[key]) if isinstance(value, torch.Tensor) else value == got[key], key


def spy_encode(evaluator) -> list[tuple[list[str], str | None]]:
    """A list that records (texts, the prompt they get) of every `evaluator.encode` call."""
    calls = []
    encode = evaluator.encode

    def recording(model, texts, role="query"):
        calls.append((texts, prompt_text(model.prompts, role)))
        return encode(model, texts, role)

    evaluator.encode = recording
    return calls


def test_evaluators_encode_queries_and_documents_with_their_prompts(model_cache):
    model = models.build_tiny_model(str(model_cache), prompts={"query": QUERY, "document": DOCUMENT})
    triplet = TripletEvaluator(["q1", "q2"], ["p1", "p2"], [["n1", "p2"]], show_progress_bar=False)
    calls = spy_encode(triplet)
    triplet(model, [32])
    assert calls == [(["q1", "q2"], QUERY), (["p1", "p2", "n1"], DOCUMENT)]
    similarity = SimilarityEvaluator(
        ["a", "b", "c"], ["b", "c", "d"], [0.1, 0.5, 0.9], show_progress_bar=False
    )
    calls = spy_encode(similarity)
    similarity(model, [32])
    assert calls == [(["a", "b", "c", "d"], QUERY)]  # symmetric: both sides as queries, each text once


@pytest.mark.slow
def test_a_plain_transformer_with_pooling_and_prompts_trains_saves_and_evaluates(
    make_cfg, model_cache, tmp_path
):
    """model=hf on a plain BERT folder: last-token pooling, normalized, with prompts, trained on
    retrieval pairs; the saved model holds the modules and prompts (`encode_query` applies them), and
    evaluate.py scores it as training scored it (with the saved prompts: without them the numbers
    differ, see test_retrieval_metrics)."""
    folder = models.tiny_transformer_folder(str(model_cache))
    hf = [
        "model=hf",
        f"model.name_or_path={folder}",
        "model.dimension=32",
        "model.pooling=lasttoken",
        "model.normalize=true",
        "model.encoder.max_seq_length=64",
        "model.encoder.model_kwargs={add_pooling_layer: false}",
        "model.lr=0.01",
    ]
    _, objects = train(
        make_cfg(*FAST, *hf, *PROMPTED, "evaluation.dims=[32,16]", output_dir=tmp_path / "run")
    )
    saved = SentenceTransformer(objects["model_path"])
    assert [type(module) for module in saved] == [Transformer, Pooling, Normalize]
    assert saved[1].pooling_mode == "lasttoken"
    assert saved.prompts["query"] == QUERY and saved.prompts["document"] == DOCUMENT
    torch.testing.assert_close(saved.encode_query(TEXTS), saved.encode(TEXTS, prompt=QUERY))
    torch.testing.assert_close(saved.encode_document(TEXTS), saved.encode(TEXTS, prompt=DOCUMENT))
    card = (Path(objects["model_path"]) / "README.md").read_text()
    assert "model.encode_query(" in card and "model.encode_document(" in card and repr(QUERY) in card
    finetuned = json.loads((tmp_path / "run" / "results.json").read_text())["finetuned"]

    local = ["model=local", f"model.name_or_path={objects['model_path']}", "model.dimension=32"]
    cfg = make_cfg(
        *FAST, *local, "evaluation.dims=[32,16]", output_dir=tmp_path / "saved", config_name="evaluate"
    )
    evaluate(cfg)  # model.prompts null: the saved model's own
    evaluated = json.loads((tmp_path / "saved" / "results.json").read_text())["evaluated"]
    assert_same_metrics(evaluated, finetuned)
