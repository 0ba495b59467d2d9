"""What a run started again in its own output folder needs: the checkpoint to resume from, its
registry row, and the random state at the checkpoint."""

import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

PREEMPTED_CHECKPOINT = "checkpoints/preempted.ckpt"
LAST_CHECKPOINT = "checkpoints/last.ckpt"
RUN_ID_FILE = ".run_id"


def unfinished(output_dir: str | Path) -> bool:
    """True unless `output_dir` holds the results of a finished run."""
    return not (Path(output_dir) / "results.json").exists()


def resume_checkpoint(output_dir: str | Path, ckpt_path: str | None) -> str | None:
    """The checkpoint `trainer.fit` starts from. A folder whose run did not finish (no
    `results.json`) continues from its own newest checkpoint (`checkpoints/preempted.ckpt` or
    `checkpoints/last.ckpt`), even when `ckpt_path` is set: that only seeds the run's first start,
    so the same command resumes. Otherwise `ckpt_path` (None: from scratch)."""
    folder = Path(output_dir)
    found = [folder / name for name in (PREEMPTED_CHECKPOINT, LAST_CHECKPOINT) if (folder / name).exists()]
    if not unfinished(folder) or not found:
        return str(ckpt_path) if ckpt_path else None
    newest = max(found, key=lambda path: path.stat().st_mtime)
    log.info(f"Resuming the unfinished run in {folder} from {newest}")
    return str(newest)


def stored_run_id(output_dir: str | Path) -> str | None:
    """The registry run id recorded in `output_dir` by an earlier start (or the queueing) of the
    same, unfinished run; None for a new run."""
    path = Path(output_dir) / RUN_ID_FILE
    return path.read_text(encoding="utf-8").strip() if unfinished(output_dir) and path.exists() else None


@rank_zero_only
def store_run_id(output_dir: str | Path, run_id: str) -> None:
    """Record `run_id` in `output_dir`, so a restart in the same folder continues the same registry row."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_ID_FILE).write_text(run_id + "\n", encoding="utf-8")


def random_state() -> dict:
    """This process's Python, NumPy and torch (CPU and CUDA) random states."""
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_random_state(state: dict) -> None:
    """Restore what `random_state()` returned."""
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomStateCallback(pl.Callback):
    """Saves every rank's random states (`random_state()`) in each checkpoint and restores each
    rank's own on resume, so dropout and any other sampling continue as if never stopped."""

    def __init__(self) -> None:
        self.trainer: pl.Trainer | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict:
        # Called on every rank while a checkpoint is made, so gathering here is collective-safe.
        state = random_state()
        if self.trainer is None or self.trainer.world_size == 1 or not torch.distributed.is_initialized():
            return {"ranks": [state]}
        states: list = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(states, state)
        return {"ranks": states}

    def load_state_dict(self, state_dict: dict) -> None:
        states = state_dict["ranks"]
        rank = self.trainer.global_rank if self.trainer is not None else 0
        set_random_state(states[rank] if rank < len(states) else states[0])
