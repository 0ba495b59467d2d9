"""Chunking and synthetic queries as a data stage (`data.synthetic_queries`, `data.chunking`): the documents of
the train source become (query, passage) pairs (`embedding_trainer.data.synthetic_queries`). It runs while the
data module reads the train source (`RowReader.synthetic_rows`), before the hold-out, which then splits by
passage."""

import datasets
from omegaconf import DictConfig

from embedding_trainer.data.stages import DataStage, StageContext
from embedding_trainer.data.synthetic_queries import SyntheticQueries, synthetic_query_settings
from embedding_trainer.utils.errors import ConfigError

PAIR_COLUMNS = ("anchor", "positive", "chunk_id", "document_id")


class SyntheticQueriesStage(DataStage):
    """Generates the pairs of `queries` (the checked generator and chunking settings): `run` takes the
    documents, rows of `id` and `text`, and gives one row per pair: its `anchor` (the query), `positive`
    (the passage), `chunk_id` and `document_id`, in passage order."""

    slot = "synthetic_queries"
    data_keys = ("synthetic_queries", "chunking")

    def __init__(self, queries: SyntheticQueries) -> None:
        self.queries = queries

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        """Generated queries come as (query, passage) pairs: the data must be pairs; the settings are
        checked by reading them (`synthetic_query_settings`)."""
        if synthetic_query_settings(cfg.data, cfg.paths.cache_dir) is None:
            return
        if cfg.dataset_type.name != "pair":
            raise ConfigError(
                f"data.synthetic_queries makes (query, passage) pairs, but dataset_type={cfg.dataset_type.name}; "
                "use dataset_type=pair (with data=pair's settings), or data.synthetic_queries.generator=null."
            )

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "SyntheticQueriesStage | None":
        queries = synthetic_query_settings(cfg.data, cfg.paths.cache_dir)
        return cls(queries) if queries is not None else None

    def run(self, rows: datasets.Dataset, context: StageContext) -> datasets.Dataset:
        from embedding_trainer.data.sources import Document

        documents = [Document(str(row["id"]), row["text"]) for row in rows]
        pairs = self.queries.pairs(documents, context.tokenizer, context.seed)
        return datasets.Dataset.from_dict(
            {
                "anchor": [pair.query for pair in pairs],
                "positive": [pair.passage for pair in pairs],
                "chunk_id": [pair.chunk_id for pair in pairs],
                "document_id": [pair.document_id for pair in pairs],
            }
        )

    def cache_key(self, rows: datasets.Dataset, context: StageContext) -> str | None:
        """The llm generator's answers are cached per passage under `<cache_dir>/synthetic_queries/<this key>`
        (`LlmSettings.answer_key`); cropping caches nothing (None)."""
        if self.queries.generator != "llm":
            return None
        return self.queries.settings.answer_key
