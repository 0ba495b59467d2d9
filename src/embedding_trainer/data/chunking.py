"""Documents cut into passages of at most `size` tokens of the model's tokenizer, at sentence
boundaries where it can: whole sentences are packed into a passage while they fit; consecutive
passages share up to `overlap` tokens of whole trailing sentences; a sentence longer than `size`
is cut into pieces of at most `size` tokens, between words where a word boundary is in reach. A passage is the document's own text from its first token to
its last (nothing is re-joined or decoded)."""

import re
from dataclasses import dataclass

from embedding_trainer.data.sources import Document
from embedding_trainer.utils.errors import ConfigError, DataError

# Where a sentence ends: after ., ! or ? (with closing quotes or brackets) before whitespace, or at a line break.
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\s*\n\s*")


@dataclass
class ChunkingSettings:
    """`data.chunking`: passages of at most `size` tokens, consecutive ones sharing up to `overlap`
    tokens (whole sentences)."""

    size: int = 256
    overlap: int = 32

    def check(self) -> None:
        for key, value, low in (("size", self.size, 1), ("overlap", self.overlap, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"data.chunking.{key} must be a whole number of at least {low}, got {value!r}."
                )
        if self.overlap >= self.size:
            raise ConfigError(
                f"data.chunking.overlap={self.overlap} must be smaller than data.chunking.size={self.size}."
            )


@dataclass
class Chunk:
    """A passage of document `document_id`: the `index`-th of its passages; `id` is `<document id>#<index>`."""

    document_id: str
    index: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.document_id}#{self.index}"


def whole_documents(documents: list[Document]) -> list[Chunk]:
    """Every document as one passage (no chunking)."""
    return [Chunk(doc.id, 0, doc.text.strip()) for doc in documents]


def chunk_documents(documents: list[Document], tokenizer, settings: ChunkingSettings) -> list[Chunk]:
    """The passages of every document, in document order (see the module docstring). `tokenizer`: a
    fast Hugging Face tokenizer (its offsets place the tokens in the text)."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"data.chunking needs a fast tokenizer (with character offsets); {type(tokenizer).__name__} is not. "
            "Set data.chunking=null to use whole documents as passages."
        )
    return [chunk for doc in documents for chunk in _chunk(doc, tokenizer, settings)]


def _chunk(document: Document, tokenizer, settings: ChunkingSettings) -> list[Chunk]:
    text = document.text
    offsets = [
        (start, end)
        for start, end in tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )["offset_mapping"]
        if end > start
    ]
    word_starts = {0} | {n for n in range(1, len(offsets)) if offsets[n][0] > offsets[n - 1][1]}
    units = [
        piece
        for sentence in _sentence_token_ranges(text, offsets)
        for piece in _pieces(sentence, settings.size, word_starts)
    ]
    chunks: list[Chunk] = []
    current: list[tuple[int, int]] = []  # token ranges [first, last) of the passage being packed
    for unit in units:
        if current and _tokens(current) + _tokens([unit]) > settings.size:
            chunks.append(_passage(document, len(chunks), text, offsets, current))
            current = _overlap(current, settings.overlap, settings.size - _tokens([unit]))
        current.append(unit)
    if current:
        chunks.append(_passage(document, len(chunks), text, offsets, current))
    return chunks


def _sentence_token_ranges(text: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each sentence as the range [first, last) of the tokens that start inside it (empty ones left out)."""
    ends = [match.end() for match in SENTENCE_END.finditer(text)] + [len(text)]
    ranges, token = [], 0
    for end in ends:
        first = token
        while token < len(offsets) and offsets[token][0] < end:
            token += 1
        if token > first:
            ranges.append((first, token))
    return ranges


def _pieces(sentence: tuple[int, int], size: int, word_starts: set[int]) -> list[tuple[int, int]]:
    """A sentence's token range cut into ranges of at most `size` tokens, each cut at the last token that
    starts a word (`word_starts`) within reach, else after `size` tokens (a word longer than that)."""
    first, last = sentence
    pieces = []
    while last - first > size:
        cut = max((n for n in range(first + 1, first + size + 1) if n in word_starts), default=first + size)
        pieces.append((first, cut))
        first = cut
    return [*pieces, (first, last)]


def _tokens(ranges: list[tuple[int, int]]) -> int:
    return sum(last - first for first, last in ranges)


def _overlap(ranges: list[tuple[int, int]], overlap: int, room: int) -> list[tuple[int, int]]:
    """The trailing whole units of `ranges` that fit in min(overlap, room) tokens."""
    kept: list[tuple[int, int]] = []
    for unit in reversed(ranges):
        if _tokens(kept) + _tokens([unit]) > min(overlap, room):
            break
        kept.insert(0, unit)
    return kept


def _passage(
    document: Document, index: int, text: str, offsets: list[tuple[int, int]], ranges: list[tuple[int, int]]
) -> Chunk:
    start, end = offsets[ranges[0][0]][0], offsets[ranges[-1][1] - 1][1]
    return Chunk(document.id, index, text[start:end])
