"""The shell around one run: `tracked_run` (its claimed folder, registry row and signal handling, at the
`RunPlace` the entry point reads from its config) and `run_command` (how a run started from a command
line ends: its exit status). Importing it readies the
process for a run: the config resolvers registered, unactionable library warnings silenced, tokenizers
kept from parallelism that forked data workers would deadlock on."""

import errno
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from embedding_trainer.reporting.wandb_run import finish_wandb
from embedding_trainer.runs.hydra_job import in_multirun
from embedding_trainer.runs.preemption import RunPreempted, requeue_after, stopping_on_signals
from embedding_trainer.runs.resume import LAST_CHECKPOINT, PREEMPTED_CHECKPOINT
from embedding_trainer.runs.run_folder import claim_run_folder
from embedding_trainer.runs.tracking import RunTracker, config_text
from embedding_trainer.settings.resolvers import register_resolvers
from embedding_trainer.utils.errors import (
    ConfigError,
    DataError,
    DiskFullError,
    ModelLoadError,
    ModelPushError,
)
from embedding_trainer.utils.log import get_logger
from embedding_trainer.utils.warnings_filter import silence_unactionable

log = get_logger(__name__)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
register_resolvers()
silence_unactionable()


@dataclass(frozen=True)
class RunPlace:
    """Where a run is kept: its `output_dir` (`paths.output_dir`), the run registry at `registry_path`
    (`registry.path`; None: none), whether a finished run there may be moved aside (`overwrite`), and
    its `config`, the YAML the registry row keeps (`config_text`)."""

    output_dir: str
    registry_path: str | None
    overwrite: bool
    config: str

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "RunPlace":
        """The place of the composed config `cfg`'s run."""
        return cls(
            str(cfg.paths.output_dir), cfg.registry.path, bool(cfg.get("overwrite", False)), config_text(cfg)
        )


def tracked_run(
    place: RunPlace, task: str, job: Callable[[RunTracker], tuple[dict[str, float], dict]]
) -> tuple[dict[str, float], dict]:
    """Run `job(tracker)` in its own output folder (`place.output_dir`), claimed for this run
    (refused when another run holds it, or a finished run is there and `overwrite` is off), and
    recorded in the run registry as `task` (its id: `runs.tracking.run_id_for`, the folder's name):
    `running`, then `success` with the job's `objects["results"]` and `objects["model_path"]`, or
    `failed` with the error, which is raised again (a full disk as a DiskFullError naming the path and
    what the folder keeps). A ConfigError or DataError that leaves the folder as the start made it
    removes the folder, if this start created it (its row keeps no folder).
    Returns the job's (metrics, objects), objects with `run_id` added."""
    output_dir = place.output_dir
    tracker = RunTracker(place.registry_path, task, output_dir)
    claim = None
    if rank_zero_only.rank == 0:  # DDP ranks 1.. run in rank zero's claimed folder
        claim = claim_run_folder(output_dir, place.overwrite, tracker.run_id)
    try:
        if claim is not None and claim.previous is not None:
            tracker.moved(str(claim.folder), str(claim.previous))
        tracker.start(place.config, output_dir)
        try:
            with stopping_on_signals():
                metrics, objects = job(tracker)
        except BaseException as error:
            tracker.fail(error)
            finish_wandb(failed=True)
            if claim is not None and isinstance(error, (ConfigError, DataError)) and claim.discard_start():
                tracker.folder_removed()
            full = _full_disk(error)
            if full is not None:
                raise DiskFullError(full_disk_message(full, Path(output_dir), tracker.run_id)) from error
            raise
        tracker.succeed(objects["results"], objects["model_path"])
        finish_wandb(failed=False)
    finally:
        if claim is not None:
            claim.release()
    return metrics, {**objects, "run_id": tracker.run_id}


def _full_disk(error: BaseException | None) -> OSError | None:
    """The OSError of a full disk or quota (ENOSPC, EDQUOT) behind `error` (itself or along its causes,
    which may form a cycle)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def full_disk_message(error: OSError, folder: Path, run_id: str) -> str:
    """One line: the path a full disk refused, what `folder` keeps, and how to go on."""
    kept = sorted(
        f"{path.relative_to(folder)}{'/' if path.is_dir() else ''}"
        for path in [*folder.glob("*"), *folder.glob("checkpoints/*")]
        if not path.name.startswith(".") and path.name != "checkpoints"
    )
    resumable = any((folder / name).exists() for name in (PREEMPTED_CHECKPOINT, LAST_CHECKPOINT))
    how = (
        f"free space, then run the same command with hydra.run.dir={folder} to resume from its checkpoint"
        if resumable
        else "free space (or point paths.log_dir at a disk with room) and run again"
    )
    return (
        f"The disk is full: writing {error.filename or 'a file of the run'} failed ({error.strerror}). Kept in "
        f"{folder}: {', '.join(kept) or 'nothing'}; the registry row {run_id} is marked failed. To go on: {how}."
    )


def run_command(job: Callable[[], tuple[dict[str, float], dict]]) -> dict[str, float]:
    """The metrics of `job()` run from a command line: a ConfigError, DataError, ModelLoadError,
    ModelPushError or DiskFullError is logged (one line) and exits with status 2 (raised in a
    multi-run), a preempted run exits with its `RunPreempted.exit_code`."""
    try:
        metrics, _ = job()
    except (ConfigError, DataError, ModelLoadError, ModelPushError, DiskFullError) as error:
        log.error(f"{type(error).__name__}: {error}")
        if in_multirun():
            raise  # one failed job of a multi-run or sweep (Hydra records it), not the end of the others
        sys.exit(2)
    except RunPreempted as preempted:
        log.warning(str(preempted))
        requeue_after(preempted)  # last: SLURM answers the requeue with a SIGTERM
        sys.exit(preempted.exit_code)
    return metrics
