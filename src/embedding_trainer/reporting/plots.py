"""PNG plots of a run, drawn with matplotlib's Agg backend (no display needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from embedding_trainer.evaluation.base import DimensionMetrics

FIGURE_SIZE = (8, 5)  # inches; at DPI 100 the PNGs are 800 x 500 pixels
DPI = 100


def plot_matryoshka_curve(
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    metric: str,
    path: Path,
    label: str = "fine-tuned",
) -> Path:
    """The primary metric against embedding dimension, baseline versus fine-tuned (`finetuned`,
    drawn as `label`)."""
    figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=DPI)
    dims = sorted(finetuned)
    if baseline:
        axes.plot(dims, [baseline[d][metric] for d in dims], "o--", label="baseline", color="tab:gray")
    axes.plot(dims, [finetuned[d][metric] for d in dims], "o-", label=label, color="tab:blue")
    axes.set_xscale("log", base=2)
    axes.set_xticks(dims, [str(d) for d in dims])
    axes.set_xlabel("embedding dimension")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} by embedding dimension")
    axes.grid(alpha=0.3)
    axes.legend()
    return save_figure(figure, path)


def plot_training_curves(rows: list[tuple[int, float, float]], path: Path) -> Path:
    """Training loss (top) and learning rate (bottom) against optimizer step."""
    figure, (loss_axes, lr_axes) = plt.subplots(2, 1, figsize=FIGURE_SIZE, dpi=DPI, sharex=True)
    steps = [row[0] for row in rows]
    loss_axes.plot(steps, [row[1] for row in rows], color="tab:blue", linewidth=1)
    loss_axes.set_ylabel("train/loss")
    loss_axes.grid(alpha=0.3)
    lr_axes.plot(steps, [row[2] for row in rows], color="tab:orange", linewidth=1)
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_xlabel("optimizer step")
    lr_axes.grid(alpha=0.3)
    loss_axes.set_title("Training loss and learning rate")
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
