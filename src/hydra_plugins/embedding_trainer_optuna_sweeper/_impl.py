"""`OptunaSweeperImpl`, the work of the `OptunaSweeper` plugin: runs an Optuna study through Hydra's
launcher, one job per trial.

Workers and resuming: the study is created with `load_if_exists`, so running the same command again
continues it, and the same command started several times at once (on several machines, or as a job
array) runs one study with several workers (`embedding_trainer.sweeps.workers`). `n_trials` counts the
study's total: finished trials (complete, pruned, failed) are kept and not repeated. A running trial
belongs to its worker, which records its heartbeat; a trial whose worker died (an interrupted sweep's)
is failed and run again once, as a new trial with its parameters, by any worker. A worker that has
nothing left to ask waits for the others' trials (to run them again if their worker dies); the last to
finish writes the reports.

Results: a job's return value (`val/score`) completes its trial; a job that raises
`optuna.TrialPruned` (its pruning callback stopped it) is pruned; any other error, or overrides that do
not compose, fail the trial with the error in its `error` user attribute, and the study goes on. Every
launched trial records its `output_dir`, a completed one its `model_path`, and each run its `objective`
(what its `val/score` is). At the end `sweep.md` (stating the objective), `plots/sweep.png` and the
seeds summary (`summary.md`, `summary.json`) are written to the sweep folder, once.

The objective must mean the same in every trial: `evaluation.dims` and `evaluation.selection_score` (or its
deprecated name `evaluation.objective`) are fixed for a sweep (set them in the sweep config or on the command
line), never searched.
"""

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from embedding_trainer.reporting.seeds import SeedRun, runs_in_folder, write_summary
from embedding_trainer.reporting.sweep import objective_text, write_sweep_report
from embedding_trainer.sweeps.search_space import SearchSpace, parse_search_space
from embedding_trainer.sweeps.storage import ask_lock, check_storage_url, open_storage
from embedding_trainer.sweeps.workers import (
    Heartbeat,
    claim_reports,
    fail_lost_trials,
    slots_left,
    take_trials,
)
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


class OptunaSweeperImpl(Sweeper):
    """One worker of a study: takes up to `n_jobs` trials at a time (retries first), launches them, tells
    their results, until the study holds `n_trials` finished trials and none runs. Arguments as in
    `OptunaSweeperConf`."""

    def __init__(
        self,
        direction: str,
        n_trials: int,
        n_jobs: int,
        sampler: optuna.samplers.BaseSampler | None,
        pruner: optuna.pruners.BasePruner | None,
        study_name: str,
        storage: str | None,
        params: dict[str, Any],
        heartbeat_interval: float = 30,
        grace_period: float = 120,
    ) -> None:
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"hydra.sweeper.direction={direction!r}: use maximize or minimize.")
        if n_trials < 1 or n_jobs < 1:
            raise ConfigError(f"hydra.sweeper.n_trials={n_trials} and n_jobs={n_jobs} must be at least 1.")
        if not storage:
            raise ConfigError(
                "hydra.sweeper.storage is null: runs report to their trial through the storage; "
                "use sqlite:///<file>.db or journal:<file>."
            )
        if not 0 < heartbeat_interval < grace_period:
            raise ConfigError(
                f"hydra.sweeper.heartbeat_interval={heartbeat_interval} and grace_period={grace_period}: "
                "need 0 < heartbeat_interval < grace_period (a trial silent for grace_period is lost)."
            )
        check_storage_url(storage)
        self.direction = direction
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.sampler = sampler
        self.pruner = pruner or optuna.pruners.NopPruner()
        self.study_name = study_name
        self.storage_url = storage
        self.params = dict(params or {})
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.exhausted = False  # set when the sampler has tried its whole search space (grid, brute force)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> optuna.Study:
        space = parse_search_space(self.params, arguments)
        searched = [key for key in space.distributions if _defines_objective(key)]
        if searched:
            raise ConfigError(
                f"The sweep searches {', '.join(searched)}, which define val/score: trials would optimize different "
                "quantities. Fix evaluation.dims and evaluation.selection_score for the whole sweep instead."
            )
        study, storage = self._open_study()
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        while True:
            with ask_lock(self.storage_url):
                fail_lost_trials(study, storage, self.grace_period, space)
                batch = take_trials(
                    study, storage, space.distributions, self.n_jobs, 0 if self.exhausted else self.n_trials
                )
            if batch:
                with Heartbeat(storage, [trial._trial_id for trial in batch], self.heartbeat_interval):
                    self._run_batch(study, space, batch)
            elif study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                time.sleep(self.heartbeat_interval)  # other workers' trials: run them again if they are lost
            else:
                break
        self._summarize(study, sweep_dir)
        return study

    def _open_study(self) -> tuple[optuna.Study, BaseStorage]:
        """The study in its storage: created, or loaded when it exists (with the same direction; then the
        sampler is reseeded, or a resumed or second worker's seeded sampler would redraw the first's points)."""
        storage = open_storage(self.storage_url)
        try:
            study = optuna.create_study(
                study_name=self.study_name,
                storage=storage,
                sampler=self.sampler,
                pruner=self.pruner,
                direction=self.direction,
            )
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(
                study_name=self.study_name, storage=storage, sampler=self.sampler, pruner=self.pruner
            )
            study.sampler.reseed_rng()
            trials = study.get_trials(deepcopy=False)
            log.info(
                f"Joining study {self.study_name!r} ({self.storage_url}): "
                f"{sum(t.state.is_finished() for t in trials)} finished trials, "
                f"{sum(t.state == TrialState.RUNNING for t in trials)} running, "
                f"{max(0, slots_left(trials, self.n_trials))} new to ask"
            )
        if study.direction.name.lower() != self.direction:
            raise ConfigError(
                f"Study {self.study_name!r} in {self.storage_url} is to {study.direction.name.lower()}, "
                f"not {self.direction}: use another hydra.sweeper.study_name."
            )
        return study, storage

    def _run_batch(self, study: optuna.Study, space: SearchSpace, trials: list[optuna.Trial]) -> None:
        """Launch the trials whose overrides compose (the others fail) and tell their results."""
        launched, batch = [], []
        for trial in trials:
            overrides = space.overrides(trial.params) + [self._trial_override(trial.number)]
            try:
                self.validate_batch_is_legal([overrides])
            except Exception as error:  # overrides that do not compose: this trial fails, the study goes on
                with _unless_taken_over(trial):
                    self._fail(study, trial, error)
                continue
            launched.append(trial)
            batch.append(overrides)
        if not batch:
            return
        results = self.launcher.launch(batch, initial_job_idx=launched[0].number)
        for trial, result in zip(launched, results):
            with _unless_taken_over(trial):
                self._tell(study, trial, result)

    def _trial_override(self, number: int) -> str:
        """The override that tells a run which trial it is (`sweep_trial`, read by its pruning callback)."""
        return f"sweep_trial={{storage:{_quoted(self.storage_url)},study_name:{_quoted(self.study_name)},number:{number}}}"

    def _tell(self, study: optuna.Study, trial: optuna.Trial, result: JobReturn) -> None:
        output_dir = Path(result.hydra_cfg.hydra.runtime.output_dir) if result.hydra_cfg is not None else None
        if output_dir:
            trial.set_user_attr("output_dir", str(output_dir))
        try:
            value = float(result.return_value)
        except optuna.TrialPruned as pruned:
            trial.set_user_attr("pruned", str(pruned))
            self._record(study, trial, state=TrialState.PRUNED)
            log.info(f"Trial {trial.number} pruned: {pruned}")
            return
        except Exception as error:  # the job raised (bad combination, crash) or returned no number
            self._fail(study, trial, error)
            return
        if output_dir and (output_dir / "model").is_dir():
            trial.set_user_attr("model_path", str(output_dir / "model"))
        self._record(study, trial, values=value)
        log.info(f"Trial {trial.number} finished: val/score {value:.4f} with {trial.params}")

    def _fail(self, study: optuna.Study, trial: optuna.Trial, error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}"
        trial.set_user_attr("error", message)
        self._record(study, trial, state=TrialState.FAIL)
        log.warning(f"Trial {trial.number} failed ({message}); the study goes on")

    def _record(self, study: optuna.Study, trial: optuna.Trial, **result: Any) -> None:
        """`study.tell`. Samplers that run out of points (grid, brute force) then call `study.stop()`,
        which raises outside `study.optimize` once the result is stored: no new trial is asked after it."""
        try:
            study.tell(trial, **result)
        except RuntimeError as error:
            if "Study.stop" not in str(error):
                raise
            log.info("The sampler has tried its whole search space: no more trials")
            self.exhausted = True

    def _summarize(self, study: optuna.Study, sweep_dir: Path) -> None:
        """Log the trial counts and the best trial; unless another worker did for the same trials, write
        the sweep report (if any trial completed) and the seeds summary of the finished runs."""
        counts = Counter(trial.state.name.lower() for trial in study.trials)
        log.info(f"Study {study.study_name!r}: {dict(counts)} ({self.storage_url})")
        claimed = claim_reports(sweep_dir, study.trials)
        if not claimed:
            log.info(f"The reports in {sweep_dir} are up to date (another worker wrote them)")
        elif runs := _trial_runs(sweep_dir, study.trials):
            log.info(f"Summary of {len(runs)} finished runs across seeds: {write_summary(sweep_dir, runs)}")
        if not counts["complete"]:
            log.warning("No trial completed: no best trial and no sweep report.")
            return
        best = study.best_trial
        log.info(
            f"Best trial #{best.number}: {objective_text(study)}: {best.value:.4f} with {best.params}; "
            f"model at {best.user_attrs.get('model_path')}"
        )
        if claimed:
            log.info(f"Sweep report: {write_sweep_report(study, sweep_dir)}")


def _trial_runs(sweep_dir: Path, trials: list[optuna.trial.FrozenTrial]) -> list[SeedRun]:
    """The finished runs in `sweep_dir` of the trials that did not fail (a lost trial's run may have
    written its results before its worker died: its retry stands for it)."""
    kept = {str(trial.number) for trial in trials if trial.state != TrialState.FAIL}
    return [run for run in runs_in_folder(sweep_dir) if run.name.split("_")[0] in kept]


@contextmanager
def _unless_taken_over(trial: optuna.Trial) -> Iterator[None]:
    """Telling `trial` its result, unless another worker failed it as lost meanwhile (its heartbeat
    stopped too long): then the result is dropped, and the trial's retry runs elsewhere."""
    try:
        yield
    except UpdateFinishedTrialError:
        log.warning(f"Trial {trial.number} was failed as lost by another worker: its result here is dropped")


def _defines_objective(key: str) -> bool:
    """Whether the override key `key` (with any `+`, `++` or `~` prefix) sets what `val/score` is
    (`evaluation.dims`, `evaluation.selection_score` or its deprecated name `evaluation.objective`)."""
    key = key.lstrip("+~")
    return key == "evaluation" or any(
        key == name or key.startswith(name + ".")
        for name in ("evaluation.dims", "evaluation.selection_score", "evaluation.objective")
    )


def _quoted(text: str) -> str:
    """`text` as a quoted value in Hydra's override grammar."""
    return "'" + text.replace("'", "\\'") + "'"
