"""The leakage check as a data stage: evaluation data found among the training rows is reported or
refused (`data.leakage`; `embedding_trainer.data.leakage`). The data module builds it from its own
evaluation rows: it runs when the rows load (before any model loads) and again after a stage that
changed them (`EmbeddingDataModule.run_stages`)."""

from pathlib import Path

import datasets
from omegaconf import DictConfig

from embedding_trainer.data.leakage import Leakage, check_leakage, find_leakage
from embedding_trainer.data.stages import DataStage, StageContext


class LeakageCheck(DataStage):
    """Finds the rows of `eval_data` (its rows and retrieval split) among the training rows' text columns
    and reports or refuses them by `mode`; `leakage` holds what it found once it ran."""

    slot = "leakage"

    def __init__(self, eval_data, mode: str) -> None:
        self.eval_data, self.mode = eval_data, mode
        self.leakage: Leakage | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> None:
        return None  # built by the data module, which holds the evaluation rows

    def run(self, rows: datasets.Dataset, context: StageContext) -> datasets.Dataset:
        columns = [column for column in rows.column_names if column != context.label]
        self.leakage = find_leakage(rows, columns, self.eval_data.rows, self.eval_data.retrieval)
        check_leakage(self.leakage, self.mode)
        return rows

    def notes(self, output_dir: Path) -> list[str]:
        return [self.leakage.describe()] if self.leakage is not None else []
