"""Knowledge distillation: a teacher's outputs on the training rows, computed once before training (through
the embedding cache) and handed to a distillation loss as each batch's labels, so the teacher never runs
in a training step.

A loss config's `teacher_targets` says what it regresses: `embeddings` (MSELoss: each input column's
teacher embedding) or `scores` (MarginMSELoss, DistillKLDivLoss: the teacher's scores of the first
column's text against each other column's, with the losses' default similarity, the dot product)."""

import gc
from dataclasses import dataclass

import datasets
import torch
from omegaconf import DictConfig

from embedding_trainer.evaluation.base import DimensionEvaluator, DimensionMetrics, using_cache
from embedding_trainer.evaluation.forgetting import GeneralEvaluation
from embedding_trainer.evaluation.retrieval import RetrievalEvaluator
from embedding_trainer.models.loading import load_model
from embedding_trainer.models.prompts import column_role
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.training.losses import class_name
from embedding_trainer.utils.embedding_cache import EmbeddingCache
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.log import get_logger
from embedding_trainer.utils.text_vectors import TextVectors, training_vectors

log = get_logger(__name__)

TARGETS_KEY = "teacher_targets"
TARGET_KINDS = ("embeddings", "scores")


@dataclass
class TeacherTargets:
    """The label tensor of a batch of training rows, from the teacher's embeddings of their texts
    (`vectors`, by role) in the loss's input columns `inputs`:
    - `embeddings`: [batch, dim] for one column, [batch, columns, dim] for several (MSELoss's two forms);
    - `scores`: [batch, columns - 1], the first column's embedding dotted with each other column's (the
      positive's score first: MarginMSELoss turns them into margins, DistillKLDivLoss into a softmax)."""

    vectors: dict[str, TextVectors]
    inputs: list[str]
    kind: str

    def __call__(self, rows: list[dict]) -> torch.Tensor:
        per_column = [
            self.vectors[column_role(column)].of([row[column] for row in rows]) for column in self.inputs
        ]
        if self.kind == "embeddings":
            return per_column[0] if len(per_column) == 1 else torch.stack(per_column, dim=1)
        anchor, *candidates = per_column
        return torch.stack([(anchor * candidate).sum(dim=-1) for candidate in candidates], dim=1)


def target_kind(cfg: DictConfig) -> str | None:
    """What the run's loss learns from a teacher (`TARGET_KINDS`); None for a loss that needs none."""
    return cfg.loss.get(TARGETS_KEY)


def check_distillation(cfg: DictConfig) -> None:
    """Raise ConfigError, before anything loads, for a distillation loss without a teacher, a teacher
    without a distillation loss, or an MSE student that embeds in another dimension than the teacher's
    without a projection to it (`loss.projection_dim`)."""
    kind, teacher = target_kind(cfg), cfg.get("teacher")
    loss = class_name(cfg.loss._target_)
    if kind is not None and kind not in TARGET_KINDS:
        raise ConfigError(f"loss.{TARGETS_KEY}={kind!r} is not one of {', '.join(TARGET_KINDS)}.")
    if kind is not None and teacher is None:
        raise ConfigError(
            f"{loss} learns from a teacher's outputs, and the run has none: add teacher=<a model option> "
            "(for example teacher=minilm; teacher=local teacher.name_or_path=<folder> for a saved model)."
        )
    if kind is None and teacher is not None:
        raise ConfigError(
            f"teacher is set but {loss} does not learn from one: choose a distillation loss (loss=mse, "
            "loss=margin_mse or loss=distill_kl), or remove the teacher."
        )
    if kind == "embeddings":
        student = cfg.loss.get("projection_dim") or cfg.model.dimension
        if student != teacher.dimension:
            raise ConfigError(
                f"{loss} regresses the teacher's {teacher.dimension}-dim embeddings, and the student's are "
                f"{cfg.model.dimension}-dim: set loss.projection_dim={teacher.dimension} (a trained linear "
                "projection of the student's embeddings into the teacher's dimension)."
            )


@dataclass
class Teacher:
    """What a run learns from: the batches' `targets`, and the teacher's own `scores` on the run's
    evaluations ({evaluation label: metrics by dimension}), the quality the student is measured against."""

    targets: TeacherTargets
    scores: dict[str, DimensionMetrics]
    metrics: dict[str, str]  # {evaluation label: its primary metric}

    def to_json(self, student: dict[str, DimensionMetrics]) -> dict:
        """{label: the teacher's and the fine-tuned `student`'s primary metric by dimension, and the
        student's share of the teacher's}."""
        compared = {}
        for label, scores in self.scores.items():
            metric = self.metrics[label]
            rows = {}
            for dim, values in scores.items():
                teacher, learned = values[metric], student[label][dim][metric]
                rows[str(dim)] = {
                    "teacher": teacher,
                    "student": learned,
                    "share": learned / teacher if teacher else None,
                }
            compared[label] = {"metric": metric, "by_dimension": rows}
        return compared


def load_teacher(
    settings: ModelSettings,
    kind: str,
    rows: datasets.Dataset,
    inputs: list[str],
    cache: EmbeddingCache,
    evaluators: dict[str, DimensionEvaluator],
    dims: list[int],
    batch_size: int = 64,
    show_progress_bar: bool = True,
) -> Teacher:
    """The teacher (`settings`, of the `teacher` block), loaded, turned into the `kind` targets of training
    `rows` for the loss's `inputs` columns, scored by `evaluators` ({label: evaluator}) at each of `dims`
    it has, and released before training starts. Every text it embeds (each training text in its column's
    role; the evaluations' texts) is read from `cache` when this teacher embedded it before, else encoded
    with a progress bar and stored; training documents that are an evaluation's corpus are encoded once.

    Raises:
        ModelLoadError: the teacher cannot load.
        ConfigError: it does not embed in `teacher.dimension` dims.
    """
    teacher = load_model(settings).eval()
    corpora = [
        evaluator.corpus for evaluator in evaluators.values() if isinstance(evaluator, RetrievalEvaluator)
    ]
    vectors = training_vectors(
        teacher, rows, inputs, cache, corpora, batch_size, show_progress_bar, purpose="Teacher outputs"
    )
    scores = {}
    for label, evaluator in evaluators.items():
        with using_cache(evaluator, cache):
            scores[label] = evaluator(teacher, [dim for dim in dims if dim <= settings.dimension])
        log.info(
            f"Teacher on {label}: {evaluator.primary_metric} {_shown(scores[label], evaluator.primary_metric)}"
        )
    del teacher
    gc.collect()
    metrics = {label: evaluator.primary_metric for label, evaluator in evaluators.items()}
    return Teacher(TeacherTargets(vectors, list(inputs), kind), scores, metrics)


def reported_evaluators(report, general: GeneralEvaluation | None) -> dict[str, DimensionEvaluator]:
    """{label: evaluator} of a run's reported evaluations: the results table's (`report`: the evaluation
    callback, or the held-out test) and the general one."""
    evaluators = {report.evaluator.name: report.evaluator}
    if general is not None:
        evaluators[general.label] = general.evaluator
    return evaluators


def reported_scores(
    evaluator: DimensionEvaluator, reported, general: GeneralEvaluation | None
) -> dict[str, DimensionMetrics]:
    """{label: the fine-tuned model's metrics} on the evaluations of `reported_evaluators`: the results
    table's (`reported.finetuned`, by `evaluator`) and the general one's."""
    scores = {evaluator.name: reported.finetuned}
    if general is not None:
        scores[general.label] = general.finetuned
    return scores


def _shown(scores: DimensionMetrics, metric: str) -> str:
    return ", ".join(f"dim {dim}: {values[metric]:.4f}" for dim, values in scores.items())
