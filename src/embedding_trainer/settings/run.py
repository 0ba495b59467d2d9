"""The settings edge of `train` and `evaluate`: the composed config read once into the typed settings
the evaluation, choosing and reporting phases take."""

from dataclasses import dataclass

from omegaconf import DictConfig

from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.settings.evaluation import EvaluationSettings
from embedding_trainer.settings.reporting import ReportSettings
from embedding_trainer.settings.training import TrainingSettings


@dataclass(frozen=True)
class RunSettings:
    """A run's `evaluation` settings, its `report` settings (with the run's description), its `model` and
    its `training` settings."""

    evaluation: EvaluationSettings
    report: ReportSettings
    model: ModelSettings
    training: TrainingSettings

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "RunSettings":
        """The settings of the composed (and checked) config `cfg`."""
        return cls(
            EvaluationSettings.from_config(cfg),
            ReportSettings.from_config(cfg),
            ModelSettings.from_config(cfg.model),
            TrainingSettings.from_config(cfg),
        )
