"""Early stopping (`callbacks=early_stopping`): training stops when `val/score` has not improved by
`min_delta` for `patience` evaluations in a row.

The evaluations are the evaluation callback's (every `evaluation.every_n_steps` optimizer steps and
at each epoch's end), recorded in its `on_train_batch_end` / `on_train_epoch_end`; Lightning's own
EarlyStopping watches its validation loop, which this harness does not run, so this callback decides
after each recorded evaluation instead.
"""

import math
from dataclasses import asdict, dataclass, replace

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from embedding_trainer.evaluation.callback import EvaluationCallback
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

# What a checkpoint keeps of the decision: its counters (the settings come from the config).
COUNTERS = ("best", "best_step", "waited", "last_step", "stopped_step")


@dataclass
class Patience:
    """The stopping decision over a sequence of `val/score`s (higher is better).

    A score improves when it exceeds `best` by more than `min_delta`; `best` starts at the score
    before training when there is one (`start`), else at the first evaluation's. After `patience`
    evaluations in a row without improvement, `stopped_step` is set and `update` answers True.
    """

    patience: int
    min_delta: float = 0.0
    best: float | None = None
    best_step: int | None = None
    waited: int = 0
    last_step: int = -1
    stopped_step: int | None = None

    def start(self, score: float) -> None:
        """Take the score before training (step 0) as the reference, unless scores were seen already."""
        if self.best is None:
            self.best, self.best_step = score, 0

    def update(self, step: int, score: float) -> bool:
        """Record the evaluation at `step` (after `last_step`); whether training should stop now."""
        assert step > self.last_step, (step, self.last_step)
        self.last_step = step
        if self.best is None or score > self.best + self.min_delta:
            self.best, self.best_step, self.waited = score, step, 0
        else:
            self.waited += 1
        if self.stopped_step is None and self.waited >= self.patience:
            self.stopped_step = step
        return self.stopped_step is not None


class EarlyStopping(pl.Callback):
    """Sets `trainer.should_stop` once `patience` evaluations of `evaluation` (the run's evaluation
    callback; this one must come after it in the trainer's callbacks) in a row have not improved
    `val/score` by more than `min_delta` (see `Patience`). Every rank sees the same scores (the
    evaluation broadcasts them), so all ranks stop at the same step. The patience counters are
    checkpointed, so a resumed run goes on counting where the preempted one was (with the resumed
    run's `patience` and `min_delta`)."""

    def __init__(self, evaluation: EvaluationCallback, patience: int = 3, min_delta: float = 0.0) -> None:
        self.evaluation = evaluation
        self.patience = Patience(patience, min_delta)

    @property
    def stopped_step(self) -> int | None:
        """The optimizer step at which training was stopped (None: it ran to the end)."""
        return self.patience.stopped_step

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        self._decide(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._decide(trainer)

    def _decide(self, trainer: pl.Trainer) -> None:
        if self.evaluation.baseline is not None:
            self.patience.start(self.evaluation.score(self.evaluation.baseline))
        for step in sorted(step for step in self.evaluation.history if step > self.patience.last_step):
            if self.patience.update(step, self.evaluation.score(self.evaluation.history[step])):
                trainer.should_stop = True
                log.info(self.describe())

    def describe(self, kept_step: int | None = None) -> str:
        """One sentence for the log and the report: whether and where training stopped, the best
        `val/score`'s step, and the step of the model kept (`kept_step`, when known)."""
        patience = self.patience
        rule = f"{patience.patience} evaluation(s) in a row without val/score rising by more than {patience.min_delta:g}"
        if patience.stopped_step is None:
            sentence = f"Early stopping did not stop training (it stops after {rule})"
        else:
            sentence = f"Training stopped early at step {patience.stopped_step}, after {rule}"
        if patience.best is not None:
            where = "before training" if patience.best_step == 0 else f"at step {patience.best_step}"
            sentence += f"; the best val/score, {patience.best:.4f}, was {where}"
        if kept_step is not None:
            sentence += f"; the model kept is that of step {kept_step}"
        return sentence + "."

    def to_json(self, kept_step: int) -> dict:
        """The results.json form: the settings, `stopped_step` (null: not stopped), the best score
        and its step, and `kept_step`, the step of the model kept."""
        return {**asdict(self.patience), "kept_step": kept_step}

    def state_dict(self) -> dict:
        return {name: getattr(self.patience, name) for name in COUNTERS}

    def load_state_dict(self, state_dict: dict) -> None:
        self.patience = replace(self.patience, **{name: state_dict[name] for name in COUNTERS})


def check_early_stopping(cfg: DictConfig) -> None:
    """`callbacks.early_stopping`, when set, has a whole `patience` >= 1 and a finite `min_delta` >= 0."""
    settings = OmegaConf.select(cfg, "callbacks.early_stopping")
    if settings is None:
        return
    patience, min_delta = settings.get("patience"), settings.get("min_delta")
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ConfigError(
            f"callbacks.early_stopping.patience must be a whole number of at least 1 (evaluations without "
            f"improvement before stopping), got {patience!r}."
        )
    number = (
        not isinstance(min_delta, bool) and isinstance(min_delta, (int, float)) and math.isfinite(min_delta)
    )
    if not number or min_delta < 0:
        raise ConfigError(
            f"callbacks.early_stopping.min_delta must be a number >= 0 (the smallest rise of val/score that counts "
            f"as an improvement), got {min_delta!r}."
        )
