"""The baseline-versus-fine-tuned comparison: a printed table, `results.json` and `results.md`."""

import json
from pathlib import Path

from embedding_trainer.evaluation.base import DimensionMetrics


def comparison_rows(baseline: DimensionMetrics | None, finetuned: DimensionMetrics, metric: str) -> list[list]:
    """Rows of [dimension, baseline, fine-tuned, change] for `metric` (baseline None when not run)."""
    rows = []
    for dim, values in finetuned.items():
        before = baseline[dim][metric] if baseline else None
        change = values[metric] - before if before is not None else None
        rows.append([dim, before, values[metric], change])
    return rows


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table: floats with 4 decimals (signed in a `change` column),
    missing values as '-'."""

    def cell(value, header: str) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:+.4f}" if header == "change" else f"{value:.4f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell(value, header) for value, header in zip(row, headers)) + " |")
    return "\n".join(lines)


def results_payload(
    evaluator_name: str, metric: str, baseline: DimensionMetrics | None, finetuned: DimensionMetrics, step: int
) -> dict:
    """The JSON form of a run's results (as written to results.json and the run registry)."""
    return {
        "evaluator": evaluator_name,
        "primary_metric": metric,
        "step": step,
        "baseline": _json_metrics(baseline),
        "finetuned": _json_metrics(finetuned),
    }


def primary_table(metric: str, baseline: DimensionMetrics | None, finetuned: DimensionMetrics) -> str:
    """Markdown table of `metric` per dimension: baseline, fine-tuned, change."""
    return markdown_table(["dimension", "baseline", "fine-tuned", "change"], comparison_rows(baseline, finetuned, metric))


def write_results(
    output_dir: Path,
    evaluator_name: str,
    metric: str,
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    step: int,
) -> str:
    """Write `results.json` (every metric, both models) and `results.md` to `output_dir`;
    return the Markdown table of the primary `metric`."""
    table = primary_table(metric, baseline, finetuned)
    payload = results_payload(evaluator_name, metric, baseline, finetuned, step)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    sections = [f"# Results ({evaluator_name}, step {step})", "", f"## {metric} by dimension", "", table]
    for label, metrics in (("Baseline", baseline), ("Fine-tuned", finetuned)):
        if metrics:
            names = list(next(iter(metrics.values())))
            rows = [[dim, *(values[name] for name in names)] for dim, values in metrics.items()]
            sections += ["", f"## {label}: every metric", "", markdown_table(["dimension", *names], rows)]
    (output_dir / "results.md").write_text("\n".join(sections) + "\n", encoding="utf-8")
    return table


def _json_metrics(metrics: DimensionMetrics | None) -> dict | None:
    return None if metrics is None else {str(dim): values for dim, values in metrics.items()}
