"""Exclusive use of a run folder: one process at a time writes into it, and a finished run's
results are never written over.

A run claims its folder by creating `.claim` atomically (`O_CREAT | O_EXCL`), holding who claimed
it (run id, host, process id and start time, SLURM job id). A second process that finds the
claim refuses with a message naming that run, unless the claimant is gone: a dead process on
this host, or an earlier start of this same SLURM job (a requeued job may land on another node).
The claim is released (the file removed) when the run ends, failed or not, and at exit.

A folder whose run finished (it holds `results.json`) is refused too, unless `overwrite` is set:
then its contents move aside to a sibling folder `<name>.previous-<timestamp>`, never deleted.
An unfinished run's folder is taken as it is: the run resumes there (see `resume`).

A run whose configuration is refused at its start leaves no folder: when this start created the
folder and it holds nothing but what a start writes (Hydra's `.hydra/`, the log, the claim, the
run id), it is removed (`RunFolderClaim.discard_start`). A folder that was there before is kept.
"""

import atexit
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from embedding_trainer.runs.preemption import slurm_job_id
from embedding_trainer.runs.resume import RUN_ID_FILE, unfinished
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

CLAIM_FILE = ".claim"
HYDRA_FOLDER = ".hydra"


class RunFolderError(ConfigError):
    """The run folder is in use by another run, or holds a finished run; the message says what to do."""


@dataclass
class Claimant:
    """Who holds a run folder."""

    pid: int
    host: str
    process_started: float
    slurm_job_id: str | None
    run_id: str | None
    claimed_at: str

    @classmethod
    def this_process(cls, run_id: str | None) -> "Claimant":
        pid = os.getpid()
        return cls(
            pid,
            socket.gethostname(),
            psutil.Process(pid).create_time(),
            slurm_job_id(),
            run_id,
            time.strftime("%Y-%m-%d %H:%M:%S"),
        )

    def is_gone(self) -> bool:
        """True when the claiming process surely no longer runs: on this host, its process is dead
        (or its pid now names another process); elsewhere, it was an earlier start of this SLURM job
        (requeued). A claim from another host and job may be alive: it is never taken over."""
        if self.host == socket.gethostname():
            try:
                return abs(psutil.Process(self.pid).create_time() - self.process_started) > 1.0
            except psutil.NoSuchProcess:
                return True
        return bool(self.slurm_job_id) and self.slurm_job_id == slurm_job_id()

    def describe(self) -> str:
        run = f"run {self.run_id}" if self.run_id else "a run"
        job = f", SLURM job {self.slurm_job_id}" if self.slurm_job_id else ""
        return f"{run} (process {self.pid} on {self.host}{job}, since {self.claimed_at})"


class RunFolderClaim:
    """This process's claim on `folder`; `created` is the outermost folder this start created for it
    (`folder` or a parent; None when `folder` was there before); `previous` is where an overwritten
    run's files went."""

    def __init__(
        self, folder: Path, claimant: Claimant, created: Path | None, previous: Path | None = None
    ) -> None:
        self.folder = folder
        self.claimant = claimant
        self.created = created
        self.previous = previous

    @property
    def path(self) -> Path:
        return self.folder / CLAIM_FILE

    def name_run(self, run_id: str) -> None:
        """Record the registry run id of the run holding the claim (shown to processes refused)."""
        self.claimant.run_id = run_id
        _write_claim(self.path, self.claimant, exclusive=False)

    def release(self) -> None:
        """Remove the claim (once); a folder this claim created and nothing else wrote to goes too."""
        if _HELD.pop(self.folder, None) is None:
            return
        self.path.unlink(missing_ok=True)
        if self.created is not None and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def discard_start(self) -> bool:
        """After the run's configuration was refused: release the claim and, when this start created
        the folder and it holds only what a start writes (`_start_files`), remove it, with the parents
        this start created that are left empty, having closed this process's log files in it. True
        when the folder was removed; anything else (a folder that was there before) is left as it is."""
        start_files = self._start_files()
        if self.created is None or any(entry not in start_files for entry in self.folder.iterdir()):
            self.release()
            return False
        _close_log_files(self.folder)
        for entry in start_files - {self.path}:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
        self.release()
        for folder in (self.folder, *self.folder.parents):
            if not folder.is_relative_to(self.created):
                break
            try:
                folder.rmdir()  # empty folders only: another run's folder beside this one stops it
            except FileNotFoundError:
                continue  # release() removed it
            except OSError:
                break
        return not self.folder.exists()

    def _start_files(self) -> set[Path]:
        """What a start writes in the folder: Hydra's `.hydra/`, this process's open log files, the
        claim, and the run id file when it names this run."""
        logs = [Path(handler.baseFilename) for _, handler in _file_handlers(self.folder)]
        files = {self.folder / HYDRA_FOLDER, self.path, *logs}
        run_id_file = self.folder / RUN_ID_FILE
        if run_id_file.is_file() and run_id_file.read_text(encoding="utf-8").strip() == self.claimant.run_id:
            files.add(run_id_file)
        return files


_HELD: dict[Path, RunFolderClaim] = {}
# Multi-run folder -> the names in it when the multi-run started: a member folder not among them is
# this multi-run's own (Hydra creates it before the job runs, so `_make_folder` cannot tell).
_MULTIRUNS: dict[Path, set[str]] = {}


def note_multirun_start(sweep_dir: str | Path) -> None:
    """Remember what `sweep_dir` holds as a multi-run or sweep starts there, so that a job's claim
    knows whether this multi-run created its member folder (see `RunFolderClaim.discard_start`).
    Jobs run in other processes (submitit) do not see it: their folders count as existing before."""
    folder = Path(sweep_dir).resolve()
    _MULTIRUNS[folder] = {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()


def _new_member(folder: Path) -> bool:
    """Whether `folder` is a member folder that its multi-run created (see `note_multirun_start`)."""
    before = _MULTIRUNS.get(folder.parent)
    return before is not None and folder.name not in before


def claim_run_folder(
    folder: str | Path, overwrite: bool = False, run_id: str | None = None
) -> RunFolderClaim:
    """Claim `folder` for this process's run (the same claim again when this process holds it).

    Raises:
        RunFolderError: another live run holds the folder, the folder holds a finished run and
            `overwrite` is off, or the path cannot be a folder.
    """
    folder = Path(folder).resolve()
    if folder in _HELD:
        claim = _HELD[folder]
        if run_id:
            claim.name_run(run_id)
        return claim
    created = _make_folder(folder)
    if created is None and _new_member(folder):
        created = folder
    claimant = Claimant.this_process(run_id)
    _take_claim(folder / CLAIM_FILE, claimant)
    claim = RunFolderClaim(folder, claimant, created)
    _HELD[folder] = claim
    try:
        if not unfinished(folder):
            claim.previous = _move_finished_run_aside(folder, overwrite)
    except BaseException:
        claim.release()
        raise
    return claim


def _make_folder(folder: Path) -> Path | None:
    """Create `folder` (with parents); the outermost folder created, None when `folder` existed."""
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(
            f"The run folder {folder} is a file; choose another hydra.run.dir (or paths.output_dir)."
        )
    if folder.is_dir():
        return None
    outermost = folder
    while not outermost.parent.exists():
        outermost = outermost.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunFolderError(
            f"Cannot create the run folder {folder}: {error.strerror}. Choose a writable place with "
            "hydra.run.dir=... (or paths.log_dir=...)."
        ) from None
    return outermost


def _take_claim(path: Path, claimant: Claimant) -> None:
    """Create the claim file, or take over a claim whose process is gone; else raise RunFolderError."""
    if _create_claim(path, claimant):
        return
    holder = _read_claim(path)
    if holder is not None and not holder.is_gone():
        raise RunFolderError(
            f"The run folder {path.parent} is in use by {holder.describe()}. Start this run in its own folder "
            f"(leave hydra.run.dir unset: every run gets a new one). If that run is no longer running, "
            f"delete {path} and start again."
        )
    if _retire_claim(path):
        log.warning(
            f"Taking over {path.parent}: its claim by {holder.describe() if holder else 'an unknown run'} is stale."
        )
    if not _create_claim(path, claimant):
        holder = _read_claim(path)
        raise RunFolderError(
            f"The run folder {path.parent} was claimed just now by {holder.describe() if holder else 'another run'}; "
            "start this run in its own folder."
        )


def _create_claim(path: Path, claimant: Claimant) -> bool:
    """Create the claim file for `claimant`; False when one exists already."""
    try:
        _write_claim(path, claimant, exclusive=True)
    except FileExistsError:
        return False
    return True


def _retire_claim(path: Path) -> bool:
    """Remove a stale claim file; False when it was gone already. The rename to a name of this
    process's own lets only one of two processes taking over the same stale claim win."""
    stale = path.with_name(f"{CLAIM_FILE}.stale-{os.getpid()}")
    try:
        os.replace(path, stale)
    except FileNotFoundError:
        return False
    stale.unlink(missing_ok=True)
    return True


def _write_claim(path: Path, claimant: Claimant, exclusive: bool) -> None:
    """Write the claim to a file of this process's own, then put it in place whole: hard-linked when
    `exclusive` (FileExistsError when a claim is there), else replacing the claim. So no process ever
    reads a claim half written (an empty claim reads as a stale one, and would be taken over)."""
    staged = path.with_name(f"{CLAIM_FILE}.new-{os.getpid()}")
    try:
        staged.write_text(json.dumps(asdict(claimant)) + "\n", encoding="utf-8")
        if exclusive:
            os.link(staged, path)
        else:
            os.replace(staged, path)
    except FileExistsError:
        raise  # the caller's to handle: the folder is claimed
    except OSError as error:
        raise RunFolderError(
            f"Cannot write in the run folder {path.parent}: {error.strerror}. Choose a writable place with "
            "hydra.run.dir=... (or paths.log_dir=...)."
        ) from None
    finally:
        staged.unlink(missing_ok=True)


def _read_claim(path: Path) -> Claimant | None:
    """The claimant recorded in `path`; None when it is gone or unreadable (a claim being written)."""
    try:
        return Claimant(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _move_finished_run_aside(folder: Path, overwrite: bool) -> Path:
    """Move everything but the claim from `folder` (a finished run's) to a new sibling folder and
    return it; without `overwrite`, raise RunFolderError instead."""
    run_id_file = folder / RUN_ID_FILE
    finished_run = run_id_file.read_text(encoding="utf-8").strip() if run_id_file.exists() else "a run"
    if not overwrite:
        raise RunFolderError(
            f"The run folder {folder} holds {finished_run}, which finished (results.json). Nothing was changed. "
            "Leave hydra.run.dir unset to start in a new folder; or add overwrite=true to move the finished "
            f"run's files aside (to {folder.name}.previous-<time>) and start over there; or continue training "
            f"from it in a new folder with ckpt_path={folder / 'checkpoints' / 'last.ckpt'}."
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    previous = folder.with_name(f"{folder.name}.previous-{stamp}")
    suffix = 1
    while previous.exists():
        previous, suffix = folder.with_name(f"{folder.name}.previous-{stamp}-{suffix}"), suffix + 1
    previous.mkdir()
    for entry in folder.iterdir():
        if entry.name != CLAIM_FILE:
            entry.rename(previous / entry.name)
    log.warning(f"overwrite=true: moved the finished run in {folder} ({finished_run}) to {previous}")
    return previous


def _close_log_files(folder: Path) -> None:
    """Detach and close this process's logging handlers that write into `folder`."""
    for logger, handler in _file_handlers(folder):
        logger.removeHandler(handler)
        handler.close()


def _file_handlers(folder: Path) -> list[tuple[logging.Logger, logging.FileHandler]]:
    """This process's logging handlers writing a file in `folder` (Hydra's `<job>.log`), and their loggers."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [
        (logger, handler)
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == folder
    ]


@atexit.register
def _release_all() -> None:
    for claim in list(_HELD.values()):
        claim.release()
