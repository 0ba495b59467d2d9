"""MicroBatcher: requests queued together are encoded in one call per prompt, at most `max_batch` texts
a call, each request gets its own rows in order, and a failed encode fails only its own batch."""

import asyncio

import numpy as np
import pytest

from embedding_trainer.serving.batching import MicroBatcher


class Recorder:
    """An encode function that records its calls: row i of a call is (len(text), len(prompt or ""))."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None]] = []

    def __call__(self, texts: list[str], prompt: str | None) -> np.ndarray:
        self.calls.append((texts, prompt))
        if "boom" in texts:
            raise RuntimeError("encode failed")
        return np.array([[len(text), len(prompt or "")] for text in texts], dtype=np.float32)


async def _run(batcher: MicroBatcher, requests: list[tuple[list[str], str | None]]) -> list:
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.encode(t, p) for t, p in requests), return_exceptions=True)
    finally:
        await batcher.stop()


def test_requests_waiting_together_are_one_call_per_prompt_and_split_back():
    recorder = Recorder()
    requests = [(["a", "bb"], None), (["ccc"], "q: "), (["dddd"], None), (["e"], "q: ")]
    answers = asyncio.run(_run(MicroBatcher(recorder, max_batch=64, max_wait_s=0.2), requests))
    assert recorder.calls == [(["a", "bb", "dddd"], None), (["ccc", "e"], "q: ")]
    for (texts, prompt), rows in zip(requests, answers, strict=True):
        assert rows.tolist() == [[len(text), len(prompt or "")] for text in texts]


def test_a_batch_stops_at_max_batch_texts():
    recorder = Recorder()
    requests = [([str(i)] * 3, None) for i in range(4)]
    asyncio.run(_run(MicroBatcher(recorder, max_batch=5, max_wait_s=0.2), requests))
    assert [len(texts) for texts, _ in recorder.calls] == [6, 6]  # a request is never split


def test_a_failed_encode_fails_its_batch_and_the_next_batch_is_served():
    recorder = Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_batch=64, max_wait_s=0.0)
        batcher.start()
        try:
            with pytest.raises(RuntimeError, match="encode failed"):
                await batcher.encode(["boom"], None)
            return await batcher.encode(["ok"], None)
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()).tolist() == [[2, 0]]


def test_settings_that_cannot_batch_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Recorder(), max_batch=0, max_wait_s=0.01)
