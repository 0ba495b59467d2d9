"""Phase 1 of a run: the settings checked before anything loads, then the run's data loaded."""

from collections.abc import Callable
from dataclasses import dataclass

import pytorch_lightning as pl
from omegaconf import DictConfig
from sentence_transformers import SentenceTransformer

from embedding_trainer.data import EmbeddingDataModule
from embedding_trainer.data.objectives import ObjectivesDataModule
from embedding_trainer.reporting.run_report import smoke_run_note
from embedding_trainer.settings.checks import validate_config
from embedding_trainer.settings.reporting import RunDescription
from embedding_trainer.training.objectives import ObjectivePart, ObjectiveSettings, objective_names
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


@dataclass
class RunData:
    """A run's loaded data module, each objective's settings and data module (`objective_parts`),
    and `run_model()`, the run's model, loaded at its first call (by chunking, or the model phase)."""

    datamodule: EmbeddingDataModule | ObjectivesDataModule
    parts: list[ObjectivePart]
    run_model: Callable[[], SentenceTransformer]


def check_settings(cfg: DictConfig) -> None:
    """Check the composed config before anything loads (ConfigError names the fix), say when the run is a
    smoke run, and seed every random generator with `cfg.seed`."""
    validate_config(cfg)
    if smoke := smoke_run_note(RunDescription.from_config(cfg)):  # debug=fdr
        log.info(smoke)
    pl.seed_everything(cfg.seed, workers=True)


def prepare_data(
    datamodule: EmbeddingDataModule | ObjectivesDataModule,
    parts: list[ObjectivePart],
    run_model: Callable[[], SentenceTransformer],
) -> RunData:
    """The run's data: `datamodule` (built by the data edge, `data.build.build_datamodule`) loaded, its rows
    read, normalized and split; each objective's `parts` (`objective_parts`) and `run_model()`, the run's
    model loader (`models.loading.model_loader`)."""
    datamodule.load()
    return RunData(datamodule, parts, run_model)


def objective_parts(
    cfg: DictConfig, datamodule: EmbeddingDataModule | ObjectivesDataModule
) -> list[ObjectivePart]:
    """Each objective's settings (`ObjectiveSettings.from_config`) and data module (one objective: the
    run's own and `datamodule`)."""
    names = objective_names(cfg)
    if not names:
        return [ObjectivePart(ObjectiveSettings.from_config(cfg), datamodule)]
    return [
        ObjectivePart(ObjectiveSettings.from_config(cfg, name), datamodule.datamodules[name])
        for name in names
    ]
