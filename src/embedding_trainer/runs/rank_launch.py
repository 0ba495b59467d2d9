"""Running each job of a Hydra multi-run or sweep as its own DDP job.

Under `trainer=ddp` on one node, Lightning starts ranks 1.. by re-running `sys.argv` with
`hydra.run.dir=<HydraConfig's run.dir>` appended. For a single run that is this run's folder
(resolved once, so a timestamped name is the same for every rank). In a multi-run or sweep,
`sys.argv` holds the whole sweep (`-m`, value lists, the sweeper) and `run.dir` is not the job's
folder: the other ranks would start the sweep again, with other values, in another folder. And
as the jobs run one after another in one process, the next job would find the finished job's
process group and launcher environment (`LOCAL_RANK` set: Lightning then starts no processes).
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import read_write

from embedding_trainer.runs.hydra_job import in_multirun

# What Lightning's subprocess launcher puts in the environment of the process that launches.
LAUNCHER_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def ranks_run_this_job(output_dir: Path, world_size: int) -> Iterator[None]:
    """Around `trainer.fit` (which starts the other ranks) in a multi-run job with `world_size` > 1:
    Lightning's launcher sees this job alone (`sys.argv` is the job's own overrides, Hydra's
    `run.dir` is `output_dir`), so every rank runs this job in one folder; on exit the process group
    is destroyed and `sys.argv`, `run.dir` and the launcher's environment variables are restored,
    so the next job starts its own ranks. Outside a Hydra multi-run it does nothing."""
    if world_size == 1 or not in_multirun():
        yield
        return
    hydra_cfg = HydraConfig.get()
    argv, run_dir = sys.argv, hydra_cfg.run.dir
    environment = {name: os.environ.get(name) for name in LAUNCHER_ENVIRONMENT}
    sys.argv = [argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = str(output_dir)
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        sys.argv = argv
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = run_dir
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
