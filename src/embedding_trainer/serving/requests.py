"""An embeddings request, checked: what `POST /v1/embeddings` accepts, and the OpenAI-style error
(`{"error": {"message", "type", "param", "code"}}` with a 4xx status) for what it refuses."""

from dataclasses import dataclass
from typing import Any

from embedding_trainer.models.prompts import DOCUMENT, QUERY

INPUT_TYPES = (QUERY, DOCUMENT)
ENCODING_FORMATS = ("float", "base64")
TOO_LONG_POLICIES = ("truncate", "refuse")


class ApiError(Exception):
    """A refused request: its HTTP `status` and the fields of OpenAI's error object."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.status, self.kind = message, param, code, status, kind

    def body(self) -> dict[str, dict[str, str | None]]:
        """The JSON body OpenAI answers with."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Limits:
    """What a request may ask of the served model: `model_name` (the one `model` it accepts), its
    `dimension`, `max_inputs` texts per request, `max_tokens` per text (the model's max sequence length),
    and `too_long`: `truncate` (the model reads the first `max_tokens`) or `refuse` (a 400)."""

    model_name: str
    dimension: int
    max_inputs: int
    max_tokens: int
    too_long: str


@dataclass(frozen=True)
class EmbeddingRequest:
    """A checked request: `texts` in their order, `dimensions` (<= the model's), `encoding_format`
    (`float` | `base64`) and `input_type` (`query` | `document` | None: no prompt)."""

    texts: list[str]
    dimensions: int
    encoding_format: str
    input_type: str | None


def parse_request(body: Any, limits: Limits, input_type: str | None = None) -> EmbeddingRequest:
    """`body` (the decoded JSON) checked against `limits`; `input_type` is the route's (None: the body's
    `input_type` field, if any). Raises ApiError for what OpenAI refuses too and what this server does not
    serve: token-id inputs, an unknown `model` (404), more than `max_inputs` texts."""
    if not isinstance(body, dict):
        raise ApiError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str):
        raise ApiError("'model' is required and must be a string.", "model")
    if model != limits.model_name:
        raise ApiError(
            f"The model '{model}' does not exist; this server serves '{limits.model_name}' (GET /v1/models).",
            "model",
            "model_not_found",
            404,
        )
    return EmbeddingRequest(
        texts=_texts(body.get("input"), limits.max_inputs),
        dimensions=_dimensions(body.get("dimensions"), limits.dimension),
        encoding_format=_choice(body, "encoding_format", ENCODING_FORMATS, "float"),
        input_type=input_type or _choice(body, "input_type", INPUT_TYPES, None),
    )


def _texts(value: Any, max_inputs: int) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list):
        raise ApiError("'input' is required: a string or a list of strings.", "input")
    if not texts:
        raise ApiError("'input' is empty: send at least one string.", "input")
    if len(texts) > max_inputs:
        raise ApiError(
            f"'input' has {len(texts)} items; at most {max_inputs} are allowed per request.", "input"
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ApiError(
                f"'input[{index}]' is {type(text).__name__}: only strings are served (not token ids).",
                "input",
            )
        if not text:
            raise ApiError(f"'input[{index}]' is an empty string.", "input")
    return texts


def _dimensions(value: Any, dimension: int) -> int:
    if value is None:
        return dimension
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(f"'dimensions' must be an integer, got {value!r}.", "dimensions")
    if not 1 <= value <= dimension:
        raise ApiError(
            f"'dimensions' must be between 1 and the model's {dimension}, got {value}.", "dimensions"
        )
    return value


def _choice(body: dict, key: str, choices: tuple[str, ...], default: str | None) -> str | None:
    value = body.get(key)
    if value is None:
        return default
    if value not in choices:
        raise ApiError(f"'{key}' must be one of {', '.join(choices)}; got {value!r}.", key)
    return value


def check_lengths(token_counts: list[int], limits: Limits) -> None:
    """Refuse (ApiError) the first text longer than `limits.max_tokens` when `limits.too_long` is
    `refuse`; `truncate` lets every length through."""
    if limits.too_long == "truncate":
        return
    for index, count in enumerate(token_counts):
        if count > limits.max_tokens:
            raise ApiError(
                f"'input[{index}]' has {count} tokens; this model reads at most {limits.max_tokens}. "
                "Shorten it (or start the server with serve.too_long=truncate).",
                "input",
                "context_length_exceeded",
            )
