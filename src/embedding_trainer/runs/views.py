"""Registry rows as text: aligned tables, and `show`'s view of one run (results first).

A row's `metrics` is its results JSON (`reporting.results.results_payload`, as in results.json):
`primary_metric`, `evaluator`, `step`, `baseline` and `finetuned` ({dimension: {metric: value}}) and
`significance` (`Significance.to_json()`: `confidence`, `skipped`, `legend`, `by_dimension`), or
for an evaluation without training `evaluated` and `model` instead of the two models.
"""

from datetime import datetime
from pathlib import Path


def table(headers: list[str], rows: list[list]) -> str:
    """A plain-text table with aligned columns; None cells show as '-'."""
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def when(seconds: float | None) -> str | None:
    """Epoch seconds as local date and time."""
    return None if seconds is None else datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def took(run: dict) -> str | None:
    """How long the run ran (None while it runs): `42s`, `3m 12s`, `2h 05m`."""
    if run["ended_at"] is None:
        return None
    seconds = round(run["ended_at"] - run["started_at"])
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def folder_text(folder: str | None, cwd: Path) -> str | None:
    """A run folder as shown: relative to `cwd` when under it, else as recorded."""
    if not folder:
        return None
    path = Path(folder)
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else folder


def final_metrics(run: dict) -> dict:
    """The run's final metrics {dimension: {metric: value}}: the fine-tuned model's, or an evaluation's."""
    metrics = run["metrics"] or {}
    return metrics.get("finetuned") or metrics.get("evaluated") or {}


def show_run(run: dict, cwd: Path, config: bool = False) -> str:
    """`show`'s text: the primary metric per dimension (baseline, fine-tuned, change and its
    interval), then status, progress, times and where the run is, then the other metrics, one row
    each; the resolved config only with `config`."""
    sections = [results_section(run), status_section(run, cwd)]
    if len(next(iter(final_metrics(run).values()), {})) > 1:
        sections.append(other_metrics_section(run))
    if config and run["config"]:
        sections.append("config:\n" + run["config"].rstrip())
    return "\n\n".join(sections)


def results_section(run: dict) -> str:
    """The primary metric per dimension, its title, and what its interval is; or why there is none."""
    metrics = run["metrics"] or {}
    metric, final = metrics.get("primary_metric"), final_metrics(run)
    if not metric or not final:
        return f"No results ({run['status']})."
    if "evaluated" in metrics:
        rows = [[dim, _number(values.get(metric))] for dim, values in final.items()]
        title = f"{metric} by dimension ({metrics.get('evaluator')}, {metrics.get('model')}, no training)"
        return f"{title}\n{table(['dimension', metric], rows)}"
    significance = metrics.get("significance") or {}
    level = f"{significance.get('confidence', 0.95):.0%}"
    tests = significance.get("by_dimension") or {}
    rows = []
    for dim, values in final.items():
        before = (metrics.get("baseline") or {}).get(dim, {}).get(metric)
        after = values.get(metric)
        test = tests.get(dim, {}).get(metric)
        change = None if before is None or after is None else after - before
        mark = "*" if test and test["excludes_zero"] else ""
        interval = f"[{test['ci_low']:+.4f}, {test['ci_high']:+.4f}]" if test else None
        rows.append([dim, _number(before), _number(after), _signed(change, mark), interval])
    headers = ["dimension", "baseline", "fine-tuned", "change", f"{level} interval"]
    title = f"{metric} by dimension ({metrics.get('evaluator')}, step {metrics.get('step')})"
    legend = _legend(significance, metric, tests, level)
    return "\n".join([title, table(headers, rows), *([legend] if legend else [])])


def _legend(significance: dict, metric: str, tests: dict, level: str) -> str | None:
    """What the interval column is, or why it is '-'; None when no test was attempted."""
    if not significance:
        return None
    if significance.get("skipped"):
        return f"{level} interval: '-' ({significance['skipped']})."
    if not any(metric in by_metric for by_metric in tests.values()):
        return f"{level} interval: '-' ({metric} is not a mean over {significance.get('unit', 'examples')})."
    return significance.get("legend")


def status_section(run: dict, cwd: Path) -> str:
    """Status, progress, times, folder, model, error and overrides, one per line."""
    status = run["status"]
    if status == "failed" and run["error_type"]:
        status += f": {run['error_type']}: {run['error_message']}"
    folder = folder_text(run["output_dir"], cwd)
    if folder is None and run["status"] == "failed":
        folder = "none (refused at its start: the folder it began was removed)"
    ended = when(run["ended_at"])
    fields = [
        ("run", f"{run['run_id']} (task {run['task']})"),
        ("status", status),
        ("progress", f"{run['step']}/{run['total_steps'] or '?'} steps ({run['percent']:.0f}%)"),
        ("started", when(run["started_at"])),
        ("ended", f"{ended} (took {took(run)})" if ended else f"- (last update {when(run['updated_at'])})"),
        ("folder", folder),
        ("model", folder_text(run["model_path"], cwd)),
        ("overrides", " ".join(run["overrides"]) or None),
    ]
    width = max(len(name) for name, _ in fields)
    return "\n".join(f"{name.ljust(width)}  {'-' if value is None else value}" for name, value in fields)


def other_metrics_section(run: dict) -> str:
    """Every metric but the primary one, a row each, a column per dimension: the final value, and
    with a baseline the change from it."""
    metrics = run["metrics"]
    final, baseline = final_metrics(run), metrics.get("baseline") or {}
    names = [name for name in next(iter(final.values())) if name != metrics.get("primary_metric")]
    rows = []
    for name in names:
        row = [name]
        for dim, values in final.items():
            after, before = values.get(name), baseline.get(dim, {}).get(name)
            change = f" ({after - before:+.4f})" if before is not None and after is not None else ""
            row.append(None if after is None else f"{after:.4f}{change}")
        rows.append(row)
    title = "Other metrics, fine-tuned (change)" if baseline else "Other metrics"
    return f"{title}\n{table(['metric', *(f'dim {dim}' for dim in final)], rows)}"


def _number(value: float | None) -> str | None:
    return None if value is None else f"{value:.4f}"


def _signed(value: float | None, mark: str = "") -> str | None:
    return None if value is None else f"{value:+.4f}{mark}"
