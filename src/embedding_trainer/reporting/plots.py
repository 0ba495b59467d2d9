"""PNG plots of a run, drawn with matplotlib's Agg backend (no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from embedding_trainer.evaluation.base import DimensionMetrics
from embedding_trainer.evaluation.significance import Significance
from embedding_trainer.reporting.results import comparison_rows

FIGURE_SIZE = (8, 5)  # inches; at DPI 100 the PNGs are 800 x 500 pixels
DPI = 100


def plot_matryoshka_curve(
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    metric: str,
    path: Path,
    label: str = "fine-tuned",
    significance: Significance | None = None,
) -> Path:
    """The primary metric against embedding dimension: `finetuned` (drawn as `label`), and with a
    `baseline` the baseline too, above a second panel of the change (fine-tuned minus baseline) with
    `significance`'s interval of the change as error bars at each dimension it tested."""
    dims = sorted(finetuned)
    if not baseline:
        figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=DPI)
        axes.plot(dims, [finetuned[d][metric] for d in dims], "o-", label=label, color="tab:blue")
        _dimension_axis(axes, dims, metric, f"{metric} by embedding dimension")
        return save_figure(figure, path)
    figure, (axes, change_axes) = plt.subplots(
        2, 1, figsize=FIGURE_SIZE, dpi=DPI, sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    axes.plot(dims, [baseline[d][metric] for d in dims], "o--", label="baseline", color="tab:gray")
    axes.plot(dims, [finetuned[d][metric] for d in dims], "o-", label=label, color="tab:blue")
    _dimension_axis(axes, dims, metric, f"{metric} by embedding dimension")
    axes.set_xlabel("")
    rows = {row[0]: row for row in comparison_rows(baseline, finetuned, metric, significance)}
    changes = [rows[d][3] for d in dims]
    change_axes.axhline(0, color="black", linewidth=0.8)
    change_axes.plot(dims, changes, "o", color="tab:blue", label="change")
    tested = [d for d in dims if rows[d][4] is not None]
    if tested:
        low = [max(0.0, rows[d][3] - rows[d][4]) for d in tested]
        high = [max(0.0, rows[d][5] - rows[d][3]) for d in tested]
        level = f"{significance.confidence:.0%}"
        change_axes.errorbar(
            tested,
            [rows[d][3] for d in tested],
            yerr=[low, high],
            fmt="none",
            ecolor="tab:blue",
            capsize=5,
            label=f"{level} CI of the change",
        )
    _dimension_axis(change_axes, dims, "change (fine-tuned - baseline)", None)
    return save_figure(figure, path)


def _dimension_axis(axes, dims: list[int], ylabel: str, title: str | None) -> None:
    """A log2 axis of the embedding dimensions `dims`, labelled, gridded, with a legend."""
    axes.set_xscale("log", base=2)
    axes.set_xticks(dims, [str(d) for d in dims])
    axes.set_xlabel("embedding dimension")
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()


def plot_training_curves(
    rows: list[tuple[int, float, float]], val_scores: list[tuple[int, float]], kept_step: int, path: Path
) -> Path:
    """Training loss (top), learning rate (middle; `rows` of (step, loss, lr)) and `val_scores`
    ((step, val/score) of each evaluation, the baseline's at step 0; bottom, the `kept_step` marked)
    against optimizer step."""
    figure, (loss_axes, lr_axes, score_axes) = plt.subplots(3, 1, figsize=FIGURE_SIZE, dpi=DPI, sharex=True)
    steps = [row[0] for row in rows]
    marker = "." if len(rows) < 20 else None  # a short run's few points stay visible
    loss_axes.plot(steps, [row[1] for row in rows], color="tab:blue", linewidth=1, marker=marker)
    loss_axes.set_ylabel("train/loss")
    lr_axes.plot(steps, [row[2] for row in rows], color="tab:orange", linewidth=1, marker=marker)
    lr_axes.set_ylabel("learning rate")
    score_axes.plot(
        [s for s, _ in val_scores], [v for _, v in val_scores], "o-", color="tab:green", linewidth=1
    )
    kept = [value for step, value in val_scores if step == kept_step]
    if kept:
        score_axes.plot(
            [kept_step], kept, "*", color="tab:red", markersize=14, label=f"model kept (step {kept_step})"
        )
        score_axes.legend(loc="best")
    score_axes.margins(y=0.25)  # room for the marker and the legend
    score_axes.set_ylabel("val/score")
    score_axes.set_xlabel("optimizer step")
    score_axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole
    for axes in (loss_axes, lr_axes, score_axes):
        axes.grid(alpha=0.3)
    loss_axes.set_title("Training loss, learning rate and validation score")
    return save_figure(figure, path)


def save_figure(figure, path: Path) -> Path:
    """Write `figure` as a PNG at `path` (folders created) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def plot_mined_scores(scores: list[list[float]], path: Path) -> Path:
    """Histograms of the miner's scores: each row's positive, and its chosen negatives."""
    figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=DPI)
    axes.hist([row[0] for row in scores], bins=40, alpha=0.6, label="positives", color="tab:green")
    axes.hist(
        [value for row in scores for value in row[1:]],
        bins=40,
        alpha=0.6,
        label="mined negatives",
        color="tab:red",
    )
    axes.set_xlabel("miner's cosine similarity to the anchor")
    axes.set_ylabel("count")
    axes.set_title("Hard-negative mining: scores of positives and chosen negatives")
    axes.legend()
    return save_figure(figure, path)
