"""Loggers that only emit on the process of global rank zero."""

import logging

from pytorch_lightning.utilities import rank_zero_only


class _RankZeroAdapter(logging.LoggerAdapter):
    def log(self, level, msg, *args, **kwargs):
        if rank_zero_only.rank == 0:
            super().log(level, msg, *args, **kwargs)


def get_logger(name: str) -> logging.LoggerAdapter:
    """Return a logger for `name` whose records are dropped on every rank but zero."""
    return _RankZeroAdapter(logging.getLogger(name), {})
