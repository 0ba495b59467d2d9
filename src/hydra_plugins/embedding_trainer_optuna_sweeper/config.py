"""The `hydra/sweeper: optuna` config (registered in Hydra's ConfigStore when Hydra scans its plugins)."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    """Keys as in the `hydra-optuna-sweeper` plugin. `sampler` and `pruner` are `_target_` configs
    (pruner null: never prune). `storage`: `sqlite:///<file>`, any SQLAlchemy URL, or `journal:<file>`
    (a journal file, for shared file systems). `params`: key -> value in Hydra's override grammar.
    `heartbeat_interval`, `grace_period` (seconds): each worker records a heartbeat of its running trials
    that often; a trial silent for `grace_period` has lost its worker and runs again once elsewhere."""

    _target_: str = "hydra_plugins.embedding_trainer_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    direction: str = "maximize"
    n_trials: int = 20
    n_jobs: int = 1
    sampler: Any = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": "${seed}"}
    )
    pruner: Any = None
    study_name: str = "${name}"
    storage: str | None = "sqlite:///${paths.log_dir}/optuna/${hydra.sweeper.study_name}.db"
    params: dict[str, Any] = field(default_factory=dict)
    heartbeat_interval: float = 30
    grace_period: float = 120


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="embedding_trainer"
)
