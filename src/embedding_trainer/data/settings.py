"""The data settings (`DataSettings`, one objective's typed view of `dataset_type`, `data` and the loss's
batch sampler) and the checks that need no data: which sources a run needs, and which it may be given,
for the dataset type's evaluator. They run before anything is read or loaded."""

from dataclasses import dataclass, field

from omegaconf import DictConfig

from embedding_trainer.data.batching import BatchSettings
from embedding_trainer.data.leakage import LEAKAGE_MODES
from embedding_trainer.data.reading import ReaderSettings, Sources
from embedding_trainer.data.schema import Normalization, Schema
from embedding_trainer.data.sources import check_document_title, check_reading
from embedding_trainer.data.splits import SplitSettings, check_split_settings
from embedding_trainer.utils.errors import ConfigError, DataError


@dataclass(frozen=True)
class DataSettings:
    """What one objective's data module reads and how: the dataset type's `schema`, the `sources`, how
    files are read (`reading`) and fitted to the schema (`normalization`), how the training rows are cut
    (`splits`) and batched (`batching`), what evaluation data among the training rows does (`leakage`:
    `error`, `warn` or `off`, see `embedding_trainer.data.leakage`), and the `seed` of every draw."""

    schema: Schema
    sources: Sources
    batching: BatchSettings
    reading: ReaderSettings = field(default_factory=ReaderSettings)
    normalization: Normalization = field(default_factory=Normalization)
    splits: SplitSettings = field(default_factory=SplitSettings)
    leakage: str = "warn"
    seed: int = 0

    def check(self) -> None:
        """DataError for settings that cannot work, before anything is read (the sources are checked
        where they are read: `Sources.check`)."""
        if self.leakage not in LEAKAGE_MODES:
            raise DataError(f"data.leakage must be one of {', '.join(LEAKAGE_MODES)}, got {self.leakage!r}.")
        check_document_title(self.reading.document_title)
        check_reading(self.reading.format, self.reading.encoding)
        if self.normalization.score_range is not None and self.schema.label_type != "score":
            raise DataError(
                f"data.score_range rescales a score label, and dataset_type={self.schema.name} has none: "
                "remove data.score_range (or train on dataset_type=score)."
            )
        validation = self.sources.validation
        check_split_settings(self.splits.test_size, validation.path, validation.split)
        self.batching.check()


def reads_run_data(cfg: DictConfig) -> bool:
    """Whether the dataset type's evaluator scores the run's own eval data (`from_eval_data`), not a
    fixed set of its own (such as the STS benchmark for unlabelled sentences)."""
    return str(cfg.dataset_type.evaluator._target_).endswith(".from_eval_data")


def check_data_sources(cfg: DictConfig, training: bool) -> None:
    """Training needs `data.train_path`; an evaluator of the run's data needs eval data: `data.eval_path`,
    or with it null `data.test_size` of the training rows (so, for evaluate.py, `data.train_path`)."""
    data, name = cfg.data, cfg.dataset_type.name
    if training and data.train_path is None:
        raise ConfigError(
            "data.train_path is null: set it to the training data (a data file, a retrieval folder or a hub "
            "dataset id); evaluate.py scores a model without it."
        )
    if not reads_run_data(cfg) or data.eval_path is not None:
        return
    if data.test_size is None:
        raise ConfigError(
            f"dataset_type={name} is scored on eval data, but data.eval_path and data.test_size are both null: "
            "set data.eval_path=<your test data>, or data.test_size=0.1 to hold out 10% of the training rows."
        )
    if data.train_path is None:
        raise ConfigError(
            f"dataset_type={name} is scored on data.eval_path, which is null, and data.train_path (whose "
            "data.test_size part it would hold out) is null too: set data.eval_path=<your test data>."
        )


def check_validation_data(cfg: DictConfig) -> None:
    """Validation data is only asked for where the dataset type's evaluator reads the run's data
    (not a fixed set of its own, such as the STS benchmark for unlabelled sentences)."""
    data = cfg.data
    asked = [
        key for key in ("validation_path", "validation_split", "validation_size") if data.get(key) is not None
    ]
    if asked and not reads_run_data(cfg):
        raise ConfigError(
            f"dataset_type={cfg.dataset_type.name} is evaluated on a fixed set of its own "
            f"({cfg.dataset_type.evaluator._target_}), not on the run's data: {', '.join(asked)} would change "
            "nothing; remove it."
        )
