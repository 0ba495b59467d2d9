"""Statistics across seeds: runs that differ only in their seed, summarised per dimension as the mean,
sample standard deviation and 95% Student-t interval of the mean of the fine-tuned model's primary
metric and of its change from the baseline (`summary.md` and `summary.json` of a multi-run, and
`python -m embedding_trainer.runs compare --group`)."""

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from scipy import stats

CONFIDENCE = 0.95
# Override keys that say where and as what a run runs, not what it trains: runs differing only in
# these (and the seed) are one configuration.
RUN_IDENTITY = (
    "seed",
    "sweep_trial",
    "name",
    "ckpt_path",
    "overwrite",
    "launcher",
    "paths",
    "hydra",
    "registry",
)
HEADERS = [
    "dimension",
    "runs",
    "fine-tuned mean",
    "fine-tuned std",
    "fine-tuned 95% CI",
    "change mean",
    "change std",
    "change 95% CI",
]


@dataclass(frozen=True)
class Estimate:
    """The mean of `n` values, their sample standard deviation (n - 1 in the denominator) and the
    Student-t interval [`low`, `high`] of the mean; None where undefined (mean: no value; the others:
    fewer than two values)."""

    n: int
    mean: float | None = None
    std: float | None = None
    low: float | None = None
    high: float | None = None


def estimate(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """mean ± t(1 - (1 - confidence) / 2, n - 1) · std / √n of `values`."""
    n = len(values)
    if n == 0:
        return Estimate(0)
    mean = sum(values) / n
    if n == 1:
        return Estimate(1, mean)
    std = statistics.stdev(values)
    half_width = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Estimate(n, mean, std, mean - half_width, mean + half_width)


@dataclass(frozen=True)
class SeedRun:
    """One finished run: `name` (run id or folder name), its command-line `overrides`, its `seed`
    (None when unknown), and `results` in the form of results.json (`primary_metric`, `evaluator`,
    `baseline` and `finetuned`: {dimension: {metric: value}})."""

    name: str
    overrides: tuple[str, ...]
    seed: int | None
    results: dict

    @property
    def configuration(self) -> tuple[str, ...]:
        """The overrides that set what the run trains (all but `RUN_IDENTITY` keys), sorted."""
        return tuple(sorted(o for o in self.overrides if _key(o).split(".")[0] not in RUN_IDENTITY))


@dataclass
class SeedGroup:
    """Runs of one configuration; `label` names it among the other groups of the same summary."""

    configuration: tuple[str, ...]
    runs: list[SeedRun]
    label: str = "all runs"

    def dimensions(self) -> dict[int, tuple[Estimate, Estimate]]:
        """Per dimension (descending): the estimates of the fine-tuned primary metric and of its
        change from the baseline, over the runs that report that dimension (and a baseline)."""
        finetuned: dict[int, list[float]] = {}
        change: dict[int, list[float]] = {}
        for run in self.runs:
            metric = run.results["primary_metric"]
            baseline = run.results.get("baseline") or {}
            for dim, values in run.results["finetuned"].items():
                finetuned.setdefault(int(dim), []).append(values[metric])
                if dim in baseline:
                    change.setdefault(int(dim), []).append(values[metric] - baseline[dim][metric])
        return {
            dim: (estimate(finetuned[dim]), estimate(change.get(dim, [])))
            for dim in sorted(finetuned, reverse=True)
        }

    def title(self) -> str:
        """The label, the metric and evaluator, and the seeds."""
        metrics = sorted(
            {f"{run.results['primary_metric']} ({run.results['evaluator']})" for run in self.runs}
        )
        seeds = ", ".join("?" if run.seed is None else str(run.seed) for run in self.runs)
        return f"{self.label}: {' / '.join(metrics)}, {len(self.runs)} runs, seeds {seeds}"

    def rows(self) -> list[list[str]]:
        """Table rows under `HEADERS`: 4 decimals, changes signed, '-' where undefined."""
        return [
            [str(dim), str(after.n), *_cells(after, signed=False), *_cells(change, signed=True)]
            for dim, (after, change) in self.dimensions().items()
        ]

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "configuration": list(self.configuration),
            "runs": [run.name for run in self.runs],
            "seeds": [run.seed for run in self.runs],
            "primary_metric": sorted({run.results["primary_metric"] for run in self.runs}),
            "dimensions": {
                str(dim): {"finetuned": asdict(after), "change": asdict(change)}
                for dim, (after, change) in self.dimensions().items()
            },
        }


def group_runs(runs: Sequence[SeedRun]) -> list[SeedGroup]:
    """Runs grouped by configuration (in order of first appearance), each group labelled by the
    overrides that set it apart from the other groups ("all runs" for a single group)."""
    groups: dict[tuple[str, ...], SeedGroup] = {}
    for run in runs:
        groups.setdefault(run.configuration, SeedGroup(run.configuration, [])).runs.append(run)
    shared = set.intersection(*(set(c) for c in groups)) if groups else set()
    for group in groups.values():
        group.label = " ".join(o for o in group.configuration if o not in shared) or "all runs"
    return list(groups.values())


def runs_in_folder(folder: Path) -> list[SeedRun]:
    """The finished runs of a multi-run or sweep folder: its sub-folders with a `results.json`,
    their overrides from `.hydra/overrides.yaml` and seed from `config_resolved.yaml`."""
    runs = []
    for results_path in sorted(folder.glob("*/results.json")):
        run_dir = results_path.parent
        overrides_path = run_dir / ".hydra" / "overrides.yaml"
        config_path = run_dir / "config_resolved.yaml"
        overrides = (
            yaml.safe_load(overrides_path.read_text(encoding="utf-8")) if overrides_path.is_file() else []
        )
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        runs.append(
            SeedRun(
                run_dir.name,
                tuple(overrides or ()),
                (config or {}).get("seed"),
                json.loads(results_path.read_text(encoding="utf-8")),
            )
        )
    return runs


def write_summary(folder: Path, runs: Sequence[SeedRun]) -> Path:
    """Write `summary.md` (one table per configuration) and `summary.json` (the same numbers, with
    `confidence`) to `folder`; return the Markdown file's path."""
    groups = group_runs(runs)
    intro = (
        f"{len(runs)} finished runs, grouped by configuration (their overrides apart from the seed). Per "
        f"dimension: the mean, sample standard deviation and {CONFIDENCE:.0%} Student-t interval of the mean "
        "across seeds of the primary metric, fine-tuned and its change from the baseline ('-': needs two "
        "runs, or a baseline)."
    )
    lines = [f"# Multi-run summary: {folder.name}", "", intro]
    for group in groups:
        lines += [
            "",
            f"## {group.title()}",
            "",
            "| " + " | ".join(HEADERS) + " |",
            "|" + "---|" * len(HEADERS),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in group.rows()]
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"confidence": CONFIDENCE, "groups": [group.to_json() for group in groups]}
    (folder / "summary.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    path = folder / "summary.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _cells(value: Estimate, signed: bool) -> list[str]:
    number = "{:+.4f}" if signed else "{:.4f}"
    if value.mean is None:
        return ["-", "-", "-"]
    if value.std is None:
        return [number.format(value.mean), "-", "-"]
    return [
        number.format(value.mean),
        f"{value.std:.4f}",
        f"[{number.format(value.low)}, {number.format(value.high)}]",
    ]
