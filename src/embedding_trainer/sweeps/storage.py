"""Optuna storage from one URL string, shared by the sweeper and the runs it launches.

- `sqlite:///<path>.db` (or any SQLAlchemy URL): an RDB storage; SQLite waits up to a minute for the
  file lock when several processes write.
- `journal:<path>`: a `JournalStorage` appending to one file (`JournalFileBackend`), for shared file
  systems (NFS) where SQLite locking is unsafe.
"""

from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

JOURNAL_PREFIX = "journal:"
SQLITE_PREFIX = "sqlite:///"


def open_storage(url: str) -> BaseStorage:
    """The storage `url` names (see the module docstring); creates the folder of a file storage."""
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX) :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith(SQLITE_PREFIX):
        Path(url[len(SQLITE_PREFIX) :]).parent.mkdir(parents=True, exist_ok=True)
        return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return RDBStorage(url)


def trial_by_number(study: optuna.Study, storage: BaseStorage, number: int) -> optuna.Trial:
    """Trial `number` of `study` (kept in `storage`), to report to, set attributes on and tell."""
    study_id = storage.get_study_id_from_name(study.study_name)
    return optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))


def load_trial(url: str, study_name: str, number: int, pruner: optuna.pruners.BasePruner) -> optuna.Trial:
    """Trial `number` of the study stored at `url`, for a run to report to (`pruner` decides `should_prune`)."""
    storage = open_storage(url)
    return trial_by_number(
        optuna.load_study(study_name=study_name, storage=storage, pruner=pruner), storage, number
    )
