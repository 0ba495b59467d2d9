"""The `hydra/sweeper=optuna` plugin class, `OptunaSweeper`: an Optuna study run through Hydra's
launcher, one job per trial (`_impl`: resuming, results, reports).

Hydra imports every module under `hydra_plugins` on every command, `--help` and `--cfg job` included,
so this one imports only Hydra and OmegaConf: Optuna and the reports are imported when a sweep
instantiates the sweeper, from `_impl` (a leading underscore, which Hydra's plugin scan skips)."""

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """Arguments as in `OptunaSweeperConf` (`sampler` and `pruner` instantiated); `setup` and `sweep`
    are `OptunaSweeperImpl`'s."""

    def __init__(
        self,
        direction: str,
        n_trials: int,
        n_jobs: int,
        sampler: Any,
        pruner: Any,
        study_name: str,
        storage: str | None,
        params: dict[str, Any],
        heartbeat_interval: float = 30,
        grace_period: float = 120,
    ) -> None:
        from hydra_plugins.embedding_trainer_optuna_sweeper._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(
            direction,
            n_trials,
            n_jobs,
            sampler,
            pruner,
            study_name,
            storage,
            params,
            heartbeat_interval,
            grace_period,
        )

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        """The study, once it holds `n_trials` finished trials and none runs."""
        return self.sweeper.sweep(arguments)
