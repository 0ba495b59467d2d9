"""Offline (query, passage) pairs from passages alone: two spans of the same passage, each drawn on its
own (Contriever's independent cropping), are a positive pair. Spans are runs of whole words whose length
is a share of the passage's words drawn uniformly from [min_ratio, max_ratio]; every draw is seeded by the
run's seed and the passage's id, so a passage gets the same pairs whatever else is in the corpus."""

import random
import re
from dataclasses import dataclass

from embedding_trainer.data.chunking import Chunk
from embedding_trainer.utils.errors import ConfigError

WORD = re.compile(r"\S+")


@dataclass
class CroppingSettings:
    """`data.synthetic_queries.cropping`: `pairs_per_chunk` pairs of spans per passage, each span
    `min_ratio` to `max_ratio` of the passage's words (at least `min_words`); passages of fewer than
    2 x `min_words` words give no pair."""

    pairs_per_chunk: int = 1
    min_ratio: float = 0.1
    max_ratio: float = 0.5
    min_words: int = 4

    def check(self) -> None:
        key = "data.synthetic_queries.cropping"
        for name in ("pairs_per_chunk", "min_words"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}.{name} must be a whole number of at least 1, got {value!r}.")
        if not (
            isinstance(self.min_ratio, (int, float))
            and isinstance(self.max_ratio, (int, float))
            and 0 < self.min_ratio <= self.max_ratio <= 1
        ):
            raise ConfigError(
                f"{key}: need 0 < min_ratio <= max_ratio <= 1, got min_ratio={self.min_ratio!r}, "
                f"max_ratio={self.max_ratio!r}."
            )


def cropped_pairs(chunks: list[Chunk], settings: CroppingSettings, seed: int) -> list[tuple[Chunk, str, str]]:
    """(passage, span, span) for `pairs_per_chunk` pairs of every passage long enough (see `CroppingSettings`)."""
    pairs = []
    for chunk in chunks:
        words = [match.span() for match in WORD.finditer(chunk.text)]
        if len(words) < 2 * settings.min_words:
            continue
        rng = random.Random(f"{seed}:{chunk.id}")
        for _ in range(settings.pairs_per_chunk):
            pairs.append(
                (chunk, _span(chunk.text, words, settings, rng), _span(chunk.text, words, settings, rng))
            )
    return pairs


def _span(text: str, words: list[tuple[int, int]], settings: CroppingSettings, rng: random.Random) -> str:
    """A run of whole words of `text` (`words`: their character spans), its length drawn as in the docstring."""
    length = max(settings.min_words, round(rng.uniform(settings.min_ratio, settings.max_ratio) * len(words)))
    length = min(length, len(words))
    first = rng.randrange(len(words) - length + 1)
    return text[words[first][0] : words[first + length - 1][1]]
