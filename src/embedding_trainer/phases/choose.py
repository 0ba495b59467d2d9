"""Phase 6 of a run: the checkpoint chosen on the validation data (`choose_model`, every rank), then
scored (`score_chosen`, rank zero): the reported before/after table (on the held-out test when there is
one), the forgetting guard, the health probe, and the intervals of the change."""

from dataclasses import asdict, dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from sentence_transformers import SentenceTransformer

from embedding_trainer.evaluation import DimensionEvaluator, DimensionMetrics
from embedding_trainer.evaluation.base import PerExample
from embedding_trainer.evaluation.before_after import BeforeAfterEvaluation
from embedding_trainer.evaluation.callback import EvaluationCallback
from embedding_trainer.evaluation.objectives import ObjectivesEvaluator
from embedding_trainer.evaluation.selection import Selection
from embedding_trainer.evaluation.significance import Significance, record_significance
from embedding_trainer.phases.evaluation import Evaluations
from embedding_trainer.reporting.objectives import ObjectiveResult, objective_results
from embedding_trainer.reporting.run_report import evaluation_source, validation_source
from embedding_trainer.reporting.trained import TrainedLength
from embedding_trainer.settings.evaluation import Bootstrap
from embedding_trainer.settings.run import RunSettings
from embedding_trainer.training.module import EmbeddingModule
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


@dataclass
class Chosen:
    """The model kept: its `step`, its `selected` metrics (from the evaluation that chose it), the
    flat `metrics` (`val/...`, with `val/score`) and the length of the fit (`trained`)."""

    step: int
    selected: DimensionMetrics
    metrics: dict[str, float]
    trained: TrainedLength


@dataclass
class ReportedScores:
    """What the reported before/after table shows, with the per-example scores behind it."""

    baseline: DimensionMetrics | None
    finetuned: DimensionMetrics
    baseline_examples: PerExample | None
    finetuned_examples: PerExample | None


@dataclass
class Scores:
    """The chosen model's scores on rank zero: the `reported` table, how it was chosen (`selection`),
    the metrics logged after training (`final_metrics`: test, forgetting guard), the guards' JSON
    (`general`, `health`; None: off), and the change's intervals: `significance` with one objective,
    `objectives` (one result each) with several."""

    reported: ReportedScores
    selection: Selection
    final_metrics: dict[str, float]
    general: dict | None
    health: dict | None
    significance: Significance | None
    objectives: list[ObjectiveResult] | None


def choose_model(
    trainer: pl.Trainer,
    module: EmbeddingModule,
    evaluation: EvaluationCallback,
    configured_epochs: int | None,
    min_steps: int | None,
) -> Chosen:
    """The checkpoint kept (`select_final_model`, its weights in `module`), then a barrier of every rank.
    `configured_epochs` (trainer.max_epochs) and `min_steps` (data.min_steps) describe the fit's length."""
    step, selected = select_final_model(trainer, module, evaluation)
    trained = TrainedLength.of(trainer, configured_epochs, min_steps, step)
    # No rank reads a checkpoint after this: rank zero may remove them once the model is saved.
    trainer.strategy.barrier("final_model_selected")
    return Chosen(step, selected, evaluation.flatten(selected), trained)


def select_final_model(
    trainer: pl.Trainer, module: EmbeddingModule, evaluation: EvaluationCallback
) -> tuple[int, DimensionMetrics]:
    """Load the best checkpoint's weights into `module` when it is not the last evaluated state;
    return its step and metrics (from the evaluation history, so nothing is re-encoded)."""
    last_step, last_metrics = evaluation.latest()
    checkpoint = trainer.checkpoint_callback
    best_path = getattr(checkpoint, "best_model_path", "") if checkpoint else ""
    if not best_path:
        return last_step, last_metrics
    state = torch.load(best_path, map_location="cpu", weights_only=False)
    best_step = state["global_step"]
    if best_step == last_step or best_step not in evaluation.history:
        return last_step, last_metrics
    log.info(f"Restoring the best checkpoint (step {best_step}) from {best_path}")
    module.load_state_dict(state["state_dict"])
    return best_step, evaluation.history[best_step]


def score_chosen(
    settings: RunSettings,
    evaluations: Evaluations,
    step: int,
    model: SentenceTransformer,
    trainer: pl.Trainer,
) -> Scores:
    """Score the chosen `model` (kept at `step`) on rank zero: the reported table (`report_scores`), the
    forgetting guard and health probe, logged as the final metrics to `trainer`'s loggers, then the
    change's intervals (saved in the run's output folder with the evaluation settings' bootstrap)."""
    evaluation, test, general, health = (
        evaluations.evaluation,
        evaluations.test,
        evaluations.general,
        evaluations.health,
    )
    device = trainer.strategy.root_device
    reported = report_scores(evaluation, test, step, model, device)
    run = settings.report.run
    selection = Selection(
        selected_on=validation_source(run),
        scored_on=evaluation_source(run),
        step=step,
        candidates=len(evaluation.history),
        sweep=settings.evaluation.sweep_trial is not None,
    )
    log.info(selection.describe())
    final_metrics = test.flatten(reported.finetuned) if test else {}
    general_json = health_json = None
    if general is not None:
        final_metrics.update(general.flatten(general.finish(model, device)))
        general_json = general.to_json()
    if health is not None:
        health_json = health.to_json(step)
    log_final_metrics(trainer.loggers, final_metrics, step)
    significance, objectives = compare(
        settings.report.output_dir, evaluations.evaluator, reported, step, settings.evaluation.bootstrap
    )
    return Scores(reported, selection, final_metrics, general_json, health_json, significance, objectives)


def compare(
    output_dir: Path,
    evaluator: DimensionEvaluator,
    reported: ReportedScores,
    step: int,
    bootstrap: Bootstrap,
) -> tuple[Significance | None, list[ObjectiveResult] | None]:
    """The intervals of the change in `reported`, with the `bootstrap` settings: one table per objective
    of an `ObjectivesEvaluator` (its `score` mixes units), else the evaluator's one (`record_significance`)."""
    if isinstance(evaluator, ObjectivesEvaluator):
        objectives = objective_results(
            output_dir,
            evaluator,
            reported.baseline,
            reported.finetuned,
            reported.baseline_examples,
            reported.finetuned_examples,
            step,
            asdict(bootstrap),
        )
        return None, objectives
    significance = record_significance(
        output_dir,
        evaluator,
        reported.baseline_examples,
        reported.finetuned_examples,
        step,
        **asdict(bootstrap),
    )
    return significance, None


def report_scores(
    evaluation: EvaluationCallback,
    test: BeforeAfterEvaluation | None,
    step: int,
    model: SentenceTransformer,
    device: torch.device,
) -> ReportedScores:
    """The reported scores of the chosen model (in `model`, chosen at `step`): the held-out `test`
    evaluation of it when there is one (evaluated now, on `device`), else the evaluation that chose it."""
    if test is None:
        return ReportedScores(
            evaluation.baseline,
            evaluation.history[step],
            evaluation.baseline_examples,
            evaluation.examples.get(step),
        )
    test.finish(model, device)
    return ReportedScores(test.baseline, test.finetuned, test.baseline_examples, test.finetuned_examples)


def log_final_metrics(loggers: list, metrics: dict[str, float], step: int) -> None:
    """Log `metrics` at `step` after training, and flush every logger (it closed its file at the fit's end)."""
    if not metrics:
        return
    for logger in loggers:
        logger.log_metrics(metrics, step=step)
        logger.save()
