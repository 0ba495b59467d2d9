"""The LightningDataModule: loads the train and eval data of a dataset type and batches it."""

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import datasets
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader, Sampler

from embedding_trainer.data.batching import (
    build_token_cache,
    length_grouped_sampler,
    loss_sampler,
    row_token_counts,
    train_loader,
    world_and_rank,
)
from embedding_trainer.data.collate import LossBatchCollator
from embedding_trainer.data.leakage import Leakage
from embedding_trainer.data.loading import EvalData, LoadedData, SplitLoader
from embedding_trainer.data.prepared import write_prepared_rows
from embedding_trainer.data.reading import RowReader
from embedding_trainer.data.relevance import RelevanceSets
from embedding_trainer.data.resumable import ResumableTrainData
from embedding_trainer.data.settings import DataSettings
from embedding_trainer.data.stages import SLOTS, DataStage, StageContext
from embedding_trainer.data.stages.leakage import LeakageCheck
from embedding_trainer.data.token_cache import TokenCache
from embedding_trainer.models.prompts import column_prompts
from embedding_trainer.training.declared import BatchNeeds

__all__ = ["EmbeddingDataModule", "EvalData"]


class EmbeddingDataModule(ResumableTrainData, pl.LightningDataModule):
    """Rows of one dataset type, normalized to its schema, batched for its loss.

    Args:
        settings: the schema, sources, reader, normalization, split, batching and leakage settings and
            the seed (`DataSettings`).
        prepared_folder: where `write_prepared` writes the prepared train/eval rows (`train.jsonl`, ...;
            a run's `<output_dir>/data`; None: nowhere).
        stages: the data stages run while the rows load (`data.stages.LOAD_SLOTS`): the chunking /
            synthetic-queries stage generates the training pairs from the documents of the train source
            (`data.synthetic_queries`, `data.chunking`); test_size and the validation hold-out
            (`data.validation_size`) then split by passage, never by pair. The stages that need the model
            run in `run_stages`.
        tokenizer: returns the model's tokenizer (called only when chunking needs it).
    """

    def __init__(
        self,
        settings: DataSettings,
        prepared_folder: str | Path | None = None,
        stages: Sequence[DataStage] = (),
        tokenizer: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        synthetic = next((stage for stage in stages if stage.slot == "synthetic_queries"), None)
        # The validation hold-out (`data.validation_size`; None: none), run by `load` after the test split.
        self._holdout = next((stage for stage in stages if stage.slot == "holdout"), None)
        self._reader = RowReader(
            settings.schema, settings.normalization, settings.reading, settings.seed, synthetic, tokenizer
        )
        self.train_source, self.eval_source = settings.sources.train, settings.sources.eval
        self.class_names = list(settings.normalization.class_names or []) or None
        self.leakage: Leakage | None = None
        self.token_cache: TokenCache | None = None
        # The generated pairs with their passages and the split each went to (written by `write_prepared`).
        self._synthetic_pairs: dict[str, datasets.Dataset] = {}
        # Where `write_prepared` writes the rows trained and evaluated on (None: nowhere).
        self.prepared_folder = Path(prepared_folder) if prepared_folder is not None else None
        self.train_dataset: datasets.Dataset | None = None
        self.eval_data: EvalData | None = None
        self.validation_data: EvalData | None = None
        # The model's tokenizer and named prompts (`use_model`): each training column's texts get the
        # prompt of its role (`embedding_trainer.models.prompts.column_prompts`).
        self._preprocess: Callable | None = None
        self._prompts: dict[str, str | None] = {}
        # Given instead of the tokenizer to batch rows into something else than tokens (`use_collator`).
        self._collator: Callable[[list[dict]], tuple] | None = None
        # Makes each batch's labels from its rows: a data stage's `targets()` (a teacher's outputs, for
        # distillation losses; set by `run_stages`), or the relevance mask's text ids.
        self._targets: Callable[[list[dict]], torch.Tensor] | None = None
        # The data stages run on the training rows (`run_stages`), for the report's notes.
        self.stages: list[DataStage] = []
        # Each row's text ids as the labels, when the loss's `BatchNeeds` asks for them (`use_batch_needs`).
        self._text_ids: RelevanceSets | None = None

    @property
    def label(self) -> str | None:
        """The schema's label column (None: unlabelled rows)."""
        return self.settings.schema.label

    @property
    def inputs(self) -> list[str] | None:
        """The text columns fed to the loss in order, as the dataset type declares them (None: `text_columns`)."""
        inputs = self.settings.schema.inputs
        return list(inputs) if inputs else None

    def check_sources(self) -> None:
        """Raise DataError if a configured local path does not exist or a setting cannot work (cheap:
        nothing is read)."""
        self.settings.sources.check(generates_pairs=self._reader.synthetic is not None)
        self.settings.check()

    def load(self) -> None:
        """Read, normalize and check the train, eval and validation rows (see `embedding_trainer.data.splits`
        for how the training rows are cut; writing nothing: see `write_prepared`). Runs before any model loads."""
        self.check_sources()
        self._use(self._splits().load())
        self._check_leakage()

    def load_evaluation(self, eval_rows: bool = True, train_rows: bool = False) -> None:
        """Read only what an evaluation without training scores: the eval rows (when `eval_rows`; with
        eval_path null, the part data.test_size holds out of the training rows, the same rows `load` holds
        out) and the training rows when `train_rows` (a k-NN support set, class names) or the eval rows
        are a part of them; no validation data, no leakage check (`leakage` stays None)."""
        self.check_sources()
        if not eval_rows:
            self.eval_data = EvalData(rows=None, class_names=self.class_names)
            return
        self._use(self._splits().load_evaluation(train_rows))

    def _splits(self) -> SplitLoader:
        sources, splits = self.settings.sources, self.settings.splits
        return SplitLoader(self._reader, sources, splits, self.class_names, self._holdout)

    def _use(self, loaded: LoadedData) -> None:
        self.train_dataset, self.class_names = loaded.train, loaded.class_names
        self.eval_data, self.validation_data = loaded.eval_data, loaded.validation_data
        self._synthetic_pairs = loaded.synthetic_pairs

    def run_stages(self, stages: list[DataStage], context: StageContext) -> None:
        """Run the data `stages` (`data.stages`, in their declared order) on the training rows, each on the
        rows the one before left, with `context` (its `inputs` and `label` filled in from the schema); the
        leakage check runs again, in its place in the order, when a stage before it changed the rows. A
        stage's `targets()` become each batch's labels. `stages` records the stages run, for the report."""
        context = replace(context, inputs=self.inputs, label=self.label)
        leakage = LeakageCheck(self.eval_data, self.settings.leakage)
        ordered = sorted([*stages, leakage], key=lambda stage: SLOTS.index(stage.slot))
        changed = False
        for stage in ordered:
            if stage is leakage:
                if changed:
                    self._check_leakage(context)
                continue
            rows = stage.run(self.train_dataset, context)
            changed = changed or rows is not self.train_dataset
            self.train_dataset = rows
            if (targets := stage.targets()) is not None:
                self._targets = targets
        self.stages = list(stages)

    def _check_leakage(self, context: StageContext | None = None) -> None:
        """Find (and by the leakage setting, report or refuse) evaluation data among the training rows."""
        check = LeakageCheck(self.eval_data, self.settings.leakage)
        check.run(self.train_dataset, context or StageContext(label=self.label))
        self.leakage = check.leakage

    @property
    def primary(self) -> "EmbeddingDataModule":
        """The data module whose rows stand for the run's (health probes): itself (with several
        objectives, the first objective's; see `ObjectivesDataModule`)."""
        return self

    @property
    def selection_data(self) -> EvalData:
        """The data that picks the checkpoint: the validation data, or the eval data when there is none."""
        return self.validation_data or self.eval_data

    def write_prepared(self) -> None:
        """Write the exact rows trained and evaluated on to `prepared_folder` (<output_dir>/data/; on
        global rank zero only; see `write_prepared_rows`)."""
        if self.prepared_folder is not None and rank_zero_only.rank == 0:
            validation = self.validation_data.rows if self.validation_data else None
            splits = {"train": self.train_dataset, "eval": self.eval_data.rows, "validation": validation}
            write_prepared_rows(self.prepared_folder, splits, self.class_names, self._synthetic_pairs)

    def use_model(self, model) -> None:
        """Tokenize training batches with `model`'s tokenizer and its named prompts (`model.prompts`)."""
        self._preprocess, self._prompts = model.preprocess, dict(model.prompts)

    def use_batch_needs(self, needs: BatchNeeds) -> None:
        """Batch for a loss whose batches carry `needs` (its text ids as labels, when it asks for them)."""
        if needs.text_ids is not None and self._targets is not None:
            raise RuntimeError("The data module's labels are already another loss input (targets).")
        self._text_ids = needs.text_ids

    def setup(self, stage: str | None = None) -> None:
        """Prepare the training batches before fitting (`stage` "fit"; Lightning calls it before it asks for
        the loaders): the token cache of the training rows, when they are tokenized once or grouped by
        length (`global_batches` prepares it too, when called before)."""
        if stage in (None, "fit") and self.train_dataset is not None and self._collator is None:
            self._prepare_token_cache()

    def _prepare_token_cache(self) -> None:
        """Build `token_cache` (once) when the batching tokenizes once or groups by length."""
        batching = self.settings.batching
        use_token_cache = batching.tokenize_once and batching.transform is None
        if (
            (use_token_cache or batching.group_by_length)
            and self.token_cache is None
            and self._preprocess is not None
        ):
            prompts = column_prompts(self._prompts, self.text_columns)
            self.token_cache = build_token_cache(
                self._preprocess, prompts, self.train_dataset, batching.max_length
            )

    def use_collator(self, collator: Callable[[list[dict]], tuple]) -> None:
        """Batch the training rows with `collator`, which makes each batch's `(features, labels)` from its
        rows (a query adapter's frozen embeddings of their texts), instead of tokenizing them: no token
        cache, no length grouping, no other labels (targets, text ids)."""
        if self._targets is not None or self._text_ids is not None:
            raise RuntimeError("The data module's labels are already another loss input (targets, text ids).")
        self._collator = collator

    def train_dataloader(self) -> DataLoader:
        """Batches of `(features, labels)` drawn by the loss's batch sampler, seeded by the seed. With
        several ranks, every rank draws the same global batches of batch_size x world size and
        takes its own slice (`ShardedBatchSampler`)."""
        world_size, rank = world_and_rank(self.trainer)
        sampler, collate = self.global_batches(world_size)
        workers = self.settings.batching.num_workers
        # its position in the epoch is saved in checkpoints
        return self.resumable(train_loader(self.train_dataset, sampler, collate, workers, rank, world_size))

    def global_batches(self, world_size: int) -> tuple[Sampler, Callable[[list[dict]], tuple]]:
        """The batch sampler of global batches (batch_size x `world_size` rows, before any rank takes its
        slice) over the training rows, and the collate function that makes a batch's `(features, labels)`:
        the one given to `use_collator`, else the loss's tokenizing collator."""
        if self.train_dataset is None or (self._preprocess is None and self._collator is None):
            raise RuntimeError("Call load() and use_model(model) (its tokenizer) before training.")
        batching, seed = self.settings.batching, self.settings.seed
        batch_size = batching.batch_size * world_size
        if self._collator is not None:
            return loss_sampler(batching, self.train_dataset, self.label, batch_size, seed), self._collator
        self._prepare_token_cache()
        use_token_cache = batching.tokenize_once and batching.transform is None
        if batching.group_by_length and self.token_cache is not None:
            prompts = column_prompts(self._prompts, self.text_columns)
            counts = row_token_counts(self.token_cache, prompts, self.train_dataset)
            sampler = length_grouped_sampler(
                batching, counts, self.train_dataset, self.text_columns, batch_size, seed
            )
        else:
            sampler = loss_sampler(batching, self.train_dataset, self.label, batch_size, seed)
        if batching.transform is not None:
            inputs, label = batching.transform.columns, batching.transform.label
        else:
            inputs, label = self.inputs or self.text_columns, self.label
        collate = LossBatchCollator(
            self._preprocess,
            inputs,
            label,
            batching.max_length,
            batching.transform,
            self.token_cache if use_token_cache else None,
            column_prompts(self._prompts, inputs),
            self._targets,
            self._text_ids,
        )
        return sampler, collate

    @property
    def text_columns(self) -> list[str]:
        """The training rows' text columns (all but the label), in order."""
        return [column for column in self.train_dataset.column_names if column != self.label]
