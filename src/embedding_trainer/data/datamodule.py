"""The LightningDataModule: loads the train and eval data of a dataset type and batches it."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from embedding_trainer.data.collate import LossBatchCollator
from embedding_trainer.data.schema import check_not_empty, numeric_labels, to_schema
from embedding_trainer.data.sources import (
    RetrievalSplit,
    file_format,
    is_retrieval_folder,
    read_retrieval_split,
    read_table,
)
from embedding_trainer.errors import DataError
from embedding_trainer.log import get_logger

log = get_logger(__name__)


@dataclass
class EvalData:
    """What an evaluator needs: the eval rows in schema order, and for a retrieval-layout source
    the queries, full corpus and relevance sets of the eval split."""

    rows: datasets.Dataset
    retrieval: RetrievalSplit | None = None


class EmbeddingDataModule(pl.LightningDataModule):
    """Rows of one dataset type, normalized to its schema, batched for its loss.

    Args:
        train_path / eval_path: a data file or a retrieval-layout folder.
        train_split / eval_split: the qrels split of a retrieval-layout folder.
        columns: the dataset type's schema, in order; `label` names the label column among them.
        batch_sampler: a partial batch sampler class taking (dataset, batch_size, drop_last, ...).
        max_length: truncation of training inputs in tokens (None: the model's max_seq_length).
    """

    def __init__(
        self,
        dataset_type: str,
        columns: list[str],
        label: str | None,
        batch_sampler: Callable,
        train_path: str,
        eval_path: str,
        train_split: str | None = None,
        eval_split: str | None = None,
        format: str | None = None,
        read_options: dict | None = None,
        column_map: dict | None = None,
        score_range: list[float] | None = None,
        max_samples: int | None = None,
        max_eval_samples: int | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.dataset_type = dataset_type
        self.columns = list(columns)
        self.label = label
        self.batch_sampler = batch_sampler
        self.train_source = (Path(train_path), train_split)
        self.eval_source = (Path(eval_path), eval_split)
        self.format = format
        self.read_options = dict(read_options or {})
        self.column_map = dict(column_map) if column_map else None
        self.score_range = list(score_range) if score_range is not None else None
        self.max_samples = max_samples
        self.max_eval_samples = max_eval_samples
        self.batch_size = batch_size
        self.max_length = max_length
        self.num_workers = num_workers
        self.seed = seed
        self.train_dataset: datasets.Dataset | None = None
        self.eval_data: EvalData | None = None
        self.preprocess: Callable | None = None

    def check_sources(self) -> None:
        """Raise DataError if a configured path does not exist (cheap: nothing is read)."""
        for key, (path, _split) in (("train_path", self.train_source), ("eval_path", self.eval_source)):
            if not path.exists():
                raise DataError(f"data.{key}={path} does not exist. Point it at a data file or a retrieval folder.")

    def load(self) -> None:
        """Read, normalize and check the train and eval rows. Runs before any model loads."""
        self.check_sources()
        self.train_dataset, _ = self._load_split(*self.train_source, self.max_samples, "train")
        rows, retrieval = self._load_split(*self.eval_source, self.max_eval_samples, "eval")
        self.eval_data = EvalData(rows=rows, retrieval=retrieval)
        log.info(f"Data: {len(self.train_dataset)} training rows, {len(rows)} eval rows ({self.dataset_type})")

    def _load_split(
        self, path: Path, split: str | None, limit: int | None, role: str
    ) -> tuple[datasets.Dataset, RetrievalSplit | None]:
        source = f"{role} data {path}" + (f" (split {split})" if split else "")
        retrieval = None
        if is_retrieval_folder(path):
            retrieval = read_retrieval_split(path, split or role)
            table = retrieval.pairs()
        else:
            if path.is_dir():
                raise DataError(f"{source} is a folder but not in the retrieval layout (corpus.jsonl, queries.jsonl).")
            table = read_table(path, file_format(path, self.format), self.read_options)
        check_not_empty(table, source)
        rows = to_schema(table, self.columns, self.column_map, self.dataset_type, source)
        if self.label is not None:
            rows = numeric_labels(rows, self.label, source, self.score_range)
        if limit is not None and limit < len(rows):
            rows = rows.shuffle(seed=self.seed).select(range(limit))
            if retrieval is not None:
                retrieval = _keep_queries(retrieval, rows["anchor"])
        return rows, retrieval

    def train_dataloader(self) -> DataLoader:
        """Batches of `(features, labels)` drawn by the loss's batch sampler, seeded by `seed`."""
        if self.train_dataset is None or self.preprocess is None:
            raise RuntimeError("Call load() and set `preprocess` (the model's tokenizer) before training.")
        sampler = self.batch_sampler(
            self.train_dataset,
            batch_size=self.batch_size,
            drop_last=False,
            valid_label_columns=[self.label] if self.label else None,
            generator=torch.Generator(),
            seed=self.seed,
        )
        text_columns = [column for column in self.columns if column != self.label]
        collate = LossBatchCollator(self.preprocess, text_columns, self.label, self.max_length)
        return DataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


def _keep_queries(split: RetrievalSplit, query_texts: list[str]) -> RetrievalSplit:
    """`split` restricted to the queries whose text is in `query_texts` (the corpus stays whole)."""
    keep = set(query_texts)
    queries = {qid: text for qid, text in split.queries.items() if text in keep}
    return RetrievalSplit(
        queries=queries,
        corpus=split.corpus,
        relevant_docs={qid: split.relevant_docs[qid] for qid in queries},
    )
