"""Hydra callbacks: claim a single run's folder before Hydra writes into it; summarise a multi-run
across seeds when it ends (an evaluation multi-run: the models side by side).

Hydra instantiates these before every run, so this module imports only Hydra and OmegaConf; each hook
imports what it uses (Lightning's rank, the run folder, the reports) when it runs."""

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


class ClaimRunFolder(Callback):
    """`hydra.callbacks.run_folder`: before a single run starts, claim `hydra.run.dir` (or refuse,
    exit status 2, when another run holds it or a finished run is there and `overwrite` is off), so
    that Hydra's own files (`.hydra/`, the log) never land in another run's folder. `train()` takes
    the same claim over and releases it. Ranks other than zero (DDP relaunches) claim nothing. As a
    multi-run or sweep starts, it notes what its folder holds, so that a job refused at its start
    removes only a member folder this multi-run created (`run_folder.note_multirun_start`)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from embedding_trainer.runs.run_folder import note_multirun_start

        note_multirun_start(config.hydra.sweep.dir)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from pytorch_lightning.utilities import rank_zero_only

        from embedding_trainer.runs.run_folder import RunFolderError, claim_run_folder

        if rank_zero_only.rank != 0:
            return
        try:
            claim_run_folder(config.hydra.run.dir, overwrite=bool(config.get("overwrite", False)))
        except RunFolderError as error:
            log.error(f"{type(error).__name__}: {error}")
            sys.exit(2)


class SummarizeMultirun(Callback):
    """`hydra.callbacks.multirun_summary`: when a multi-run or sweep ends, write `summary.md` and
    `summary.json` (statistics across seeds per configuration, `reporting.seeds`) to its folder
    (`hydra.sweep.dir`) from the runs there that finished."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from embedding_trainer.reporting.seeds import runs_in_folder, write_summary

        if "embedding_trainer_optuna_sweeper" in str(config.hydra.sweeper.get("_target_")):
            return  # an Optuna study's last worker writes it (the sweeper's reports)
        folder = Path(config.hydra.sweep.dir)
        runs = runs_in_folder(folder)
        if runs:
            log.info(f"Summary of {len(runs)} finished runs across seeds: {write_summary(folder, runs)}")


class CompareEvaluations(Callback):
    """`hydra.callbacks.multirun_summary` of `python evaluate.py -m`: when the multi-run ends, write
    `comparison.md` and `comparison.json` (each model's primary metric per dimension, one column per
    model, `reporting.comparison`) to its folder from the evaluations there that finished, and log
    the table."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from embedding_trainer.reporting.comparison import write_comparison
        from embedding_trainer.reporting.seeds import runs_in_folder

        folder = Path(config.hydra.sweep.dir)
        runs = [run for run in runs_in_folder(folder) if run.results.get("evaluated")]
        if runs:
            log.info(f"Models side by side ({folder / 'comparison.md'}):\n{write_comparison(folder, runs)}")
