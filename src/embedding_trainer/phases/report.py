"""Phase 7 of a run (rank zero): results.json's payload, the model folder with its card, the resolved
config and results tables (`finish_run`), report.md, the W&B table, the hub upload, and last the
checkpoints kept; with the loggers' config record (`log_config`) made before the fit."""

import time
from pathlib import Path

from sentence_transformers import SentenceTransformer

from embedding_trainer.data import EmbeddingDataModule
from embedding_trainer.evaluation import DimensionEvaluator
from embedding_trainer.evaluation.significance import Significance
from embedding_trainer.models.lora import ParameterCount, merge_lora
from embedding_trainer.phases.choose import Chosen, ReportedScores, Scores
from embedding_trainer.phases.evaluation import Evaluations
from embedding_trainer.phases.fit import Training
from embedding_trainer.phases.model import TrainingRows
from embedding_trainer.reporting.guards import guard_sections, guard_warnings
from embedding_trainer.reporting.history import validation_scores
from embedding_trainer.reporting.hub import push_to_hub
from embedding_trainer.reporting.model_card import write_model_card
from embedding_trainer.reporting.objectives import objective_sections
from embedding_trainer.reporting.results import results_payload, write_results
from embedding_trainer.reporting.run_report import write_run_report
from embedding_trainer.reporting.teacher import teacher_section
from embedding_trainer.reporting.trained import TrainedLength
from embedding_trainer.reporting.wandb_run import log_results_table
from embedding_trainer.runs.checkpoints import keep_checkpoints
from embedding_trainer.settings.reporting import ReportSettings, RunDescription
from embedding_trainer.training.teacher import reported_scores
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


def report_and_save(
    settings: ReportSettings,
    started: float,
    model: SentenceTransformer,
    datamodule: EmbeddingDataModule,
    evaluations: Evaluations,
    training: Training,
    rows: TrainingRows,
    parameters: ParameterCount,
    chosen: Chosen,
    scores: Scores,
    provenance: dict | None,
) -> tuple[dict, Path | None]:
    """Write the run's outputs (the run `started` at that time) into `settings.output_dir`: the model
    folder and results (`finish_run`), report.md, the W&B results table, the hub upload (`hub_push`), then
    keep the `keep_checkpoints` checkpoints. Returns results.json's payload and the model folder (None:
    not saved)."""
    output_dir = settings.output_dir
    evaluator, reported = evaluations.evaluator, scores.reported
    results = run_results(evaluations, training, rows, chosen, scores, provenance)
    model_path = finish_run(settings, model, reported, evaluator, results, scores.significance)
    write_report(
        settings.run,
        output_dir,
        started,
        datamodule,
        evaluations,
        training,
        rows,
        chosen,
        scores,
        results,
        parameters,
    )
    log_results_table(
        training.trainer.loggers,
        evaluator.primary_metric,
        reported.baseline,
        reported.finetuned,
        scores.significance,
    )
    if settings.hub_push and model_path:
        url = push_to_hub(model, model_path, settings.hub_repo_id, settings.hub_private)
        log.info(f"Pushed the model to {url}")
    # Last: a run that failed before this point keeps every checkpoint, to resume from.
    keep_checkpoints(output_dir, settings.keep_checkpoints, model_path)
    return results, model_path


def run_results(
    evaluations: Evaluations,
    training: Training,
    rows: TrainingRows,
    chosen: Chosen,
    scores: Scores,
    provenance: dict | None,
) -> dict:
    """results.json's payload: the reported table (`results_payload`) with the run's `provenance`, the
    guards, how the model was chosen, the fit's length, early stopping, the teacher, the objectives and
    the hard-negative mining's row counts."""
    evaluator, reported, step = evaluations.evaluator, scores.reported, chosen.step
    stopping, teacher, objectives = training.stopping, rows.teacher, scores.objectives
    results = results_payload(
        evaluator.name,
        evaluator.primary_metric,
        reported.baseline,
        reported.finetuned,
        step,
        scores.significance,
    )
    results.update(
        provenance=provenance,
        general=scores.general,
        health=scores.health,
        selection=scores.selection.to_json(),
        training=chosen.trained.to_json(),
        early_stopping=stopping.to_json(step) if stopping else None,
        teacher=teacher.to_json(reported_scores(evaluator, reported, evaluations.general))
        if teacher
        else None,
        objectives={result.name: result.to_json() for result in objectives} if objectives else None,
        hard_negatives=rows.mined.to_json() if rows.mined else None,
    )
    return results


def write_report(
    run: RunDescription,
    output_dir: Path,
    started: float,
    datamodule: EmbeddingDataModule,
    evaluations: Evaluations,
    training: Training,
    rows: TrainingRows,
    chosen: Chosen,
    scores: Scores,
    results: dict,
    parameters: ParameterCount,
) -> None:
    """Write `run`'s report.md (`write_run_report`): the reported table, the training curves, the data notes, and
    the sections on how the model was chosen, early stopping, the guards, the teacher and the objectives."""
    evaluator, reported, selection, stopping = (
        evaluations.evaluator,
        scores.reported,
        scores.selection,
        training.stopping,
    )
    selection_warning = [f"> **Warning:** {selection.warning()}"] if selection.warning() else []
    write_run_report(
        output_dir,
        run,
        evaluator.name,
        evaluator.primary_metric,
        reported.baseline,
        reported.finetuned,
        chosen.trained,
        training.history.rows,
        validation_scores(evaluations.evaluation),
        time.time() - started,
        data_notes(datamodule, output_dir),
        scores.significance,
        selection_warning + guard_warnings(results["general"], results["health"]),
        [
            selection.describe(),
            "",
            *([stopping.describe(chosen.step), ""] if stopping else []),
            *guard_sections(results["general"], results["health"]),
            *teacher_section(results["teacher"]),
            *objective_sections(scores.objectives or []),
        ],
        parameters,
    )


def finish_run(
    settings: ReportSettings,
    model: SentenceTransformer,
    reported: ReportedScores,
    evaluator: DimensionEvaluator,
    results: dict,
    significance: Significance | None = None,
) -> Path | None:
    """Save the model with its model card and the resolved config in `settings.output_dir`, write
    `results` (the payload, with the run's provenance) and the tables, and print the comparison table.
    Returns the model folder (None when `save_model` is off). With `merge_lora`, `model`'s adapters
    are merged into its weights (in place) before it is saved."""
    output_dir = settings.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config_resolved.yaml").write_text(settings.resolved_yaml, encoding="utf-8")
    model_path = None
    if settings.save_model:
        model_path = output_dir / "model"
        if settings.merge_lora:  # model.lora.merge_on_save: a plain folder (the model in memory too)
            merge_lora(model)
        model.save(str(model_path), create_model_card=False)
        write_model_card(
            model_path,
            settings,
            model,
            evaluator.name,
            evaluator.primary_metric,
            reported.baseline,
            reported.finetuned,
            results["provenance"],
            TrainedLength(**results["training"]),
            significance,
        )
        log.info(f"Saved the fine-tuned model to {model_path} (load it with {type(model).__name__}(path))")
    table = write_results(output_dir, results, reported.baseline, reported.finetuned, significance)
    log.info(
        f"{evaluator.name} {evaluator.primary_metric} by dimension:\n{table}\nReport: {output_dir / 'report.md'}"
    )
    return model_path


def data_notes(datamodule: EmbeddingDataModule, output_dir: Path) -> list[str]:
    """The report's lines about the data: the leakage check, then each data stage's notes (`notes()`, such
    as the hard-negative mining with its score histogram, `plots/hard_negatives.png`, and the miner's own
    summary)."""
    notes = [datamodule.leakage.describe()]
    for stage in getattr(datamodule, "stages", []):
        notes += stage.notes(output_dir)
    return notes


def log_config(loggers: list, resolved: dict, provenance: dict | None) -> None:
    """Log the `resolved` config (a container), with the run's `provenance`, as every logger's
    hyper-parameters."""
    for logger in loggers:
        logger.log_hyperparams({**resolved, "provenance": provenance})
