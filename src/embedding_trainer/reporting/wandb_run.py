"""W&B around one run: the logger with its sweep group and override tags, the per-dimension results
table, and closing the run whatever happened."""

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from pytorch_lightning.loggers import Logger, WandbLogger

from embedding_trainer.evaluation.base import DimensionMetrics
from embedding_trainer.evaluation.significance import Significance
from embedding_trainer.reporting.results import comparison_rows, every_metric_rows
from embedding_trainer.runs.hydra_job import in_multirun
from embedding_trainer.runs.tracking import command_line_overrides

TAG_LENGTH = 64  # W&B's limit per tag
TABLE_COLUMNS = [
    "dimension",
    "baseline",
    "fine-tuned",
    "change",
    "ci_low",
    "ci_high",
    "p_value",
    "excludes_zero",
]


def sweep_group(name: str) -> str | None:
    """The W&B group: in a multi-run, the Optuna study name (`hydra.sweeper.study_name`), else
    `<name>-<sweep folder>`, so each sweep or multi-run is one group; None for a single run."""
    if not in_multirun():
        return None
    hydra = HydraConfig.get()
    return OmegaConf.select(hydra.sweeper, "study_name") or f"{name}-{Path(hydra.sweep.dir).name}"


def override_tags() -> list[str]:
    """This run's command-line overrides (a trial's sampled parameters included) as W&B tags, without
    the sweeper's `sweep_trial` bookkeeping, each cut to W&B's 64 characters."""
    return [tag[:TAG_LENGTH] for tag in command_line_overrides() if not tag.startswith("sweep_trial=")]


def wandb_logger(name: str, group: str | None = None, tags: list[str] | None = None, **kwargs) -> WandbLogger:
    """A `WandbLogger` (keyword arguments as its own) whose group defaults to `sweep_group(name)` and
    whose tags are `tags` plus `override_tags()`."""
    return WandbLogger(
        name=name, group=group or sweep_group(name), tags=[*(tags or []), *override_tags()], **kwargs
    )


def log_results_table(
    loggers: list[Logger],
    metric: str,
    baseline: DimensionMetrics | None,
    finetuned: DimensionMetrics,
    significance: Significance | None = None,
) -> None:
    """Log `metric` per dimension (baseline, fine-tuned, change and the change's interval, p-value
    and whether the interval excludes zero, empty where untested) as the W&B table `results/<metric>`."""
    rows = comparison_rows(baseline, finetuned, metric, significance)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(f"results/{metric}", columns=TABLE_COLUMNS, data=rows)


def log_evaluated_table(loggers: list[Logger], evaluated: DimensionMetrics) -> None:
    """Log every metric (columns) at every dimension (rows) of one evaluated model as the W&B table
    `results/evaluated`."""
    names, rows = every_metric_rows(evaluated)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table("results/evaluated", columns=["dimension", *names], data=rows)


def finish_wandb(failed: bool) -> None:
    """End the active W&B run, if any (exit code 1 when the run failed), so the next run in this
    process (a multi-run or sweep) starts its own."""
    wandb = sys.modules.get("wandb")  # never imported: no run can be active
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)
