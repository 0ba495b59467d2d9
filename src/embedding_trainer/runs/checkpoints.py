"""What a finished run keeps of its Lightning checkpoints (`checkpoints.keep`).

A checkpoint holds the model, the optimizer state and the training state: for all-MiniLM-L6-v2
277 MB, three times the saved model. Once a run has saved its model and results, its
`checkpoints/` folder is only needed to continue training it later (`ckpt_path=`). A run that fails
or is stopped never gets here: it keeps `last.ckpt` (and `preempted.ckpt`) to resume from.
"""

import os
import shutil
from pathlib import Path

from embedding_trainer.runs.resume import LAST_CHECKPOINT
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

CHECKPOINTS, LAST = Path(LAST_CHECKPOINT).parent.name, Path(LAST_CHECKPOINT).name
# What each `checkpoints.keep` keeps once the run has finished.
KEEP = {
    "none": "nothing (checkpoints/ is removed)",
    "last": "last.ckpt, to continue training later with ckpt_path=<run folder>/checkpoints/last.ckpt",
    "all": "every checkpoint",
}


def check_keep(keep: object) -> None:
    """Raise ConfigError unless `keep` (the `checkpoints.keep` setting) is one of `KEEP`."""
    if keep not in KEEP:
        choices = "; ".join(f"{name}: {kept}" for name, kept in KEEP.items())
        raise ConfigError(f"checkpoints.keep={keep} is not a choice. Use one of {choices}.")


def keep_checkpoints(output_dir: Path, keep: str, model_path: Path | None) -> None:
    """Reduce `output_dir`'s `checkpoints/` folder, after the run saved its model (in `model_path`,
    None when not saved) and results, to what `keep` asks for (see `KEEP`), and log what was freed.

    `last` keeps `last.ckpt` as a plain file: Lightning writes it as a link to the newest checkpoint
    written (with `save_top_k: 1`, the best one: the saved model's weights with its optimizer
    state), which is moved into its place. Call it on one process only (rank zero), once no
    other process reads the checkpoints any more."""
    folder = output_dir / CHECKPOINTS
    if keep == "all" or not folder.is_dir():
        return
    size = _size(folder)
    saved = f"the model is saved in {model_path}" if model_path else "no model was saved (save_model=false)"
    if keep == "last" and (folder / LAST).exists():
        _keep_only_last(folder)
        freed = _megabytes(size - _size(folder))
        log.info(f"Removed {CHECKPOINTS}/ but {LAST} ({freed}): {saved}; ckpt_path={folder / LAST} trains on")
        return
    shutil.rmtree(folder)
    kept = f"no {LAST} was written" if keep == "last" else f"checkpoints.keep=last keeps {LAST}"
    log.info(f"Removed {CHECKPOINTS}/ ({_megabytes(size)}): {saved}; {kept}")


def _keep_only_last(folder: Path) -> None:
    """Remove every entry of `folder` but `last.ckpt`, which becomes the file it links to, if a link."""
    last = folder / LAST
    if last.is_symlink():
        os.replace(last.resolve(), last)  # the link is replaced by its target, renamed
    for entry in folder.iterdir():
        if entry.name == LAST:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _size(folder: Path) -> int:
    """Bytes of the plain files under `folder` (links are not counted: they take no space)."""
    return sum(path.lstat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"
