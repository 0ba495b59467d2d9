"""`python -m embedding_trainer.runs list|show|compare`: the run registry as tables.

  list [--status S] [--task T] [--since 2026-11-01|3d|12h]   one line per run, newest first, with its folder
  show RUN [--config]        one run: its results table, status and times, other metrics (the config)
  compare RUN RUN ...                                         per-dimension metrics side by side
  compare --group FOLDER|NAME                                 a multi-run's or sweep's runs across seeds:
      mean, std and 95% t interval of the primary metric and its change, per configuration and dimension;
      an evaluate.py multi-run's models side by side (each one's primary metric per dimension)
      (the group: the runs in the multi-run or sweep folder, given by path or by folder name)
A RUN is a run id, the start of one (unique), or a run folder (a path, or the folder's name).
The registry is outputs/runs.db unless --db says otherwise.
"""

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

from embedding_trainer.runs.registry import STATUSES, RunRegistry
from embedding_trainer.runs.run_ids import find_run
from embedding_trainer.runs.views import final_metrics, folder_text, show_run, table, took, when
from embedding_trainer.settings.resolvers import PROJECT_ROOT

DEFAULT_DB = PROJECT_ROOT / "outputs" / "runs.db"


def parse_since(text: str) -> float:
    """Epoch seconds from an ISO date/time or an age such as `3d`, `12h`, `30m`."""
    units = {"d": 86400, "h": 3600, "m": 60}
    if text[-1:] in units and text[:-1].isdigit():
        return time.time() - int(text[:-1]) * units[text[-1]]
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since takes a date (2026-11-01), a time, or an age (3d, 12h, 30m): {text!r}"
        )


def _score(run: dict) -> str | None:
    finetuned = final_metrics(run)
    primary = (run["metrics"] or {}).get("primary_metric")
    if not finetuned or not primary:
        return None
    first_dim = next(iter(finetuned))
    return f"{primary}@{first_dim}={finetuned[first_dim][primary]:.4f}"


def command_list(registry: RunRegistry, args) -> str:
    runs = registry.list(status=args.status, task=args.task, since=args.since)
    cwd = Path.cwd()
    rows = [
        [
            r["run_id"],
            r["task"],
            r["status"],
            when(r["started_at"]),
            took(r),
            f"{r['step']}/{r['total_steps'] or '?'} ({r['percent']:.0f}%)",
            _score(r) or r["error_type"],
            folder_text(r["output_dir"], cwd),
        ]
        for r in runs
    ]
    headers = ["run", "task", "status", "started", "took", "progress", "result", "folder"]
    return table(headers, rows) if rows else "no runs"


def command_show(registry: RunRegistry, args) -> str:
    return show_run(registry.get(find_run(registry, args.run)), Path.cwd(), args.config)


def in_group(output_dir: str | None, group: str) -> bool:
    """Whether a run writing to `output_dir` is one of the multi-run or sweep `group`: the folder holding
    its run folder, by path or by name."""
    if not output_dir:
        return False
    parent = Path(output_dir).resolve().parent
    return parent == Path(group).expanduser().resolve() or parent.name == group


def command_compare_group(registry: RunRegistry, group: str) -> str:
    """The group's successful runs, oldest first: statistics across seeds (`reporting.seeds`) of its
    training runs, and its evaluations without training (an `evaluate.py -m` multi-run, whose results
    have `evaluated` instead of a baseline and a fine-tuned model) side by side (`reporting.comparison`)."""
    # Imported here, as in evaluations_side_by_side: reporting imports sentence-transformers, which
    # would make every `list` and `show` take seconds.
    from embedding_trainer.reporting.seeds import HEADERS, SeedRun, group_runs

    runs = [run for run in reversed(registry.list(status="success")) if in_group(run["output_dir"], group)]
    trained = [run for run in runs if (run["metrics"] or {}).get("finetuned")]
    evaluations = [run for run in runs if (run["metrics"] or {}).get("evaluated")]
    if not trained and not evaluations:
        raise KeyError(
            f"no successful run of group {group!r} in {registry.path} (give the multi-run or sweep folder)"
        )
    seed_runs = [
        SeedRun(
            run["run_id"],
            tuple(run["overrides"]),
            (yaml.safe_load(run["config"] or "") or {}).get("seed"),
            run["metrics"],
        )
        for run in trained
    ]
    sections = [f"{g.title()}\n{table(HEADERS, g.rows())}" for g in group_runs(seed_runs)]
    if evaluations:
        sections.append(evaluations_side_by_side(evaluations))
    return "\n\n".join(sections)


def evaluations_side_by_side(runs: list[dict]) -> str:
    """Registry rows of evaluations as `comparison.md`'s table (`reporting.comparison.side_by_side`):
    each model's primary metric per dimension, one column per run (named by its run folder, as there),
    then which run each column is."""
    from embedding_trainer.reporting.comparison import side_by_side
    from embedding_trainer.reporting.seeds import SeedRun

    evaluations = [
        SeedRun(Path(run["output_dir"]).name, tuple(run["overrides"]), None, run["metrics"]) for run in runs
    ]
    run_ids = {id(evaluation): run["run_id"] for evaluation, run in zip(evaluations, runs)}
    compared = side_by_side(evaluations)
    rows = [
        [dim, *(None if value is None else f"{value:.4f}" for value in values)]
        for dim, *values in compared.rows()
    ]
    return "\n".join(
        [
            f"Models side by side: {len(compared.columns)} evaluations without training, {compared.described}",
            table(["dimension", *compared.headers], rows),
            "",
            *(f"{label}: {run_ids[id(run)]} ({run.name}/)" for label, run in compared.columns),
        ]
    )


def command_compare(registry: RunRegistry, args) -> str:
    if args.group:
        return command_compare_group(registry, args.group)
    runs = [registry.get(find_run(registry, reference)) for reference in args.run_ids]
    metric_names = sorted({name for run in runs for values in final_metrics(run).values() for name in values})
    dims = sorted({int(d) for run in runs for d in final_metrics(run)}, reverse=True)
    headers = ["dimension", "metric"] + [f"{run['run_id']} (baseline -> fine-tuned)" for run in runs]
    rows = []
    for dim in dims:
        for name in metric_names:
            row = [dim, name]
            for run in runs:
                metrics = run["metrics"] or {}
                after = (final_metrics(run).get(str(dim)) or {}).get(name)
                before = ((metrics.get("baseline") or {}).get(str(dim)) or {}).get(name)
                row.append(
                    "-"
                    if after is None
                    else (f"{before:.4f} -> {after:.4f}" if before is not None else f"{after:.4f}")
                )
            rows.append(row)
    return table(headers, rows) if rows else "no metrics recorded for these runs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m embedding_trainer.runs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"registry file (default {DEFAULT_DB})")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="one line per run")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--task")
    listing.add_argument("--since", type=parse_since)
    show = commands.add_parser("show", help="one run: results table, status and times, other metrics")
    show.add_argument("run", help="a run id, its start, or a run folder (path or name)")
    show.add_argument("--config", action="store_true", help="also print the run's resolved config")
    compare = commands.add_parser(
        "compare", help="per-dimension metrics side by side, or across seeds (--group)"
    )
    compare.add_argument("run_ids", nargs="*", help="runs: ids, their starts, or run folders")
    compare.add_argument(
        "--group",
        help="a multi-run or sweep folder (path or name): statistics across seeds (evaluations: side by side)",
    )
    args = parser.parse_args(argv)
    if args.command == "compare" and bool(args.run_ids) == bool(args.group):
        parser.error("compare takes run ids, or --group FOLDER (one of the two)")
    if not args.db.is_file():
        print(
            f"No registry at {args.db}: no run has been recorded there yet (or pass --db).", file=sys.stderr
        )
        return 1
    registry = RunRegistry(args.db)
    handler = {"list": command_list, "show": command_show, "compare": command_compare}[args.command]
    try:
        print(handler(registry, args))
    except KeyError as error:  # no such run (or group), or several: the message says which
        print(error.args[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
