"""The embeddings server (embedding_trainer.serving) on loopback, called with the real `openai` client
and plain HTTP: its embeddings are model.encode's (prompted, truncated, normalized), micro-batched under
concurrency, and every bad request gets a 4xx with OpenAI's error JSON."""

import base64
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from embedding_trainer.cli import model_path_overrides
from embedding_trainer.models.loading import load_model
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.serving.app import build_app
from embedding_trainer.serving.batching import MicroBatcher
from embedding_trainer.serving.requests import Limits
from embedding_trainer.serving.server import ServeSettings, embedding_app, running_server, served_name
from embedding_trainer.settings.resolvers import CONFIG_DIR
from embedding_trainer.utils.errors import ConfigError

PROMPTS = {"query": "query: ", "document": "passage: "}
TEXTS = [
    "Where is the Eiffel tower?",
    "a",
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
    "Matryoshka embeddings keep their meaning when cut short",
    "zebra",
]
LONG_TEXT = " ".join(["word"] * 200)  # over the tiny model's 64 tokens


def _serve_cfg(model_cache, *overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="serve",
            overrides=[
                "model=tiny",
                f"paths.cache_dir={model_cache}",
                f"model.prompts.query='{PROMPTS['query']}'",
                f"model.prompts.document='{PROMPTS['document']}'",
                "serve.max_inputs=8",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


@pytest.fixture(scope="module")
def served(model_cache):
    """(the tiny model, its served name, the truncating server's URL, the refusing server's URL, its app)."""
    cfg = _serve_cfg(model_cache)
    settings = ServeSettings.from_config(cfg.serve)
    model_settings = ModelSettings.from_config(cfg.model)
    model = load_model(model_settings).eval()
    name = served_name(model_settings, settings)
    refusing = ServeSettings.from_config(_serve_cfg(model_cache, "serve.too_long=refuse").serve)
    app = embedding_app(model, name, settings)
    with running_server(app) as url, running_server(embedding_app(model, name, refusing)) as refusing_url:
        yield model, name, url, refusing_url, app


def _client(url):
    return openai.OpenAI(base_url=url, api_key="x", max_retries=0)


def _vectors(response):
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def test_embeddings_are_model_encode_with_the_prompt_cut_and_normalized(served):
    model, name, url, _, _ = served
    client = _client(url)
    full = _vectors(client.embeddings.create(model=name, input=TEXTS, encoding_format="float"))
    np.testing.assert_allclose(full, model.encode(TEXTS, normalize_embeddings=True), atol=1e-6)
    expected = model.encode(TEXTS, prompt=PROMPTS["query"], truncate_dim=16, normalize_embeddings=True)
    by_field = client.embeddings.create(
        model=name, input=TEXTS, dimensions=16, encoding_format="float", extra_body={"input_type": "query"}
    )
    by_route = _client(f"{url}/query").embeddings.create(
        model=name, input=TEXTS, dimensions=16
    )  # base64 by default
    np.testing.assert_allclose(_vectors(by_field), expected, atol=1e-6)
    np.testing.assert_allclose(_vectors(by_route), expected, atol=1e-6)
    assert [item.index for item in by_route.data] == list(range(len(TEXTS)))
    document = _client(f"{url}/document").embeddings.create(model=name, input=TEXTS[2])
    np.testing.assert_allclose(
        _vectors(document),
        model.encode([TEXTS[2]], prompt=PROMPTS["document"], normalize_embeddings=True),
        atol=1e-6,
    )
    counts = [len(model.tokenizer(text)["input_ids"]) for text in TEXTS]
    assert full.shape == (5, 32)
    assert client.embeddings.create(model=name, input=TEXTS).usage.total_tokens == sum(counts)
    assert by_field.usage.prompt_tokens > sum(counts)  # the prompt's tokens are read, and counted


def test_base64_is_little_endian_float32_of_the_float_answer(served):
    _, name, url, _, _ = served
    body = {"model": name, "input": TEXTS, "dimensions": 8}
    floats = httpx.post(f"{url}/embeddings", json={**body, "encoding_format": "float"}).json()
    packed = httpx.post(f"{url}/embeddings", json={**body, "encoding_format": "base64"}).json()
    decoded = [np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in packed["data"]]
    assert np.array_equal(
        np.array(decoded), np.array([item["embedding"] for item in floats["data"]], np.float32)
    )


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(served):
    model, name, url, _, app = served
    expected = model.encode(TEXTS, normalize_embeddings=True)
    before = app.state.batcher.batches
    client = _client(url)
    requests = [TEXTS[i:] + TEXTS[:i] for i in range(len(TEXTS))] * 4

    def call(texts):
        return _vectors(client.embeddings.create(model=name, input=texts))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, requests))
    for texts, answer in zip(requests, answers, strict=True):
        np.testing.assert_allclose(answer, expected[[TEXTS.index(text) for text in texts]], atol=1e-6)
    assert app.state.batcher.batches - before < len(requests)


def test_too_long_texts_are_truncated_or_refused_as_configured(served):
    model, name, url, refusing_url, _ = served
    truncated = _client(url).embeddings.create(model=name, input=LONG_TEXT)
    np.testing.assert_allclose(
        _vectors(truncated), model.encode([LONG_TEXT], normalize_embeddings=True), atol=1e-6
    )
    assert truncated.usage.prompt_tokens == model.max_seq_length
    with pytest.raises(openai.BadRequestError) as refused:
        _client(refusing_url).embeddings.create(model=name, input=["fine", LONG_TEXT])
    assert refused.value.body["code"] == "context_length_exceeded" and refused.value.body["param"] == "input"


BAD_REQUESTS = {
    "empty list": ({"input": []}, 400, "input"),
    "empty string": ({"input": ["a", ""]}, 400, "input"),
    "too many inputs": ({"input": ["a"] * 9}, 400, "input"),
    "token ids": ({"input": [[1, 2, 3]]}, 400, "input"),
    "no input": ({"input": None}, 400, "input"),
    "input a number": ({"input": 3}, 400, "input"),
    "dimensions above the model's": ({"dimensions": 33}, 400, "dimensions"),
    "dimensions zero": ({"dimensions": 0}, 400, "dimensions"),
    "dimensions a string": ({"dimensions": "8"}, 400, "dimensions"),
    "unknown encoding": ({"encoding_format": "int8"}, 400, "encoding_format"),
    "unknown input type": ({"input_type": "passage"}, 400, "input_type"),
    "model missing": ({"model": None}, 400, "model"),
    "unknown model": ({"model": "gpt-4"}, 404, "model"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_with_openai_error_json(served, case):
    _, name, url, _, _ = served
    change, status, param = BAD_REQUESTS[case]
    body = {key: value for key, value in {"model": name, "input": "a", **change}.items() if value is not None}
    answer = httpx.post(f"{url}/embeddings", json=body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param and error["message"]


def test_the_openai_client_raises_on_refused_dimensions_and_unknown_routes(served):
    _, name, url, _, _ = served
    with pytest.raises(openai.BadRequestError, match="between 1 and the model's 32"):
        _client(url).embeddings.create(model=name, input="a", dimensions=64)
    for path, status in (("/v1/passage/embeddings", 404), ("/v1/nothing", 404), ("/v1/models", 405)):
        answer = httpx.request("POST", url.removesuffix("/v1") + path, content=b"{}")
        assert answer.status_code == status and answer.json()["error"]["message"]
    assert (
        httpx.post(f"{url}/embeddings", content=b"{not json").json()["error"]["type"]
        == "invalid_request_error"
    )


def test_a_failure_while_encoding_is_a_500_with_openai_error_json(served):
    model, name, _, _, _ = served

    def out_of_memory(texts, prompt):
        raise MemoryError("no room for the batch")

    limits = Limits(name, 32, max_inputs=8, max_tokens=64, too_long="truncate")
    with running_server(build_app(model, limits, MicroBatcher(out_of_memory, 8, 0.0))) as url:
        answer = httpx.post(f"{url}/embeddings", json={"model": name, "input": "a"})
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "server_error" and "no room" in answer.json()["error"]["message"]


def test_models_and_health_answer(served):
    _, name, url, _, _ = served
    assert [model.id for model in _client(url).models.list()] == [name]
    health = httpx.get(url.removesuffix("/v1") + "/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "model": name, "dimension": 32}


def test_serve_settings_refuse_what_cannot_run(model_cache):
    for override in ("serve.too_long=cut", "serve.max_batch=0", "serve.port=70000"):
        with pytest.raises(ConfigError, match="serve."):
            ServeSettings.from_config(_serve_cfg(model_cache, override).serve)


def test_a_model_folder_or_hub_id_reads_as_model_local():
    assert model_path_overrides(["model=tiny", "serve.port=9"]) == ["model=tiny", "serve.port=9"]
    assert model_path_overrides(["model=outputs/run/model", "model.prompts.query=q"]) == [
        "model=local",
        "model.name_or_path=outputs/run/model",
        "model.prompts.query=q",
    ]
    assert (
        model_path_overrides(["model=BAAI/bge-base-en-v1.5"])[1] == "model.name_or_path=BAAI/bge-base-en-v1.5"
    )
