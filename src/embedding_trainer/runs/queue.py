"""Registering a run as `queued` before a scheduler starts it (SLURM jobs submitted by Hydra)."""

from pathlib import Path

from hydra.types import HydraContext
from omegaconf import DictConfig, open_dict

from embedding_trainer.runs.resume import store_run_id
from embedding_trainer.runs.tracking import RunTracker, config_text
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)


def register_queued(
    hydra_context: HydraContext, master_config: DictConfig, overrides: list[str], job_num: int
) -> RunTracker | None:
    """Add the run of job `job_num` (a multi-run member with `overrides`) to the run registry as
    `queued`, and record its run id in its output folder, where the job finds it when it starts
    (`train()` then continues the same row). Returns its tracker; None (and nothing recorded)
    when `registry.path` is null."""
    cfg = hydra_context.config_loader.load_sweep_config(master_config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.num = job_num
    output_dir = Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
    tracker = RunTracker(cfg.registry.path, cfg.name, output_dir)
    if tracker.registry is None:
        return None
    with open_dict(cfg):
        del cfg["hydra"]
    tracker.registry.start(
        tracker.run_id, cfg.name, list(overrides), config_text(cfg), str(output_dir), status="queued"
    )
    store_run_id(output_dir, tracker.run_id)
    log.info(f"Queued run {tracker.run_id}: {output_dir}")
    return tracker


def fail_still_queued(trackers: list[RunTracker], error: BaseException) -> None:
    """Record the runs of `trackers` that never started (still `queued`: the scheduler refused
    or lost them) as `failed` with `error`; runs that started keep what they recorded."""
    for tracker in trackers:
        if tracker.registry.get(tracker.run_id)["status"] == "queued":
            tracker.fail(error)
