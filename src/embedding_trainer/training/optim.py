"""Learning-rate schedules built from config."""

import math

import torch
from transformers import get_scheduler


def warmup_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, name: str = "linear", warmup_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LRScheduler:
    """A transformers schedule `name` warming up over `ceil(warmup_ratio * total_steps)` steps.

    Args:
        optimizer: the optimizer whose learning rate is scheduled.
        total_steps: optimizer steps in the whole run.
        name: a `transformers.SchedulerType` name (linear, cosine, constant_with_warmup, ...).
        warmup_ratio: fraction of `total_steps` spent warming up, in [0, 1].
    """
    if not 0.0 <= warmup_ratio <= 1.0:
        raise ValueError(f"scheduler.warmup_ratio must be within [0, 1], got {warmup_ratio}.")
    return get_scheduler(
        name,
        optimizer,
        num_warmup_steps=math.ceil(warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
