"""Tokenize the training texts once into memory-mapped files, then build every batch by padding them.

Resident memory does not grow with the number of texts: tokens, lengths, offsets and the lookup
keys live in files in a temporary folder (under `tempfile.gettempdir()`, so TMPDIR picks the disk)
that the operating system pages in as batches read them; the folder is removed with the cache. Its name
carries the host and the process id (`token-cache-<host>-<pid>-*`): a new cache removes the folders
that processes of this host left when they were killed (`remove_abandoned`).
"""

import os
import re
import shutil
import socket
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import xxhash
from tqdm.auto import tqdm


class UncachableFeatures(ValueError):
    """The model's preprocess returns something other than per-token tensors and constants."""


def text_keys(texts: Iterable[str], prompt: str | None = None) -> np.ndarray:
    """The 64-bit key (xxh3) of each text under `prompt` (None, "" and each prompt key apart)."""
    seed = 0 if prompt is None else xxhash.xxh3_64_intdigest(prompt.encode(errors="surrogatepass")) | 1
    digest = xxhash.xxh3_64_intdigest
    return np.fromiter((digest(text.encode(errors="surrogatepass"), seed) for text in texts), dtype=np.uint64)


def chunked(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    """`texts` in lists of `size` (the last shorter)."""
    iterator = iter(texts)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned(parent: Path) -> list[Path]:
    """Remove (and return) the token-cache folders in `parent` made on this host by processes that no
    longer exist (killed before they could remove them); others' folders, and those of other hosts
    sharing `parent`, stay."""
    pattern = re.compile(rf"token-cache-{re.escape(socket.gethostname())}-(\d+)-[a-z0-9_]+")
    removed = []
    for folder in parent.glob("token-cache-*"):
        match = pattern.fullmatch(folder.name)
        if match and not _alive(int(match[1])):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _remove(folder: Path, owner: int) -> None:
    """Remove the cache folder, only in the process that made it (not in forked loader workers)."""
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


class TokenCache:
    """Every (prompt, text) tokenized once by the model's own `preprocess` (same truncation; the
    prompt prepended as `preprocess(texts, prompt=prompt)` does it), stored unpadded in flat int32
    memory-mapped files; `batch(texts, prompt)` pads them again to the longest text of the batch,
    giving exactly what `preprocess(texts, prompt=prompt, max_length=...)` returns for that batch
    (with its constants, such as the `prompt_length` of a prompt).

    Args:
        preprocess: the model's `preprocess(texts, prompt=..., max_length=...)`.
        texts: the texts to tokenize under each prompt ({prompt: texts}; None: no prompt), read once,
            in chunks of `chunk_size` (an iterable is streamed). A repeated text is stored again.
        max_length: truncation (None: the model's own).
        folder: where the cache's temporary folder goes (None: `tempfile.gettempdir()`); folders
            there that killed processes of this host left are removed first (`remove_abandoned`).

    A text is found by its 64-bit key (`text_keys`) in the sorted keys (binary search): two
    distinct texts with the same key (odds about n^2 / 2^65 for n texts) would share one's tokens.
    Memory: files of 4 bytes x tokens x per-token keys (3 for BERT), plus 28 bytes per text; the
    only resident arrays are the build's sort of the keys (8 bytes per text, while it runs).

    Raises:
        UncachableFeatures: `preprocess` returns entries that are neither [texts, tokens] tensors
            aligned with `attention_mask` nor constants (then tokenize per batch instead).
    """

    def __init__(
        self,
        preprocess: Callable[..., dict],
        texts: Mapping[str | None, Iterable[str]],
        max_length: int | None,
        chunk_size: int = 1024,
        show_progress_bar: bool = False,
        folder: str | Path | None = None,
    ) -> None:
        parent = Path(folder or tempfile.gettempdir())
        remove_abandoned(parent)
        prefix = f"token-cache-{socket.gethostname()}-{os.getpid()}-"
        self.folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        weakref.finalize(self, _remove, self.folder, os.getpid())
        self.padding_side = "right"  # "left" once a chunk shows padding before the tokens
        self.pad_values: dict[str, int] = {}
        self.constants: dict[str | None, dict[str, object]] = {prompt: {} for prompt in texts}
        options = {} if max_length is None else {"max_length": max_length}
        files: dict[str, object] = {}
        try:
            for prompt, column in texts.items():
                chunks = chunked(column, chunk_size)
                for chunk in tqdm(chunks, desc="Tokenizing", unit="chunk", disable=not show_progress_bar):
                    features = preprocess(chunk, prompt=prompt, **options)
                    self._write(files, features, prompt)
                    self._append(files, "keys", text_keys(chunk, prompt))
        finally:
            for file in files.values():
                file.close()
        self.token_keys = [name for name in files if name not in ("keys", "lengths")]
        self._sort_keys()
        self._open()

    def _append(self, files: dict, name: str, array: np.ndarray) -> None:
        if name not in files:
            files[name] = open(self.folder / name, "wb")  # noqa: SIM115 (closed by __init__)
        files[name].write(array.tobytes())

    def _write(self, files: dict, features: dict, prompt: str | None) -> None:
        """Append one chunk's per-token features and lengths; record its constants."""
        mask = features["attention_mask"].bool()
        if (~mask[:, 0]).any():
            self.padding_side = "left"
        self._append(files, "lengths", mask.sum(dim=1).numpy().astype(np.int32))
        constants = self.constants[prompt]
        for key, value in features.items():
            if isinstance(value, torch.Tensor) and value.shape == mask.shape:
                padded = value[~mask]
                if len(padded):
                    self.pad_values[key] = int(padded[0])
                self._append(files, f"tokens.{key}", value[mask].numpy().astype(np.int32))
            elif isinstance(value, torch.Tensor) or constants.setdefault(key, value) != value:
                raise UncachableFeatures(
                    f"preprocess returned {key!r} that is not per-token ({type(value).__name__})."
                )

    def _sort_keys(self) -> None:
        """Write the offsets (running sum of lengths), and the keys sorted with each one's entry."""
        for name in ("keys", "lengths"):
            (self.folder / name).touch()
        lengths = np.memmap(self.folder / "lengths", dtype=np.int32, mode="r") if self._size() else []
        offsets = np.memmap(self.folder / "offsets", dtype=np.int64, mode="w+", shape=(len(lengths) + 1,))
        offsets[0] = 0
        np.cumsum(lengths, out=offsets[1:])
        offsets.flush()
        if not len(lengths):
            return
        keys = np.memmap(self.folder / "keys", dtype=np.uint64, mode="r")
        order = np.argsort(keys, kind="stable")
        np.memmap(self.folder / "sorted_keys", dtype=np.uint64, mode="w+", shape=keys.shape)[:] = keys[order]
        np.memmap(self.folder / "entries", dtype=np.int64, mode="w+", shape=keys.shape)[:] = order
        del keys, order
        os.remove(self.folder / "keys")

    def _size(self) -> int:
        return os.path.getsize(self.folder / "lengths") // 4

    def _open(self) -> None:
        """Map the files (read-only); an empty cache maps nothing."""
        size = self._size()
        self.offsets = np.memmap(self.folder / "offsets", dtype=np.int64, mode="r")

        def mapped(name: str, dtype) -> np.ndarray:
            return np.memmap(self.folder / name, dtype=dtype, mode="r") if size else np.zeros(0, dtype)

        self.lengths = mapped("lengths", np.int32)
        self.keys, self.entries = mapped("sorted_keys", np.uint64), mapped("entries", np.int64)
        self.tokens = {
            name.removeprefix("tokens."): mapped(name, np.int32)
            if self.offsets[-1]
            else np.zeros(0, np.int32)
            for name in self.token_keys
        }

    def __getstate__(self) -> dict:
        """Pickled (for spawned loader workers) without the mapped arrays, which reopen from the files."""
        mapped = ("offsets", "lengths", "keys", "entries", "tokens")
        return {name: value for name, value in self.__dict__.items() if name not in mapped}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def _entries(self, texts: Iterable[str], prompt: str | None) -> np.ndarray:
        """Each text's entry in the cache; KeyError for a text not cached under `prompt`."""
        wanted = text_keys(texts, prompt)
        found = np.minimum(np.searchsorted(self.keys, wanted), max(len(self.keys) - 1, 0))
        missing = np.ones(len(wanted), bool) if not len(self.keys) else self.keys[found] != wanted
        if missing.any():
            raise KeyError(f"{int(missing.sum())} texts are not in the token cache under prompt {prompt!r}.")
        return self.entries[found] if len(wanted) else np.zeros(0, np.int64)

    def text_lengths(self, texts: Iterable[str], prompt: str | None = None) -> np.ndarray:
        """Token count of each text under `prompt` (each must have been cached so)."""
        return np.asarray(self.lengths[self._entries(texts, prompt)], dtype=np.int64)

    def batch(self, texts: list[str], prompt: str | None = None) -> dict:
        """The padded features of `texts` under `prompt`, as `preprocess(texts, prompt=prompt)` returns them."""
        rows = self._entries(texts, prompt)
        width = int(self.lengths[rows].max()) if len(rows) else 0
        features: dict = {}
        for key, flat in self.tokens.items():
            out = np.full((len(rows), width), self.pad_values.get(key, 0), dtype=np.int64)
            for line, row in enumerate(rows):
                start, end = self.offsets[row], self.offsets[row + 1]
                if self.padding_side == "left":
                    out[line, width - (end - start) :] = flat[start:end]
                else:
                    out[line, : end - start] = flat[start:end]
            features[key] = torch.from_numpy(out)
        return {**features, **self.constants[prompt]}
