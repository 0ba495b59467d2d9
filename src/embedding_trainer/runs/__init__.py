"""The run registry: every run's status, progress, config, metrics and errors in one SQLite file,
and the `python -m embedding_trainer.runs` command that lists, shows and compares them."""

from embedding_trainer.runs.registry import STATUSES, RunRegistry

__all__ = ["STATUSES", "RunRegistry"]
