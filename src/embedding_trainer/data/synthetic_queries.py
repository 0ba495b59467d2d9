"""Training pairs for a corpus without queries, a data stage: the documents of `data.train_path` (a
folder of .txt/.md files, a JSONL file of {text} rows, or a retrieval folder's corpus) are cut into
passages (`data.chunking`, or whole documents) and each passage gets queries from a generator
(`data.synthetic_queries.generator`): `cropping` (two spans of the passage, offline) or `llm` (questions
by a chat model). Every pair keeps the id of the passage it came from, so splits are by passage."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embedding_trainer.data.chunking import Chunk, ChunkingSettings, chunk_documents, whole_documents
from embedding_trainer.data.cropping import CroppingSettings, cropped_pairs
from embedding_trainer.data.llm_queries import LlmSettings, generate_questions
from embedding_trainer.data.sources import Document
from embedding_trainer.settings.block import settings_from_block
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

GENERATORS = {"cropping": CroppingSettings, "llm": LlmSettings}
BLOCK_KEYS = ("generator", *GENERATORS)


@dataclass
class SyntheticPair:
    """A generated (query, passage) pair and the passage it came from."""

    query: str
    passage: str
    chunk_id: str
    document_id: str


@dataclass(frozen=True)
class SyntheticQueries:
    """The checked `data.synthetic_queries` and `data.chunking` settings of a run (`chunking` None: whole
    documents are the passages); `cache_dir` keeps the llm generator's answers."""

    generator: str
    settings: CroppingSettings | LlmSettings
    chunking: ChunkingSettings | None
    cache_dir: str

    def pairs(
        self, documents: list[Document], tokenizer: Callable[[], object], seed: int
    ) -> list[SyntheticPair]:
        """The pairs of every passage of `documents` (`tokenizer()`: the model's tokenizer, loaded
        only when chunking needs it), in passage order."""
        chunks = self._passages(documents, tokenizer)
        if self.generator == "cropping":
            generated = cropped_pairs(chunks, self.settings, seed)
            log.info(f"Synthetic queries (cropping): {len(generated)} span pairs from {len(chunks)} passages")
        else:
            generated = [
                (chunk, question, chunk.text)
                for chunk, question in generate_questions(chunks, self.settings, self.cache_dir).pairs
            ]
        return [
            SyntheticPair(query, passage, chunk.id, chunk.document_id) for chunk, query, passage in generated
        ]

    def _passages(self, documents: list[Document], tokenizer: Callable[[], object]) -> list[Chunk]:
        if self.chunking is None:
            return whole_documents(documents)
        chunks = chunk_documents(documents, tokenizer(), self.chunking)
        log.info(
            f"Chunking: {len(documents)} documents -> {len(chunks)} passages of at most {self.chunking.size} tokens "
            f"(overlap {self.chunking.overlap})"
        )
        return chunks


def synthetic_query_settings(data_cfg: DictConfig, cache_dir: str | Path) -> SyntheticQueries | None:
    """The checked synthetic-query settings of a data config; None when `synthetic_queries` is absent,
    null or names no generator. ConfigError for an unknown generator or key, or bad settings."""
    block = data_cfg.get("synthetic_queries")
    if not block or block.get("generator") is None:
        return None
    unknown = sorted(set(block) - set(BLOCK_KEYS))
    if unknown:
        raise ConfigError(
            f"data.synthetic_queries has no key {', '.join(unknown)}; its keys are {', '.join(BLOCK_KEYS)}."
        )
    generator = block.generator
    if generator not in GENERATORS:
        raise ConfigError(
            f"data.synthetic_queries.generator must be one of {', '.join(GENERATORS)} (or null: off), got {generator!r}."
        )
    settings = settings_from_block(
        GENERATORS[generator],
        block.get(generator) or OmegaConf.create({}),
        f"data.synthetic_queries.{generator}",
    )
    chunking = data_cfg.get("chunking")
    chunking_settings = settings_from_block(ChunkingSettings, chunking, "data.chunking") if chunking else None
    return SyntheticQueries(generator, settings, chunking_settings, str(cache_dir))
