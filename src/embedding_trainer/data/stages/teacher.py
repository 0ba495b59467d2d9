"""A teacher's targets as a data stage (`teacher=`, with a distillation loss): the teacher's outputs on the
training rows, computed once through the embedding cache (`embedding_trainer.training.teacher`), become
each batch's labels; the rows themselves are unchanged."""

import datasets
from omegaconf import DictConfig

from embedding_trainer.data.stages import DataStage, StageContext
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.training.objectives import objective_names
from embedding_trainer.training.teacher import Teacher, check_distillation, load_teacher, target_kind


class TeacherStage(DataStage):
    """The `kind` targets (`embeddings` or `scores`) of the teacher `settings` (its `ModelSettings`), scored
    on the context's evaluators at `dims` (encoding `batch_size` texts at a time); `teacher` holds the
    targets and scores once it ran."""

    slot = "targets"

    def __init__(
        self, settings: ModelSettings, kind: str, dims: list[int], batch_size: int, show_progress_bar: bool
    ) -> None:
        self.settings, self.kind, self.dims = settings, kind, dims
        self.batch_size, self.show_progress_bar = batch_size, show_progress_bar
        self.teacher: Teacher | None = None

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        check_distillation(cfg)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "TeacherStage | None":
        """The teacher of `cfg.teacher` with the targets its loss learns (None: no teacher)."""
        if objective_names(cfg) or cfg.get("teacher") is None:
            return None
        evaluation = cfg.evaluation
        return cls(
            ModelSettings.from_config(cfg.teacher, "teacher"),
            target_kind(cfg),
            list(evaluation.dims),
            evaluation.batch_size,
            evaluation.show_progress_bar,
        )

    def run(self, rows: datasets.Dataset, context: StageContext) -> datasets.Dataset:
        self.teacher = load_teacher(
            self.settings,
            self.kind,
            rows,
            context.text_columns(rows),
            context.cache,
            context.evaluators or {},
            self.dims,
            self.batch_size,
            self.show_progress_bar,
        )
        return rows

    def targets(self):
        """The teacher's targets of each batch's rows (`training.teacher.TeacherTargets`)."""
        return self.teacher.targets if self.teacher is not None else None
