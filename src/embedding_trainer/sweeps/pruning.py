"""Pruning inside a sweep trial: each evaluation's `val/score` goes to the run's Optuna trial, and the
run stops (raising `optuna.TrialPruned`) when the study's pruner says so."""

import optuna
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from embedding_trainer.evaluation.callback import EvaluationCallback
from embedding_trainer.settings.evaluation import SweepTrial
from embedding_trainer.sweeps.storage import load_trial
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


class OptunaPruningCallback(pl.Callback):
    """After each evaluation that `evaluation` records during training, reports its `val/score` at that
    global step to `trial` and raises `optuna.TrialPruned` if the trial should be pruned (never at the
    last step of training, nor once early stopping has stopped it: a finished run is told as complete).

    Rank zero reports and decides; the decision is broadcast so every rank stops together.
    Must come after `evaluation` in the trainer's callbacks.
    """

    def __init__(self, trial: optuna.Trial, evaluation: EvaluationCallback) -> None:
        self.trial = trial
        self.evaluation = evaluation
        self.reported: set[int] = set()

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        self._report(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer)

    def _report(self, trainer: pl.Trainer) -> None:
        for step in sorted(set(self.evaluation.history) - self.reported):
            self.reported.add(step)
            score = self.evaluation.score(self.evaluation.history[step])
            prune = False
            if trainer.is_global_zero:
                self.trial.report(score, step)
                finished = step >= trainer.estimated_stepping_batches or trainer.should_stop  # early stopping
                prune = not finished and self.trial.should_prune()
            if trainer.strategy.broadcast(prune, src=0):
                message = f"trial {self.trial.number} pruned at step {step} (val/score {score:.4f})"
                log.info(message)
                raise optuna.TrialPruned(message)


def pruning_callbacks(sweep_trial: SweepTrial | None, evaluation: EvaluationCallback) -> list[pl.Callback]:
    """No callback outside an Optuna sweep (`sweep_trial` None). In one, the sweeper sets `sweep_trial`
    (its `storage`, `study_name` and `number`) and the pruner is the sweeper's own (`hydra.sweeper.pruner`,
    null: never prune). The trial's `objective` user attribute says what its `val/score` is, for the
    sweep report."""
    if not sweep_trial:
        return []
    pruner_cfg = HydraConfig.get().sweeper.get("pruner")
    pruner = instantiate(pruner_cfg) if pruner_cfg else optuna.pruners.NopPruner()
    trial = load_trial(sweep_trial.storage, sweep_trial.study_name, sweep_trial.number, pruner)
    trial.set_user_attr("objective", f"{evaluation.objective} (evaluation.dims {evaluation.dims})")
    return [OptunaPruningCallback(trial, evaluation)]
