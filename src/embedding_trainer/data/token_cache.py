"""Tokenize the training texts once, then build every batch by padding cached token ids."""

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm


class UncachableFeatures(ValueError):
    """The model's preprocess returns something other than per-token tensors and constants."""


class TokenCache:
    """Every distinct (prompt, text) tokenized once by the model's own `preprocess` (same truncation;
    the prompt prepended as `preprocess(texts, prompt=prompt)` does it), stored unpadded in flat int32
    arrays; `batch(texts, prompt)` pads them again to the longest text of the batch, giving exactly
    what `preprocess(texts, prompt=prompt, max_length=...)` returns for that batch (with its constants,
    such as the `prompt_length` of a prompt).

    Args:
        preprocess: the model's `preprocess(texts, prompt=..., max_length=...)`.
        texts: the texts to tokenize under each prompt ({prompt: texts}; None: no prompt). The same
            text under two prompts is two entries.
        max_length: truncation (None: the model's own).

    Memory: 4 bytes x (tokens of all distinct entries) x (per-token keys, 3 for BERT) + one offset
    (8 bytes) and one dict entry per distinct entry.

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
    ) -> None:
        distinct = {prompt: list(dict.fromkeys(column)) for prompt, column in texts.items()}
        chunks = [
            (prompt, column[start : start + chunk_size])
            for prompt, column in distinct.items()
            for start in range(0, len(column), chunk_size)
        ]
        entries = [(prompt, text) for prompt, chunk in chunks for text in chunk]
        self.position = {entry: index for index, entry in enumerate(entries)}
        self.padding_side = "right"  # "left" once a chunk shows padding before the tokens
        self.pad_values: dict[str, int] = {}
        self.constants: dict[str | None, dict[str, object]] = {prompt: {} for prompt in distinct}
        options = {} if max_length is None else {"max_length": max_length}
        pieces: dict[str, list[np.ndarray]] = {}
        lengths: list[np.ndarray] = []
        for prompt, chunk in tqdm(chunks, desc="Tokenizing", disable=not show_progress_bar):
            features = preprocess(chunk, prompt=prompt, **options)
            mask = features["attention_mask"].bool()
            if (~mask[:, 0]).any():
                self.padding_side = "left"
            lengths.append(mask.sum(dim=1).numpy())
            constants = self.constants[prompt]
            for key, value in features.items():
                if isinstance(value, torch.Tensor) and value.shape == mask.shape:
                    self._learn_pad_value(key, value, mask)
                    pieces.setdefault(key, []).append(value[mask].numpy().astype(np.int32))
                elif not isinstance(value, torch.Tensor) and constants.setdefault(key, value) == value:
                    continue
                else:
                    raise UncachableFeatures(
                        f"preprocess returned {key!r} that is not per-token ({type(value).__name__})."
                    )
        self.lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        self.tokens = {key: np.concatenate(arrays) for key, arrays in pieces.items()}

    def _learn_pad_value(self, key: str, value: torch.Tensor, mask: torch.Tensor) -> None:
        """Record the value preprocess puts at padded positions (0 until padding is seen)."""
        padded = value[~mask]
        if len(padded):
            self.pad_values[key] = int(padded[0])

    def text_lengths(self, texts: Iterable[str], prompt: str | None = None) -> np.ndarray:
        """Token count of each text under `prompt` (each must have been cached so)."""
        return self.lengths[[self.position[prompt, text] for text in texts]]

    def batch(self, texts: list[str], prompt: str | None = None) -> dict:
        """The padded features of `texts` under `prompt`, as `preprocess(texts, prompt=prompt)` returns them."""
        rows = [self.position[prompt, text] for text in texts]
        width = int(self.lengths[rows].max()) if rows else 0
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
