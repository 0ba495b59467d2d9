"""A run with several objectives: each objective's before/after table (its own evaluator's primary
metric, with the change's interval when it scores per example), for report.md and results.json."""

from dataclasses import dataclass
from pathlib import Path

from embedding_trainer.evaluation.base import DimensionMetrics, PerExample
from embedding_trainer.evaluation.objectives import ObjectivesEvaluator, objective_part
from embedding_trainer.evaluation.significance import Significance, record_significance
from embedding_trainer.reporting.results import primary_table, results_payload


@dataclass
class ObjectiveResult:
    """One objective's reported scores: its evaluator's name and primary metric, before and after."""

    name: str
    evaluator: str
    metric: str
    score_weight: float
    baseline: DimensionMetrics | None
    finetuned: DimensionMetrics
    significance: Significance | None
    step: int

    def to_json(self) -> dict:
        return {
            **results_payload(
                self.evaluator, self.metric, self.baseline, self.finetuned, self.step, self.significance
            ),
            "score_weight": self.score_weight,
        }

    def section(self) -> list[str]:
        return [
            f"### Objective {self.name}: {self.metric} ({self.evaluator} evaluator, score weight {self.score_weight})",
            "",
            primary_table(self.metric, self.baseline, self.finetuned, self.significance),
            "",
        ]


def objective_results(
    output_dir: Path,
    evaluator: ObjectivesEvaluator,
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    baseline_examples: PerExample | None,
    finetuned_examples: PerExample | None,
    step: int,
    bootstrap: dict,
) -> list[ObjectiveResult]:
    """Each objective's part of the reported scores of `evaluator`, its per-example scores saved and
    compared (`record_significance` with the `bootstrap` settings) under `<output_dir>/objectives/<name>/`."""
    results = []
    for name, part in evaluator.evaluators.items():
        significance = record_significance(
            output_dir / "objectives" / name,
            part,
            objective_part(baseline_examples, name),
            objective_part(finetuned_examples, name),
            step,
            **bootstrap,
        )
        results.append(
            ObjectiveResult(
                name,
                part.name,
                part.primary_metric,
                evaluator.score_weights[name],
                objective_part(baseline, name),
                objective_part(finetuned, name),
                significance,
                step,
            )
        )
    return results


def objective_sections(results: list[ObjectiveResult]) -> list[str]:
    """The report's section of the objectives' tables (none for a one-objective run)."""
    if not results:
        return []
    lines = [
        "",
        "## Objectives",
        "",
        (
            "`score` above is the score-weighted mean of these primary metrics; each objective's every metric "
            "is in `results.md` as `<objective>/<metric>`."
        ),
        "",
    ]
    for result in results:
        lines += result.section()
    return lines
