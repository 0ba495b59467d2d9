"""`serve(cfg)`: load the configured model and serve it (`python serve.py`); `running_server`: the same
app on a background thread, for tests and benchmarks."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI
from omegaconf import DictConfig
from sentence_transformers import SentenceTransformer

from embedding_trainer.models.loading import load_model
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.serving.app import build_app
from embedding_trainer.serving.batching import MicroBatcher
from embedding_trainer.serving.requests import TOO_LONG_POLICIES, Limits
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class ServeSettings:
    """The `serve` block of conf/serve.yaml (see there), checked."""

    host: str
    port: int
    model_name: str | None
    max_inputs: int
    too_long: str
    max_batch: int
    max_wait_ms: float
    encode_batch_size: int

    @classmethod
    def from_config(cls, block: DictConfig) -> "ServeSettings":
        """Raises ConfigError for a value the server cannot run with."""
        settings = cls(**block)
        if settings.too_long not in TOO_LONG_POLICIES:
            raise ConfigError(
                f"serve.too_long must be one of {', '.join(TOO_LONG_POLICIES)}, got {settings.too_long!r}."
            )
        for key in ("max_inputs", "max_batch", "encode_batch_size"):
            if getattr(settings, key) < 1:
                raise ConfigError(f"serve.{key} must be at least 1, got {getattr(settings, key)}.")
        if settings.max_wait_ms < 0 or not 0 <= settings.port < 65536:
            raise ConfigError(f"serve.max_wait_ms must be >= 0 and serve.port in 0..65535, got {block}.")
        return settings


def served_name(model: ModelSettings, settings: ServeSettings) -> str:
    """The model id clients send: `serve.model_name`, else the hub id, the folder's name, or `embedding-model`."""
    if settings.model_name:
        return settings.model_name
    if model.hub_id:
        return model.hub_id
    return Path(model.name_or_path).name if model.name_or_path else "embedding-model"


def embedding_app(model: SentenceTransformer, name: str, settings: ServeSettings) -> FastAPI:
    """The app serving `model` as `name`: full-size float32 embeddings from `model.encode`, micro-batched."""

    def encode(texts: list[str], prompt: str | None) -> np.ndarray:
        return model.encode(
            texts,
            prompt=prompt,
            batch_size=settings.encode_batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    limits = Limits(
        model_name=name,
        dimension=model.get_embedding_dimension(),
        max_inputs=settings.max_inputs,
        max_tokens=model.max_seq_length,
        too_long=settings.too_long,
    )
    return build_app(model, limits, MicroBatcher(encode, settings.max_batch, settings.max_wait_ms / 1000))


def serve(cfg: DictConfig) -> None:
    """Load `cfg.model` and serve it on `cfg.serve.host`:`cfg.serve.port` until interrupted."""
    settings = ServeSettings.from_config(cfg.serve)  # checked before the model loads
    model_settings = ModelSettings.from_config(cfg.model)
    model = load_model(model_settings).eval()
    name = served_name(model_settings, settings)
    log.info(
        f"Serving {name} ({model.get_embedding_dimension()} dims) on http://{settings.host}:{settings.port}/v1"
    )
    uvicorn.run(
        embedding_app(model, name, settings), host=settings.host, port=settings.port, log_level="warning"
    )


@contextmanager
def running_server(app: FastAPI, host: str = "127.0.0.1", timeout_s: float = 30.0) -> Iterator[str]:
    """Run `app` with uvicorn on a free port of `host` in a background thread; yields its base URL
    (`http://host:port/v1`) once it answers, and stops it on exit."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"The embeddings server did not start on {host} within {timeout_s} s.")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
