"""Questions about passages, asked of a chat model behind any OpenAI-compatible chat-completions endpoint
(vLLM, Ollama, llama.cpp server, OpenAI) through the official `openai` client.

Each passage is one request (the config's prompt template with `{context}` and `{num_questions}` filled),
sent `concurrency` at a time. A timeout, a lost connection, a rate limit, a server error (5xx) or a reply
with no question in it is retried `max_retries` times with doubling waits; a passage that still fails is
counted and left out (a later run asks again). A refusal that no retry can fix (a wrong key, model or
URL: 4xx) stops the generation at once. Every answered passage is stored on disk (one file per passage,
keyed by the passage text and the settings that shape the answer), so an interrupted generation
resumes where it stopped and a second run sends no request."""

import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import openai
from tqdm.auto import tqdm

from embedding_trainer.data.chunking import Chunk
from embedding_trainer.utils.errors import ConfigError, DataError
from embedding_trainer.utils.fingerprints import settings_fingerprint
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

KEY = "data.synthetic_queries.llm"
# A line's list marker: "1.", "2)", "-", "*", "•", "Q1:" ...
LIST_MARKER = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•]|Q(?:uestion)?\s*\d*\s*[.:])\s*", re.IGNORECASE)
RETRIED = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APIResponseValidationError,
)


class MalformedReply(Exception):
    """A reply that holds no question."""


@dataclass
class LlmSettings:
    """`data.synthetic_queries.llm`: the endpoint (`base_url`, `model`, the key read from the environment
    variable `api_key_env`; none set is fine for local servers), the `prompt` template, how many questions
    per passage, sampling (`temperature`, `max_tokens`), and transport (`concurrency`, `timeout` in
    seconds, `max_retries`, `backoff`: the first wait in seconds, doubled after each retry)."""

    model: str | None = None
    base_url: str = "http://localhost:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    prompt: str = ""
    questions_per_chunk: int = 2
    temperature: float = 0.0
    max_tokens: int = 256
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 3
    backoff: float = 1.0

    def check(self) -> None:
        if not self.model:
            raise ConfigError(
                f"{KEY}.model is not set: name the model the endpoint serves, e.g. {KEY}.model=Qwen/Qwen2.5-7B-Instruct "
                f"(and {KEY}.base_url=http://<host>:<port>/v1)."
            )
        missing = [field for field in ("{context}", "{num_questions}") if field not in (self.prompt or "")]
        if missing:
            raise ConfigError(
                f"{KEY}.prompt must contain {' and '.join(missing)} (the passage and the question count)."
            )
        for name, low in (
            ("questions_per_chunk", 1),
            ("max_tokens", 1),
            ("concurrency", 1),
            ("max_retries", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{KEY}.{name} must be a whole number of at least {low}, got {value!r}.")
        for name in ("timeout", "backoff", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{KEY}.{name} must be a number of at least 0, got {value!r}.")

    @property
    def answer_key(self) -> str:
        """What shapes an answer (not where it was asked or how): the cache folder's name."""
        return settings_fingerprint(
            {
                "model": self.model,
                "prompt": self.prompt,
                "questions": self.questions_per_chunk,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
            }
        )


@dataclass
class GeneratedQuestions:
    """(passage, question) pairs in passage order; how many passages were read from the cache, asked,
    and failed (no question after every retry)."""

    pairs: list[tuple[Chunk, str]]
    cached: int
    asked: int
    failed: int

    def describe(self) -> str:
        answered = len({chunk.id for chunk, _ in self.pairs})
        return (
            f"Synthetic queries (llm): {len(self.pairs)} questions about {answered} passages ({self.cached} read "
            f"from the cache, {self.asked} asked, {self.failed} failed)."
        )


def generate_questions(
    chunks: list[Chunk], settings: LlmSettings, cache_dir: str | Path
) -> GeneratedQuestions:
    """Questions about every passage of `chunks` (see the module docstring); DataError when none got any."""
    cache = Path(cache_dir) / "synthetic_queries" / settings.answer_key
    answers = {chunk.id: _cached(cache, chunk) for chunk in chunks}
    pending = [chunk for chunk in chunks if answers[chunk.id] is None]
    if pending:
        log.info(
            f"Synthetic queries: asking {settings.model} at {settings.base_url} about {len(pending)} passages"
        )
        for chunk, questions in _ask_all(pending, settings):
            answers[chunk.id] = questions
            if questions is not None:
                _store(cache, chunk, questions)
    failed = sum(answers[chunk.id] is None for chunk in pending)
    result = GeneratedQuestions(
        pairs=[(chunk, question) for chunk in chunks for question in answers[chunk.id] or []],
        cached=len(chunks) - len(pending),
        asked=len(pending),
        failed=failed,
    )
    if not result.pairs:
        raise DataError(
            f"No passage got a question from {settings.model} at {settings.base_url} ({failed} of {len(chunks)} "
            "failed after their retries; the log has the errors). Check that the server is up and serves that "
            f"model, or raise {KEY}.timeout / max_retries."
        )
    (log.warning if failed else log.info)(result.describe())
    return result


def parse_questions(content: str | None, count: int) -> list[str]:
    """The first `count` questions of a reply: its non-blank lines without list markers, leaving out
    lead-in lines that end with a colon. MalformedReply when there is none."""
    lines = [LIST_MARKER.sub("", line).strip() for line in (content or "").splitlines()]
    questions = [line for line in lines if line and not line.endswith(":")]
    if not questions:
        raise MalformedReply(f"no question in the reply {str(content)[:80]!r}")
    return questions[:count]


def _ask_all(chunks: list[Chunk], settings: LlmSettings):
    """Yield (passage, its questions or None when it failed) as the answers come in."""
    client = _client(settings)
    with (
        ThreadPoolExecutor(settings.concurrency) as pool,
        tqdm(total=len(chunks), desc="Synthetic queries", unit="passage") as progress,
    ):
        futures = {pool.submit(_ask, client, chunk, settings): chunk for chunk in chunks}
        try:
            for future in as_completed(futures):
                progress.update()
                yield futures[future], future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _client(settings: LlmSettings) -> openai.OpenAI:
    """The client of the settings' endpoint (retries are ours: the client's own are off)."""
    key = os.environ.get(settings.api_key_env)
    if not key:
        log.info(f"${settings.api_key_env} is not set: asking {settings.base_url} without a key")
    return openai.OpenAI(
        base_url=settings.base_url, api_key=key or "none", timeout=settings.timeout, max_retries=0
    )


def _ask(client: openai.OpenAI, chunk: Chunk, settings: LlmSettings) -> list[str] | None:
    """The questions about one passage, retried as the module docstring says; None when every attempt
    failed; DataError on a refusal no retry can fix."""
    prompt = settings.prompt.format(context=chunk.text, num_questions=settings.questions_per_chunk)
    for attempt in range(settings.max_retries + 1):
        try:
            reply = client.chat.completions.create(
                model=settings.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=settings.temperature,
                max_tokens=settings.max_tokens,
            )
            if not reply.choices:
                raise MalformedReply("a reply without choices")
            return parse_questions(reply.choices[0].message.content, settings.questions_per_chunk)
        except openai.APIStatusError as error:
            if isinstance(error, RETRIED):
                problem = error
            else:
                raise DataError(
                    f"{settings.base_url} refused the request for model {settings.model!r} with HTTP "
                    f"{error.status_code}: {str(error)[:300]}. Check {KEY}.base_url, {KEY}.model and the key in "
                    f"${settings.api_key_env}."
                ) from None
        except (*RETRIED, MalformedReply, json.JSONDecodeError, AttributeError, TypeError) as error:
            problem = error
        if attempt < settings.max_retries:
            time.sleep(settings.backoff * 2**attempt)
    log.warning(
        f"Passage {chunk.id} failed after {settings.max_retries + 1} attempts: {type(problem).__name__}: {problem}"
    )
    return None


def _entry(cache: Path, chunk: Chunk) -> Path:
    return cache / f"{hashlib.sha256(chunk.text.encode()).hexdigest()}.json"


def _cached(cache: Path, chunk: Chunk) -> list[str] | None:
    """The stored questions about the passage's text, or None (never asked, or a damaged entry)."""
    try:
        return json.loads(_entry(cache, chunk).read_text(encoding="utf-8"))["questions"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store(cache: Path, chunk: Chunk, questions: list[str]) -> None:
    """Write the passage's questions atomically (a reader sees all of the entry or none)."""
    cache.mkdir(parents=True, exist_ok=True)
    entry = _entry(cache, chunk)
    partial = entry.with_name(f"{entry.name}.{os.getpid()}.{id(questions)}.partial")
    partial.write_text(json.dumps({"questions": questions}, ensure_ascii=False), encoding="utf-8")
    os.replace(partial, entry)
