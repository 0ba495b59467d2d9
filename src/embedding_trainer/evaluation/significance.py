"""Is the gain real? Per-example scores of the baseline and the fine-tuned model, stored in the run
folder, and the paired test of their difference per dimension.

The interval is a percentile paired bootstrap: the same examples are resampled with replacement for
both models, so each resample's mean change is the mean of the per-example changes (fine-tuned minus
baseline) over the drawn examples. The p-value is a two-sided paired t-test (scipy's
`ttest_1samp` of the per-example changes against zero).
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import ttest_1samp
from threadpoolctl import threadpool_limits

from embedding_trainer.evaluation.base import DimensionEvaluator, PerExample

# Index-matrix elements drawn per chunk (at least one row of n): the bootstrap's extra memory is about
# 28 bytes each, and a chunk's counts stay in cache.
CHUNK_ELEMENTS = 1 << 16
PER_EXAMPLE_DIR = "per_example"


def resample_indices(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Rows of `n` indices drawn uniformly with replacement from range(n), `resamples` rows in all,
    yielded in chunks of at most max(1, CHUNK_ELEMENTS // n) rows. The same (n, resamples, seed)
    always gives the same rows."""
    rng = np.random.default_rng(seed)
    rows = max(1, CHUNK_ELEMENTS // n)
    dtype = np.int32 if n < 2**31 else np.int64
    for start in range(0, resamples, rows):
        yield rng.integers(0, n, size=(min(rows, resamples - start), n), dtype=dtype)


def bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of `values` ([n] or [n, k]) over the rows of `resample_indices(n, resamples, seed)`:
    array [resamples, k], one mean per resample and column."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    n = len(values)
    means = np.empty((resamples, values.shape[1]))
    start = 0
    # One BLAS thread: the product is skinny, and idle BLAS threads spinning slow the counting down.
    with threadpool_limits(limits=1, user_api="blas"):
        for indices in resample_indices(n, resamples, seed):
            rows = len(indices)
            # How often each example was drawn in each resample; counts @ values sums the draws.
            flat = (indices + (n * np.arange(rows, dtype=np.int64))[:, None]).ravel()
            counts = np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)
            means[start : start + rows] = counts @ values / n
            start += rows
    return means


def paired_bootstrap(
    differences: np.ndarray, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean of `differences` ([n] or [n, k] per-example
    changes): the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles (linear interpolation) of
    `bootstrap_means`. Returns (low, high), each of shape [k]."""
    means = bootstrap_means(differences, resamples, seed)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail], axis=0)
    return low, high


def paired_p_values(differences: np.ndarray) -> np.ndarray:
    """Two-sided paired t-test p-value per column of `differences` ([n] or [n, k]) against a mean
    change of zero: 1 where every change is 0, 0 where all changes are one other value, NaN for n < 2."""
    differences = np.asarray(differences, dtype=np.float64).reshape(len(differences), -1)
    p_values = np.full(differences.shape[1], np.nan)
    if len(differences) < 2:
        return p_values
    constant = np.ptp(differences, axis=0) == 0
    p_values[constant] = np.where(differences[0, constant] == 0, 1.0, 0.0)
    if (~constant).any():
        p_values[~constant] = ttest_1samp(differences[:, ~constant], 0.0, axis=0).pvalue
    return p_values


@dataclass(frozen=True)
class ChangeTest:
    """One metric at one dimension: mean change (fine-tuned minus baseline), its interval, p-value."""

    mean_change: float
    ci_low: float
    ci_high: float
    p_value: float | None

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or wholly below zero."""
        return self.ci_low > 0 or self.ci_high < 0


@dataclass(frozen=True)
class Significance:
    """The tests of one run: `changes[dim][metric]` for every metric with per-example scores of both
    models; empty, with `skipped` saying why, when nothing was tested."""

    resamples: int
    confidence: float
    seed: int
    n_examples: int = 0
    unit: str = "examples"
    changes: dict[int, dict[str, ChangeTest]] = field(default_factory=dict)
    skipped: str | None = None

    def test(self, dim: int, metric: str) -> ChangeTest | None:
        """The test of `metric` at `dim`, None when there is none."""
        return self.changes.get(dim, {}).get(metric)

    def legend(self, metric: str | None = None) -> str:
        """One line saying what the interval, the p-value and the mark are, or why they are '-' (for
        `metric`, when given)."""
        level = f"{self.confidence:.0%}"
        if self.skipped:
            return f"{level} CI and p-value: '-' ({self.skipped})."
        if metric is not None and not any(metric in tests for tests in self.changes.values()):
            tested = sorted({name for tests in self.changes.values() for name in tests})
            return (
                f"{level} CI and p-value: '-' ({metric} is not a mean over {self.unit}; results.json has the "
                f"tests of {', '.join(tested)})."
            )
        return (
            f"{level} CI: percentile paired bootstrap of the mean change over {self.n_examples:,} {self.unit} "
            f"({self.resamples:,} resamples, seed {self.seed}); p-value: two-sided paired t-test; "
            f"`*`: the interval excludes zero."
        )

    def to_json(self) -> dict:
        """JSON form: the settings, `legend`, and `by_dimension[str(dim)][metric]` with mean_change,
        ci_low, ci_high, p_value (null when undefined) and excludes_zero."""
        return {
            "method": "percentile paired bootstrap; p-value: two-sided paired t-test",
            "resamples": self.resamples,
            "confidence": self.confidence,
            "seed": self.seed,
            "n_examples": self.n_examples,
            "unit": self.unit,
            "skipped": self.skipped,
            "legend": self.legend(),
            "by_dimension": {
                str(dim): {
                    metric: {
                        "mean_change": test.mean_change,
                        "ci_low": test.ci_low,
                        "ci_high": test.ci_high,
                        "p_value": test.p_value,
                        "excludes_zero": test.excludes_zero,
                    }
                    for metric, test in tests.items()
                }
                for dim, tests in self.changes.items()
            },
        }


def compare(
    baseline: PerExample | None,
    finetuned: PerExample | None,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    unit: str = "examples",
) -> Significance:
    """Test every (dimension, metric) that both models have per-example scores for, all with the
    same resamples (one index matrix for every column). Skipped, with the reason, when either side
    has none, when `resamples` is 0, or when the two were scored on different numbers of examples."""
    settings = {"resamples": resamples, "confidence": confidence, "seed": seed, "unit": unit}
    if resamples == 0:
        return Significance(**settings, skipped="evaluation.bootstrap.resamples=0")
    if baseline is None and finetuned is None:
        return Significance(**settings, skipped="the evaluator has no per-example scores")
    if baseline is None:
        return Significance(
            **settings,
            skipped="no baseline scored per example: evaluation.baseline=false, or "
            "resumed from a checkpoint without them",
        )
    if finetuned is None:
        return Significance(**settings, skipped="no per-example scores of the fine-tuned model")
    keys = [
        (dim, metric)
        for dim, metrics in finetuned.items()
        for metric in metrics
        if metric in baseline.get(dim, {})
    ]
    if not keys:
        return Significance(**settings, skipped="no metric has per-example scores of both models")
    lengths = {len(side[dim][metric]) for dim, metric in keys for side in (baseline, finetuned)}
    if len(lengths) != 1:
        return Significance(
            **settings, skipped="the baseline and the fine-tuned model were scored on different examples"
        )
    differences = np.stack([finetuned[dim][metric] - baseline[dim][metric] for dim, metric in keys], axis=1)
    low, high = paired_bootstrap(differences, resamples, confidence, seed)
    p_values = paired_p_values(differences)
    changes: dict[int, dict[str, ChangeTest]] = {}
    for column, (dim, metric) in enumerate(keys):
        p_value = None if np.isnan(p_values[column]) else float(p_values[column])
        changes.setdefault(dim, {})[metric] = ChangeTest(
            float(differences[:, column].mean()), float(low[column]), float(high[column]), p_value
        )
    return Significance(**settings, n_examples=lengths.pop(), changes=changes)


def record_significance(
    output_dir: Path,
    evaluator: DimensionEvaluator,
    baseline: PerExample | None,
    finetuned: PerExample | None,
    step: int,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Significance:
    """Save each side's per-example scores that exist as `<output_dir>/per_example/baseline.npz` and
    `finetuned.npz` (see `save_per_example`; the fine-tuned ones are those of `step`), then `compare`
    them."""
    folder = Path(output_dir) / PER_EXAMPLE_DIR
    for name, per_example, at_step in (("baseline", baseline, -1), ("finetuned", finetuned, step)):
        if per_example is not None:
            save_per_example(folder / f"{name}.npz", per_example, evaluator.example_ids, at_step)
    return compare(baseline, finetuned, resamples, confidence, seed, evaluator.example_unit)


def save_per_example(path: Path, per_example: PerExample, example_ids: list[str] | None, step: int) -> None:
    """Write `per_example` to the .npz file `path`: array `<metric>_dim<d>` per metric and dimension,
    `example_ids` (strings; the examples' positions when None) and `step` (-1: before training)."""
    n = len(next(iter(next(iter(per_example.values())).values())))
    arrays = {
        f"{metric}_dim{dim}": values
        for dim, metrics in per_example.items()
        for metric, values in metrics.items()
    }
    ids = np.asarray(
        example_ids if example_ids is not None else [str(index) for index in range(n)], dtype=str
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, example_ids=ids, step=np.int64(step), **arrays)


def load_per_example(path: Path) -> tuple[list[str], PerExample, int]:
    """Read a file written by `save_per_example`: (example ids, per-example scores, step)."""
    with np.load(path) as data:
        per_example: PerExample = {}
        for key in data.files:
            if key in ("example_ids", "step"):
                continue
            metric, dim = key.rsplit("_dim", 1)
            per_example.setdefault(int(dim), {})[metric] = data[key]
        return data["example_ids"].tolist(), per_example, int(data["step"])
