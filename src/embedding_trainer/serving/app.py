"""The routes: `POST /v1/embeddings` (and `/v1/query/embeddings`, `/v1/document/embeddings`, which pick
the prompt by route), `GET /v1/models`, `GET /health`. Every error answers OpenAI's error JSON."""

import base64
import copy
import json
import time
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sentence_transformers import SentenceTransformer
from starlette.exceptions import HTTPException

from embedding_trainer.models.prompts import prompt_text
from embedding_trainer.serving.batching import MicroBatcher
from embedding_trainer.serving.requests import INPUT_TYPES, ApiError, Limits, check_lengths, parse_request


def embedding_rows(full: np.ndarray, dimensions: int) -> np.ndarray:
    """Rows of full-size embeddings cut to their first `dimensions` and re-normalized to unit length
    (Matryoshka truncation), float32."""
    rows = np.asarray(full[:, :dimensions], dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, np.float32(1e-12))


def embedding_items(rows: np.ndarray, encoding_format: str) -> list[dict]:
    """OpenAI's `data` items: `float` lists, or `base64` of the little-endian float32 bytes."""
    if encoding_format == "base64":
        values = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in rows]
    else:
        values = rows.tolist()
    return [{"object": "embedding", "index": index, "embedding": value} for index, value in enumerate(values)]


def token_counts(tokenizer, texts: list[str], prompt: str | None) -> list[int]:
    """The tokens of each text as the model would read it whole (its prompt and special tokens included)."""
    full = [prompt + text for text in texts] if prompt else texts
    return [len(ids) for ids in tokenizer(full, add_special_tokens=True, truncation=False)["input_ids"]]


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error with OpenAI's error JSON: an ApiError with its own status, Starlette's (an unknown
    route, a wrong method) with theirs, anything else as a 500 `server_error`."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = "not_found" if error.status_code == 404 else None
        return JSONResponse(ApiError(str(error.detail), code=code).body(), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        failure = ApiError(
            f"The server failed: {type(error).__name__}: {error}", kind="server_error", status=500
        )
        return JSONResponse(failure.body(), status_code=500)


def build_app(model: SentenceTransformer, limits: Limits, batcher: MicroBatcher) -> FastAPI:
    """The FastAPI app serving `model` under `limits`; `batcher` (over `model.encode`, kept as
    `app.state.batcher`) starts and stops with the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="embedding-trainer embeddings", lifespan=lifespan)
    app.state.batcher = batcher
    # A fast tokenizer's padding and truncation are state that a call sets: counting tokens with the model's
    # own tokenizer here while `encode` pads with it on the batcher's thread breaks either call.
    counter = copy.deepcopy(model.tokenizer)

    add_error_handlers(app)

    async def embeddings(request: Request, input_type: str | None) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError as error:
            raise ApiError(f"The request body is not valid JSON: {error}.") from None
        checked = parse_request(body, limits, input_type)
        prompt = prompt_text(model.prompts, checked.input_type)
        counts = token_counts(counter, checked.texts, prompt)
        check_lengths(counts, limits)
        full = await batcher.encode(checked.texts, prompt)
        tokens = sum(min(count, limits.max_tokens) for count in counts)
        answer = {
            "object": "list",
            "data": embedding_items(embedding_rows(full, checked.dimensions), checked.encoding_format),
            "model": limits.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return Response(json.dumps(answer), media_type="application/json")

    @app.post("/v1/embeddings")
    async def embeddings_route(request: Request) -> Response:
        return await embeddings(request, None)

    @app.post("/v1/{input_type}/embeddings")
    async def embeddings_by_route(input_type: str, request: Request) -> Response:
        if input_type not in INPUT_TYPES:
            routes = f"/v1/embeddings or /v1/<{'|'.join(INPUT_TYPES)}>/embeddings"
            raise ApiError(f"Unknown route: use {routes}.", None, "not_found", 404)
        return await embeddings(request, input_type)

    created = int(time.time())

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [
                {
                    "id": limits.model_name,
                    "object": "model",
                    "created": created,
                    "owned_by": "embedding-trainer",
                }
            ],
        }

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": limits.model_name, "dimension": limits.dimension}

    return app
