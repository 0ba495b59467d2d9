"""A micro-batcher: requests that arrive together are encoded in one call. Each request waits at
most `max_wait_s` for others to join it (or until `max_batch` texts are queued); the texts of every
prompt are encoded in one `encode(texts, prompt)` call on a worker thread, and each request gets its
own rows back, in its order."""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

Encode = Callable[[list[str], str | None], np.ndarray]


@dataclass
class _Pending:
    texts: list[str]
    prompt: str | None
    result: asyncio.Future = field(repr=False)


class MicroBatcher:
    """`await batcher.encode(texts, prompt)` -> float32 rows, one per text. Run `start()` inside the
    serving event loop and `await stop()` at its end. `encode` runs on one worker thread, one batch at
    a time: the model is never called concurrently."""

    def __init__(self, encode: Encode, max_batch: int, max_wait_s: float) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_s >= 0, got {max_batch} and {max_wait_s}.")
        self._encode, self.max_batch, self.max_wait_s = encode, max_batch, max_wait_s
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
        self.batches = 0  # encode calls made (for the tests and the load benchmark)

    def start(self) -> None:
        """Start the batching task in the running event loop."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the batching task and the worker thread."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def encode(self, texts: list[str], prompt: str | None) -> np.ndarray:
        """The embeddings of `texts` with `prompt`, once the batch they join is encoded."""
        assert self._queue is not None, "MicroBatcher.start() was not called"
        pending = _Pending(texts, prompt, asyncio.get_running_loop().create_future())
        await self._queue.put(pending)
        return await pending.result

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            try:
                await self._encode_batch(batch)
            except Exception as error:  # the requests of this batch fail; the server goes on
                for pending in batch:
                    if not pending.result.done():
                        pending.result.set_exception(error)

    async def _collect(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        size = len(batch[0].texts)
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while size < self.max_batch:
            left = deadline - asyncio.get_running_loop().time()
            try:
                pending = (
                    self._queue.get_nowait() if left <= 0 else await asyncio.wait_for(self._queue.get(), left)
                )
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            batch.append(pending)
            size += len(pending.texts)
        return batch

    async def _encode_batch(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        for prompt in dict.fromkeys(pending.prompt for pending in batch):
            group = [pending for pending in batch if pending.prompt == prompt]
            texts = [text for pending in group for text in pending.texts]
            rows = await loop.run_in_executor(self._executor, self._encode, texts, prompt)
            self.batches += 1
            start = 0
            for pending in group:
                if not pending.result.done():  # a client that went away cancelled its future
                    pending.result.set_result(rows[start : start + len(pending.texts)])
                start += len(pending.texts)
