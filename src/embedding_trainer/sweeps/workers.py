"""Several sweep workers on one study: who owns a running trial, when it is lost, and how many to ask.

A worker marks each trial it runs with its identity (`worker`: host, boot and process id) and a
heartbeat (`heartbeat`: the time, every `heartbeat_interval` seconds) as system attributes, in any
storage. A running trial is lost when its worker is a process of this machine that no longer exists,
or when its heartbeat is older than `grace_period` seconds; any worker then fails it and enqueues it
once more with the same parameters (Optuna's `RetryFailedTrialCallback` rule and attributes:
`failed_trial`, `retry_history`), and the retry runs on whichever worker asks next. A live worker's
trial is never taken over. A lost trial's retry fails for good if it is lost again.

`n_trials` is the study's total: every trial that is not a retry takes one of its slots, a retry takes
its original's, so the study ends with exactly `n_trials` completed, pruned or failed trials besides the
lost ones.
"""

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from embedding_trainer.sweeps.search_space import SearchSpace
from embedding_trainer.sweeps.storage import file_lock
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

WORKER = "worker"
HEARTBEAT = "heartbeat"
FAILED_TRIAL = "failed_trial"  # the keys of optuna.storages.RetryFailedTrialCallback
RETRY_HISTORY = "retry_history"
MAX_RETRIES = 1


def this_worker() -> str:
    """This process as `host/boot id/pid`: a trial's owner, recognised as dead from the same machine."""
    boot = Path("/proc/sys/kernel/random/boot_id")
    return f"{socket.gethostname()}/{boot.read_text().strip() if boot.is_file() else ''}/{os.getpid()}"


def _dead_here(worker: str) -> bool:
    """Whether `worker` (see `this_worker`) is a process of this machine that no longer runs."""
    place, _, pid = worker.rpartition("/")
    if place != this_worker().rpartition("/")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process
        return False
    return False


def lost(trial: FrozenTrial, grace_period: float, now: float) -> bool:
    """Whether running `trial` has lost its worker (dead here, or silent for `grace_period` seconds)."""
    worker = trial.system_attrs.get(WORKER)
    if worker and _dead_here(worker):
        return True
    start = trial.datetime_start.timestamp() if trial.datetime_start else now
    return now - max(float(trial.system_attrs.get(HEARTBEAT, 0.0)), start) > grace_period


def fail_lost_trials(
    study: optuna.Study, storage: BaseStorage, grace_period: float, space: SearchSpace
) -> list[int]:
    """Fail the running trials of `study` that lost their worker, with the reason in their `error` user
    attribute, and enqueue each once more unless it is itself a retry; return their numbers. A trial
    whose worker was killed while asking it first gets the parameters of `space` it lacks. A trial
    another worker failed first is left to it; the caller holds the study's ask lock."""
    failed = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not lost(trial, grace_period, now):
            continue
        try:
            space.draw_missing(optuna.Trial(study, trial._trial_id))
            trial = storage.get_trial(trial._trial_id)
            storage.set_trial_user_attr(
                trial._trial_id, "error", f"worker lost ({trial.system_attrs.get(WORKER)})"
            )
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue
        failed.append(trial.number)
        history = [*trial.system_attrs.get(RETRY_HISTORY, []), trial.number]
        if len(history) > MAX_RETRIES:
            log.warning(f"Trial {trial.number} lost its worker again: failed, not retried")
            continue
        study.add_trial(
            optuna.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                system_attrs={FAILED_TRIAL: history[0], RETRY_HISTORY: history},
            )
        )
        log.warning(f"Trial {trial.number} lost its worker: failed, and enqueued to run again once")
    return failed


def slots_left(trials: Sequence[FrozenTrial], n_trials: int) -> int:
    """How many new trials the study still needs for `n_trials` (retries take their original's slot)."""
    return n_trials - sum(FAILED_TRIAL not in trial.system_attrs for trial in trials)


def take_trials(
    study: optuna.Study,
    storage: BaseStorage,
    distributions: dict[str, BaseDistribution],
    count: int,
    n_trials: int,
) -> list[optuna.Trial]:
    """Up to `count` trials for this worker: waiting ones (retries) first, then new ones while the study
    has fewer than `n_trials` (0: none new, the sampler is exhausted). Each is marked as this worker's,
    with a heartbeat. The caller holds the study's ask lock, so that workers never ask too many."""
    trials = study.get_trials(deepcopy=False)
    waiting = sum(trial.state == TrialState.WAITING for trial in trials)
    taken = [
        study.ask(distributions) for _ in range(min(count, waiting + max(0, slots_left(trials, n_trials))))
    ]
    for trial in taken:
        storage.set_trial_system_attr(trial._trial_id, WORKER, this_worker())
        storage.set_trial_system_attr(trial._trial_id, HEARTBEAT, time.time())
    return taken


class Heartbeat:
    """While entered, records the time as the `heartbeat` of each trial in `trial_ids` (of `storage`)
    every `interval` seconds; a trial finished meanwhile (by this worker or, lost, by another) drops out."""

    def __init__(self, storage: BaseStorage, trial_ids: Sequence[int], interval: float) -> None:
        self.storage, self.trial_ids, self.interval = storage, list(trial_ids), interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="sweep-heartbeat", daemon=True)

    def __enter__(self) -> None:
        self.thread.start()

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join()

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            for trial_id in list(self.trial_ids):
                try:
                    self.storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
                except UpdateFinishedTrialError:
                    self.trial_ids.remove(trial_id)
                except Exception as error:  # a busy or unreachable storage: the next beat tries again
                    log.warning(f"Heartbeat of trial id {trial_id} not recorded: {error}")


def claim_reports(folder: Path, trials: Sequence[FrozenTrial]) -> bool:
    """Whether this worker is the one to write the reports of `trials` (their numbers, states and values)
    to `folder`: the first to ask for the same trials, under a lock file there (`.reports.lock`);
    `.reports` records them."""
    digest = hashlib.sha256(
        json.dumps([[t.number, t.state.name, t.values] for t in trials]).encode()
    ).hexdigest()
    marker = folder / ".reports"
    with file_lock(str(marker)):
        if marker.is_file() and marker.read_text() == digest:
            return False
        marker.write_text(digest)
        return True
