"""Batch transforms: losses over single sentences that build their own pairs from each batch."""

import random
from typing import ClassVar


class ContrastiveTensionPairs:
    """Rows {sentence} -> {sentence_a, sentence_b, label}: each sentence paired with itself
    (label 1) once per `positive_every` rows, otherwise with another sentence of the batch
    (label 0), as contrastive tension trains (Carlsson et al., 2021)."""

    columns: ClassVar[list[str]] = ["sentence_a", "sentence_b"]
    label = "label"

    def __init__(self, positive_every: int = 8, seed: int = 0) -> None:
        self.positive_every = positive_every
        self.rng = random.Random(seed)

    def __call__(self, rows: list[dict]) -> list[dict]:
        sentences = [row["sentence"] for row in rows]
        pairs = []
        for index, sentence in enumerate(sentences):
            if index % self.positive_every == 0 or len(sentences) == 1:
                pairs.append({"sentence_a": sentence, "sentence_b": sentence, "label": 1.0})
            else:
                other = self.rng.choice([s for s in sentences if s != sentence] or [sentence])
                pairs.append({"sentence_a": sentence, "sentence_b": other, "label": float(other == sentence)})
        return pairs


class DeleteWordsNoise:
    """Rows {sentence} -> {damaged_sentence, original_sentence}: each word deleted with probability
    `deletion_ratio` (at least one word kept), the noise of TSDAE (Wang et al., 2021)."""

    columns: ClassVar[list[str]] = ["damaged_sentence", "original_sentence"]
    label = None

    def __init__(self, deletion_ratio: float = 0.6, seed: int = 0) -> None:
        self.deletion_ratio = deletion_ratio
        self.rng = random.Random(seed)

    def damage(self, sentence: str) -> str:
        words = sentence.split()
        if not words:
            return sentence
        kept = [word for word in words if self.rng.random() >= self.deletion_ratio]
        return " ".join(kept or [self.rng.choice(words)])

    def __call__(self, rows: list[dict]) -> list[dict]:
        return [
            {"damaged_sentence": self.damage(row["sentence"]), "original_sentence": row["sentence"]}
            for row in rows
        ]
