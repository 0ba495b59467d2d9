"""The project's one embedding cache: these texts, encoded once by this exact model, stored.

An entry holds the full-dimension float32 embeddings of a set of distinct texts under one model and
one prompt, as `<folder>/<encoder fingerprint>/<key>.npy` (rows in sorted-text order; the key
fingerprints the sorted texts and the prompt), so any order of the same texts, with or without
repeats, reads the same entry. Entries are written to a temporary file beside their final name and
renamed into place, so runs filling the folder at once each read a whole file; one that cannot be
read back whole (truncated, not an .npy file, the wrong shape) counts as missing and is encoded again.
"""

import os
import uuid
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from embedding_trainer.utils.fingerprints import encoder_fingerprint, settings_fingerprint, texts_fingerprint
from embedding_trainer.utils.log import get_logger
from embedding_trainer.utils.sharded_encoding import current_shard

log = get_logger(__name__)


def encode(
    model: SentenceTransformer,
    texts: list[str],
    batch_size: int = 64,
    show_progress_bar: bool = True,
    prompt_name: str | None = None,
    prompt: str | None = None,
    task: str | None = None,
) -> torch.Tensor:
    """Full-dimension float32 embeddings of `texts` under `model` (one row each, in order, on the
    CPU), as the evaluators have always encoded: not normalized beyond what the model's own modules do.
    `task` (`query`, `document` or None) picks the route of a model that routes by task, as
    `encode_query` and `encode_document` do; other models ignore it.

    Inside `sharded_encoding` (and for at least one text per process) this process encodes its share
    of `texts` alone and gathers the rest from the others (its progress bar on the first process only)."""
    shard = current_shard()
    if shard is not None and len(texts) >= shard.world_size:
        share = shard.take(texts)
        log.info(f"Encoding {len(texts)} texts across {shard.world_size} processes ({len(share)} here)")
        mine = _encode_in_this_process(
            model,
            share,
            batch_size,
            show_progress_bar and shard.rank == 0,
            prompt_name,
            prompt,
            task,
        )
        return shard.gather(mine, len(texts))
    return _encode_in_this_process(model, texts, batch_size, show_progress_bar, prompt_name, prompt, task)


def _encode_in_this_process(
    model: SentenceTransformer,
    texts: list[str],
    batch_size: int,
    show_progress_bar: bool,
    prompt_name: str | None,
    prompt: str | None,
    task: str | None,
) -> torch.Tensor:
    """`encode` in this process alone, whatever the sharding."""
    with torch.no_grad():
        embeddings = model.encode(
            texts,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            convert_to_tensor=True,
            prompt_name=prompt_name,
            prompt=prompt,
            task=task,
        )
    return embeddings.float().cpu()


class EmbeddingCache:
    """Embeddings of texts under a model, computed once and stored under `folder` (the run's
    `paths.cache_dir`/embeddings, say). Only an unchanged model belongs here: each call fingerprints
    the model (`encoder_fingerprint`, about 0.07 s for all-MiniLM-L6-v2), so a model that changes
    between calls (training) writes a new entry every time."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(
        self,
        model: SentenceTransformer,
        texts: list[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        task: str | None = None,
    ) -> Path:
        """Where the entry of `texts` (in any order, repeats or not) under `model` (the modules `task`
        goes through: `encoder_fingerprint`) and the prompt is stored."""
        return self._path(model, sorted(set(texts)), prompt_name, prompt, task)

    def _path(
        self,
        model: SentenceTransformer,
        distinct: list[str],
        prompt_name: str | None,
        prompt: str | None,
        task: str | None,
    ) -> Path:
        key = settings_fingerprint(
            {"texts": texts_fingerprint(distinct), "prompt_name": prompt_name, "prompt": prompt}
        )
        return self.folder / encoder_fingerprint(model, task) / f"{key}.npy"

    def embeddings(
        self,
        model: SentenceTransformer,
        texts: list[str],
        batch_size: int = 64,
        show_progress_bar: bool = True,
        prompt_name: str | None = None,
        prompt: str | None = None,
        task: str | None = None,
    ) -> torch.Tensor:
        """`encode(model, texts, ...)`, read from the cache when these texts were stored under this
        model and prompt before; else encoded (with the model's progress bar) and stored. A miss returns
        exactly what `encode` returns; a hit returns the stored rows of the call that filled the entry
        (the same numbers when it encoded the texts in the same order; else equal to float rounding).
        A store that fails (disk full, read-only folder) is logged and the embeddings returned."""
        if not texts:
            return encode(model, texts, batch_size, show_progress_bar, prompt_name, prompt, task)
        distinct = sorted(set(texts))
        path = self._path(model, distinct, prompt_name, prompt, task)
        stored = _read(path, len(distinct))
        shard = current_shard()
        if shard is not None and not shard.all_agree(stored is not None):
            stored = None  # encoded by all processes together: each must take the same branch
        if stored is not None:
            log.info(f"Embedding cache: embeddings of {len(texts)} texts read from the cache ({path})")
            row = {text: index for index, text in enumerate(distinct)}
            return torch.from_numpy(stored[[row[text] for text in texts]])
        log.info(
            f"Embedding cache: encoding {len(texts)} texts (not in the cache yet; storing them at {path})"
        )
        embeddings = encode(model, texts, batch_size, show_progress_bar, prompt_name, prompt, task)
        if shard is not None and shard.rank != 0:
            return embeddings  # every process holds the same rows: the first stores them
        row = {text: index for index, text in enumerate(texts)}
        try:
            _write(path, embeddings[[row[text] for text in distinct]].numpy())
        except OSError as error:
            log.warning(f"Embedding cache: could not store {path} ({error}); going on without it")
        return embeddings


def _read(path: Path, rows: int) -> np.ndarray | None:
    """The stored float32 [rows, dim] array at `path`, memory-mapped; None when there is none or it
    cannot be read back whole."""
    try:
        stored = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as error:  # truncated or not an .npy file at all
        log.warning(f"Embedding cache: {path} is unreadable ({error}); encoding again")
        return None
    if stored.dtype != np.float32 or stored.ndim != 2 or len(stored) != rows:
        log.warning(
            f"Embedding cache: {path} holds {stored.dtype} {stored.shape}, not {rows} rows; encoding again"
        )
        return None
    return stored


def _write(path: Path, array: np.ndarray) -> None:
    """Store `array` at `path` whole or not at all: written beside it under a unique name, then renamed
    over it (a concurrent writer of the same entry stores the same rows, so either may win)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with partial.open("wb") as file:
            np.save(file, array)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
