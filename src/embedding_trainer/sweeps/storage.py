"""Optuna storage from one URL string, shared by the sweeper and the runs it launches.

- `sqlite:///<path>.db`: an RDB storage in a file, for one machine; SQLite waits up to a minute for the
  file lock when several processes write. Its folder is created.
- `journal:<path>`: a `JournalStorage` appending to one file (`JournalFileBackend`), for shared file
  systems (NFS) where SQLite locking is unsafe. Its folder must exist.
- any other SQLAlchemy URL (`postgresql+psycopg2://user:password@host/db`): a database server, for a
  cluster.
"""

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from embedding_trainer.utils.errors import ConfigError

JOURNAL_PREFIX = "journal:"
SQLITE_PREFIX = "sqlite:///"


def check_storage_url(url: str) -> None:
    """Raise `ConfigError` unless `url` names a storage this machine can open (see the module docstring)."""
    if url.startswith(JOURNAL_PREFIX):
        folder = Path(url[len(JOURNAL_PREFIX) :]).parent
        if not url[len(JOURNAL_PREFIX) :] or not folder.is_dir():
            raise ConfigError(
                f"hydra.sweeper.storage={url}: the journal file's folder {folder} does not exist here "
                "(on a shared file system: is it mounted?); create it, or name a file in an existing folder."
            )
        return
    try:
        make_url(url).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise ConfigError(
            f"hydra.sweeper.storage={url!r} is no storage: use sqlite:///<file>.db (one machine), "
            "journal:<file> (a shared file system) or a database URL such as postgresql+psycopg2://user@host/db."
        ) from error
    except ImportError as error:
        raise ConfigError(
            f"hydra.sweeper.storage={url!r} needs the database driver {error.name}, which is not installed: "
            "install it, or for PostgreSQL name the installed one: postgresql+psycopg2://user@host/db."
        ) from error


def open_storage(url: str) -> BaseStorage:
    """The storage `url` names (see the module docstring); creates the folder of an SQLite file."""
    check_storage_url(url)
    if url.startswith(JOURNAL_PREFIX):
        return JournalStorage(JournalFileBackend(url[len(JOURNAL_PREFIX) :]))
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


@contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Held while `<path>.lock` exists, created by this process (`JournalFileOpenLock`: NFS-safe, freed
    30 s after a holder died)."""
    lock = JournalFileOpenLock(path)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def ask_lock(url: str) -> Iterator[None]:
    """Held while a sweep worker counts a study's trials and asks new ones, so that workers together
    never ask more than the study needs: a lock file beside an SQLite or journal file (`<file>.ask.lock`),
    a session advisory lock on a PostgreSQL server (freed with its session when a holder dies); none on
    other database servers."""
    for prefix in (JOURNAL_PREFIX, SQLITE_PREFIX):
        if url.startswith(prefix):
            with file_lock(url[len(prefix) :] + ".ask"):
                yield
            return
    if make_url(url).get_backend_name() != "postgresql":
        yield
        return
    engine = create_engine(url, poolclass=NullPool)
    key = zlib.crc32(b"embedding-trainer sweep ask lock")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        engine.dispose()
