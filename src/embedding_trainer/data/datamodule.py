"""The LightningDataModule: loads the train and eval data of a dataset type and batches it."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader, Sampler

from embedding_trainer.data.collate import LossBatchCollator
from embedding_trainer.data.distributed import ShardedBatchSampler
from embedding_trainer.data.leakage import LEAKAGE_MODES, Leakage, check_leakage, find_leakage
from embedding_trainer.data.length_grouping import LengthGroupedBatchSampler
from embedding_trainer.data.prepared import write_prepared_rows
from embedding_trainer.data.resumable import ResumableDataLoader, ResumableTrainData
from embedding_trainer.data.sampled_negatives import with_sampled_negatives
from embedding_trainer.data.samplers import GroupByLabelBatchSampler, NoDuplicatesBatchSampler, row_values
from embedding_trainer.data.schema import (
    binary_labels,
    check_complete_rows,
    check_not_empty,
    class_labels,
    numeric_labels,
    to_schema,
)
from embedding_trainer.data.sources import (
    RetrievalSplit,
    check_document_title,
    file_format,
    is_hub_id,
    is_retrieval_folder,
    misread_hint,
    read_documents,
    read_hub,
    read_retrieval_split,
    read_table,
)
from embedding_trainer.data.splits import (
    check_split_settings,
    judged_documents,
    keep_queries,
    sample_rows,
    split_off_test,
    train_and_validation,
)
from embedding_trainer.data.synthetic_queries import SyntheticQueries
from embedding_trainer.data.token_cache import TokenCache, UncachableFeatures
from embedding_trainer.models.prompts import column_prompts
from embedding_trainer.utils.errors import DataError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

# The split read when a source names none: BEIR folders call their validation qrels `dev`.
DEFAULT_SPLITS = {"train": "train", "eval": "test", "validation": "dev"}
# What to do when an eval or validation source does not fit the schema as the training data is read.
SOURCE_FIXES = {
    "eval": "Point data.eval_path at data like the training data (the same column_map and reader settings "
    "read it), or set data.eval_path=null to hold out data.test_size of the training rows.",
    "validation": "Point data.validation_path at data like the training data (the same column_map and reader "
    "settings read it), or set it to null (data.validation_size then holds out training queries).",
}
# Generated pairs carry the passage they came from until the splits are made (by passage).
CHUNK_COLUMNS = ("chunk_id", "document_id")


@dataclass
class EvalData:
    """What an evaluator needs: the eval rows in schema order (None when the dataset type is
    evaluated on a fixed general set), the training rows (the support set of k-NN evaluation),
    the class names of a class label, and for a retrieval-layout source the queries, full
    corpus and relevance sets of the eval split."""

    rows: datasets.Dataset | None
    retrieval: RetrievalSplit | None = None
    train_rows: datasets.Dataset | None = None
    class_names: list[str] | None = None


class EmbeddingDataModule(ResumableTrainData, pl.LightningDataModule):
    """Rows of one dataset type, normalized to its schema, batched for its loss.

    Args:
        dataset_type / columns / label / label_type / variadic / inputs: the dataset type's schema:
            ordered columns, the label column and its kind (`score`, `binary` or `class`), a
            numbered column family such as `negative` for n-tuples, and the text columns fed to
            the loss in order (default: the non-label columns; may repeat a column).
        batch_sampler: a partial batch sampler taking (dataset, batch_size, drop_last, ...).
        batch_transform: optional callable turning a list of rows into the rows the loss takes
            (with `columns` and `label` attributes), for example noise for denoising.
        train_path / eval_path: a data file, a retrieval-layout folder, or a hub dataset id;
            eval_path None: split `test_size` off the training rows, or no eval rows.
        train_split / eval_split: qrels split of a retrieval folder, or split of a hub dataset.
        validation_path / validation_split / validation_size: the validation data, which picks the
            checkpoint and which sweeps optimise, kept apart from the eval data the reported
            before/after table is scored on: a source of the same kinds (validation_path; null with a
            validation_split: that split of eval_path), or `validation_size` distinct training
            queries (first column) held out with all their rows, a fraction in (0, 1) or a count.
            None of the three: the eval data does both.
        format / read_options: the file format (None: from the extension) and reader options
            (empty: a header row; comma-separated .csv, tab-separated .tsv).
        encoding: the text encoding of local json/csv/tsv files and retrieval folders.
        document_title: `prepend` (a retrieval folder's document is `title + " " + text`, as BEIR
            and MTEB build it) or `drop` (its `text` alone).
        negatives_per_anchor: for n-tuples from (anchor, positive) pairs: sample this many negatives
            per row from the other rows' positives.
        max_length: truncation of training inputs in tokens (None: the model's max_seq_length).
        tokenize_once: tokenize every distinct training text once, before the first epoch, instead
            of in every batch (not for batch transforms, which make new texts per batch).
        group_by_length: batches of similar total token length (LengthGroupedBatchSampler), keeping
            the loss sampler's no-duplicates guarantee; not with label-grouped samplers.
        leakage: `error`, `warn` or `off`: what to do when evaluation queries or (query, relevant
            text) pairs are also training data (see `embedding_trainer.data.leakage`).
        output_dir: the run folder: the prepared train/eval rows are written to its `data/train.jsonl`, ...
            (`prepared_folder`).
        synthetic: generate the training pairs from the documents of train_path (`data.synthetic_queries`,
            `data.chunking`); test_size and validation_size then split by passage, never by pair.
        tokenizer: returns the model's tokenizer (called only when chunking needs it).
    """

    def __init__(
        self,
        dataset_type: str,
        columns: list[str],
        label: str | None,
        batch_sampler: Callable,
        train_path: str,
        eval_path: str | None = None,
        label_type: str | None = None,
        variadic: str | None = None,
        inputs: list[str] | None = None,
        batch_transform: Callable | None = None,
        train_split: str | None = None,
        eval_split: str | None = None,
        validation_path: str | None = None,
        validation_split: str | None = None,
        validation_size: float | None = None,
        hub_config: str | None = None,
        format: str | None = None,
        read_options: dict | None = None,
        encoding: str = "utf-8",
        document_title: str = "prepend",
        column_map: dict | None = None,
        score_range: list[float] | None = None,
        class_names: list[str] | None = None,
        test_size: float | None = None,
        negatives_per_anchor: int | None = None,
        max_samples: int | None = None,
        max_eval_samples: int | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        tokenize_once: bool = True,
        group_by_length: bool = False,
        num_workers: int = 0,
        leakage: str = "warn",
        seed: int = 0,
        output_dir: str | None = None,
        synthetic: SyntheticQueries | None = None,
        tokenizer: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self.dataset_type = dataset_type
        self.columns = list(columns)
        self.label = label
        self.label_type = label_type
        self.variadic = variadic
        self.inputs = list(inputs) if inputs else None
        self.batch_sampler = batch_sampler
        self.batch_transform = batch_transform
        self.train_source = (train_path, train_split)
        self.eval_source = (eval_path, eval_split)
        if validation_path is None and validation_split is not None:
            validation_path = eval_path
        self.validation_source = (validation_path, validation_split)
        self.validation_size = validation_size
        self.hub_config = hub_config
        self.format = format
        self.read_options = dict(read_options or {})
        self.encoding = encoding
        self.document_title = document_title
        self.column_map = dict(column_map) if column_map else None
        self.score_range = list(score_range) if score_range is not None else None
        self.class_names = list(class_names) if class_names else None
        self.test_size = test_size
        self.negatives_per_anchor = negatives_per_anchor
        self.max_samples = max_samples
        self.max_eval_samples = max_eval_samples
        self.batch_size = batch_size
        self.max_length = max_length
        self.tokenize_once = tokenize_once
        self.group_by_length = group_by_length
        self.token_cache: TokenCache | None = None
        self.num_workers = num_workers
        self.leakage_mode = leakage
        self.leakage: Leakage | None = None
        self.seed = seed
        self.synthetic = synthetic
        self.tokenizer = tokenizer
        # The generated pairs with their passages and the split each went to (written by `write_prepared`).
        self.synthetic_pairs: dict[str, datasets.Dataset] = {}
        # Where `write_prepared` writes the rows trained and evaluated on (None: nowhere).
        self.prepared_folder = Path(output_dir) / "data" if output_dir else None
        self.train_dataset: datasets.Dataset | None = None
        self.eval_data: EvalData | None = None
        self.validation_data: EvalData | None = None
        self.preprocess: Callable | None = None
        # The model's named prompts (`model.prompts`), set with `preprocess`: each training column's
        # texts get the one of its role (`embedding_trainer.models.prompts.column_prompts`).
        self.prompts: dict[str, str | None] = {}
        # Set instead of `preprocess` to batch rows into something else than tokens (a query adapter's
        # frozen embeddings): it collates the sampled rows; no tokenizing, no length grouping.
        self.collator: Callable[[list[dict]], tuple] | None = None
        # Set to make each batch's labels from its rows (a teacher's outputs, for distillation losses).
        self.targets: Callable[[list[dict]], torch.Tensor] | None = None

    def check_sources(self) -> None:
        """Raise DataError if a configured local path does not exist (cheap: nothing is read)."""
        sources = {
            "train_path": self.train_source,
            "eval_path": self.eval_source,
            "validation_path": self.validation_source,
        }
        for key, (path, _split) in sources.items():
            if path is not None and not Path(path).exists() and not is_hub_id(path):
                raise DataError(
                    f"data.{key}={path} does not exist. Point it at a data file, a retrieval folder or a hub dataset id."
                )
        train_path = self.train_source[0]
        if self.synthetic is not None and not Path(train_path).exists():
            raise DataError(
                f"data.synthetic_queries generates queries for local documents, but data.train_path={train_path} is "
                "no local path: point it at a folder of .txt/.md files, a JSONL file of {text} rows or a retrieval folder."
            )
        if self.leakage_mode not in LEAKAGE_MODES:
            raise DataError(
                f"data.leakage must be one of {', '.join(LEAKAGE_MODES)}, got {self.leakage_mode!r}."
            )
        check_document_title(self.document_title)
        check_split_settings(self.test_size, self.validation_size, *self.validation_source)
        if self.group_by_length and self._sampler_is(GroupByLabelBatchSampler):
            raise DataError(
                "data.group_by_length=true cannot keep the label groups this loss's batch sampler makes; "
                "set data.group_by_length=false."
            )

    def load(self) -> None:
        """Read, normalize and check the train, eval and validation rows (see `embedding_trainer.data.splits`
        for how the training rows are cut; writing nothing: see `write_prepared`). Runs before any model loads."""
        (train_rows, train_retrieval), (rows, retrieval), notes = self._train_and_eval_rows(True)
        validation_path, validation_split = self.validation_source
        validation, validation_retrieval = None, None
        if validation_path is not None:
            validation, validation_retrieval = self._read(validation_path, validation_split, "validation")
        train_rows, rows, validation = self._labelled(train_rows, rows, validation)
        chunks = CHUNK_COLUMNS[0] if self.synthetic is not None else None
        split = train_and_validation(
            train_rows, self.max_samples, None if validation_path else self.validation_size, self.seed, chunks
        )
        self.train_dataset, notes = split.kept, [*notes, split.note]
        if split.held is not None:
            validation = split.held
            validation_retrieval = judged_documents(train_retrieval) if train_retrieval else None
        if self.synthetic is not None:
            self.train_dataset, rows, validation = self._set_aside_passages(
                self.train_dataset, rows, validation
            )
        self.eval_data = self._eval_data(rows, retrieval)
        if validation is not None:
            self.validation_data = self._eval_data(validation, validation_retrieval)
        self._check_leakage()
        eval_count = "no" if rows is None else len(self.eval_data.rows)
        validation_count = "" if validation is None else f", {len(self.validation_data.rows)} validation rows"
        held = "; ".join(note for note in notes if note)
        log.info(
            f"Data: {len(self.train_dataset)} training rows, {eval_count} eval rows{validation_count} "
            f"({self.dataset_type})" + (f": {held} (seed {self.seed})" if held else "")
        )

    def load_evaluation(self, eval_rows: bool = True, train_rows: bool = False) -> None:
        """Read only what an evaluation without training scores: the eval rows (when `eval_rows`; with
        eval_path null, the part data.test_size holds out of the training rows, the same rows `load` holds
        out) and the training rows when `train_rows` (a k-NN support set, class names) or the eval rows
        are a part of them; no validation data, no leakage check (`leakage` stays None)."""
        if not eval_rows:
            self.check_sources()
            self.eval_data = EvalData(rows=None, class_names=self.class_names)
            return
        (train, _), (rows, retrieval), notes = self._train_and_eval_rows(train_rows)
        self.train_dataset, rows, _ = self._labelled(train, rows, None)
        self.eval_data = self._eval_data(rows, retrieval)
        held = f": {notes[0]} (seed {self.seed})" if notes else ""
        log.info(f"Data: {len(self.eval_data.rows)} eval rows ({self.dataset_type}){held}")

    def _train_and_eval_rows(self, train: bool) -> tuple[tuple, tuple, list[str]]:
        """((training rows, their retrieval split), (eval rows, theirs), notes): the eval rows of eval_path,
        or with eval_path null data.test_size of the training rows held out (noted); the training rows are
        (None, None) when not `train` and the eval rows are not a part of them."""
        self.check_sources()
        eval_path, eval_split = self.eval_source
        train_rows, train_retrieval = None, None
        if train or eval_path is None:
            if self.synthetic is not None:
                train_rows = self._synthetic_rows(self.train_source[0])
            else:
                train_rows, train_retrieval = self._read(*self.train_source, "train")
        if eval_path is not None:
            return (train_rows, train_retrieval), self._read(eval_path, eval_split, "eval"), []
        if not self.test_size:
            return (train_rows, train_retrieval), (None, None), []
        passages = train_rows[CHUNK_COLUMNS[0]] if self.synthetic is not None else None
        test = split_off_test(train_rows, self.test_size, self.seed, passages)
        note = f"no data.eval_path, so {test.note} (set data.eval_path to test on data of your own)"
        return (test.kept, train_retrieval), (test.held, None), [note]

    def _labelled(self, *splits: datasets.Dataset | None) -> list[datasets.Dataset | None]:
        """The (train, eval, validation) rows with class labels as class indices (other label kinds: as
        they are); the class names default to the sorted classes of the training rows (the first; needed then)."""
        if self.label_type != "class":
            return list(splits)
        if not self.class_names:
            self.class_names = sorted({str(value) for value in splits[0][self.label]})
        names = ("train data", "eval data", "validation data")
        return [
            class_labels(rows, self.label, name, self.class_names) if rows is not None else None
            for rows, name in zip(splits, names)
        ]

    def replace_training_rows(self, rows: datasets.Dataset) -> None:
        """Train on `rows` instead (a data stage's output, such as rows with mined negatives), checked
        for leakage again."""
        self.train_dataset = rows
        self._check_leakage()

    def _check_leakage(self) -> None:
        """Find (and by `leakage_mode`, report or refuse) evaluation data among the training rows."""
        self.leakage = find_leakage(
            self.train_dataset, self.text_columns, self.eval_data.rows, self.eval_data.retrieval
        )
        check_leakage(self.leakage, self.leakage_mode)

    @property
    def primary(self) -> "EmbeddingDataModule":
        """The data module whose rows stand for the run's (health probes): itself (with several
        objectives, the first objective's; see `ObjectivesDataModule`)."""
        return self

    @property
    def selection_data(self) -> EvalData:
        """The data that picks the checkpoint: the validation data, or the eval data when there is none."""
        return self.validation_data or self.eval_data

    def _eval_data(self, rows: datasets.Dataset | None, retrieval: RetrievalSplit | None) -> EvalData:
        """Evaluation data of `rows` (at most max_eval_samples of them, seeded) and, for a retrieval
        source, its split restricted to those rows' queries (the corpus stays whole)."""
        if rows is not None:
            rows = sample_rows(rows, self.max_eval_samples, self.seed)
            if retrieval is not None:
                retrieval = keep_queries(retrieval, rows["anchor"])
        return EvalData(
            rows=rows, retrieval=retrieval, train_rows=self.train_dataset, class_names=self.class_names
        )

    def _read(
        self, path: str, split: str | None, role: str
    ) -> tuple[datasets.Dataset, RetrievalSplit | None]:
        """`_read_source`; an eval or validation source that does not fit says how to do without it."""
        try:
            return self._read_source(path, split, role)
        except DataError as error:
            raise DataError(f"{error} {SOURCE_FIXES.get(role, '')}".rstrip()) from None

    def _read_source(
        self, path: str, split: str | None, role: str
    ) -> tuple[datasets.Dataset, RetrievalSplit | None]:
        """The rows of one source fitted to the schema, and for a retrieval folder its split. A local
        file's rows that do not fit get the reader settings and the first row as read in the message."""
        split = split or DEFAULT_SPLITS[role]  # used by retrieval folders and hub ids
        source = f"{role} data {path}"
        if is_retrieval_folder(Path(path)):
            retrieval = read_retrieval_split(Path(path), split, self.encoding, self.document_title)
            return self._fit(retrieval.pairs(), f"{source} (split {split})"), retrieval
        if Path(path).is_dir():
            raise DataError(
                f"{source} is a folder but not in the retrieval layout (corpus.jsonl, queries.jsonl)."
            )
        if not Path(path).exists():
            return self._fit(read_hub(path, self.hub_config, split), f"{source} (split {split})"), None
        fmt = file_format(Path(path), self.format)
        table = read_table(Path(path), fmt, self.read_options, self.encoding)
        try:
            return self._fit(table, source), None
        except DataError as error:
            raise DataError(f"{error} {misread_hint(table, fmt, self.read_options, self.encoding)}") from None

    def _synthetic_rows(self, path: str) -> datasets.Dataset:
        """The rows generated from the documents at `path` (see `SyntheticQueries`), fitted to the schema,
        with each pair's `chunk_id` and `document_id`."""
        pairs = self.synthetic.pairs(
            read_documents(Path(path), self.encoding, self.document_title), self.tokenizer, self.seed
        )
        if not pairs:
            raise DataError(
                f"data.synthetic_queries made no pair from {path}: its passages are too short for "
                "data.synthetic_queries.cropping (lower its min_words, or use longer documents)."
            )
        table = datasets.Dataset.from_dict(
            {"anchor": [pair.query for pair in pairs], "positive": [pair.passage for pair in pairs]}
        )
        rows = self._fit(table, f"synthetic pairs from {path}")
        rows = rows.add_column("chunk_id", [pair.chunk_id for pair in pairs])
        return rows.add_column("document_id", [pair.document_id for pair in pairs])

    def _set_aside_passages(self, *splits: datasets.Dataset | None) -> list[datasets.Dataset | None]:
        """Keep the (train, eval, validation) rows that are generated with their passages for `write_prepared`,
        and return the splits without those columns."""
        generated = [rows is not None and CHUNK_COLUMNS[0] in rows.column_names for rows in splits]
        names = ("train", "eval", "validation")
        self.synthetic_pairs = {name: rows for name, rows, kept in zip(names, splits, generated) if kept}
        return [
            rows.remove_columns(list(CHUNK_COLUMNS)) if kept else rows
            for rows, kept in zip(splits, generated)
        ]

    def _fit(self, table: datasets.Dataset, source: str) -> datasets.Dataset:
        """`table` as rows of the schema (columns renamed and ordered, negatives sampled, labels
        checked and converted); DataError naming `source` when it does not fit."""
        check_not_empty(table, source)
        if self.negatives_per_anchor:
            table = with_sampled_negatives(table, self.negatives_per_anchor, self.variadic, self.seed)
        rows = to_schema(table, self.columns, self.column_map, self.dataset_type, source, self.variadic)
        check_complete_rows(rows.select_columns([c for c in rows.column_names if c != self.label]), source)
        if self.label_type == "score":
            rows = numeric_labels(rows, self.label, source, self.score_range)
        elif self.label_type == "binary":
            rows = binary_labels(rows, self.label, source)
        return rows

    def write_prepared(self) -> None:
        """Write the exact rows trained and evaluated on to `prepared_folder` (<output_dir>/data/; on
        global rank zero only; see `write_prepared_rows`)."""
        if self.prepared_folder is not None and rank_zero_only.rank == 0:
            validation = self.validation_data.rows if self.validation_data else None
            splits = {"train": self.train_dataset, "eval": self.eval_data.rows, "validation": validation}
            write_prepared_rows(self.prepared_folder, splits, self.class_names, self.synthetic_pairs)

    def use_model(self, model) -> None:
        """Tokenize training batches with `model`'s tokenizer and its named prompts (`model.prompts`)."""
        self.preprocess, self.prompts = model.preprocess, dict(model.prompts)

    def train_dataloader(self) -> DataLoader:
        """Batches of `(features, labels)` drawn by the loss's batch sampler, seeded by `seed`. With
        several ranks, every rank draws the same global batches of batch_size x world size and
        takes its own slice (`ShardedBatchSampler`)."""
        world_size, rank = world_and_rank(self.trainer)
        sampler, collate = self.global_batches(world_size)
        # its position in the epoch is saved in checkpoints
        return self.resumable(
            train_loader(self.train_dataset, sampler, collate, self.num_workers, rank, world_size)
        )

    def global_batches(self, world_size: int) -> tuple[Sampler, Callable[[list[dict]], tuple]]:
        """The batch sampler of global batches (batch_size x `world_size` rows, before any rank takes its
        slice) over the training rows, and the collate function that makes a batch's `(features, labels)`."""
        if self.train_dataset is None or (self.preprocess is None and self.collator is None):
            raise RuntimeError("Call load() and set `preprocess` (the model's tokenizer) before training.")
        tokenized = self.collator is None
        use_token_cache = tokenized and self.tokenize_once and self.batch_transform is None
        if tokenized and (use_token_cache or self.group_by_length) and self.token_cache is None:
            self.token_cache = self._build_token_cache()
        if tokenized and self.group_by_length and self.token_cache is not None:
            sampler = self._length_grouped_sampler(self.batch_size * world_size)
        else:
            sampler = self.batch_sampler(
                self.train_dataset,
                batch_size=self.batch_size * world_size,
                drop_last=False,
                valid_label_columns=[self.label] if self.label else None,
                generator=torch.Generator(),
                seed=self.seed,
            )
        if self.batch_transform is not None:
            inputs, label = self.batch_transform.columns, self.batch_transform.label
        else:
            inputs = self.inputs or self.text_columns
            label = self.label
        token_cache = self.token_cache if use_token_cache else None
        collate = self.collator or LossBatchCollator(
            self.preprocess,
            inputs,
            label,
            self.max_length,
            self.batch_transform,
            token_cache,
            column_prompts(self.prompts, inputs),
            self.targets,
        )
        return sampler, collate

    def _sampler_is(self, sampler_class: type) -> bool:
        target = getattr(self.batch_sampler, "func", self.batch_sampler)
        return isinstance(target, type) and issubclass(target, sampler_class)

    @property
    def text_columns(self) -> list[str]:
        """The training rows' text columns (all but the label), in order."""
        return [column for column in self.train_dataset.column_names if column != self.label]

    def row_token_counts(self) -> np.ndarray:
        """Each training row's tokens over its text columns, with their prompts, after truncation
        (needs the token cache)."""
        prompts = column_prompts(self.prompts, self.text_columns)
        return sum(
            self.token_cache.text_lengths(self.train_dataset[column], prompts[column])
            for column in self.text_columns
        )

    def _build_token_cache(self) -> TokenCache | None:
        """The training texts tokenized once, each column's with its prompt (None when the model's
        features cannot be cached: then every batch is tokenized as it comes)."""
        texts: dict[str | None, list[str]] = {}
        for column, prompt in column_prompts(self.prompts, self.text_columns).items():
            texts.setdefault(prompt, []).extend(self.train_dataset[column])
        try:
            return TokenCache(self.preprocess, texts, self.max_length)
        except UncachableFeatures as error:
            log.warning(f"Tokenizing per batch: {error}")
            return None

    def _length_grouped_sampler(self, batch_size: int) -> LengthGroupedBatchSampler:
        """Length-grouped batches by the rows' token counts, without repeated texts in a batch when
        the loss's sampler promises that."""
        values = None
        if self._sampler_is(NoDuplicatesBatchSampler):
            values = row_values(self.train_dataset, self.text_columns)
        return LengthGroupedBatchSampler(self.row_token_counts(), batch_size, False, values, seed=self.seed)


def world_and_rank(trainer: pl.Trainer | None) -> tuple[int, int]:
    """The trainer's world size and global rank ((1, 0) before a trainer is attached)."""
    return (trainer.world_size, trainer.global_rank) if trainer else (1, 0)


def train_loader(
    dataset, global_sampler: Sampler, collate: Callable, num_workers: int, rank: int, world_size: int
) -> ResumableDataLoader:
    """The resumable training loader of `dataset`'s rows: rank `rank`'s slice of each global batch of
    `global_sampler` (`ShardedBatchSampler`), collated by `collate`."""
    return ResumableDataLoader(
        dataset,
        batch_sampler=ShardedBatchSampler(global_sampler, rank, world_size),
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
