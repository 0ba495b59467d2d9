"""The baseline-versus-fine-tuned comparison (or one model's evaluation): a printed table,
`results.json` and `results.md`."""

import json
from pathlib import Path

from embedding_trainer.evaluation.base import DimensionMetrics, metrics_json
from embedding_trainer.evaluation.significance import Significance


def comparison_rows(
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    metric: str,
    significance: Significance | None = None,
) -> list[list]:
    """Rows of [dimension, baseline, fine-tuned, change, ci_low, ci_high, p_value, excludes_zero] for
    `metric`; None where there is no value (no baseline run, or no test of that metric and dimension)."""
    rows = []
    for dim, values in finetuned.items():
        before = baseline[dim][metric] if baseline else None
        change = values[metric] - before if before is not None else None
        test = significance.test(dim, metric) if significance else None
        tested = [test.ci_low, test.ci_high, test.p_value, test.excludes_zero] if test else [None] * 4
        rows.append([dim, before, values[metric], change, *tested])
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
    evaluator_name: str,
    metric: str,
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    step: int,
    significance: Significance | None = None,
) -> dict:
    """The JSON form of a run's results (as written to results.json and the run registry);
    `significance` is `Significance.to_json()`, or None when no test was attempted."""
    return {
        "evaluator": evaluator_name,
        "primary_metric": metric,
        "step": step,
        "baseline": metrics_json(baseline),
        "finetuned": metrics_json(finetuned),
        "significance": significance.to_json() if significance else None,
    }


def primary_table(
    metric: str,
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    significance: Significance | None = None,
) -> str:
    """Markdown table of `metric` per dimension: baseline, fine-tuned, change; with `significance`,
    also the change's CI low and high and p-value ('-' where untested), `*` after changes whose
    interval excludes zero, and the legend line below the table."""
    rows = comparison_rows(baseline, finetuned, metric, significance)
    if significance is None:
        return markdown_table(["dimension", "baseline", "fine-tuned", "change"], [row[:4] for row in rows])
    level = f"{significance.confidence:.0%}"
    headers = [
        "dimension",
        "baseline",
        "fine-tuned",
        "change",
        f"{level} CI low",
        f"{level} CI high",
        "p-value",
    ]
    shown = [
        [
            dim,
            before,
            after,
            _signed(change, "*" if excludes_zero else ""),
            _signed(low),
            _signed(high),
            _p_value(p_value),
        ]
        for dim, before, after, change, low, high, p_value, excludes_zero in rows
    ]
    return markdown_table(headers, shown) + "\n\n" + significance.legend(metric)


def write_results(
    output_dir: Path,
    results: dict,
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    significance: Significance | None = None,
) -> str:
    """Write `results` (a `results_payload`, with anything added to it) as `results.json`, and
    `results.md` (every metric, both models, the change tests) to `output_dir`; return the Markdown
    table of the primary metric (see `primary_table`)."""
    evaluator_name, metric, step = results["evaluator"], results["primary_metric"], results["step"]
    table = primary_table(metric, baseline, finetuned, significance)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    sections = [f"# Results ({evaluator_name}, step {step})", "", f"## {metric} by dimension", "", table]
    for label, metrics in (("Baseline", baseline), ("Fine-tuned", finetuned)):
        if metrics:
            sections += ["", f"## {label}: every metric", "", every_metric_table(metrics)]
    (output_dir / "results.md").write_text("\n".join(sections) + "\n", encoding="utf-8")
    return table


def every_metric_rows(metrics: DimensionMetrics) -> tuple[list[str], list[list]]:
    """The metric names, and a row [dimension, value of each metric] per dimension."""
    names = list(next(iter(metrics.values())))
    return names, [[dim, *(values[name] for name in names)] for dim, values in metrics.items()]


def every_metric_table(metrics: DimensionMetrics) -> str:
    """Markdown table of every metric (columns) at every dimension (rows)."""
    names, rows = every_metric_rows(metrics)
    return markdown_table(["dimension", *names], rows)


def evaluated_table(metric: str, evaluated: DimensionMetrics) -> str:
    """Markdown table of `metric` per dimension of one evaluated model."""
    return markdown_table(["dimension", metric], [[dim, values[metric]] for dim, values in evaluated.items()])


def write_evaluation_results(output_dir: Path, results: dict, evaluated: DimensionMetrics) -> str:
    """Write `results` (an evaluation's payload: `evaluator`, `primary_metric`, `model`, `evaluated`, ...)
    as `results.json`, and `results.md` (the primary metric, then every metric, per dimension) to
    `output_dir`; return the Markdown table of the primary metric (see `evaluated_table`)."""
    metric = results["primary_metric"]
    table = evaluated_table(metric, evaluated)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    sections = [
        f"# Results ({results['evaluator']}, {results['model']}, no training)",
        "",
        f"## {metric} by dimension",
        "",
        table,
        "",
        "## Every metric",
        "",
        every_metric_table(evaluated),
    ]
    (output_dir / "results.md").write_text("\n".join(sections) + "\n", encoding="utf-8")
    return table


def _signed(value: float | None, mark: str = "") -> str | None:
    return None if value is None else f"{value:+.4f}{mark}"


def _p_value(value: float | None) -> str | None:
    if value is None:
        return None
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"
