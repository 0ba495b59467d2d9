"""Sweep workers sharing a study (`embedding_trainer.sweeps.workers`): a trial whose worker is gone is
failed and enqueued once more with its parameters, a live worker's trial is never taken, new trials
stop at the study's `n_trials`, and one worker writes the reports; bad storages are refused up front."""

import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from embedding_trainer.sweeps.search_space import parse_search_space
from embedding_trainer.sweeps.storage import open_storage
from embedding_trainer.sweeps.workers import (
    FAILED_TRIAL,
    HEARTBEAT,
    WORKER,
    Heartbeat,
    claim_reports,
    fail_lost_trials,
    slots_left,
    take_trials,
    this_worker,
)
from embedding_trainer.utils.errors import ConfigError
from hydra_plugins.embedding_trainer_optuna_sweeper.optuna_sweeper import OptunaSweeper


def dead_worker() -> str:
    """The identity of a process of this machine that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return this_worker().rpartition("/")[0] + f"/{process.pid}"


def test_a_lost_trial_runs_again_once_with_its_parameters_and_the_rest_drawn(tmp_path):
    """Trials killed before or while their parameters were drawn, and a live worker's trial: the lost
    ones are failed and enqueued; taking trials pops those retries (drawing what was missing, keeping
    what was drawn) and asks nothing new once the study has its `n_trials`; a retry lost again fails
    for good."""
    space = parse_search_space(
        {}, ["loss=cosent,angle", "model.lr=interval(1e-5,1e-4)", "data.batch_size=range(8,33,8)"]
    )
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    bare, partial, live = study.ask(), study.ask(), study.ask(space.distributions)
    drawn_loss = partial.suggest_categorical("loss", ["cosent", "angle"])
    for trial in (bare, partial):
        storage.set_trial_system_attr(trial._trial_id, WORKER, dead_worker())
    storage.set_trial_system_attr(live._trial_id, WORKER, this_worker())
    storage.set_trial_system_attr(live._trial_id, HEARTBEAT, time.time())

    assert fail_lost_trials(study, storage, 60, space) == [bare.number, partial.number]
    assert study.trials[live.number].state == TrialState.RUNNING
    assert study.trials[bare.number].user_attrs["error"].startswith("worker lost")
    assert slots_left(study.trials, 3) == 0

    retries = take_trials(study, storage, space.distributions, 5, n_trials=3)
    assert [trial.number for trial in retries] == [3, 4] and len(study.trials) == 5
    for retry, original in zip(retries, (bare, partial)):
        assert set(retry.params) == set(space.distributions)
        assert retry.params == study.trials[original.number].params  # drawn before it failed
        assert study.trials[retry.number].system_attrs[WORKER] == this_worker()
    assert [study.trials[r.number].system_attrs[FAILED_TRIAL] for r in retries] == [
        bare.number,
        partial.number,
    ]
    assert retries[1].params["loss"] == drawn_loss
    assert take_trials(study, storage, space.distributions, 5, n_trials=4)[0].number == 5  # one slot left

    storage.set_trial_system_attr(retries[0]._trial_id, WORKER, dead_worker())
    assert fail_lost_trials(study, storage, 60, space) == [retries[0].number]
    assert not study.get_trials(states=(TrialState.WAITING,))  # retried once, not twice


def test_a_silent_trial_is_lost_after_the_grace_period_and_a_heartbeat_keeps_it(tmp_path):
    storage = open_storage(f"journal:{tmp_path / 'study.log'}")
    study = optuna.create_study(storage=storage)
    silent, beating = study.ask(), study.ask()
    with Heartbeat(storage, [beating._trial_id], interval=0.2):
        time.sleep(1.5)
        assert fail_lost_trials(study, storage, 1, parse_search_space({}, [])) == [silent.number]
    assert study.trials[beating.number].state == TrialState.RUNNING
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1


def test_one_worker_writes_the_reports_of_the_same_trials(tmp_path):
    study = optuna.create_study()
    study.tell(study.ask(), 0.5)
    assert claim_reports(tmp_path, study.trials) and not claim_reports(tmp_path, study.trials)
    study.tell(study.ask(), 0.7)
    assert claim_reports(tmp_path, study.trials)


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("journal:{tmp}/missing/study.log", "journal file's folder .*missing does not exist"),
        ("study.db", "is no storage: use sqlite"),
        ("nosuchdb://host/db", "is no storage"),
    ],
)
def test_a_bad_storage_is_refused_before_anything_runs(tmp_path, storage, message):
    with pytest.raises(ConfigError, match=message):
        OptunaSweeper("maximize", 1, 1, None, None, "s", storage.format(tmp=tmp_path), {})
    assert not (tmp_path / "missing").exists()


def test_heartbeat_settings_are_checked():
    with pytest.raises(ConfigError, match="heartbeat_interval < grace_period"):
        OptunaSweeper("maximize", 1, 1, None, None, "s", "sqlite:///s.db", {}, 60, 30)
