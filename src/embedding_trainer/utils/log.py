"""Loggers that only emit on the process of global rank zero."""

import logging


class _RankZeroAdapter(logging.LoggerAdapter):
    def log(self, level, msg, *args, **kwargs):
        # Lightning's rank (from the environment, then set by the strategy), imported at the first
        # record: modules that log stay light to import (the command line's start-up imports some)
        from pytorch_lightning.utilities import rank_zero_only

        if rank_zero_only.rank == 0:
            super().log(level, msg, *args, **kwargs)


def get_logger(name: str) -> logging.LoggerAdapter:
    """Return a logger for `name` whose records are dropped on every rank but zero."""
    return _RankZeroAdapter(logging.getLogger(name), {})
