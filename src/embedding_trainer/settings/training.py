"""`TrainingSettings`: what the trainer, the fit and the LightningModule read of the composed config, read
once at the settings edge. The nodes Hydra instantiates (trainer, callbacks, loggers, optimizer,
scheduler) are kept as nodes: they are the factories' input. Each objective's own settings (loss,
modifier, regularizer): `training.objectives.ObjectiveSettings`."""

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from embedding_trainer.adapters.training import AdapterSettings, adapter_settings
from embedding_trainer.settings.evaluation import SweepTrial, sweep_trial


@dataclass(frozen=True)
class AdapterRun:
    """A query-adapter run (`adapter=linear` or `two_layer`): its adapter's `settings` (`AdapterSettings`:
    kind, hidden dimension, negatives), the ranking loss's `scale`, the Matryoshka `dims` it trains at
    (None: no modifier), and the evaluation's `batch_size` and `show_progress_bar`, with which the frozen
    embeddings are encoded."""

    settings: AdapterSettings
    scale: float
    dims: tuple[int, ...] | None
    batch_size: int
    show_progress_bar: bool

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "AdapterRun | None":
        """The adapter run of the composed (and checked) `cfg`; None when no adapter trains."""
        settings = adapter_settings(cfg)
        if settings is None:
            return None
        return cls(
            settings=settings,
            scale=cfg.loss.scale,
            dims=tuple(cfg.matryoshka_dims) if cfg.modifier.get("_target_") else None,
            batch_size=cfg.evaluation.batch_size,
            show_progress_bar=cfg.evaluation.show_progress_bar,
        )


@dataclass(frozen=True)
class TrainingSettings:
    """A run's training settings:

    - `trainer`, `callbacks`, `loggers`: the Hydra nodes of the Lightning Trainer (`trainer`), of the
      configured callbacks (`callbacks.*`; a partial one follows the evaluation) and of the loggers
      (`logger.*`);
    - `optimizer`, `scheduler`: the partial nodes the LightningModule's optimizer and schedule come from;
    - `max_epochs` (`trainer.max_epochs`) and `min_steps` (`data.min_steps`): the fit's length;
    - `progress_every_n_steps` (`registry.progress_every_n_steps`), `sweep_trial` (None: no sweep),
      `output_dir` (`paths.output_dir`), `ckpt_path` (the checkpoint asked to resume from), `seed`;
    - `adapter`: a query-adapter run's settings (None: the model itself trains)."""

    trainer: DictConfig
    callbacks: tuple[DictConfig, ...]
    loggers: tuple[DictConfig, ...]
    optimizer: DictConfig
    scheduler: DictConfig | None
    max_epochs: int | None
    min_steps: int | None
    progress_every_n_steps: int
    sweep_trial: SweepTrial | None
    output_dir: Path
    ckpt_path: str | None
    seed: int
    adapter: AdapterRun | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "TrainingSettings":
        """The training settings of the composed (and checked) config `cfg`."""
        return cls(
            trainer=cfg.trainer,
            callbacks=tuple(cfg.callbacks.values()),
            loggers=tuple(cfg.logger.values()),
            optimizer=cfg.optimizer,
            scheduler=cfg.scheduler,
            max_epochs=cfg.trainer.max_epochs,
            min_steps=cfg.data.get("min_steps"),
            progress_every_n_steps=cfg.registry.progress_every_n_steps,
            sweep_trial=sweep_trial(cfg.sweep_trial),
            output_dir=Path(cfg.paths.output_dir),
            ckpt_path=cfg.ckpt_path,
            seed=cfg.seed,
            adapter=AdapterRun.from_config(cfg),
        )
