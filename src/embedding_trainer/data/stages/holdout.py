"""The validation hold-out as a data stage (`data.validation_size`, with no validation source): whole queries
of the training rows (of passages, for generated pairs) are held out as the validation data, and
`data.max_samples` of the rest are trained on (`embedding_trainer.data.splits.train_and_validation`). It runs
while the data module loads (`SplitLoader.load`), after the chunking / synthetic queries and the test split."""

from pathlib import Path

import datasets
from omegaconf import DictConfig

from embedding_trainer.data.reading import Sources
from embedding_trainer.data.splits import train_and_validation
from embedding_trainer.data.stages import DataStage, StageContext
from embedding_trainer.utils.errors import DataError

# Generated pairs keep the passage they came from in this column: they are held out by passage.
PASSAGE_COLUMN = "chunk_id"


class ValidationHoldout(DataStage):
    """Holds out `size` distinct queries of the training rows (a fraction in (0, 1) or a count), drawn with
    the context's seed from those none of whose rows the `max_samples` rows trained on use when there are
    enough (None: all rows are trained on); `run` gives the rows trained on, `held` the validation rows and
    `note` what was done, once it ran."""

    slot = "holdout"
    data_keys = ("validation_size",)

    def __init__(self, size: float, max_samples: int | None = None) -> None:
        self.size, self.max_samples = size, max_samples
        self.held: datasets.Dataset | None = None
        self.note = ""

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        """DataError for a `data.validation_size` that is no positive number (unused, and unchecked, when
        validation data is given)."""
        size = cfg.data.get("validation_size")
        if _validation_source(cfg.data) is None and size is not None and not _positive_number(size):
            raise DataError(
                f"data.validation_size must be a fraction in (0, 1) or a count of training queries, got {size!r}."
            )

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "ValidationHoldout | None":
        """The hold-out of `data.validation_size`; None when it is null or validation data is given
        (`data.validation_path`, or `data.validation_split` of `data.eval_path`)."""
        size = cfg.data.get("validation_size")
        if size is None or _validation_source(cfg.data) is not None:
            return None
        return cls(size, cfg.data.get("max_samples"))

    def run(self, rows: datasets.Dataset, context: StageContext) -> datasets.Dataset:
        key_column = PASSAGE_COLUMN if PASSAGE_COLUMN in rows.column_names else None
        split = train_and_validation(rows, self.max_samples, self.size, context.seed, key_column)
        self.held, self.note = split.held, split.note
        return split.kept

    def notes(self, output_dir: Path) -> list[str]:
        return [self.note] if self.note else []


def _validation_source(data: DictConfig) -> str | None:
    """The validation data's path of a `data` block (None: no validation source)."""
    return Sources.of(
        data.get("train_path"),
        eval_path=data.get("eval_path"),
        validation_path=data.get("validation_path"),
        validation_split=data.get("validation_split"),
    ).validation.path


def _positive_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0
