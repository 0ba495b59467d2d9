"""The data of several objectives in one run: each objective's own data module (its rows, loss batch
sampler and collator), and one training loader whose every batch comes from one objective."""

from collections.abc import Callable
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from sentence_transformers.base.sampler import ProportionalBatchSampler, RoundRobinBatchSampler
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from embedding_trainer.data.batching import train_loader, world_and_rank
from embedding_trainer.data.datamodule import EmbeddingDataModule, EvalData
from embedding_trainer.data.resumable import ResumableTrainData

OBJECTIVE_SAMPLERS = {"round_robin": RoundRobinBatchSampler, "proportional": ProportionalBatchSampler}


class TaggedRows(Dataset):
    """The rows of one objective, each as `(objective index, row)`."""

    def __init__(self, index: int, rows) -> None:
        self.index = index
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int) -> tuple[int, dict]:
        return self.index, self.rows[position]


@dataclass
class ObjectiveBatchCollator:
    """Collate `(objective index, row)` items of one objective with that objective's collator into
    `(features, labels, objective name)`."""

    names: list[str]
    collators: list[Callable[[list[dict]], tuple]]

    def __call__(self, items: list[tuple[int, dict]]) -> tuple:
        indices = {index for index, _ in items}
        if len(indices) != 1:
            raise RuntimeError(
                f"A training batch mixes objectives {sorted(indices)}; each must come from one."
            )
        index = indices.pop()
        features, labels = self.collators[index]([row for _, row in items])
        return features, labels, self.names[index]


@dataclass
class ObjectivesLeakage:
    """Each objective's leakage check, described together for the report."""

    checks: dict

    def describe(self) -> str:
        return "\n\n".join(f"Objective {name}: {check.describe()}" for name, check in self.checks.items())


class ObjectivesDataModule(ResumableTrainData, pl.LightningDataModule):
    """Several objectives' data modules (in `datamodules`, by objective name) trained in one loader:
    each batch is a batch of one objective's loss batch sampler, collated by its collator and tagged
    with its name, `(features, labels, objective)`; `sampling` (`round_robin` or `proportional`, the
    sentence-transformers multi-dataset batch samplers, seeded by `seed`) picks the objective of
    each batch. Resumable mid-epoch like one objective's loader. Each objective's data module writes its
    own prepared rows (`build_datamodule`: to `<output_dir>/data/<name>/`)."""

    def __init__(self, datamodules: dict[str, EmbeddingDataModule], sampling: str, seed: int) -> None:
        super().__init__()
        self.datamodules = dict(datamodules)
        self.sampling = sampling
        self.seed = seed

    @property
    def primary(self) -> EmbeddingDataModule:
        """The first objective's data module (its rows probe the embeddings' health)."""
        return next(iter(self.datamodules.values()))

    def load(self) -> None:
        """Load every objective's data (nothing is written; see `write_prepared`)."""
        for datamodule in self.datamodules.values():
            datamodule.load()

    def setup(self, stage: str | None = None) -> None:
        """Prepare every objective's training batches (`EmbeddingDataModule.setup`)."""
        for datamodule in self.datamodules.values():
            datamodule.setup(stage)

    def write_prepared(self) -> None:
        for datamodule in self.datamodules.values():
            datamodule.write_prepared()

    def use_model(self, model) -> None:
        for datamodule in self.datamodules.values():
            datamodule.use_model(model)

    @property
    def validation_data(self) -> dict[str, EvalData] | None:
        """Each objective's validation data, when any objective has some (None otherwise)."""
        found = {name: dm.validation_data for name, dm in self.datamodules.items()}
        return found if any(data is not None for data in found.values()) else None

    @property
    def leakage(self) -> ObjectivesLeakage:
        return ObjectivesLeakage({name: dm.leakage for name, dm in self.datamodules.items()})

    def train_dataloader(self) -> DataLoader:
        """Batches `(features, labels, objective)`: every rank draws the same sequence of global
        batches (each objective's, in the order `sampling` picks) and takes its own slice."""
        world_size, rank = world_and_rank(self.trainer)
        names = list(self.datamodules)
        samplers, collators = zip(*(dm.global_batches(world_size) for dm in self.datamodules.values()))
        dataset = ConcatDataset(
            [TaggedRows(index, dm.train_dataset) for index, dm in enumerate(self.datamodules.values())]
        )
        sampler = OBJECTIVE_SAMPLERS[self.sampling](
            dataset, list(samplers), generator=torch.Generator(), seed=self.seed
        )
        return self.resumable(
            train_loader(
                dataset,
                sampler,
                ObjectiveBatchCollator(names, list(collators)),
                self.primary.settings.batching.num_workers,
                rank,
                world_size,
            )
        )
