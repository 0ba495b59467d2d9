"""Silence the third-party messages that a user of this harness cannot act on, and nothing else.

Each filter names the message and the module that emits it; every other warning still prints.
"""

import logging
import os
import warnings

from lightning_fabric.utilities.warnings import PossibleUserWarning

LIGHTNING_TIP = "💡 Tip: "


class _DropLightningTips(logging.Filter):
    """Drops Lightning's advertisements ("💡 Tip: ... try installing [litlogger]/[litmodels]"),
    which no Trainer setting turns off."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LIGHTNING_TIP)


_DROP_TIPS = _DropLightningTips()


def silence_unactionable() -> None:
    """Install the filters (calling it again adds nothing); before the Trainer is built."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_DROP_TIPS)
    # Lightning's own pytree helper still builds torch's deprecated LeafSpec.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"pytorch_lightning\.utilities\._pytree",
    )
    # sentence-transformers gathers in-batch negatives across DDP ranks with a deprecated torch collective.
    warnings.filterwarnings(
        "ignore",
        message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
        category=FutureWarning,
        module=r"sentence_transformers\.util\.distributed",
    )
    # Outside a SLURM allocation, `srun` on PATH (a login node, a local test cluster) says nothing about this
    # run: SLURM runs go through launcher=slurm or scripts/slurm/train.sbatch, which use srun. Inside an
    # allocation the hint can be right, so it stays.
    if "SLURM_JOB_ID" not in os.environ:
        warnings.filterwarnings(
            "ignore",
            message=r"The `srun` command is available on your system but is not used",
            category=PossibleUserWarning,
            module=r"lightning_fabric\.plugins\.environments\.slurm",
        )
