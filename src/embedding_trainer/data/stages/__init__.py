"""Data stages: every step that changes a run's training rows after they are read, on one protocol
(`DataStage`), run in one declared order (`SLOTS`).

A stage
- checks its own settings before anything loads (`check(cfg)`, called by `validate_config` through
  `check_stages`), and may say which dataset type its rows become (`dataset_type`: pairs with mined
  negatives are n-tuples);
- is built from the composed config (`from_config`: None when the run does not use it);
- turns the training rows into new ones (`run(rows, context)`; `StageContext` holds what a stage may need:
  the model's loader, the embedding cache, the cache folder, the seed, the tokenizer, the reported
  evaluators), and may give each batch's labels (`targets()`: a teacher's outputs);
- names what its cached output depends on (`cache_key`) and gives the report its lines (`notes`).

A new stage is one module in this package (a `DataStage` subclass naming its `slot`) and its config
block (its `data_keys`, or a block of its own): `stage_classes` finds it, `check_stages` checks it,
`build_stages` builds it, and the data module runs it (`EmbeddingDataModule.run_stages`; a stage of
`LOAD_SLOTS` while the rows load)."""

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import datasets
import torch
from omegaconf import DictConfig

# The declared order of the stages, by slot. The chunking / synthetic queries and then the validation
# hold-out (by passage, for generated pairs) run while the data module loads (`data.reading`,
# `data.loading`), before any model loads; the stages from "mining" on run once the model has loaded
# (`EmbeddingDataModule.run_stages`); the leakage check runs when the rows have loaded and again there
# when a stage changed the rows.
SLOTS = ("synthetic_queries", "holdout", "mining", "leakage", "targets")
LOAD_SLOTS = ("synthetic_queries", "holdout")  # run while the data module loads (no model yet)
MODEL_SLOTS = ("mining", "leakage", "targets")  # run once the model has loaded


@dataclass
class StageContext:
    """What a stage may use: `model()` (the run's model, loaded at its first call), the embedding `cache`,
    the `cache_dir` folder, the `seed`, `tokenizer()`, the reported evaluations' `evaluators` ({label:
    evaluator}; empty on ranks but zero), and the rows' declared loss `inputs` (None: every text column)
    and `label` column (the data module fills these two in)."""

    model: Callable[[], object] | None = None
    cache: object | None = None
    cache_dir: str | Path | None = None
    seed: int = 0
    tokenizer: Callable[[], object] | None = None
    evaluators: dict | None = None
    inputs: list[str] | None = None
    label: str | None = None

    def text_columns(self, rows: datasets.Dataset) -> list[str]:
        """The loss's input columns of `rows`: the declared `inputs`, else every column but the label."""
        return list(self.inputs) if self.inputs else [c for c in rows.column_names if c != self.label]


class DataStage(ABC):
    """One step that changes the training rows (see the module's docstring). `slot`: its place in `SLOTS`."""

    slot: ClassVar[str]
    # The `data` keys of its config block (read by the stage, not by the data module's `DataSettings`).
    data_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        """Raise ConfigError for settings of this stage that cannot work (before anything loads)."""

    @classmethod
    def dataset_type(cls, cfg: DictConfig, dataset_type: str) -> str:
        """The dataset type the rows of `dataset_type` have after this stage (with `cfg`'s settings)."""
        return dataset_type

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: DictConfig) -> "DataStage | None":
        """The stage with `cfg`'s settings; None when the run does not use it."""

    @abstractmethod
    def run(self, rows: datasets.Dataset, context: StageContext) -> datasets.Dataset:
        """The training rows after this stage (`rows` itself when it changes none)."""

    def cache_key(self, rows: datasets.Dataset, context: StageContext) -> str | None:
        """What the cached output of `run(rows, context)` is stored under (None: nothing cached)."""
        return None

    def targets(self) -> Callable[[list[dict]], torch.Tensor] | None:
        """Each batch's labels from its rows, once `run` ran (None: the rows' own labels)."""
        return None

    def notes(self, output_dir: Path) -> list[str]:
        """The report's lines about what this stage did (`output_dir`: where its plots go)."""
        return []


def stage_classes() -> list[type[DataStage]]:
    """Every stage of this package, in the declared order (`SLOTS`, then by name)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    found = [cls for cls in _subclasses(DataStage) if not getattr(cls, "__abstractmethods__", None)]
    return sorted(found, key=lambda cls: (SLOTS.index(cls.slot), cls.__name__))


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def check_stages(cfg: DictConfig) -> None:
    """Every stage's check of its settings (`DataStage.check`), in the declared order."""
    for cls in stage_classes():
        cls.check(cfg)


def trained_dataset_type(cfg: DictConfig) -> str:
    """The dataset type of the rows the loss trains on: `cfg.dataset_type.name` after every stage."""
    dataset_type = cfg.dataset_type.name
    for cls in stage_classes():
        dataset_type = cls.dataset_type(cfg, dataset_type)
    return dataset_type


def build_stages(cfg: DictConfig, slots: tuple[str, ...] = SLOTS) -> list[DataStage]:
    """The stages `cfg` uses whose slot is one of `slots`, in the declared order."""
    return [
        stage for cls in stage_classes() if cls.slot in slots and (stage := cls.from_config(cfg)) is not None
    ]


def stage_data_keys() -> tuple[str, ...]:
    """Every stage's `data` keys (`DataStage.data_keys`)."""
    return tuple(key for cls in stage_classes() for key in cls.data_keys)
