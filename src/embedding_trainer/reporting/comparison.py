"""Models side by side: the evaluations of one multi-run (`python evaluate.py -m model=a,b`) as one
table of each model's primary metric per dimension, one column per model (`comparison.md` and
`comparison.json` in the multi-run's folder); every other metric stays in each run's results files."""

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from embedding_trainer.reporting.results import markdown_table
from embedding_trainer.reporting.seeds import SeedRun, group_runs


def evaluation_columns(runs: Sequence[SeedRun]) -> list[tuple[str, SeedRun]]:
    """(label, run) per evaluation (a run whose results have `evaluated`), in job order: the label is
    the overrides that set the run apart from the others (its model when none do), with the run's
    folder name added when several runs share them."""
    columns = []
    for group in group_runs(runs):
        for run in group.runs:
            label = run.results.get("model", run.name) if group.label == "all runs" else group.label
            columns.append((label if len(group.runs) == 1 else f"{label} ({run.name})", run))
    return sorted(columns, key=lambda column: _job_number(column[1]))


@dataclass(frozen=True)
class SideBySide:
    """Evaluations as one table: `columns` (label, run) in job order (see `evaluation_columns`),
    `dims` descending, `values[dim][label]` (the run's primary metric, None where it has no such
    dimension), `headers` (the columns' labels, each with its run's metric when the metrics differ)
    and `described` (the metrics and evaluators, e.g. "ndcg@10 (retrieval)")."""

    columns: list[tuple[str, SeedRun]]
    dims: list[int]
    values: dict[int, dict[str, float | None]]
    headers: list[str]
    described: str

    def rows(self) -> list[list]:
        """[dimension, value of each column] per dimension (values as floats, None where missing)."""
        return [[dim, *self.values[dim].values()] for dim in self.dims]


def side_by_side(runs: Sequence[SeedRun]) -> SideBySide:
    """The primary metric of each of `runs` (evaluations, see `evaluation_columns`) per dimension."""
    columns = evaluation_columns(runs)
    metrics = {run.results["primary_metric"] for _, run in columns}
    dims = sorted({int(dim) for _, run in columns for dim in run.results["evaluated"]}, reverse=True)
    values = {
        dim: {
            label: run.results["evaluated"].get(str(dim), {}).get(run.results["primary_metric"])
            for label, run in columns
        }
        for dim in dims
    }
    headers = [
        label if len(metrics) == 1 else f"{label} ({run.results['primary_metric']})" for label, run in columns
    ]
    described = ", ".join(
        sorted({f"{run.results['primary_metric']} ({run.results['evaluator']})" for _, run in columns})
    )
    return SideBySide(columns, dims, values, headers, described)


def write_comparison(folder: Path, runs: Sequence[SeedRun]) -> str:
    """Write `comparison.md` and `comparison.json` ({"columns": [{label, run, model, evaluator,
    primary_metric, overrides}], "dimensions": {dim: {label: value or None}}}) to `folder` from
    `runs` (evaluations, see `side_by_side`); return the Markdown table (dimensions descending, '-'
    where a model has no such dimension; a model's metric in its column's header when the models'
    metrics differ)."""
    compared = side_by_side(runs)
    columns, dims, values = compared.columns, compared.dims, compared.values
    table = markdown_table(["dimension", *compared.headers], compared.rows())
    intro = (
        f"{len(columns)} evaluations without training; {compared.described} by dimension. Every metric of "
        "each model: `<run>/results.md` and `<run>/results.json`."
    )
    lines = [
        f"# Models side by side: {folder.name}",
        "",
        intro,
        "",
        table,
        "",
        "Runs:",
        "",
        *(f"- {label}: `{run.name}/`" for label, run in columns),
    ]
    payload = {
        "columns": [
            {
                "label": label,
                "run": run.name,
                "model": run.results.get("model"),
                "evaluator": run.results["evaluator"],
                "primary_metric": run.results["primary_metric"],
                "overrides": list(run.overrides),
            }
            for label, run in columns
        ],
        "dimensions": {str(dim): values[dim] for dim in dims},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "comparison.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (folder / "comparison.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table


def _job_number(run: SeedRun) -> tuple[int, str]:
    """A multi-run job's number (its folder name starts `<n>_`), then its name: the launch order."""
    number = re.match(r"\d+", run.name)
    return (int(number.group()) if number else -1, run.name)
